"""Pairwise box IoU exactly as pycocotools computes it (``maskApi.c`` ``bbIou``), and box conversion.

pycocotools works on ``[x, y, w, h]`` boxes in float64 with continuous coordinates (no ``+1``)::

    w = min(Dx + Dw, Gx + Gw) - max(Dx, Gx);  if w <= 0: iou = 0
    h = min(Dy + Dh, Gy + Gh) - max(Dy, Gy);  if h <= 0: iou = 0
    i = w * h;  u = Dw * Dh if crowd else Dw * Dh + Gw * Gh - i;  iou = i / u

:func:`box_iou` first brings the boxes to ``xywh`` in float64 and then follows these operations in
this order, so that its result is bit-identical to ``pycocotools.mask.iou`` on the same ``xywh``
boxes. Everything is elementwise on the input's device: no host-device synchronisation, shapes fixed.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from torchseg_metrics._checks import Found, check_choice, check_same_device, check_tensor, fail

BoxFormat = Literal["xyxy", "xywh", "cxcywh"]
BOX_FORMATS: tuple[str, ...] = ("xyxy", "xywh", "cxcywh")

__all__ = ["BOX_FORMATS", "BoxFormat", "box_convert_to_xyxy", "box_iou"]


def _check_boxes(name: str, boxes: object) -> Tensor:
    boxes = check_tensor(name, boxes)
    if not boxes.dtype.is_floating_point:
        fail(name, "a floating-point tensor of boxes", Found(f"dtype {boxes.dtype}"), TypeError)
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        fail(name, "a tensor of shape (..., 4)", Found(f"shape {tuple(boxes.shape)}"))
    return boxes


def _to_xywh64(boxes: Tensor, box_format: str) -> Tensor:
    """``boxes`` as float64 ``[x, y, w, h]``; float64 subtraction as the COCO conversion does it."""
    b = boxes.to(torch.float64)
    if box_format == "xywh":
        return b
    if box_format == "xyxy":
        return torch.cat([b[..., :2], b[..., 2:] - b[..., :2]], dim=-1)
    wh = b[..., 2:]
    return torch.cat([b[..., :2] - 0.5 * wh, wh], dim=-1)


def box_convert_to_xyxy(boxes: Tensor, box_format: BoxFormat) -> Tensor:
    """Convert boxes to ``[x1, y1, x2, y2]`` in their own floating dtype.

    Args:
        boxes (Tensor[..., 4] float): boxes in ``box_format``.
        box_format: ``"xyxy"`` (returned as is), ``"xywh"`` (``x2 = x + w``) or ``"cxcywh"``
            (``x1 = cx - w / 2``, ``x2 = cx + w / 2``), as in ``torchvision.ops.box_convert``.

    Returns:
        Tensor[..., 4]: the boxes as ``xyxy``, same dtype and device.

    Raises:
        TypeError: if ``boxes`` is not a floating-point tensor.
        ValueError: if ``boxes`` does not end in a dimension of 4, or ``box_format`` is unknown.

    Example:
        >>> box_convert_to_xyxy(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), "xywh")
        tensor([[1., 2., 4., 6.]])
        >>> box_convert_to_xyxy(torch.tensor([[2.0, 2.0, 2.0, 4.0]]), "cxcywh")
        tensor([[1., 0., 3., 4.]])
    """
    boxes = _check_boxes("boxes", boxes)
    check_choice("box_format", box_format, BOX_FORMATS)
    if box_format == "xyxy":
        return boxes
    if box_format == "xywh":
        return torch.cat([boxes[..., :2], boxes[..., :2] + boxes[..., 2:]], dim=-1)
    half = 0.5 * boxes[..., 2:]
    return torch.cat([boxes[..., :2] - half, boxes[..., :2] + half], dim=-1)


def box_iou(
    det: Tensor, gt: Tensor, gt_crowd: Tensor | None = None, *, box_format: BoxFormat = "xyxy"
) -> Tensor:
    """Pairwise IoU of detection and ground-truth boxes, bit-identical to ``pycocotools.mask.iou``.

    For a crowd ground truth the IoU is ``intersection / area(detection box)``; boxes that do not
    overlap (or only touch) give 0. Coordinates are continuous (no ``+1``). The boxes are converted to
    float64 ``xywh`` first (``w = x2 - x1`` for ``xyxy``, ``x = cx - w / 2`` for ``cxcywh``), and the
    result equals pycocotools on those ``xywh`` boxes; pass ``box_format="xywh"`` to feed COCO boxes
    without any conversion.

    Args:
        det (Tensor[B, D, 4] float): detection boxes, ``D`` may be 0.
        gt (Tensor[B, G, 4] float): ground-truth boxes, ``G`` may be 0.
        gt_crowd (Tensor[B, G] bool or integer, optional): nonzero marks a crowd ground truth.
        box_format: ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"``, for both ``det`` and ``gt``.

    Returns:
        Tensor[B, D, G] float64: the IoU of every (detection, ground truth) pair of each image.

    Raises:
        TypeError: if ``det`` or ``gt`` is not a floating-point tensor, or ``gt_crowd`` is not a bool
            or integer tensor.
        ValueError: if a shape is not as above, the batch sizes differ, the tensors are on different
            devices, or ``box_format`` is unknown.

    Example:
        >>> det = torch.tensor([[[0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]]])
        >>> gt = torch.tensor([[[1.0, 0.0, 3.0, 2.0], [0.0, 0.0, 4.0, 4.0]]])
        >>> box_iou(det, gt)
        tensor([[[0.3333, 0.2500],
                 [0.0000, 0.0000]]], dtype=torch.float64)
        >>> box_iou(det, gt, torch.tensor([[False, True]]))[0, 0, 1].item()
        1.0
    """
    det = _check_boxes("det", det)
    gt = _check_boxes("gt", gt)
    check_choice("box_format", box_format, BOX_FORMATS)
    if det.ndim != 3:
        fail("det", "a tensor of shape (B, D, 4)", Found(f"shape {tuple(det.shape)}"))
    if gt.ndim != 3:
        fail("gt", "a tensor of shape (B, G, 4)", Found(f"shape {tuple(gt.shape)}"))
    if det.shape[0] != gt.shape[0]:
        fail("gt", f"a batch of {det.shape[0]} images like `det`", Found(f"shape {tuple(gt.shape)}"))
    check_same_device(("det", "gt"), (det, gt))
    crowd = _check_crowd(gt_crowd, gt.shape[:2], det, gt)
    d = _to_xywh64(det, box_format)[:, :, None, :]  # (B, D, 1, 4)
    g = _to_xywh64(gt, box_format)[:, None, :, :]  # (B, 1, G, 4)
    w = torch.minimum(d[..., 2] + d[..., 0], g[..., 2] + g[..., 0]) - torch.maximum(d[..., 0], g[..., 0])
    h = torch.minimum(d[..., 3] + d[..., 1], g[..., 3] + g[..., 1]) - torch.maximum(d[..., 1], g[..., 1])
    inter = w * h
    det_area = d[..., 2] * d[..., 3]
    union = det_area + g[..., 2] * g[..., 3] - inter
    if crowd is not None:
        union = torch.where(crowd[:, None, :], det_area, union)
    overlap = (w > 0) & (h > 0)
    return torch.where(overlap, inter / torch.where(overlap, union, 1.0), 0.0)


def _check_crowd(gt_crowd: Tensor | None, expected: torch.Size, det: Tensor, gt: Tensor) -> Tensor | None:
    """``gt_crowd`` as a bool tensor of shape ``expected`` (B, G), or None; shared with mask IoU."""
    if gt_crowd is None:
        return None
    gt_crowd = check_tensor("gt_crowd", gt_crowd)
    if gt_crowd.dtype != torch.bool and (gt_crowd.dtype.is_floating_point or gt_crowd.dtype.is_complex):
        fail("gt_crowd", "a bool or integer tensor", Found(f"dtype {gt_crowd.dtype}"), TypeError)
    if gt_crowd.shape != expected:
        fail(
            "gt_crowd", f"a tensor of shape {tuple(expected)} (B, G)", Found(f"shape {tuple(gt_crowd.shape)}")
        )
    check_same_device(("det", "gt", "gt_crowd"), (det, gt, gt_crowd))
    return gt_crowd if gt_crowd.dtype == torch.bool else gt_crowd != 0
