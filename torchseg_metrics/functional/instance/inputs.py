"""Input checks and batch assembly for :class:`torchseg_metrics.instance.MeanAveragePrecision`.

Inputs are torchmetrics' lists of per-image dicts. :func:`_check_instance_inputs` reads only
metadata (types, dtypes, shapes, devices). The value checks (:mod:`.instance_values`: finite scores,
boxes and areas, non-negative labels and areas) are computed on the device by
:func:`_assemble_batch` as one ``(images, checks)`` flag tensor; the metric reads it at once for
CPU inputs, where that costs no synchronisation, and on other devices keeps the first offending
image per check in a state and raises in ``compute()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from torchseg_metrics import _native
from torchseg_metrics._checks import Found, check_same_device, fail, is_integer_dtype
from torchseg_metrics.functional.boundary import boundary_dilation, mask_boundaries
from torchseg_metrics.functional.instance.box_iou import _to_xywh64, box_iou
from torchseg_metrics.functional.instance.mask_iou import (
    _intersections_per_image,
    _resolve_method,
    mask_iou_from_intersections,
)
from torchseg_metrics.functional.instance.values import _invalid_flags, _item, _mask_flags


class InstanceBatch(NamedTuple):
    """A padded batch: D = most detections, G = most ground truths of an image in the batch."""

    ious: Tensor  # (B, D, G) float64
    det_scores: Tensor  # (B, D) float64
    det_labels: Tensor  # (B, D) int64
    det_valid: Tensor  # (B, D) bool
    det_area: Tensor  # (B, D) float64
    gt_labels: Tensor  # (B, G) int64
    gt_valid: Tensor  # (B, G) bool
    gt_crowd: Tensor  # (B, G) bool
    gt_area: Tensor  # (B, G) float64
    invalid: Tensor  # (B, len(VALUE_CHECKS)) bool: image b fails check k
    num_dets: list[int]
    num_gts: list[int]


def _as_masks(masks: Tensor, size: tuple[int, ...]) -> Tensor:
    """Bool ``(N, *size)`` masks from checked input masks (0/1 numbers, or an empty ``(0,)``)."""
    if masks.dtype != torch.bool:
        masks = masks != 0
    if tuple(masks.shape[1:]) != size:  # an empty side without the image size
        return torch.zeros((0, *size), dtype=torch.bool, device=masks.device)
    return masks


def _get(kind: str, i: int, d: Mapping[str, Any], key: str) -> Tensor:
    value = d[key]
    if not isinstance(value, Tensor):
        tm = f"Expected all {key} in `{kind}` to be of type Tensor"
        fail(_item(kind, i, key), "a torch.Tensor", type(value).__name__, TypeError, tm=tm)
    return value


def _length_message(kind: str, i: int, geometry: str) -> str:
    """torchmetrics' sentence for per-image tensors of different lengths."""
    if kind == "preds":
        return f"Input '{geometry}', labels and scores of sample {i} in predictions have a different length"
    return f"Input '{geometry}' and labels of sample {i} in targets have a different length"


def _check_1d(name: str, value: Tensor, length: int | None, what: str, tm: str | None = None) -> None:
    if value.ndim != 1 or (length is not None and value.shape[0] != length):
        n = "N" if length is None else str(length)
        tm = tm if value.ndim == 1 else None  # torchmetrics' sentence is for a length only
        fail(name, f"a 1-d tensor of {what} of shape ({n},)", Found(f"shape {tuple(value.shape)}"), tm=tm)


def _check_instance_inputs(preds: object, target: object, iou_type: str) -> list[Tensor]:
    """Check the metadata of ``preds`` and ``target`` (never their values); return every tensor seen.

    Raises:
        TypeError: a list, dict, tensor or dtype of the wrong kind, naming the image index and key.
        ValueError: empty or unequal lists, missing keys, wrong shapes, mismatched image sizes or
            tensors on several devices, naming the image index and key.
    """
    for name, value in (("preds", preds), ("target", target)):
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
            fail(
                name,
                "a list of dicts of tensors",
                type(value).__name__,
                TypeError,
                tm=f"Expected argument `{name}` to be of type Sequence",
            )
    assert isinstance(preds, Sequence) and isinstance(target, Sequence)  # for the type checker
    if len(preds) != len(target):
        fail(
            "target",
            f"a list as long as `preds` ({len(preds)} images)",
            Found(f"{len(target)} images"),
            tm="Expected argument `preds` and `target` to have the same length",
        )
    geometry = "boxes" if iou_type == "bbox" else "masks"
    sides = (("preds", preds, (geometry, "scores", "labels")), ("target", target, (geometry, "labels")))
    # torchmetrics' order: each key over every image, then each key's type over every image
    for kind, dicts, keys in sides:
        for i, d in enumerate(dicts):
            if not isinstance(d, Mapping):
                fail(f"{kind}[{i}]", "a dict of tensors", type(d).__name__, TypeError)
        for key in keys:
            for i, d in enumerate(dicts):
                if key not in d:
                    fail(
                        f"{kind}[{i}]",
                        f"a dict with keys {list(keys)}",
                        Found(f"keys {sorted(d)} (missing {[k for k in keys if k not in d]})"),
                        tm=f"Expected all dicts in `{kind}` to contain the `{key}` key",
                    )
    for kind, dicts, keys in sides:
        for key in keys:
            for i, d in enumerate(dicts):
                _get(kind, i, d, key)
    tensors: list[Tensor] = []
    names: list[str] = []
    for i, (p, t) in enumerate(zip(preds, target, strict=True)):
        scores, labels = _get("preds", i, p, "scores"), _get("preds", i, p, "labels")
        if not scores.dtype.is_floating_point:
            fail(
                _item("preds", i, "scores"),
                "a floating-point tensor",
                Found(f"dtype {scores.dtype}"),
                TypeError,
            )
        _check_1d(_item("preds", i, "scores"), scores, None, "scores")
        n = scores.shape[0]
        g_labels = _get("target", i, t, "labels")
        for kind, lab, length in (("preds", labels, n), ("target", g_labels, None)):
            if not is_integer_dtype(lab.dtype):
                fail(_item(kind, i, "labels"), "an integer tensor", Found(f"dtype {lab.dtype}"), TypeError)
            _check_1d(_item(kind, i, "labels"), lab, length, "class ids", _length_message(kind, i, geometry))
        g = g_labels.shape[0]
        det_geo, gt_geo = _get("preds", i, p, geometry), _get("target", i, t, geometry)
        for kind, geo, count in (("preds", det_geo, n), ("target", gt_geo, g)):
            name = _item(kind, i, geometry)
            empty = count == 0 and tuple(geo.shape) == (0,)  # torchmetrics' empty form
            if geometry == "masks":
                if (
                    geo.dtype != torch.bool
                    and not is_integer_dtype(geo.dtype)
                    and not geo.dtype.is_floating_point
                ):
                    fail(
                        name,
                        "a tensor of masks (bool or 0/1 numbers)",
                        Found(f"dtype {geo.dtype}"),
                        TypeError,
                    )
                if not empty and (geo.ndim != 3 or geo.shape[0] != count):
                    tm = _length_message(kind, i, geometry) if geo.ndim == 3 else None
                    fail(
                        name, f"a tensor of shape ({count}, H, W)", Found(f"shape {tuple(geo.shape)}"), tm=tm
                    )
            else:
                if geo.dtype == torch.bool or geo.dtype.is_complex:
                    fail(name, "a real-valued tensor of boxes", Found(f"dtype {geo.dtype}"), TypeError)
                if not empty and (geo.ndim != 2 or tuple(geo.shape) != (count, 4)):
                    tm = _length_message(kind, i, geometry) if geo.ndim == 2 and geo.shape[1] == 4 else None
                    fail(name, f"a tensor of shape ({count}, 4)", Found(f"shape {tuple(geo.shape)}"), tm=tm)
        # an empty side may come without the image size (e.g. zeros(0, 0, 0)); it is not compared
        if geometry == "masks" and n and g and det_geo.shape[1:] != gt_geo.shape[1:]:
            fail(
                _item("preds", i, "masks"),
                f"masks of the image size {tuple(gt_geo.shape[1:])} of target[{i}]['masks']",
                Found(f"size {tuple(det_geo.shape[1:])}"),
            )
        extra = []
        if "area" in p:  # detection areas for the area ranges (loadRes takes box areas when a bbox is given)
            v = _get("preds", i, p, "area")
            if v.dtype == torch.bool:
                fail(_item("preds", i, "area"), "a numeric tensor", Found(f"dtype {v.dtype}"), TypeError)
            _check_1d(_item("preds", i, "area"), v, n, "areas")
            names.append(_item("preds", i, "area"))
            tensors.append(v)
        for key, what in (("iscrowd", "crowd flags"), ("area", "areas")):
            if key in t:
                v = _get("target", i, t, key)
                if key == "iscrowd" and v.dtype != torch.bool and not is_integer_dtype(v.dtype):
                    fail(
                        _item("target", i, key),
                        "a bool or integer tensor",
                        Found(f"dtype {v.dtype}"),
                        TypeError,
                    )
                if key == "area" and v.dtype == torch.bool:
                    fail(_item("target", i, key), "a numeric tensor", Found(f"dtype {v.dtype}"), TypeError)
                _check_1d(_item("target", i, key), v, g, what)
                extra.append((key, v))
        group = [("preds", "scores", scores), ("preds", "labels", labels), ("preds", geometry, det_geo)]
        group += [("target", "labels", g_labels), ("target", geometry, gt_geo)]
        for kind, key, v in group + [("target", k, v) for k, v in extra]:
            names.append(_item(kind, i, key))
            tensors.append(v)
    check_same_device(names, tensors)
    return tensors


def _mask_and_boundary_iou(
    dets: list[Tensor],
    gts: list[Tensor],
    gt_crowd: Tensor,
    boundary: tuple[float, str],
    d: int,
    g: int,
    device: torch.device,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`_padded_mask_iou` and the padded ``(B, D, G)`` IoU of the boundary bands, each image at
    its own dilation (pycocotools' IoU of the boundary masks, crowd formula included, as
    faster-coco-eval computes it). On the CPU one native pass per image gives both sets of counts."""
    ratio, rounding = boundary
    method = _resolve_method("auto", device)
    mask_counts, band_counts = [], []
    for det_masks, gt_masks in zip(dets, gts, strict=True):  # one image's bands alive at a time
        dilation = boundary_dilation(tuple(det_masks.shape[1:]), ratio, rounding)  # type: ignore[arg-type]
        native = _native.boundary_counts(det_masks, gt_masks, dilation)
        if native is not None:  # CPU: the bands inside each mask's box only, never full images
            mask_counts.append(native[0])
            band_counts.append(native[1])
            continue
        mask_counts += _intersections_per_image([det_masks], [gt_masks], method)
        bands = (mask_boundaries(det_masks, dilation), mask_boundaries(gt_masks, dilation))
        band_counts += _intersections_per_image([bands[0]], [bands[1]], method)
    iou, det_count, gt_count = _iou_of_counts(mask_counts, gt_crowd, d, g, device)
    return iou, det_count, gt_count, _iou_of_counts(band_counts, gt_crowd, d, g, device)[0]


def _padded_mask_iou(
    dets: list[Tensor], gts: list[Tensor], gt_crowd: Tensor, d: int, g: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """``(iou (B, D, G), det_count (B, D), gt_count (B, G))`` of each image's checked bool masks.

    The intersection kernel runs per image; one IoU division covers the padded batch (padded pairs
    have no intersection, hence IoU 0).
    """
    counts = _intersections_per_image(dets, gts, _resolve_method("auto", device))
    return _iou_of_counts(counts, gt_crowd, d, g, device)


def _iou_of_counts(
    counts: Sequence[tuple[Tensor, Tensor, Tensor]], gt_crowd: Tensor, d: int, g: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Padded ``(iou (B, D, G), det_count (B, D), gt_count (B, G))`` of per-image counts (one division)."""
    inters, det_counts, gt_counts = (list(x) for x in zip(*counts, strict=True))
    det_count = _pad_1d(det_counts, d, torch.long, device)
    gt_count = _pad_1d(gt_counts, g, torch.long, device)
    iou = mask_iou_from_intersections(_pad_2d(inters, d, g, 0), det_count, gt_count, gt_crowd)
    return iou, det_count, gt_count


def _pad_2d(rows: list[Tensor], d: int, g: int, value: float) -> Tensor:
    return torch.stack([F.pad(r, (0, g - r.shape[1], 0, d - r.shape[0]), value=value) for r in rows])


def _pad_1d(values: list[Tensor], length: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    tail = tuple(values[0].shape[1:])
    if length == 0:
        return torch.zeros((len(values), 0, *tail), dtype=dtype, device=device)
    padded = pad_sequence([v.to(dtype) for v in values], batch_first=True)
    return F.pad(padded, (0, 0) * len(tail) + (0, length - padded.shape[1]))


def _assemble_batch(
    preds: Sequence[Mapping[str, Tensor]],
    target: Sequence[Mapping[str, Tensor]],
    iou_type: str,
    box_format: str,
    pool_labels: bool,
    boundary: tuple[float, str] = (0.02, "boundary-iou-api"),
) -> InstanceBatch:
    """IoUs, areas and padded per-detection / per-ground-truth fields of checked inputs.

    Masks are never copied or padded: the intersection kernel runs per image (a Python loop over
    images, each call covering all of the image's masks); only the small (D, G) results are padded.
    Boxes are padded and handled in one call. ``pool_labels`` zeroes every label (micro average).
    """
    device = preds[0]["scores"].device
    nd = [int(p["scores"].shape[0]) for p in preds]
    ng = [int(t["labels"].shape[0]) for t in target]
    d, g = max(nd), max(ng)
    fields: dict[tuple[str, str], Tensor] = {}
    crowd = [
        t["iscrowd"].bool() if "iscrowd" in t else torch.zeros(k, dtype=torch.bool, device=device)
        for t, k in zip(target, ng, strict=True)
    ]
    gt_crowd = _pad_1d(crowd, g, torch.bool, device)
    flags: dict[tuple[str, str], Tensor] = {}
    if iou_type in ("segm", "boundary"):
        dets, gts = [], []
        for kind, masks in (("preds", [p["masks"] for p in preds]), ("target", [t["masks"] for t in target])):
            column = _mask_flags(masks)
            if column is not None:
                flags[kind, "masks"] = column
        for p, t in zip(preds, target, strict=True):
            det_masks, gt_masks = p["masks"], t["masks"]
            # an empty side may lack the image size: (0,) or (0, 0, 0) (checked above)
            size = tuple(det_masks.shape[1:] if det_masks.shape[0] else gt_masks.shape[1:])
            size = size if len(size) == 2 else (0, 0)
            dets.append(_as_masks(det_masks, size))
            gts.append(_as_masks(gt_masks, size))
        if iou_type == "boundary":  # min(mask IoU, boundary IoU); crowd ground truths keep the mask's
            iou, det_count, gt_count, b_iou = _mask_and_boundary_iou(
                dets, gts, gt_crowd, boundary, d, g, device
            )
            iou = torch.where(gt_crowd[:, None, :], iou, torch.minimum(iou, b_iou))
        else:
            iou, det_count, gt_count = _padded_mask_iou(dets, gts, gt_crowd, d, g, device)  # checked above
        det_area, gt_geo_area = det_count.double(), gt_count.double()
    else:
        # an empty side may come as shape (0,): reshaped to (0, 4)
        det_boxes = _pad_1d([p["boxes"].reshape(-1, 4) for p in preds], d, torch.float64, device)
        gt_boxes = _pad_1d([t["boxes"].reshape(-1, 4) for t in target], g, torch.float64, device)
        fields["preds", "boxes"], fields["target", "boxes"] = det_boxes, gt_boxes
        iou = box_iou(det_boxes, gt_boxes, gt_crowd, box_format=box_format)
        det_xywh, gt_xywh = _to_xywh64(det_boxes, box_format), _to_xywh64(gt_boxes, box_format)
        det_area = det_xywh[..., 2] * det_xywh[..., 3]
        gt_geo_area = gt_xywh[..., 2] * gt_xywh[..., 3]
    if any("area" in p for p in preds):
        given = [p["area"] if "area" in p else det_area.new_zeros(n) for p, n in zip(preds, nd, strict=True)]
        fields["preds", "area"] = _pad_1d(given, d, torch.float64, device)
        det_area = _pad_1d(
            [
                p["area"].double() if "area" in p else det_area[i, :n]
                for i, (p, n) in enumerate(zip(preds, nd, strict=True))
            ],
            d,
            torch.float64,
            device,
        )
    if any("area" in t for t in target):
        given = [t["area"] if "area" in t else det_area.new_zeros(k) for t, k in zip(target, ng, strict=True)]
        fields["target", "area"] = _pad_1d(given, g, torch.float64, device)
    areas = [
        t["area"].double() if "area" in t else gt_geo_area[i, :k]
        for i, (t, k) in enumerate(zip(target, ng, strict=True))
    ]
    det_scores = _pad_1d([p["scores"] for p in preds], d, torch.float64, device)
    det_labels = _pad_1d([p["labels"] for p in preds], d, torch.long, device)
    gt_labels = _pad_1d([t["labels"] for t in target], g, torch.long, device)
    fields["preds", "scores"], fields["preds", "labels"] = det_scores, det_labels
    fields["target", "labels"] = gt_labels
    invalid = _invalid_flags(fields, flags, len(preds), device)
    if pool_labels:
        det_labels, gt_labels = torch.zeros_like(det_labels), torch.zeros_like(gt_labels)
    return InstanceBatch(
        ious=iou,
        det_scores=det_scores,
        det_labels=det_labels,
        det_valid=_pad_1d(
            [torch.ones(n, dtype=torch.bool, device=device) for n in nd], d, torch.bool, device
        ),
        det_area=det_area,
        gt_labels=gt_labels,
        gt_valid=_pad_1d([torch.ones(n, dtype=torch.bool, device=device) for n in ng], g, torch.bool, device),
        gt_crowd=gt_crowd,
        gt_area=_pad_1d(areas, g, torch.float64, device),
        invalid=invalid,
        num_dets=nd,
        num_gts=ng,
    )
