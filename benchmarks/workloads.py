"""Deterministic synthetic workloads for the instance-AP and panoptic-quality benchmarks.

Everything is generated from a seed, image by image (``numpy.random.default_rng([seed, index])``), so
any image can be rebuilt on its own and every contender sees bit-identical tensors; nothing is
downloaded. Object sizes scale with the image so that a small workload keeps the COCO mix of small,
medium and large objects relative to its size (the full size uses the COCO area ranges as they are).

* :class:`InstanceWorkload`: COCO-like instance segmentation. Ground truths are rotated elliptic blobs
  (a few percent crowd); detections are jittered copies of them (shifted, dilated, eroded, sometimes
  with a wrong label) plus false positives, as torchmetrics-style lists of dicts with ``bool`` masks.
* :class:`PanopticWorkload`: COCO-panoptic-like scenes: a Voronoi partition into stuff regions, thing
  blobs painted over it, void bands along segment boundaries; predictions are perturbed targets
  (a shift, missing and wrong-category segments, merged and split segments, hallucinated blobs), as
  torchmetrics-style ``(H, W, 2)`` (category, instance) int64 maps plus a crowd pixel mask.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

VOID_CATEGORY = 0  #: the category id used for void pixels in panoptic maps (not a thing, not a stuff)


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def _paint_ellipse(
    out: np.ndarray, cx: float, cy: float, a: float, b: float, theta: float, value: object = True
) -> None:
    """Set the pixels of ``out`` (H, W) whose centres lie in the rotated ellipse to ``value``."""
    h, w = out.shape
    r = max(a, b)
    x0, x1 = max(int(cx - r), 0), min(math.ceil(cx + r) + 1, w)
    y0, y1 = max(int(cy - r), 0), min(math.ceil(cy + r) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    xs = np.arange(x0, x1, dtype=np.float32) + 0.5 - cx
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy
    c, s = math.cos(theta), math.sin(theta)
    u, v = xs * c + ys * s, -xs * s + ys * c
    inside = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    out[y0:y1, x0:x1][inside] = value


def _blob_params(rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
    """``(n, 5)`` float rows (cx, cy, a, b, theta); sqrt(area) log-uniform over [10, 220] at 480 px."""
    scale = min(height, width) / 480.0
    side = np.exp(rng.uniform(math.log(10.0), math.log(220.0), n)) * scale
    aspect = np.exp(rng.uniform(-0.7, 0.7, n))
    radius = side / math.sqrt(math.pi)
    return np.stack(
        [
            rng.uniform(0, width, n),
            rng.uniform(0, height, n),
            np.maximum(radius * np.sqrt(aspect), 0.8),
            np.maximum(radius / np.sqrt(aspect), 0.8),
            rng.uniform(0, math.pi, n),
        ],
        axis=1,
    )


@dataclass(frozen=True)
class InstanceWorkload:
    """A COCO-like instance-segmentation workload (defaults: the issue-3 benchmark).

    Args:
        num_images: number of images.
        height, width: image size in pixels.
        gts_per_image: mean number of ground truths per image (Poisson, at least 1).
        dets_per_image: detections per image (jittered copies of the ground truths, then false positives).
        num_classes: labels are ``0 .. num_classes - 1``.
        crowd_fraction: probability that a ground truth is a crowd region.
        seed: the seed; image ``i`` uses ``numpy.random.default_rng([seed, i])``.
    """

    num_images: int = 200
    height: int = 480
    width: int = 640
    gts_per_image: float = 7.0
    dets_per_image: int = 100
    num_classes: int = 20
    crowd_fraction: float = 0.01
    seed: int = 0

    def describe(self) -> str:
        """One line describing the workload."""
        return (
            f"{self.num_images} images of {self.height}x{self.width}, ~{self.gts_per_image:g} ground truths "
            f"per image ({self.crowd_fraction:.0%} crowd), {self.dets_per_image} scored detections per image "
            f"(jittered copies of the ground truths plus false positives), {self.num_classes} classes, "
            f"bool mask tensors written in full (as a model's thresholded output), seed {self.seed}"
        )

    def image(self, index: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Image ``index`` as ``(pred, target)`` dicts in torchmetrics' format.

        ``pred``: ``masks`` bool (D, H, W), ``scores`` float32 (D,), ``labels`` int64 (D,);
        ``target``: ``masks`` bool (G, H, W), ``labels`` int64 (G,), ``iscrowd`` int64 (G,).
        """
        rng = _rng(self.seed, index)
        h, w = self.height, self.width
        n_gt = max(1, int(rng.poisson(self.gts_per_image)))
        gt = _blob_params(rng, n_gt, h, w)
        crowd = rng.random(n_gt) < self.crowd_fraction
        gt[crowd, 2:4] *= 2.0  # crowd regions are larger groups
        gt_labels = rng.integers(0, self.num_classes, n_gt)

        # Detections: 1 + Poisson(3) jittered copies per ground truth (small blobs inside crowd regions).
        rows, labels, scores = [], [], []
        for g in range(n_gt):
            cx, cy, a, b, th = gt[g]
            for _ in range(1 + int(rng.poisson(3.0))):
                if crowd[g]:
                    ang, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0, 0.5) * min(a, b)
                    r = max(min(a, b) * 0.2, 1.0)
                    rows.append([cx + dist * math.cos(ang), cy + dist * math.sin(ang), r, r, 0.0])
                    quality = 0.5
                else:
                    shift = rng.normal(0.0, 0.15, 2) * max(a, b)
                    grow = math.exp(rng.normal(0.0, 0.15))  # dilated (>1) or eroded (<1)
                    rows.append([cx + shift[0], cy + shift[1], a * grow, b * grow, th + rng.normal(0.0, 0.1)])
                    quality = 1.0 - min(1.0, float(np.hypot(*shift)) / max(a, b) + abs(math.log(grow)))
                labels.append(gt_labels[g] if rng.random() < 0.9 else rng.integers(0, self.num_classes))
                scores.append(0.3 + 0.6 * quality + rng.normal(0.0, 0.05))
        rows, labels, scores = rows[: self.dets_per_image], labels[: self.dets_per_image], scores[: len(rows)]
        n_fp = self.dets_per_image - len(rows)
        dt = np.concatenate(
            [np.asarray(rows, dtype=np.float64).reshape(-1, 5), _blob_params(rng, n_fp, h, w)]
        )
        dt_labels = np.concatenate(
            [np.asarray(labels, dtype=np.int64), rng.integers(0, self.num_classes, n_fp)]
        )
        dt_scores = np.concatenate([np.asarray(scores), rng.uniform(0.02, 0.7, n_fp)])
        order = rng.permutation(len(dt))
        dt, dt_labels, dt_scores = dt[order], dt_labels[order], np.clip(dt_scores[order], 0.001, 0.999)

        # np.full writes every byte, as a model's thresholded output does: np.zeros would leave the
        # untouched pages unmapped, and whoever reads the masks first would pay their page faults
        gt_masks = np.full((n_gt, h, w), False)
        for g in range(n_gt):
            _paint_ellipse(gt_masks[g], *gt[g])
        dt_masks = np.full((len(dt), h, w), False)
        for d in range(len(dt)):
            _paint_ellipse(dt_masks[d], *dt[d])
        pred = {
            "masks": torch.from_numpy(dt_masks),
            "scores": torch.from_numpy(dt_scores.astype(np.float32)),
            "labels": torch.from_numpy(dt_labels),
        }
        target = {
            "masks": torch.from_numpy(gt_masks),
            "labels": torch.from_numpy(gt_labels.astype(np.int64)),
            "iscrowd": torch.from_numpy(crowd.astype(np.int64)),
        }
        return pred, target

    def batches(
        self, batch_size: int, num_images: int | None = None
    ) -> Iterator[tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]]:
        """Yield ``(preds, targets)`` lists of ``batch_size`` images (the first ``num_images`` images)."""
        n = self.num_images if num_images is None else min(num_images, self.num_images)
        for start in range(0, n, batch_size):
            pairs = [self.image(i) for i in range(start, min(start + batch_size, n))]
            yield [p for p, _ in pairs], [t for _, t in pairs]


@dataclass(frozen=True)
class PanopticWorkload:
    """A COCO-panoptic-like workload (defaults: the issue-4 benchmark).

    Things are categories ``1 .. num_things``, stuff ``num_things + 1 .. num_things + num_stuff``, void
    is category :data:`VOID_CATEGORY` with instance 0. Stuff segments have instance id 0 (torchmetrics'
    convention) except where a prediction splits a stuff region, which gives the second part instance 1.

    Args:
        num_images: number of images.
        height, width: image size in pixels.
        num_things, num_stuff: number of thing and stuff categories.
        segments_per_image: mean number of segments per target image (about a third of them stuff).
        crowd_fraction: probability that a thing segment of the target is a crowd region.
        seed: the seed; image ``i`` uses ``numpy.random.default_rng([seed, i])``.
    """

    num_images: int = 100
    height: int = 480
    width: int = 640
    num_things: int = 80
    num_stuff: int = 53
    segments_per_image: float = 15.0
    crowd_fraction: float = 0.02
    seed: int = 0

    @property
    def things(self) -> list[int]:
        """The thing category ids."""
        return list(range(1, self.num_things + 1))

    @property
    def stuffs(self) -> list[int]:
        """The stuff category ids."""
        return list(range(self.num_things + 1, self.num_things + self.num_stuff + 1))

    def describe(self) -> str:
        """One line describing the workload."""
        return (
            f"{self.num_images} images of {self.height}x{self.width}, {self.num_things} thing + "
            f"{self.num_stuff} stuff categories, ~{self.segments_per_image:g} segments per image, ~3% void "
            f"(boundary bands), {self.crowd_fraction:.0%} of thing segments crowd; predictions = perturbed "
            "targets (shift, missing, wrong category, merged, split, hallucinated segments); (H, W, 2) int64 "
            f"maps, seed {self.seed}"
        )

    def image(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Image ``index`` as ``(pred, target, crowd)``.

        ``pred`` and ``target``: int64 (H, W, 2) of (category, instance); ``crowd``: bool (H, W), True on
        target pixels that belong to crowd segments.
        """
        rng = _rng(self.seed, index)
        h, w = self.height, self.width
        n_seg = max(2, int(rng.poisson(self.segments_per_image)))
        n_stuff = max(1, min(n_seg - 1, round(n_seg / 3 + rng.normal(0, 1))))
        n_thing = n_seg - n_stuff

        # Stuff: a Voronoi partition with distinct stuff categories.
        sy, sx = rng.uniform(0, h, n_stuff), rng.uniform(0, w, n_stuff)
        yy = np.arange(h, dtype=np.float32)[:, None, None]
        xx = np.arange(w, dtype=np.float32)[None, :, None]
        region = np.argmin((yy - sy.astype(np.float32)) ** 2 + (xx - sx.astype(np.float32)) ** 2, axis=2)
        stuff_cats = rng.choice(self.stuffs, n_stuff, replace=False)
        cat = stuff_cats[region].astype(np.int64)
        inst = np.zeros((h, w), dtype=np.int64)

        # Things: blobs painted over it; instance ids unique within the image.
        blobs = _blob_params(rng, n_thing, h, w)
        thing_cats = rng.choice(self.things, n_thing)
        crowd_flags = rng.random(n_thing) < self.crowd_fraction
        for t in range(n_thing):
            mask = np.zeros((h, w), dtype=bool)
            _paint_ellipse(mask, *blobs[t])
            cat[mask], inst[mask] = thing_cats[t], t + 1

        # Void: a band along every segment boundary, 3 pixels wide at 480 px (about 3% of the image).
        seg = cat * (n_thing + 2) + inst
        band = max(1, round(3 * min(h, w) / 480))
        void = np.zeros((h, w), dtype=bool)
        void[:, band:] |= seg[:, band:] != seg[:, :-band]
        void[band:, :] |= seg[band:, :] != seg[:-band, :]
        cat[void], inst[void] = VOID_CATEGORY, 0
        crowd = np.isin(inst, np.flatnonzero(crowd_flags) + 1) & ~void
        target = np.stack([cat, inst], axis=-1)

        # Prediction: perturb the target segment by segment, then shift the whole map.
        pcat, pinst = cat.copy(), inst.copy()
        next_inst = n_thing + 1
        for t in range(1, n_thing + 1):
            mask = inst == t
            u = rng.random()
            if u < 0.08:  # missing
                pcat[mask] = VOID_CATEGORY
                pinst[mask] = 0
            elif u < 0.16:  # wrong category
                pcat[mask] = rng.choice(self.things)
            elif u < 0.22 and t > 1 and (inst == t - 1).any():  # merged into the previous thing segment
                prev = inst == t - 1
                pcat[mask], pinst[mask] = pcat[prev][0], pinst[prev][0]
            elif u < 0.28:  # split in two along a vertical line through its middle
                cols = np.flatnonzero(mask.any(axis=0))
                if cols.size > 1:
                    pinst[mask & (np.arange(w) >= cols[cols.size // 2])] = next_inst
                    next_inst += 1
        for s in range(n_stuff):
            mask = (region == s) & (inst == 0) & ~void
            u = rng.random()
            if u < 0.1:  # wrong stuff category (may equal another region's: merged stuff)
                pcat[mask] = rng.choice(self.stuffs)
            elif u < 0.2:  # split: the lower half becomes a second segment of the same category
                rows = np.flatnonzero(mask.any(axis=1))
                if rows.size:
                    pinst[mask & (np.arange(h)[:, None] >= rows[rows.size // 2])] = 1
        for _ in range(int(rng.poisson(1.0))):  # hallucinated things
            mask = np.zeros((h, w), dtype=bool)
            _paint_ellipse(mask, *_blob_params(rng, 1, h, w)[0])
            pcat[mask], pinst[mask] = rng.choice(self.things), next_inst
            next_inst += 1
        dy, dx = (int(v) for v in rng.integers(-3, 4, 2))
        pcat, pinst = np.roll(pcat, (dy, dx), axis=(0, 1)), np.roll(pinst, (dy, dx), axis=(0, 1))
        if dy:
            sl = slice(0, dy) if dy > 0 else slice(h + dy, h)
            pcat[sl, :], pinst[sl, :] = VOID_CATEGORY, 0
        if dx:
            sl = slice(0, dx) if dx > 0 else slice(w + dx, w)
            pcat[:, sl], pinst[:, sl] = VOID_CATEGORY, 0
        pred = np.stack([pcat, pinst], axis=-1)
        return torch.from_numpy(pred), torch.from_numpy(target), torch.from_numpy(crowd)

    def batches(
        self, batch_size: int, num_images: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(preds, targets, crowd)`` stacked over ``batch_size`` images: (B, H, W, 2), (B, H, W)."""
        n = self.num_images if num_images is None else min(num_images, self.num_images)
        for start in range(0, n, batch_size):
            items = [self.image(i) for i in range(start, min(start + batch_size, n))]
            yield tuple(torch.stack([it[k] for it in items]) for k in range(3))  # type: ignore[misc]


# ------------------------------------------------------------------ conversions for the panoptic peers

SEGMENT_OFFSET = 1000  # segment id = category * SEGMENT_OFFSET + instance + 1; 0 is void


def segment_ids(maps: Any, known: Any) -> np.ndarray:
    """Panoptic segment ids (B, H, W) uint32 from (B, H, W, 2) (category, instance) maps; unknown -> 0.

    ``id = category * SEGMENT_OFFSET + instance + 1`` for categories in ``known`` (a look-up table, not
    ``np.isin``, to keep the peers' conversion cheap); every other category is void (0).
    """
    arr = maps.numpy()
    cat, inst = arr[..., 0], arr[..., 1]
    known = np.asarray(known)
    table = np.zeros(int(known.max()) + 2, dtype=bool)
    table[known] = True
    valid = table[np.clip(cat, 0, table.size - 1)]  # the last entry (out of range) stays False
    return np.where(valid, cat * SEGMENT_OFFSET + inst + 1, 0).astype(np.uint32)


def segments_info(ids: np.ndarray, crowd: np.ndarray | None) -> list[dict]:
    """panopticapi ``segments_info`` for one (H, W) id map: id, category, area, iscrowd (sorted by id)."""
    counts = np.bincount(ids.ravel())
    labels = np.flatnonzero(counts[1:]) + 1
    crowd_ids = set(np.unique(ids[crowd]).tolist()) if crowd is not None else set()
    return [
        {"id": i, "category_id": i // SEGMENT_OFFSET, "area": n, "iscrowd": int(i in crowd_ids)}
        for i, n in zip(labels.tolist(), counts[labels].tolist(), strict=True)
    ]
