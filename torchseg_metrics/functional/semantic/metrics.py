"""Public functional forms of the semantic metrics: check, update and reduce in one call.

Each is the functional twin of the class of the same name in :mod:`torchseg_metrics.semantic`,
with the same arguments and the same **Aggregation** rules (dataset-level by default).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from torchseg_metrics._checks import check_bool, check_choice, fail, tm_message
from torchseg_metrics.functional.semantic.input_formats import (
    DICE_SENTENCES,
    MEAN_IOU_SENTENCES,
    SEMANTIC_COMPAT,
    InputFormat,
    SemanticCompat,
    check_aggregation_level,
    check_compat_arguments,
    check_input_format,
    default_input_format,
    dice_from_overlaps,
    iou_from_overlaps,
    overlaps_update,
    raise_for_invalid_overlaps,
)
from torchseg_metrics.functional.semantic.stats import (
    DICE_AVERAGES,
    Aggregation,
    Average,
    DiceAverage,
    _functional,
    average_key,
    check_semantic_args,
)


def semantic_metrics(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    *,
    ignore_index: int | None = None,
    include_background: bool = True,
    aggregation: Aggregation = "dataset",
) -> dict[str, Tensor]:
    """Every semantic score at once: ``miou``, ``mdice``, ``pixel_accuracy``, ``mean_accuracy``,
    ``fwiou`` (float64 scalars), ``iou``/``dice``/``accuracy`` per class (float64 ``(C,)``) and
    ``confmat`` (int64 ``(C, C)``, rows = target).

    Example:
        >>> import torch
        >>> preds = torch.tensor([[[0, 1, 1], [2, 2, 0]]])
        >>> target = torch.tensor([[[0, 1, 2], [2, 2, 1]]])
        >>> round(semantic_metrics(preds, target, num_classes=3)["miou"].item(), 4)
        0.5
    """
    return _functional(preds, target, num_classes, ignore_index, include_background, aggregation)


def _overlaps(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    include_background: bool,
    input_format: str | None,
    ignore_index: int | None,
    aggregation: str,
) -> Tensor:
    """torchmetrics' per-image ``[intersection, pred, target]`` counts ``(N, C', 3)``, checked."""
    c, ignore = check_semantic_args(num_classes, ignore_index, include_background, aggregation, "auto")
    input_format = check_input_format(default_input_format("torchmetrics", input_format))
    check_compat_arguments("torchmetrics", aggregation, ignore, input_format)
    counts, invalid = overlaps_update(
        preds, target, c, input_format, ignore_index=ignore, include_background=include_background
    )
    raise_for_invalid_overlaps(invalid, c, ignore, input_format)
    return counts


def mean_iou(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    include_background: bool = True,
    per_class: bool = False,
    input_format: InputFormat | None = None,
    *,
    ignore_index: int | None = None,
    aggregation: Aggregation = "dataset",
    compat: SemanticCompat = "standard",
    average: Average | None = "macro",
) -> Tensor:
    """Mean IoU (Jaccard) over classes, or per-class IoU with ``per_class=True``.

    The arguments of torchmetrics' ``functional.segmentation.mean_iou``, in its order, and ours.

    Args:
        preds (Tensor[N, ...] int | Tensor[N, C, ...] float): labels, or scores reduced by argmax
            (one-hot masks with ``input_format``).
        target (Tensor[N, ...] int): target labels (one-hot masks with ``input_format``).
        num_classes: ``C``.
        include_background: when False, class 0 is dropped from output and mean.
        per_class: return the ``(C,)`` vector instead of the mean.
        input_format: None / ``"index"`` / ``"one-hot"`` / ``"mixed"`` (see
            :mod:`~torchseg_metrics.functional.semantic.input_formats`).
        ignore_index: target value whose pixels are dropped (any value; inside ``[0, C)`` that
            class is NaN in per-class output and left out of the mean).
        aggregation: ``"dataset"`` (one confusion matrix) or ``"image"`` (mean of per-image values).
        compat: ``"torchmetrics"`` returns torchmetrics' output instead: one value per image,
            ``(N,)`` or ``(N, C)`` with -1 for undefined classes, float32.
        average: ``"macro"`` (the mean over defined classes), ``"micro"`` (IoU of the counts pooled
            over classes), ``"weighted"`` (by target pixels: fwIoU) or ``"none"``/None (per class),
            as torchmetrics' ``MulticlassJaccardIndex(average=...)``.

    Aggregation:
        Dataset-level by default; absent classes are NaN and skipped; predicted-but-absent counts 0.
        torchmetrics' ``segmentation.MeanIoU`` averages per image: use ``aggregation="image"``.

    Raises:
        TypeError, ValueError: for bad arguments or inputs, naming the argument.

    Example:
        >>> import torch
        >>> preds = torch.tensor([[[0, 1, 1], [2, 2, 0]]])
        >>> target = torch.tensor([[[0, 1, 2], [2, 2, 1]]])
        >>> mean_iou(preds, target, num_classes=3, per_class=True)
        tensor([0.5000, 0.3333, 0.6667], dtype=torch.float64)
        >>> mean_iou(preds, target, 3, input_format="index", compat="torchmetrics")
        tensor([0.5000])
    """
    with tm_message(MEAN_IOU_SENTENCES):  # torchmetrics' sentences lead the argument errors
        check_bool("per_class", per_class)
        check_choice("compat", compat, SEMANTIC_COMPAT)
        key = average_key("iou", average, per_class)
        if compat == "torchmetrics":
            if key not in ("miou", "iou"):
                fail("average", "'macro' or 'none' with compat='torchmetrics' (its MeanIoU)", average)
            args = (num_classes, include_background, input_format, ignore_index, aggregation)
            counts = _overlaps(preds, target, *args)
            iou = iou_from_overlaps(counts)
            return iou.nan_to_num(-1.0) if per_class else iou.nansum(-1) / (~iou.isnan()).sum(-1)
        fixed = (num_classes, ignore_index, include_background, aggregation)
        return _functional(preds, target, *fixed, key, input_format=input_format)[key]


def dice_score(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    include_background: bool = True,
    average: DiceAverage | None = "macro",
    input_format: InputFormat | None = None,
    aggregation_level: Literal["samplewise", "global"] | None = None,
    *,
    ignore_index: int | None = None,
    aggregation: Aggregation = "dataset",
    compat: SemanticCompat = "standard",
) -> Tensor:
    """Dice (F1) per class (``average="none"`` or None) or averaged: ``"macro"`` (mean over
    classes), ``"micro"`` (pooled over classes), ``"weighted"`` (by target pixel share).

    The arguments of torchmetrics' ``functional.segmentation.dice_score``, in its order, and ours;
    ``aggregation_level`` ``"global"`` / ``"samplewise"`` means ``aggregation="dataset"`` /
    ``"image"``. ``compat="torchmetrics"`` returns torchmetrics' output: one value per image
    (``"samplewise"``, its default) or one row (``"global"``), float32.

    Example:
        >>> import torch
        >>> preds = torch.tensor([[[0, 1, 1], [2, 2, 0]]])
        >>> target = torch.tensor([[[0, 1, 2], [2, 2, 1]]])
        >>> dice_score(preds, target, num_classes=3, average="none")
        tensor([0.6667, 0.5000, 0.8000], dtype=torch.float64)
    """
    with tm_message(DICE_SENTENCES):  # torchmetrics' sentences lead the argument errors
        average = "none" if average is None else average
        check_choice("average", average, DICE_AVERAGES)
        check_choice("compat", compat, SEMANTIC_COMPAT)
        level = check_aggregation_level(aggregation_level, compat, aggregation)
        if compat == "torchmetrics":
            args = (num_classes, include_background, input_format, ignore_index, aggregation)
            counts = _overlaps(preds, target, *args)
            if level == "global":
                counts = counts.sum(0, keepdim=True)
            return dice_from_overlaps(counts, average)
        key = average_key("dice", average)
        aggregation = "dataset" if level == "global" else "image"
        fixed = (num_classes, ignore_index, include_background, aggregation)
        return _functional(preds, target, *fixed, key, input_format=input_format)[key]


def pixel_accuracy(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    *,
    ignore_index: int | None = None,
    aggregation: Aggregation = "dataset",
) -> Tensor:
    """Fraction of non-ignored pixels predicted correctly (``aAcc``), float64 scalar.

    Example:
        >>> import torch
        >>> preds = torch.tensor([[[0, 1, 1], [2, 2, 0]]])
        >>> target = torch.tensor([[[0, 1, 2], [2, 2, 1]]])
        >>> pixel_accuracy(preds, target, num_classes=3)
        tensor(0.6667, dtype=torch.float64)
    """
    return _functional(preds, target, num_classes, ignore_index, True, aggregation, "pixel_accuracy")[
        "pixel_accuracy"
    ]


def mean_accuracy(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    *,
    ignore_index: int | None = None,
    per_class: bool = False,
    include_background: bool = True,
    aggregation: Aggregation = "dataset",
    average: Average | None = "macro",
) -> Tensor:
    """Mean class accuracy (``mAcc``: per-class recall averaged over classes present in the target).

    ``average`` as torchmetrics' ``MulticlassAccuracy``: ``"macro"`` (mAcc), ``"micro"`` and
    ``"weighted"`` (both the pooled accuracy of the kept classes), ``"none"``/None (per class).

    Example:
        >>> import torch
        >>> preds = torch.tensor([[[0, 1, 1], [2, 2, 0]]])
        >>> target = torch.tensor([[[0, 1, 2], [2, 2, 1]]])
        >>> mean_accuracy(preds, target, num_classes=3, per_class=True)
        tensor([1.0000, 0.5000, 0.6667], dtype=torch.float64)
    """
    check_bool("per_class", per_class)
    key = average_key("accuracy", average, per_class)
    return _functional(preds, target, num_classes, ignore_index, include_background, aggregation, key)[key]


def frequency_weighted_iou(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    *,
    ignore_index: int | None = None,
    include_background: bool = True,
    aggregation: Aggregation = "dataset",
) -> Tensor:
    """Frequency-weighted IoU (``fwIoU``): IoU weighted by each class's share of target pixels.

    Example:
        >>> import torch
        >>> preds = torch.tensor([[[0, 1, 1], [2, 2, 0]]])
        >>> target = torch.tensor([[[0, 1, 2], [2, 2, 1]]])
        >>> round(frequency_weighted_iou(preds, target, num_classes=3).item(), 4)
        0.5278
    """
    return _functional(preds, target, num_classes, ignore_index, include_background, aggregation, "fwiou")[
        "fwiou"
    ]
