"""COCO instance annotations and results files, streamed into ``MeanAveragePrecision.update()`` inputs.

The ground-truth JSON and the results (a JSON file or list) are parsed once; dense masks are decoded
only for one batch of images at a time (RLE decoded and polygons rasterised exactly as pycocotools,
see :mod:`torchseg_metrics.io.rle` and :mod:`torchseg_metrics.io.polygons`), so a 5,000-image
validation set never sits in memory as dense masks.

Conventions (those of pycocotools ``COCO`` / ``COCO.loadRes`` / ``COCOeval``, spec A.2):

- images are visited in sorted image-id order (``COCOeval``'s ``imgIds``), annotations and results
  in file order (ties in score are broken by that order);
- ground-truth ``area`` and ``iscrowd`` come from the file (``area`` is *not* recomputed from the
  mask; a missing ``iscrowd`` is 0, a missing ``area`` is the mask pixel count, or ``w*h`` of the
  box for ``iou_type="bbox"``); an ``ignore`` field is discarded, as pycocotools does;
- ``dt_area="loadres"`` (default) reproduces ``loadRes``: if the *first* result has a non-empty
  ``bbox``, every result's area is its box's ``w*h`` even for mask results (quirk); otherwise the
  mask pixel count. ``dt_area="mask"`` always uses the mask (what detectron2 does by dropping
  ``bbox``), ``dt_area="bbox"`` always the box;
- results for an image not in the ground truth, or of a category not in it, are errors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from torchseg_metrics._checks import Found, check_bool, check_choice, check_positive_int, fail
from torchseg_metrics.io._json import read_json
from torchseg_metrics.io.polygons import _polygon_runs
from torchseg_metrics.io.rle import _expand_runs, _runs_from_rles

__all__ = ["CocoBatch", "CocoGroundTruth", "iter_coco_batches", "load_coco_gt", "load_coco_results"]

DtArea = Literal["loadres", "mask", "bbox"]
_DT_AREAS = ("loadres", "mask", "bbox")


@dataclass
class CocoGroundTruth:
    """A parsed COCO instances ground truth: images, categories and annotations grouped by image.

    Built by :func:`load_coco_gt`, which checks ids; ``anns_by_image`` keeps the file order.

    Example:
        >>> gt = CocoGroundTruth(images={3: {"id": 3}, 1: {"id": 1}}, categories={7: {"name": "dog"}})
        >>> gt.image_ids, gt.class_names
        ([1, 3], {7: 'dog'})
    """

    images: dict[int, dict[str, Any]]
    categories: dict[int, dict[str, Any]]
    anns_by_image: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def image_ids(self) -> list[int]:
        """Image ids in ``COCOeval`` order (sorted)."""
        return sorted(self.images)

    @property
    def class_names(self) -> dict[int, str]:
        """Category id to name."""
        return {cid: str(c.get("name", cid)) for cid, c in self.categories.items()}


@dataclass
class CocoBatch:
    """One batch of images: their ids and the ``preds`` / ``target`` lists for ``update()``.

    Example:
        >>> batch = CocoBatch(image_ids=[1], preds=[{}], target=[{}])
        >>> len(batch.preds) == len(batch.image_ids)
        True
    """

    image_ids: list[int]
    preds: list[dict[str, Tensor]]
    target: list[dict[str, Tensor]]


def _unique_ids(items: list[Any], what: str, name: str) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("id"), int):
            fail(f"{name}['{what}'][{i}]", "a dict with an integer 'id'", item)
        if item["id"] in out:
            fail(f"{name}['{what}']", "entries with unique ids", Found(f"id {item['id']} twice"))
        out[item["id"]] = item
    return out


def load_coco_gt(source: str | Path | dict[str, Any], *, name: str = "gt") -> CocoGroundTruth:
    """Parse and check a COCO instances ground-truth file (or its parsed dict).

    Args:
        source: path to the JSON file, or the parsed dict.
        name: the argument name used in error messages.

    Returns:
        The ground truth, annotations grouped by image id in file order.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the JSON is malformed, a section is missing, ids are duplicated, or an
            annotation refers to an unknown image or category.

    Example:
        >>> gt = load_coco_gt({"images": [{"id": 7, "height": 2, "width": 2}], "annotations": [],
        ...                    "categories": [{"id": 1, "name": "cat"}]})
        >>> gt.image_ids, gt.class_names
        ([7], {1: 'cat'})
    """
    data = read_json(source, name)
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        fail(name, "a COCO dict with 'images', 'annotations' and 'categories'", found)
    images = _unique_ids(data["images"], "images", name)
    for img in images.values():
        for key in ("height", "width"):
            if not isinstance(img.get(key), int) or img[key] < 1:
                fail(f"{name}: image {img['id']} '{key}'", "an integer >= 1", img.get(key))
    categories = _unique_ids(data["categories"], "categories", name)
    _unique_ids(data["annotations"], "annotations", name)
    by_image: dict[int, list[dict[str, Any]]] = {i: [] for i in images}
    for ann in data["annotations"]:
        if ann.get("image_id") not in images:
            fail(
                f"{name}: annotation {ann['id']} 'image_id'", "an id listed in 'images'", ann.get("image_id")
            )
        if ann.get("category_id") not in categories:
            fail(
                f"{name}: annotation {ann['id']} 'category_id'",
                "an id listed in 'categories'",
                ann.get("category_id"),
            )
        by_image[ann["image_id"]].append(ann)
    return CocoGroundTruth(images=images, categories=categories, anns_by_image=by_image)


def load_coco_results(
    source: str | Path | list[dict[str, Any]], gt: CocoGroundTruth, *, name: str = "results"
) -> dict[int, list[dict[str, Any]]]:
    """Parse and check a COCO results file (a list of detections), grouped by image in file order.

    Args:
        source: path to the JSON list, or the list itself.
        gt: the ground truth the results refer to.
        name: the argument name used in error messages.

    Returns:
        Image id to its results, in file order; each result gets ``"_index"`` (its file position).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the JSON is malformed, not a list, or a result lacks ``image_id``,
            ``category_id`` or a numeric ``score``, or refers to an image or category not in ``gt``
            (``loadRes`` raises for unknown images too).

    Example:
        >>> gt = load_coco_gt({"images": [{"id": 7, "height": 2, "width": 2}], "annotations": [],
        ...                    "categories": [{"id": 1}]})
        >>> res = load_coco_results(
        ...     [{"image_id": 7, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}], gt
        ... )
        >>> len(res[7])
        1
    """
    data = read_json(source, name)
    if not isinstance(data, list):
        fail(name, "a JSON list of results", type(data).__name__)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for i, res in enumerate(data):
        if not isinstance(res, dict):
            fail(f"{name}[{i}]", "a dict", res)
        if res.get("image_id") not in gt.images:
            fail(f"{name}[{i}]['image_id']", "an image id of the ground truth", res.get("image_id"))
        if res.get("category_id") not in gt.categories:
            fail(f"{name}[{i}]['category_id']", "a category id of the ground truth", res.get("category_id"))
        score = res.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            fail(f"{name}[{i}]['score']", "a number", score)
        by_image.setdefault(res["image_id"], []).append({**res, "_index": i})
    return by_image


def _box(ann: dict[str, Any], name: str) -> list[float]:
    bb = ann.get("bbox")
    if not isinstance(bb, (list, tuple)) or len(bb) != 4 or not all(isinstance(v, (int, float)) for v in bb):
        fail(f"{name}['bbox']", "[x, y, width, height] with 4 numbers", bb)
    return [float(v) for v in bb]  # type: ignore[union-attr]


def _with_box_polygon(res: dict[str, Any]) -> dict[str, Any]:
    x, y, w, h = _box(res, f"results[{res['_index']}]")
    return {**res, "segmentation": [[x, y, x, y + h, x + w, y + h, x + w, y]]}


def _segm_runs(
    anns: Sequence[dict[str, Any]], hws: np.ndarray, names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths (counts, runs per annotation) of many segmentations, in annotation order."""
    n = len(anns)
    is_poly = np.array([isinstance(a.get("segmentation"), list) for a in anns], dtype=bool)
    for a, nm in zip(anns, names, strict=True):
        if not isinstance(a.get("segmentation"), (list, dict)):
            fail(f"{nm}['segmentation']", "polygons or an RLE dict", a.get("segmentation"))
    groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    poly_idx, rle_idx = np.flatnonzero(is_poly), np.flatnonzero(~is_poly)
    if poly_idx.size:
        c, r = _polygon_runs(
            [anns[i]["segmentation"] for i in poly_idx],
            hws[poly_idx, 0],
            hws[poly_idx, 1],
            [f"{names[i]}['segmentation']" for i in poly_idx],
        )
        groups.append((poly_idx, c, r))
    if rle_idx.size:
        rles = [anns[i]["segmentation"] for i in rle_idx]
        c, r, sizes = _runs_from_rles(rles, [f"{names[i]}['segmentation']" for i in rle_idx])
        wrong = np.flatnonzero((sizes != hws[rle_idx]).any(axis=1))
        if wrong.size:
            j = int(wrong[0])
            fail(
                f"{names[rle_idx[j]]}['segmentation']['size']",
                f"the image size {hws[rle_idx[j]].tolist()}",
                sizes[j].tolist(),
            )
        groups.append((rle_idx, c, r))
    # interleave the groups' runs back into annotation order (vectorised gather of run slices)
    n_runs = np.zeros(n, np.int64)
    src_start = np.zeros(n, np.int64)
    all_counts = np.concatenate([g[1] for g in groups]) if groups else np.zeros(0, np.int64)
    offset = 0
    for idx, c, r in groups:  # at most two groups: polygons and RLEs
        n_runs[idx] = r
        src_start[idx] = offset + np.cumsum(r) - r
        offset += len(c)
    gather = np.repeat(src_start - (np.cumsum(n_runs) - n_runs), n_runs) + np.arange(int(n_runs.sum()))
    return all_counts[gather], n_runs


def _pixel_counts(counts: np.ndarray, n_runs: np.ndarray) -> np.ndarray:
    """Foreground pixels per mask from its run lengths (the odd runs), without decoding."""
    local = np.arange(len(counts)) - np.repeat(np.cumsum(n_runs) - n_runs, n_runs)
    owner = np.repeat(np.arange(len(n_runs)), n_runs)
    return np.bincount(owner, weights=np.where(local % 2 == 1, counts, 0), minlength=len(n_runs))


def iter_coco_batches(
    gt: CocoGroundTruth | str | Path | dict[str, Any],
    results: str | Path | list[dict[str, Any]] | dict[int, list[dict[str, Any]]],
    *,
    iou_type: Literal["segm", "bbox"] = "segm",
    batch_size: int = 16,
    device: torch.device | str | None = None,
    dt_area: DtArea = "loadres",
    transposed: bool = False,
) -> Iterator[CocoBatch]:
    """Stream a COCO ground truth and results as batches of ``MeanAveragePrecision.update()`` inputs.

    Each batch holds up to ``batch_size`` images, in sorted image-id order. ``preds[i]`` has
    ``masks`` (Tensor[D, H, W] bool) or ``boxes`` (Tensor[D, 4] float64, COCO ``xywh``: pass
    ``box_format="xywh"`` to the metric), ``scores`` (Tensor[D] float64) and ``labels``
    (Tensor[D] int64 category ids); with ``iou_type="segm"`` and a box area (see ``dt_area``) also
    ``area`` (Tensor[D] float64). ``target[i]`` has ``masks``/``boxes``, ``labels``, ``iscrowd``
    (Tensor[G] int64) and ``area`` (Tensor[G] float64, the file's ``area``). Masks are decoded on
    ``device`` for one batch at a time.

    Args:
        gt: the ground truth (path, parsed dict or :class:`CocoGroundTruth`).
        results: the results (path, list, or the output of :func:`load_coco_results`).
        iou_type: ``"segm"`` (masks) or ``"bbox"`` (boxes).
        batch_size: images per batch.
        device: where tensors are created (default CPU).
        dt_area: detection area rule, ``"loadres"`` (pycocotools' quirk, default), ``"mask"`` or
            ``"bbox"``; see the module docstring.
        transposed: return masks as ``(D, W, H)``, the column-major order COCO RLEs are stored in,
            which skips a transposing copy (about 3 ns per pixel, more than decoding costs). Mask
            IoUs and pixel counts do not depend on a transpose applied to every mask, so
            ``MeanAveragePrecision`` gives the same result; the command line uses this.

    Yields:
        :class:`CocoBatch` objects.

    Raises:
        ValueError: for malformed annotations or results (bad polygon, RLE of the wrong size or
            whose counts do not sum to ``H*W``, missing ``bbox``, unknown ids, ...), raised when the
            batch holding them is read.

    Example:
        >>> ann = {"id": 1, "image_id": 1, "category_id": 5, "iscrowd": 0, "area": 2.0,
        ...        "segmentation": {"size": [2, 3], "counts": [0, 2, 4]}}
        >>> gt = {"images": [{"id": 1, "height": 2, "width": 3}], "categories": [{"id": 5}],
        ...       "annotations": [ann]}
        >>> res = [{"image_id": 1, "category_id": 5, "score": 0.9,
        ...         "segmentation": {"size": [2, 3], "counts": "222"}}]
        >>> batch = next(iter_coco_batches(gt, res))
        >>> batch.target[0]["masks"].int().tolist(), batch.preds[0]["masks"].sum().item()
        ([[[1, 0, 0], [1, 0, 0]]], 2)
    """
    check_choice("iou_type", iou_type, ("segm", "bbox"))
    check_choice("dt_area", dt_area, _DT_AREAS)
    check_bool("transposed", transposed)
    batch_size = check_positive_int("batch_size", batch_size)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    gt = gt if isinstance(gt, CocoGroundTruth) else load_coco_gt(gt)
    by_image = results if isinstance(results, dict) else load_coco_results(results, gt)
    first = min((r for rs in by_image.values() for r in rs), key=lambda r: r["_index"], default=None)
    first_has_box = first is not None and bool(first.get("bbox"))
    use_box_area = dt_area == "bbox" or (dt_area == "loadres" and first_has_box)
    ids = gt.image_ids
    for start in range(0, len(ids), batch_size):
        yield _read_batch(
            gt,
            by_image,
            ids[start : start + batch_size],
            iou_type,
            dev,
            use_box_area,
            first_has_box,
            transposed,
        )


def _read_batch(
    gt: CocoGroundTruth,
    by_image: dict[int, list[dict[str, Any]]],
    ids: list[int],
    iou_type: str,
    dev: torch.device,
    use_box_area: bool,
    box_polygons: bool,
    transposed: bool,
) -> CocoBatch:
    gts = [gt.anns_by_image.get(i, []) for i in ids]
    dts = [by_image.get(i, []) for i in ids]
    if iou_type == "segm" and box_polygons:  # loadRes: a result without a mask gets its box as polygon
        dts = [[_with_box_polygon(r) if "segmentation" not in r else r for r in d] for d in dts]
    anns = [a for g, d in zip(gts, dts, strict=True) for a in (*g, *d)]
    names = [f"gt annotation {a['id']}" if "_index" not in a else f"results[{a['_index']}]" for a in anns]
    hw_img = np.array([[gt.images[i]["height"], gt.images[i]["width"]] for i in ids], np.int64).reshape(-1, 2)
    n_gt = np.array([len(g) for g in gts], np.int64)
    n_dt = np.array([len(d) for d in dts], np.int64)
    hws = np.repeat(hw_img, n_gt + n_dt, axis=0)
    f64 = {"dtype": torch.float64, "device": dev}
    need_box = iou_type == "bbox" or use_box_area
    boxes = np.array([_box(a, n) for a, n in zip(anns, names, strict=True)]) if need_box else None
    if iou_type == "segm":
        counts, n_runs = _segm_runs(anns, hws, names)
        pix = _pixel_counts(counts, n_runs)
        flat = _expand_runs(counts, n_runs, int((hws[:, 0] * hws[:, 1]).sum()), dev)
        chunks = torch.split(flat, ((n_gt + n_dt)[:, None] * hw_img.prod(1, keepdims=True)).ravel().tolist())
    is_gt = np.array(["_index" not in a for a in anns], dtype=bool)
    box_area = boxes[:, 2] * boxes[:, 3] if boxes is not None else None
    file_area = np.array(
        [float(a.get("area", np.nan)) if g else np.nan for a, g in zip(anns, is_gt, strict=True)]
    )
    fallback = box_area if iou_type == "bbox" else pix  # a missing GT area: the box or the mask
    area = np.where(np.isnan(file_area), fallback, file_area) if len(anns) else file_area
    labels = np.array([a["category_id"] for a in anns], np.int64)
    scores = np.array([float(a.get("score", 0.0)) for a in anns], np.float64)
    crowd = np.array([int(bool(a.get("iscrowd", 0))) for a in anns], np.int64)
    preds, target = [], []
    off = 0
    for k in range(len(ids)):  # one dict per image, as update() takes them
        h, w = int(hw_img[k, 0]), int(hw_img[k, 1])
        g, d = slice(off, off + int(n_gt[k])), slice(off + int(n_gt[k]), off + int(n_gt[k] + n_dt[k]))
        off += int(n_gt[k] + n_dt[k])
        tgt = {
            "labels": torch.as_tensor(labels[g], device=dev),
            "iscrowd": torch.as_tensor(crowd[g], device=dev),
        }
        tgt["area"] = torch.as_tensor(area[g], **f64)
        prd = {"scores": torch.as_tensor(scores[d], **f64), "labels": torch.as_tensor(labels[d], device=dev)}
        if iou_type == "segm":
            masks = chunks[k].view(-1, w, h)
            masks = masks if transposed else masks.transpose(1, 2).contiguous()
            tgt["masks"], prd["masks"] = masks[: int(n_gt[k])], masks[int(n_gt[k]) :]
            if use_box_area:
                prd["area"] = torch.as_tensor(box_area[d], **f64)  # type: ignore[index]
        else:
            tgt["boxes"] = torch.as_tensor(boxes[g], **f64).reshape(-1, 4)  # type: ignore[index]
            prd["boxes"] = torch.as_tensor(boxes[d], **f64).reshape(-1, 4)  # type: ignore[index]
        preds.append(prd)
        target.append(tgt)
    return CocoBatch(image_ids=list(ids), preds=preds, target=target)
