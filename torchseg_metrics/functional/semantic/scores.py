"""Semantic scores as pure reductions of a confusion matrix.

Every function takes the ``(..., C, C + 1)`` int64 statistic of
:mod:`torchseg_metrics.functional.semantic.confusion` (rows = target, last column = predictions outside
``[0, C)``) and returns float64. Undefined values are NaN: a class with no target and no
predicted pixels has IoU and Dice NaN; a class predicted but absent from the target has IoU and
Dice 0 (it counts, as in mmseg and Cityscapes) and accuracy NaN. Means skip NaN.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor


def _counts(confmat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """True positives, target pixel counts and predicted pixel counts per class, float64."""
    c = confmat.shape[-2]
    cm = confmat.to(torch.float64)
    tp = torch.diagonal(cm[..., :c], dim1=-2, dim2=-1)
    return tp, cm.sum(-1), cm[..., :c].sum(-2)


def multiclass_scores(confmat: Tensor, zero_division: float) -> dict[str, Tensor]:
    """torchmetrics' ``MulticlassJaccardIndex`` / ``MulticlassAccuracy`` rules on ``confmat``
    ``(C, C + 1)``: ``zero_division`` for every 0 / 0 (an ignored class included, whose target pixels
    are gone but whose predictions count), float64.

    Returns:
        ``iou`` and ``accuracy`` per class, and ``mean_accuracy``: the mean over the classes with a
        prediction or a target pixel (torchmetrics' macro, where a predicted but absent class scores
        ``zero_division``).

    Example:
        >>> cm = torch.tensor([[2, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0]])  # class 2 never predicted
        >>> multiclass_scores(cm, 0.0)["iou"].tolist()
        [0.6666666666666666, 0.3333333333333333, 0.0]
    """
    tp, target, pred = _counts(confmat)
    union = target + pred - tp
    fill = torch.tensor(zero_division, dtype=torch.float64, device=confmat.device)
    iou = torch.where(union > 0, tp / union, fill)
    accuracy = torch.where(target > 0, tp / target, fill)
    present = union > 0
    return {
        "iou": iou,
        "accuracy": accuracy,
        "mean_accuracy": (accuracy * present).sum() / present.sum(),
    }


def iou_from_confusion(confmat: Tensor) -> Tensor:
    """Per-class IoU ``tp / (target + pred - tp)``, float64 ``(..., C)``; NaN for 0 / 0."""
    tp, target, pred = _counts(confmat)
    return tp / (target + pred - tp)


def dice_from_confusion(confmat: Tensor) -> Tensor:
    """Per-class Dice (F1) ``2 tp / (target + pred)``, float64 ``(..., C)``; NaN for 0 / 0."""
    tp, target, pred = _counts(confmat)
    return 2 * tp / (target + pred)


def accuracy_from_confusion(confmat: Tensor) -> Tensor:
    """Per-class accuracy (recall) ``tp / target``, float64 ``(..., C)``; NaN for an absent class."""
    tp, target, _ = _counts(confmat)
    return tp / target


def precision_from_confusion(confmat: Tensor) -> Tensor:
    """Per-class precision ``tp / pred``, float64 ``(..., C)``; NaN for a class never predicted."""
    tp, _, pred = _counts(confmat)
    return tp / pred


def pixel_accuracy_from_confusion(confmat: Tensor, class_mask: Tensor | None = None) -> Tensor:
    """Fraction of counted pixels predicted correctly, float64 ``(...)``; NaN when no pixel counts.

    ``class_mask`` (bool ``(C,)``) restricts the count to pixels whose target class is kept.
    """
    tp, target, _ = _counts(confmat)
    if class_mask is not None:
        tp, target = tp * class_mask, target * class_mask
    return tp.sum(-1) / target.sum(-1)


def frequency_weighted_iou_from_confusion(confmat: Tensor, class_mask: Tensor | None = None) -> Tensor:
    """IoU weighted by each class's share of target pixels, float64 ``(...)`` (detectron2's fwIoU)."""
    _, target, _ = _counts(confmat)
    iou = iou_from_confusion(confmat)
    if class_mask is not None:
        target = target * class_mask
    weighted = torch.where(target > 0, target * iou, torch.zeros_like(iou))
    return weighted.sum(-1) / target.sum(-1)  # 0 / 0 = NaN when no pixel counts


def nan_mean(values: Tensor) -> Tensor:
    """Mean over the last axis of the defined (non-NaN) values; NaN if there are none."""
    return values.nanmean(-1)


#: Per-class scores, in the order of the image-aggregation state rows.
PER_CLASS_SCORES = ("iou", "dice", "accuracy")
#: Mean scores, in the order of the image-aggregation state entries.
MEAN_SCORES = (
    "miou",
    "mdice",
    "mean_accuracy",
    "pixel_accuracy",
    "fwiou",
    "dice_micro",
    "dice_weighted",
    "iou_micro",
)


def class_mask(
    num_classes: int, ignore_index: int | None, include_background: bool, device: torch.device
) -> Tensor:
    """bool ``(C,)``: the classes that enter per-class output and means.

    An ``ignore_index`` inside ``[0, C)`` is no class to score; ``include_background=False`` drops class 0.
    """
    keep = torch.ones(num_classes, dtype=torch.bool, device=device)
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        keep[ignore_index] = False
    if not include_background:
        keep[0] = False
    return keep


def scores_from_confusion(
    confmat: Tensor, keep: Tensor, keys: Collection[str] | None = None
) -> dict[str, Tensor]:
    """Semantic scores of ``confmat`` ``(..., C, C + 1)``: per-class vectors (NaN outside ``keep``)
    under :data:`PER_CLASS_SCORES` and means under :data:`MEAN_SCORES`, float64.

    The same operations as the single-score functions above, on counts taken once; ``keys`` (None
    for all) limits the work to the scores asked for, so that the ``compute()`` (or per-step
    ``forward()``) of a single-score metric is a handful of small tensor ops.
    """
    want = set(PER_CLASS_SCORES + MEAN_SCORES) if keys is None else set(keys)
    tp, target, pred = _counts(confmat)
    nan = float("nan")
    out: dict[str, Tensor] = {}
    if want & {"iou", "miou", "fwiou"}:
        iou = tp / (target + pred - tp)
        out["iou"] = torch.where(keep, iou, nan)
    if want & {"dice", "mdice", "dice_weighted"}:
        dice = 2 * tp / (target + pred)
        out["dice"] = torch.where(keep, dice, nan)
    if want & {"accuracy", "mean_accuracy"}:
        out["accuracy"] = torch.where(keep, tp / target, nan)
    for mean, per_class in (("miou", "iou"), ("mdice", "dice"), ("mean_accuracy", "accuracy")):
        if mean in want:
            out[mean] = nan_mean(out[per_class])
    if want & {"pixel_accuracy", "fwiou", "dice_micro", "dice_weighted", "iou_micro"}:
        kept_tp, kept_target = tp * keep, target * keep
        kept_total = kept_target.sum(-1)
        counted = kept_target > 0
        zeros = torch.zeros_like(tp)
        if "pixel_accuracy" in want:
            out["pixel_accuracy"] = kept_tp.sum(-1) / kept_total
        if "fwiou" in want:
            out["fwiou"] = torch.where(counted, kept_target * iou, zeros).sum(-1) / kept_total
        if "dice_micro" in want:
            out["dice_micro"] = 2 * kept_tp.sum(-1) / (kept_total + (pred * keep).sum(-1))
        if "iou_micro" in want:  # pooled over the kept classes (torchmetrics' average="micro")
            kept_pred = (pred * keep).sum(-1)
            out["iou_micro"] = kept_tp.sum(-1) / (kept_total + kept_pred - kept_tp.sum(-1))
        if "dice_weighted" in want:
            out["dice_weighted"] = torch.where(counted, kept_target * dice, zeros).sum(-1) / kept_total
    return {k: out[k] for k in PER_CLASS_SCORES + MEAN_SCORES if k in want}


def dice_micro_weighted(confmat: Tensor, keep: Tensor, average: str) -> Tensor:
    """Dice pooled over the kept classes (``"micro"``) or weighted by target support (``"weighted"``)."""
    tp, target, pred = _counts(confmat)
    tp, target, pred = tp * keep, target * keep, pred * keep
    if average == "micro":
        return 2 * tp.sum(-1) / (target.sum(-1) + pred.sum(-1))
    dice = 2 * tp / (target + pred)
    weighted = torch.where(target > 0, target * dice, torch.zeros_like(dice))
    return weighted.sum(-1) / target.sum(-1)
