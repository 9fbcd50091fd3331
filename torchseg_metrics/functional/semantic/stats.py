"""Functional semantic-segmentation metrics: one statistics update, pure reductions, public forms.

``semantic_stats_update`` returns the increments a :mod:`torchseg_metrics.semantic` metric adds to
its state; ``semantic_from_stats`` reduces a (summed) state to every score. The public functions
(:func:`mean_iou`, :func:`dice_score`, ...) do both in one call.

Aggregation:
    ``"dataset"`` (default): one confusion matrix over every pixel seen, then the scores (mmseg,
    Cityscapes, detectron2). ``"image"``: scores per image, then the mean over images of each
    defined value (the per-image style of MONAI and torchmetrics' ``segmentation.MeanIoU``).
    Absent classes (no target and no predicted pixel) are NaN and left out of means; a class
    predicted but absent from the target has IoU 0 and counts.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Literal

import torch
from torch import Tensor

from torchseg_metrics._checks import check_bool, check_choice, check_optional_int, check_positive_int, fail
from torchseg_metrics.functional.counting import COUNT_METHODS, CountMethod
from torchseg_metrics.functional.semantic.confusion import _confusion_matrix_update
from torchseg_metrics.functional.semantic.input_formats import (
    check_input_format,
    index_inputs,
    is_one_hot_target,
)
from torchseg_metrics.functional.semantic.inputs import (
    check_semantic_inputs,
    labels_from_preds,
    raise_for_invalid,
)
from torchseg_metrics.functional.semantic.scores import (
    MEAN_SCORES,
    PER_CLASS_SCORES,
    class_mask,
    scores_from_confusion,
)

Aggregation = Literal["dataset", "image"]
AGGREGATIONS: tuple[str, ...] = ("dataset", "image")
DiceAverage = Literal["macro", "micro", "weighted", "none"]
DICE_AVERAGES: tuple[str, ...] = ("macro", "micro", "weighted", "none")
#: ``average`` of every per-class score: "macro" (mean over defined classes), "micro" (pooled
#: counts of the kept classes), "weighted" (by target pixels), "none" (the per-class vector).
Average = DiceAverage
AVERAGES = DICE_AVERAGES
#: The result key of each (score, average).
AVERAGE_KEYS = {
    "iou": {"macro": "miou", "micro": "iou_micro", "weighted": "fwiou", "none": "iou"},
    "dice": {"macro": "mdice", "micro": "dice_micro", "weighted": "dice_weighted", "none": "dice"},
    "accuracy": {
        "macro": "mean_accuracy",
        "micro": "pixel_accuracy",
        "weighted": "pixel_accuracy",  # support-weighted recall is the pooled accuracy
        "none": "accuracy",
    },
}


def average_key(score: str, average: object, per_class: bool = False) -> str:
    """The result key of ``score`` under ``average`` (None means "none"; ``per_class`` forces it)."""
    average = "none" if average is None or per_class else average
    check_choice("average", average, AVERAGES)
    return AVERAGE_KEYS[score][average]  # type: ignore[index]


Normalize = Literal["true", "pred", "all", "none"]
NORMALIZE: tuple[str, ...] = ("true", "pred", "all", "none")


def check_zero_division(value: object) -> float | None:
    """torchmetrics' ``zero_division``: the value of a 0/0 score (None: NaN, this package's rule).

    Example:
        >>> check_zero_division(0), check_zero_division(None)
        (0.0, None)
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        fail("zero_division", "a finite number (0 or 1, as torchmetrics) or None", value, TypeError)
    return float(value)


def check_semantic_args(
    num_classes: object, ignore_index: object, include_background: object, aggregation: object, method: object
) -> tuple[int, int | None]:
    """Check the constructor arguments shared by every semantic metric; return (C, ignore_index)."""
    c = check_positive_int("num_classes", num_classes)
    ignore = check_optional_int("ignore_index", ignore_index)
    check_bool("include_background", include_background)
    check_choice("aggregation", aggregation, AGGREGATIONS)
    check_choice("method", method, COUNT_METHODS)
    return c, ignore


def empty_semantic_stats(
    num_classes: int, aggregation: str, device: torch.device | None = None
) -> dict[str, Tensor]:
    """Zero statistics of the right shapes: the metric classes register these as their states."""
    c = num_classes
    stats = {
        "confmat": torch.zeros(c, c + 1, dtype=torch.int64, device=device),
        "num_invalid": torch.zeros(2, dtype=torch.int64, device=device),
    }
    if aggregation == "image":
        stats["image_class_sum"] = torch.zeros(len(PER_CLASS_SCORES), c, dtype=torch.float64, device=device)
        stats["image_class_count"] = torch.zeros(len(PER_CLASS_SCORES), c, dtype=torch.int64, device=device)
        stats["image_mean_sum"] = torch.zeros(len(MEAN_SCORES), dtype=torch.float64, device=device)
        stats["image_mean_count"] = torch.zeros(len(MEAN_SCORES), dtype=torch.int64, device=device)
    return stats


def semantic_stats_update(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    *,
    ignore_index: int | None = None,
    include_background: bool = True,
    aggregation: str = "dataset",
    method: CountMethod = "auto",
    input_format: str | None = None,
) -> dict[str, Tensor]:
    """Statistics increments of one batch (keys as :func:`empty_semantic_stats`).

    ``input_format`` (see :mod:`~torchseg_metrics.functional.semantic.input_formats`) converts one-hot
    inputs to label maps first.

    On CPU the value checks run at once (host data: no device sync) and raise before anything is
    returned; on other devices the offending pixels are counted in ``num_invalid`` and
    :func:`semantic_from_stats` raises.
    """
    preds, target = index_inputs(preds, target, num_classes, input_format, ignore_index)
    preds, target = check_semantic_inputs(preds, target, num_classes)
    labels, nan_pixels = labels_from_preds(preds)
    per_image = aggregation == "image"
    n = target.shape[0]
    confmat, invalid = _confusion_matrix_update(
        labels, target, num_classes, ignore_index, num_images=n if per_image else None, method=method
    )
    num_invalid = torch.stack([invalid.sum(), nan_pixels])
    if target.device.type == "cpu":
        raise_for_invalid(
            num_invalid, num_classes, ignore_index, target, one_hot=is_one_hot_target(input_format)
        )
    if not per_image:
        return {"confmat": confmat, "num_invalid": num_invalid}
    keep = class_mask(num_classes, ignore_index, include_background, target.device)
    scores = scores_from_confusion(confmat, keep)
    per_class = torch.stack([scores[k] for k in PER_CLASS_SCORES], dim=1)  # (N, 3, C)
    means = torch.stack([scores[k] for k in MEAN_SCORES], dim=1)  # (N, 5)
    return {
        "confmat": confmat.sum(0),
        "num_invalid": num_invalid,
        "image_class_sum": per_class.nansum(0),
        "image_class_count": (~per_class.isnan()).sum(0),
        "image_mean_sum": means.nansum(0),
        "image_mean_count": (~means.isnan()).sum(0),
    }


def semantic_from_stats(
    stats: dict[str, Tensor],
    *,
    ignore_index: int | None = None,
    include_background: bool = True,
    aggregation: str = "dataset",
    keys: Collection[str] | None = None,
    input_format: str | None = None,
) -> dict[str, Tensor]:
    """Every score from summed statistics: per-class ``iou``/``dice``/``accuracy`` (class 0 dropped
    when ``include_background`` is False), the means of :data:`MEAN_SCORES`, and ``confmat`` (C, C);
    ``keys`` limits the scores to those (``confmat`` is always there).

    Raises:
        ValueError: if the statistics counted target values outside ``[0, C)`` or NaN scores.
    """
    confmat = stats["confmat"]
    c = confmat.shape[0]
    raise_for_invalid(stats["num_invalid"], c, ignore_index, one_hot=is_one_hot_target(input_format))
    if aggregation == "image":
        class_sum, class_count = stats["image_class_sum"], stats["image_class_count"]
        per_class = class_sum / class_count  # 0 / 0 = NaN: defined in no image
        means = stats["image_mean_sum"] / stats["image_mean_count"]
        result = {k: per_class[i] for i, k in enumerate(PER_CLASS_SCORES)}
        result.update({k: means[i] for i, k in enumerate(MEAN_SCORES)})
    else:
        result = scores_from_confusion(
            confmat, class_mask(c, ignore_index, include_background, confmat.device), keys
        )
    first = 0 if include_background else 1
    for k in PER_CLASS_SCORES:
        if k in result:
            result[k] = result[k][first:]
    result["confmat"] = confmat[:, :c]
    return result


def _functional(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    ignore_index: int | None,
    include_background: bool,
    aggregation: str,
    *keys: str,
    input_format: str | None = None,
) -> dict[str, Tensor]:
    """The functional forms' common body: the scores named in ``keys`` (all when none) and ``confmat``."""
    c, ignore = check_semantic_args(num_classes, ignore_index, include_background, aggregation, "auto")
    input_format = check_input_format(input_format)
    stats = semantic_stats_update(
        preds,
        target,
        c,
        ignore_index=ignore,
        include_background=include_background,
        aggregation=aggregation,
        input_format=input_format,
    )
    return semantic_from_stats(
        stats,
        ignore_index=ignore,
        include_background=include_background,
        aggregation=aggregation,
        keys=keys or None,
        input_format=input_format,
    )


def confusion_matrix(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    *,
    ignore_index: int | None = None,
    normalize: Normalize | None = None,
) -> Tensor:
    """Confusion matrix ``(C, C)``, rows = target, columns = prediction.

    Args:
        preds (Tensor[N, ...] int | Tensor[N, C, ...] float): labels, or scores reduced by argmax.
        target (Tensor[N, ...] int): target labels.
        num_classes: ``C``.
        ignore_index: target value whose pixels are dropped.
        normalize: None/``"none"`` for int64 counts; ``"true"`` (rows sum to 1), ``"pred"``
            (columns), ``"all"`` for float64 fractions (NaN where a row/column is empty).

    Predictions outside ``[0, C)`` on valid pixels are misses of the target class and appear in
    no column (see :mod:`torchseg_metrics.functional.semantic.confusion`).

    Raises:
        TypeError, ValueError: for bad inputs (see :func:`check_semantic_inputs`).

    Example:
        >>> import torch
        >>> preds = torch.tensor([[[0, 1, 1], [2, 2, 0]]])
        >>> target = torch.tensor([[[0, 1, 2], [2, 2, 1]]])
        >>> confusion_matrix(preds, target, num_classes=3)
        tensor([[1, 0, 0],
                [1, 1, 0],
                [0, 1, 2]])
    """
    if normalize is not None:
        check_choice("normalize", normalize, NORMALIZE)
    counts = _functional(preds, target, num_classes, ignore_index, True, "dataset", "confmat")["confmat"]
    return normalize_confusion(counts, normalize)


def normalize_confusion(counts: Tensor, normalize: str | None) -> Tensor:
    """``counts`` as they are (None/"none") or as float64 fractions of rows, columns or the total."""
    if normalize in (None, "none"):
        return counts
    c = counts.to(torch.float64)
    if normalize == "true":
        return c / c.sum(1, keepdim=True)
    if normalize == "pred":
        return c / c.sum(0, keepdim=True)
    return c / c.sum()
