"""COCO panoptic files (JSON + folder of RGB-id PNGs) into ``PanopticQuality.update()`` inputs.

A COCO panoptic PNG stores segment id ``R + 256 G + 256**2 B`` per pixel (0 = VOID); the JSON lists
each image's segments with ``category_id``, ``iscrowd`` and ``area``. This reader turns a pair of
(ground truth, prediction) files into ``(B, H, W, 2)`` int64 tensors of (category, instance) with
``instance = segment id``, plus a bool crowd mask ``(B, H, W)`` of the ground truth's crowd
segments, for :class:`torchseg_metrics.panoptic.PanopticQuality` with
``allow_unknown_preds_category=True``. VOID pixels get the category :attr:`PanopticFiles.void_category`
(one above the largest category id, so neither thing nor stuff) and instance 0. Images of different
sizes in one batch are padded with VOID in both maps, which changes no statistic.

Checks (those of panopticapi ``pq_compute``, and a few it lacks): a PNG id missing from the JSON, a
JSON segment missing from the PNG, unknown category ids, duplicate image or segment ids, a ground
truth image without a prediction, PNGs of different sizes and missing files are errors. Predictions
for images not in the ground truth are ignored, as panopticapi does.

Areas: panopticapi takes the ground-truth area from the JSON ``area`` field, the prediction area from
the PNG. ``PanopticQuality`` counts pixels, so ``gt_area="png"`` (default) uses the PNG for both.
``gt_area="json"`` is panopticapi's rule: the reader then checks that every ground-truth JSON area
equals its PNG pixel count (true for COCO; verified on the panopticapi sample) and raises, naming
the segment, where it does not, so a number it reports is panopticapi's number.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from torchseg_metrics._checks import Found, check_choice, check_positive_int, fail
from torchseg_metrics.io._json import read_json

__all__ = [
    "PanopticBatch",
    "PanopticFiles",
    "iter_panoptic_batches",
    "load_panoptic_files",
    "read_panoptic_png",
]


@dataclass
class PanopticFiles:
    """Parsed and cross-checked panoptic JSON files (built by :func:`load_panoptic_files`).

    Example:
        >>> cats = {1: {"isthing": 1, "name": "cat"}, 9: {"isthing": 0}}
        >>> files = PanopticFiles(cats, [], {}, Path("."), Path("."))
        >>> files.things, files.stuffs, files.void_category, files.class_names[1]
        ([1], [9], 10, 'cat')
    """

    categories: dict[int, dict[str, Any]]
    gt_annotations: list[dict[str, Any]]
    pred_annotations: dict[int, dict[str, Any]]
    gt_dir: Path
    pred_dir: Path

    @property
    def things(self) -> list[int]:
        """Category ids with ``isthing == 1``."""
        return sorted(c for c, v in self.categories.items() if v.get("isthing", 0) == 1)

    @property
    def stuffs(self) -> list[int]:
        """Category ids with ``isthing == 0``."""
        return sorted(c for c, v in self.categories.items() if v.get("isthing", 0) != 1)

    @property
    def void_category(self) -> int:
        """The category given to VOID pixels: one above the largest category id."""
        return max(self.categories, default=0) + 1

    @property
    def class_names(self) -> dict[int, str]:
        """Category id to name."""
        return {c: str(v.get("name", c)) for c, v in self.categories.items()}


@dataclass
class PanopticBatch:
    """One batch: image ids, ``preds`` and ``target`` (Tensor[B, H, W, 2] int64), crowd (Tensor[B, H, W]).

    Example:
        >>> maps = torch.zeros(1, 2, 3, 2, dtype=torch.long)
        >>> batch = PanopticBatch([1], maps, maps, torch.zeros(1, 2, 3, dtype=torch.bool))
        >>> batch.target_crowd.shape
        torch.Size([1, 2, 3])
    """

    image_ids: list[Any]
    preds: Tensor
    target: Tensor
    target_crowd: Tensor


def read_panoptic_png(path: str | Path, *, name: str = "png") -> np.ndarray:
    """Read a COCO panoptic RGB-id PNG into segment ids ``R + 256 G + 256**2 B``.

    Args:
        path: the PNG file.
        name: the argument name used in error messages.

    Returns:
        ids (ndarray[H, W] int64), 0 = VOID.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is not a readable RGB image.

    Example:
        >>> import tempfile, os
        >>> from PIL import Image
        >>> tmp = os.path.join(tempfile.mkdtemp(), "a.png")
        >>> Image.fromarray(np.array([[[1, 1, 0], [0, 0, 0]]], dtype=np.uint8)).save(tmp)
        >>> read_panoptic_png(tmp).tolist()
        [[257, 0]]
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"`{name}` must be an existing PNG file, got {str(p)!r} (not found).")
    try:
        with Image.open(p) as im:
            mode = im.mode
            arr = np.asarray(im.convert("RGB") if mode in ("P", "RGBA") else im)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"`{name}` must be a readable PNG image, got {str(p)!r} ({err}).") from None
    if arr.ndim != 3 or arr.shape[2] != 3:
        fail(name, "an RGB panoptic PNG (id = R + 256 G + 256^2 B)", Found(f"{str(p)!r} of mode {mode}"))
    a = arr.astype(np.int64)
    return a[..., 0] + 256 * a[..., 1] + 65536 * a[..., 2]


def _annotations(data: Any, name: str) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        fail(name, "a COCO panoptic dict with an 'annotations' list", found)
    anns = data["annotations"]
    seen: set[Any] = set()
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict) or not all(k in ann for k in ("image_id", "file_name", "segments_info")):
            fail(f"{name}['annotations'][{i}]", "a dict with 'image_id', 'file_name', 'segments_info'", ann)
        if ann["image_id"] in seen:
            fail(
                f"{name}['annotations']",
                "one entry per image id",
                Found(f"image id {ann['image_id']!r} twice"),
            )
        seen.add(ann["image_id"])
        segs = ann["segments_info"]
        if not isinstance(segs, list) or not all(
            isinstance(x, dict) and isinstance(x.get("id"), int) for x in segs
        ):
            fail(
                f"{name}: image {ann['image_id']!r} 'segments_info'",
                "a list of dicts with integer 'id'",
                segs,
            )
        ids = [x["id"] for x in segs]
        if len(set(ids)) != len(ids):
            fail(f"{name}: image {ann['image_id']!r} 'segments_info'", "unique segment ids", ids)
    return anns


def load_panoptic_files(
    gt_json: str | Path | dict[str, Any],
    gt_dir: str | Path,
    pred_json: str | Path | dict[str, Any],
    pred_dir: str | Path,
) -> PanopticFiles:
    """Parse and cross-check a ground-truth and a prediction panoptic JSON and their PNG folders.

    Args:
        gt_json: ground-truth JSON (path or dict) with ``categories`` and ``annotations``.
        gt_dir: folder of ground-truth PNGs.
        pred_json: prediction JSON (path or dict) with ``annotations``.
        pred_dir: folder of prediction PNGs.

    Returns:
        The parsed files.

    Raises:
        FileNotFoundError: if a JSON file or folder does not exist.
        ValueError: malformed JSON, duplicate image or segment ids, unknown category ids, or a
            ground-truth image without a prediction.

    Example:
        >>> files = load_panoptic_files(
        ...     {"categories": [{"id": 1, "isthing": 1}, {"id": 2, "isthing": 0}], "annotations": []},
        ...     ".", {"annotations": []}, ".")
        >>> files.things, files.stuffs, files.void_category
        ([1], [2], 3)
    """
    gt = read_json(gt_json, "gt_json")
    pred = read_json(pred_json, "pred_json")
    gt_anns, pred_anns = _annotations(gt, "gt_json"), _annotations(pred, "pred_json")
    if not isinstance(gt.get("categories"), list):
        fail("gt_json", "a COCO panoptic dict with a 'categories' list", sorted(gt))
    categories: dict[int, dict[str, Any]] = {}
    for c in gt["categories"]:
        if (
            not isinstance(c, dict)
            or not isinstance(c.get("id"), int)
            or c["id"] < 0
            or c["id"] in categories
        ):
            fail("gt_json['categories']", "dicts with unique non-negative integer ids", c)
        categories[c["id"]] = c
    for name, anns in (("gt_json", gt_anns), ("pred_json", pred_anns)):
        for ann in anns:
            for seg in ann["segments_info"]:
                if seg.get("category_id") not in categories:
                    fail(
                        f"{name}: image {ann['image_id']!r} segment {seg.get('id')!r} 'category_id'",
                        "a category id of the ground truth's 'categories'",
                        seg.get("category_id"),
                    )
    for name, folder in (("gt_dir", gt_dir), ("pred_dir", pred_dir)):
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"`{name}` must be an existing folder, got {str(folder)!r} (not found).")
    by_id = {a["image_id"]: a for a in pred_anns}
    missing = [a["image_id"] for a in gt_anns if a["image_id"] not in by_id]
    if missing:
        fail(
            "pred_json",
            "a prediction for every ground-truth image",
            Found(f"none for image ids {missing[:5]}"),
        )
    return PanopticFiles(categories, gt_anns, by_id, Path(gt_dir), Path(pred_dir))


def _to_pairs(
    ids: np.ndarray, ann: dict[str, Any], files: PanopticFiles, name: str, gt_area: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(category, instance, crowd) maps of one image from its id map and JSON segments, vectorised."""
    segs = ann["segments_info"]
    seg_ids = np.array([s["id"] for s in segs], dtype=np.int64)
    order = np.argsort(seg_ids)
    sorted_ids = seg_ids[order]
    cats = np.array([s["category_id"] for s in segs], dtype=np.int64)[order]
    crowd = np.array([bool(s.get("iscrowd", 0)) for s in segs], dtype=bool)[order]
    present, counts = np.unique(ids, return_counts=True)
    where = "image {!r} ({})".format(ann["image_id"], ann["file_name"])
    pos = np.searchsorted(sorted_ids, present).clip(0, max(len(sorted_ids) - 1, 0))
    known = (sorted_ids[pos] == present) if len(sorted_ids) else np.zeros(len(present), bool)
    unknown = present[~known & (present != 0)]
    if unknown.size:
        fail(
            f"{name}: {where}",
            "PNG segment ids listed in the JSON 'segments_info'",
            Found(f"ids {unknown[:5].tolist()}"),
        )
    seen = np.zeros(len(sorted_ids), bool)
    seen[pos[known]] = True
    if not seen.all():
        fail(
            f"{name}: {where}",
            "every JSON segment present in the PNG",
            Found(f"ids {sorted_ids[~seen][:5].tolist()} absent"),
        )
    if gt_area == "json":
        json_area = np.array([s.get("area", -1) for s in segs], dtype=np.float64)[order]
        png_area = np.zeros(len(sorted_ids), np.int64)
        png_area[pos[known]] = counts[known]
        diff = np.flatnonzero(json_area != png_area)
        if diff.size:
            j = int(diff[0])
            fail(
                f"{name}: {where} segment {int(sorted_ids[j])} 'area'",
                f"its PNG pixel count {int(png_area[j])} with gt_area='json' (PanopticQuality counts pixels)",
                json_area[j],
            )
    idx = np.searchsorted(sorted_ids, ids).clip(0, max(len(sorted_ids) - 1, 0))
    void = ids == 0
    cat = np.where(void, files.void_category, cats[idx] if len(cats) else 0)
    inst = np.where(void, 0, ids)
    is_crowd = ~void & (crowd[idx] if len(crowd) else False)
    return cat, inst, is_crowd


def iter_panoptic_batches(
    files: PanopticFiles,
    *,
    batch_size: int = 8,
    device: torch.device | str | None = None,
    gt_area: Literal["png", "json"] = "png",
) -> Iterator[PanopticBatch]:
    """Stream ground-truth and prediction panoptic PNGs as ``PanopticQuality.update()`` batches.

    Images are read in the ground-truth JSON's order (panopticapi's order).

    Args:
        files: the output of :func:`load_panoptic_files`.
        batch_size: images per batch; images of different sizes are padded with VOID.
        device: where tensors are created (default CPU).
        gt_area: ``"png"`` (default) or ``"json"`` (panopticapi's rule, checked; see the module).

    Yields:
        :class:`PanopticBatch` objects: ``preds``/``target`` (Tensor[B, H, W, 2] int64) and
        ``target_crowd`` (Tensor[B, H, W] bool).

    Raises:
        FileNotFoundError: a PNG named in the JSON does not exist.
        ValueError: a PNG id missing from the JSON, a JSON segment missing from the PNG, PNGs of
            different sizes for one image, or (``gt_area="json"``) a JSON area that differs from the
            PNG pixel count.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> d = Path(tempfile.mkdtemp())
        >>> Image.fromarray(np.array([[[1, 0, 0], [0, 0, 0]]], dtype=np.uint8)).save(d / "a.png")
        >>> ann = {"image_id": 1, "file_name": "a.png", "segments_info": [{"id": 1, "category_id": 5}]}
        >>> files = load_panoptic_files({"categories": [{"id": 5, "isthing": 1}], "annotations": [ann]},
        ...                             d, {"annotations": [ann]}, d)
        >>> next(iter_panoptic_batches(files)).target.tolist()
        [[[[5, 1], [6, 0]]]]
    """
    check_choice("gt_area", gt_area, ("png", "json"))
    batch_size = check_positive_int("batch_size", batch_size)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    anns = files.gt_annotations
    for start in range(0, len(anns), batch_size):
        chunk = anns[start : start + batch_size]
        maps = []
        for gt_ann in chunk:  # one PNG pair per image
            pred_ann = files.pred_annotations[gt_ann["image_id"]]
            g_ids = read_panoptic_png(files.gt_dir / gt_ann["file_name"], name="gt_dir")
            p_ids = read_panoptic_png(files.pred_dir / pred_ann["file_name"], name="pred_dir")
            if g_ids.shape != p_ids.shape:
                fail(
                    f"pred_dir: image {gt_ann['image_id']!r} ({pred_ann['file_name']})",
                    f"a PNG of the ground truth's size {g_ids.shape}",
                    p_ids.shape,
                )
            maps.append(
                (
                    _to_pairs(g_ids, gt_ann, files, "gt_json", gt_area),
                    _to_pairs(p_ids, pred_ann, files, "pred_json", None),
                )
            )
        h = max(m[0][0].shape[0] for m in maps)
        w = max(m[0][0].shape[1] for m in maps)
        target = np.zeros((len(maps), h, w, 2), np.int64)
        preds = np.zeros((len(maps), h, w, 2), np.int64)
        target[..., 0] = preds[..., 0] = files.void_category  # padding is VOID in both maps
        crowd = np.zeros((len(maps), h, w), bool)
        for b, ((gc, gi, gcr), (pc, pi, _)) in enumerate(maps):
            hh, ww = gc.shape
            target[b, :hh, :ww, 0], target[b, :hh, :ww, 1], crowd[b, :hh, :ww] = gc, gi, gcr
            preds[b, :hh, :ww, 0], preds[b, :hh, :ww, 1] = pc, pi
        yield PanopticBatch(
            image_ids=[a["image_id"] for a in chunk],
            preds=torch.from_numpy(preds).to(dev),
            target=torch.from_numpy(target).to(dev),
            target_crowd=torch.from_numpy(crowd).to(dev),
        )
