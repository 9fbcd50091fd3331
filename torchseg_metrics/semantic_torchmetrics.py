"""torchmetrics' numbers for :class:`~torchseg_metrics.MeanIoU` and :class:`~torchseg_metrics.DiceScore`.

With ``compat="torchmetrics"`` these classes reproduce ``torchmetrics.segmentation.MeanIoU`` and
``DiceScore`` 1.9: per-class binary masks (so multi-hot or empty one-hot pixels count as
torchmetrics counts them), scores per image, float32 output, and for IoU ``-1`` for a class
undefined in every image. The state stays small and fixed: per class, the sum and count of the
defined per-image values (or, for Dice at ``aggregation_level="global"``, the summed counts).

Aggregation (torchmetrics'):
    ``MeanIoU``: per-class value = mean over the images where the class's union is non-empty;
    the mean = one flat mean over every such (image, class) value. ``DiceScore``:
    ``"samplewise"`` = the ``average`` of each image, then the mean over the images where it is
    defined; ``"global"`` = the ``average`` of the counts summed over all images.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from torchseg_metrics.functional.semantic.input_formats import (
    check_compat_arguments,
    dice_from_overlaps,
    overlaps_update,
    raise_for_invalid_overlaps,
)


def check_semantic_compat(metric: Any, compat: object) -> str:
    """Check ``compat`` against the metric's other arguments; return it."""
    return check_compat_arguments(compat, metric.aggregation, metric.ignore_index, metric.input_format)


def num_out(metric: Any) -> int:
    """The number of classes scored (class 0 dropped without the background, when C > 1)."""
    c = metric.num_classes
    return c - 1 if not metric.include_background and c > 1 else c


def add_overlap_states(metric: Metric, width: int | None) -> None:
    """Register the per-image value sums and counts (``width`` values; None: summed counts instead)."""
    c = num_out(metric)
    if width is None:
        metric.add_state("overlap_sums", torch.zeros(c, 3, dtype=torch.int64), dist_reduce_fx="sum")
    else:
        metric.add_state("overlap_score", torch.zeros(width, dtype=torch.float64), dist_reduce_fx="sum")
        metric.add_state("overlap_count", torch.zeros(width, dtype=torch.int64), dist_reduce_fx="sum")
    metric.add_state("overlap_invalid", torch.zeros(2, dtype=torch.int64), dist_reduce_fx="sum")


def _classes_of_batch(metric: Any, preds: Tensor, target: Tensor, per_image: Any) -> int:
    """The class count of a one-hot batch: ``num_classes``, or, as torchmetrics (which reads the
    class axis of one-hot inputs and never ``num_classes``), the batch's own class axis where the
    state holds one value per image, whatever the classes (an average, per image)."""
    one_hot = None
    if isinstance(preds, Tensor) and isinstance(target, Tensor):
        if metric.input_format == "one-hot" and preds.ndim >= 3:
            one_hot = preds
        elif metric.input_format == "mixed" and abs(preds.ndim - target.ndim) == 1:
            one_hot = preds if preds.ndim > target.ndim else target
    per_image_scalar = per_image is not None and metric.overlap_score.numel() == 1
    if one_hot is None or not per_image_scalar or one_hot.shape[1] < 1:
        return metric.num_classes
    return int(one_hot.shape[1])


def update_overlaps(metric: Any, preds: Tensor, target: Tensor, per_image: Any) -> None:
    """Count one batch; ``per_image`` maps ``(N, C', 3)`` counts to ``(N, K)`` values (None: sum counts).

    Values are checked before any state changes: at once for CPU tensors, else counted for compute().
    """
    counts, invalid = overlaps_update(
        preds,
        target,
        _classes_of_batch(metric, preds, target, per_image),
        metric.input_format,
        ignore_index=metric.ignore_index,
        include_background=metric.include_background,
        method=metric.method,
    )
    if counts.device.type == "cpu":  # host data: reading the two counts is no device sync
        raise_for_invalid_overlaps(invalid, metric.num_classes, metric.ignore_index, metric.input_format)
    metric.overlap_invalid = metric.overlap_invalid + invalid
    if per_image is None:
        metric.overlap_sums = metric.overlap_sums + counts.sum(0)
        return
    values = per_image(counts).reshape(counts.shape[0], -1)
    defined = ~values.isnan()
    dims = (0, 1) if metric.overlap_score.numel() == 1 else 0  # one value: every class summed
    metric.overlap_score = metric.overlap_score + torch.where(defined, values, 0).double().sum(dims)
    metric.overlap_count = metric.overlap_count + defined.sum(dims)


def _checked(metric: Any) -> None:
    raise_for_invalid_overlaps(
        metric.overlap_invalid, metric.num_classes, metric.ignore_index, metric.input_format
    )


def mean_iou_from_overlap_state(metric: Any) -> Tensor:
    """torchmetrics' ``MeanIoU.compute``: per class with -1 where undefined, or the flat mean."""
    _checked(metric)
    score, count = metric.overlap_score, metric.overlap_count
    if metric.per_class:
        return (score / count).float().nan_to_num(-1.0)
    return (score.sum() / count.sum()).float()


def dice_from_overlap_state(metric: Any) -> Tensor:
    """torchmetrics' ``DiceScore.compute`` for the metric's ``average`` and ``aggregation_level``."""
    _checked(metric)
    if metric.aggregation_level == "global":
        return dice_from_overlaps(metric.overlap_sums[None], metric.average).nanmean(0)
    value = (metric.overlap_score / metric.overlap_count).float()
    return value if metric.average == "none" else value.reshape(())
