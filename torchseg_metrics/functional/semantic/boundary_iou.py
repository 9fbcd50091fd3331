"""Semantic Boundary IoU: per-class IoU of the boundary bands of the predicted and target class masks.

For each image and class ``c``, the band ``B(X)`` of the binary mask ``X = (labels == c)`` is the
boundary-iou-api band (:func:`~torchseg_metrics.functional.boundary.mask_boundaries`, at
``d = max(1, round(ratio * image diagonal))`` pixels, image edges included). Bands are computed on
the full maps; pixels whose target is ``ignore_index`` then count in neither band.

The statistic is an int64 ``(C, 3)`` matrix ``[|B_P ∩ B_T|, |B_P|, |B_T|]`` per class, summed over
images (dataset-level): ``IoU_c = |B_P ∩ B_T| / |B_P ∪ B_T|``, NaN for a class without any band
pixel, and the mean over the defined classes. Counting reuses the multi-label histogram kernel;
nothing is read back to the host.
"""

from __future__ import annotations

import torch
from torch import Tensor

from torchseg_metrics.functional.boundary import BoundaryRounding, boundary_dilation, mask_boundaries
from torchseg_metrics.functional.semantic.inputs import check_semantic_inputs, labels_from_preds
from torchseg_metrics.functional.semantic.multilabel import multilabel_stats_update

#: Classes whose masks are built at once (bounds the ``(N, classes, ...)`` bool temporaries).
_CLASS_CHUNK = 16


def boundary_iou_stats_update(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    *,
    ignore_index: int | None = None,
    dilation_ratio: float = 0.02,
    dilation: int | None = None,
    rounding: BoundaryRounding = "boundary-iou-api",
) -> tuple[Tensor, Tensor]:
    """``(counts (C, 3), num_invalid (2,))`` of one batch: band counts per class and the numbers of
    invalid target pixels (outside ``[0, C)``, not ``ignore_index``) and of NaN score pixels.

    ``dilation`` (pixels) overrides ``dilation_ratio``; with the ratio, ``d`` follows from the
    spatial size of the maps (2-D or 3-D), as boundary-iou-api does per image.
    """
    preds, target = check_semantic_inputs(preds, target, num_classes)
    labels, nan = labels_from_preds(preds)
    spatial = tuple(target.shape[1:])
    d = dilation if dilation is not None else boundary_dilation(spatial, dilation_ratio, rounding)
    t = target
    in_range = (t >= 0) & (t < num_classes)
    valid = in_range if ignore_index is None else in_range & (t != ignore_index)
    bad = (~in_range if ignore_index is None else ~in_range & (t != ignore_index)).sum()
    n = target.shape[0]
    counts = []
    for start in range(0, num_classes, _CLASS_CHUNK):  # a loop over class chunks, not pixels
        classes = torch.arange(start, min(start + _CLASS_CHUNK, num_classes), device=target.device)
        view = classes.view(1, -1, *([1] * len(spatial)))
        k = classes.numel()
        bands = []
        for x in (labels, t):
            masks = (x.unsqueeze(1) == view).reshape(n * k, *spatial)
            bands.append(mask_boundaries(masks, d).reshape(n, k, *spatial) & valid.unsqueeze(1))
        hist, _ = multilabel_stats_update(bands[0], bands[1], k)  # [tn, fp, fn, tp] per class
        tp = hist[:, 3]
        counts.append(torch.stack([tp, tp + hist[:, 1], tp + hist[:, 2]], -1))
    return torch.cat(counts), torch.stack([bad, nan])


def boundary_iou_from_stats(counts: Tensor) -> Tensor:
    """float64 ``(C,)`` Boundary IoU of ``[inter, pred band, target band]`` counts (NaN: no band pixel)."""
    c = counts.double()
    inter, pred, target = c[..., 0], c[..., 1], c[..., 2]
    return inter / (pred + target - inter)
