"""torchmetrics' semantic input formats (``"index"``, ``"one-hot"``, ``"mixed"``) and its per-image counts.

``input_format`` names what ``preds`` and ``target`` hold, as in torchmetrics'
``segmentation.MeanIoU`` / ``DiceScore``: ``"index"`` label maps ``(N, ...)`` (float ``preds``
``(N, C, ...)`` are scores, reduced by argmax), ``"one-hot"`` masks ``(N, C, ...)`` on both sides,
``"mixed"`` one of each (the one with a class axis is one-hot). ``None`` (this package's default)
reads label maps and scores and refuses inputs that could be either.

Two uses:

- :func:`index_inputs` turns one-hot sides into label maps for the confusion-matrix metrics. A
  target pixel must hold exactly one 1 (others 0); any other vector is an invalid target value
  (an error, as a label outside ``[0, C)`` is). A prediction pixel without exactly one 1 is a miss.
- :func:`overlaps_update` counts, per image and class, the intersection and the two sizes of the
  per-class binary masks, torchmetrics' statistic: a multi-hot or empty one-hot pixel simply
  counts for every class it marks (none for an empty one).

Nothing here reads a value back to the host; offending values are counted for the caller.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from torchseg_metrics._checks import Found, ShapeMismatchError, check_choice, check_tensor, fail
from torchseg_metrics.functional.counting import CountMethod
from torchseg_metrics.functional.semantic.confusion import _confusion_matrix_update
from torchseg_metrics.functional.semantic.inputs import (
    check_semantic_inputs,
    labels_from_preds,
    raise_for_invalid,
)
from torchseg_metrics.functional.semantic.multilabel import multilabel_stats_update

InputFormat = Literal["index", "one-hot", "mixed"]
INPUT_FORMATS: tuple[str, ...] = ("index", "one-hot", "mixed")
#: Whose rules ``MeanIoU`` / ``DiceScore`` follow: ours (dataset-level) or torchmetrics' (per image).
SemanticCompat = Literal["standard", "torchmetrics"]
SEMANTIC_COMPAT: tuple[str, ...] = ("standard", "torchmetrics")


def default_input_format(compat: object, input_format: Any) -> Any:
    """An unset ``input_format`` under torchmetrics' rules is torchmetrics' default, ``"one-hot"``."""
    return "one-hot" if compat == "torchmetrics" and input_format is None else input_format


def check_input_format(value: object) -> InputFormat | None:
    """Return ``value`` if it is None or one of :data:`INPUT_FORMATS`."""
    if value is not None:
        check_choice("input_format", value, INPUT_FORMATS)
    return value  # type: ignore[return-value]


def is_one_hot_target(input_format: str | None) -> bool:
    """Whether ``input_format`` may give the target as one-hot masks (for error messages)."""
    return input_format in ("one-hot", "mixed")


#: torchmetrics' sentences for the argument checks of ``segmentation.MeanIoU`` / ``mean_iou``.
MEAN_IOU_SENTENCES = {
    "num_classes": "Expected argument `num_classes` must be `None` or a positive integer",
    "include_background": "Expected argument `include_background` must be a boolean",
    "per_class": "Expected argument `per_class` must be a boolean",
    "input_format": "Expected argument `input_format` to be one of 'one-hot', 'index', 'mixed'",
}
#: The same for ``segmentation.DiceScore`` / ``dice_score``.
DICE_SENTENCES = {
    "num_classes": "Expected argument `num_classes` must be a positive integer",
    "include_background": MEAN_IOU_SENTENCES["include_background"],
    "average": "Expected argument `average` to be one of ['micro', 'macro', 'weighted', 'none'] or None",
    "input_format": MEAN_IOU_SENTENCES["input_format"],
    "aggregation_level": "Expected argument `aggregation_level` to be one of `samplewise`, `global`",
}
_SAME_SHAPE = "Predictions and targets are expected to have the same shape"


def _check_shapes(preds: Tensor, target: Tensor, input_format: str) -> None:
    """torchmetrics' shape rules of the one-hot forms: equal shapes ("one-hot"), or the same but
    for the class axis (dim 1) on one side ("mixed"); a :class:`ShapeMismatchError` otherwise."""
    p, t = tuple(preds.shape), tuple(target.shape)
    if input_format == "one-hot":
        if p != t:
            fail(
                "target",
                f"masks of the shape of `preds` {p}",
                Found(f"shape {t}"),
                ShapeMismatchError,
                tm=_SAME_SHAPE,
            )
        return
    if len(p) == len(t) + 1:
        ok = p[:1] + p[2:] == t
    elif len(t) == len(p) + 1:
        ok = t[:1] + t[2:] == p
    else:
        ok = False
    if not ok:
        fail(
            "target",
            "the shape of `preds` with the class axis (dim 1) on one side only, for input_format='mixed'",
            Found(f"shapes {p} and {t}"),
            ShapeMismatchError,
            tm=_SAME_SHAPE,
        )


def _one_hot_sides(preds: Tensor, target: Tensor, input_format: str) -> tuple[bool, bool]:
    """Which of (preds, target) carry a class axis under ``input_format`` (shapes checked)."""
    if input_format in ("one-hot", "mixed"):
        _check_shapes(preds, target, input_format)
    if input_format == "one-hot":
        return True, True
    if input_format == "mixed":
        if preds.ndim == target.ndim + 1:
            return True, False
        if target.ndim == preds.ndim + 1:
            return False, True
        fail(
            "target",
            "one dimension more or fewer than `preds` with input_format='mixed'",
            Found(f"shapes {tuple(preds.shape)} and {tuple(target.shape)}"),
        )
    return False, False


def _check_class_axis(name: str, x: Tensor, num_classes: int) -> None:
    if x.ndim < 3 or x.shape[1] != num_classes:
        tm = "Expected both `preds` and `target` to have at least 3 dimensions" if x.ndim < 3 else None
        expectation = f"one-hot masks of shape (N, {num_classes}, *spatial)"
        fail(name, expectation, Found(f"shape {tuple(x.shape)}"), tm=tm)


def _refuse_ambiguous(preds: Tensor, target: Tensor, num_classes: int) -> None:
    """With no ``input_format``, refuse integer inputs that read as label maps and as one-hot masks."""
    if (
        not preds.dtype.is_floating_point
        and preds.shape == target.shape
        and preds.ndim >= 3
        and preds.shape[1] == num_classes
    ):
        fail(
            "input_format",
            "'index' or 'one-hot' for integer inputs whose dim 1 equals num_classes (label maps "
            "and one-hot masks look alike)",
            Found(f"None with shape {tuple(preds.shape)}"),
        )


def labels_from_one_hot(x: Tensor, invalid: int) -> Tensor:
    """int64 ``(N, ...)`` labels of one-hot ``(N, C, ...)``: the position of the single 1 where a
    pixel's vector is one 1 and zeros, else ``invalid``; float scores are reduced by argmax."""
    if x.dtype.is_floating_point:
        return x.argmax(1)
    nonzero = x != 0
    single = (nonzero.sum(1) == 1) & (x.eq(1) | ~nonzero).all(1)
    return torch.where(single, nonzero.to(torch.uint8).argmax(1), invalid)


def index_inputs(
    preds: object, target: object, num_classes: int, input_format: str | None, ignore_index: int | None
) -> tuple[Tensor, Tensor]:
    """``(preds, target)`` as label maps / scores: the one-hot sides converted (see the module text).

    Raises:
        TypeError: a non-tensor input.
        ValueError: a one-hot side without the class axis, mixed inputs of equal rank, or (with
            ``input_format=None``) integer inputs that read both ways.
    """
    preds, target = check_tensor("preds", preds), check_tensor("target", target)
    if input_format is None:
        _refuse_ambiguous(preds, target, num_classes)
        return preds, target
    p_hot, t_hot = _one_hot_sides(preds, target, input_format)
    if t_hot:
        _check_class_axis("target", target, num_classes)
        # an invalid vector becomes a label outside [0, C) that is not ignore_index: counted, raised
        target = labels_from_one_hot(target, num_classes if ignore_index != num_classes else -1)
    if p_hot:
        _check_class_axis("preds", preds, num_classes)
        if not preds.dtype.is_floating_point:  # scores stay scores (argmax later)
            preds = labels_from_one_hot(preds, num_classes)  # not one class: a miss
    return preds, target


def _class_masks(x: Tensor, one_hot: bool, num_classes: int, is_target: bool) -> tuple[Tensor, Tensor]:
    """bool ``(N, C, ...)`` masks of one side and its count of invalid values (one-hot values other
    than 0/1, NaN scores, target labels outside ``[0, C)``; a predicted label outside is a miss)."""
    bad = torch.zeros((), dtype=torch.int64, device=x.device)
    if x.dtype.is_floating_point:  # scores: argmax, as torchmetrics' _format_logits
        x, bad = labels_from_preds(x)  # and the NaN score pixels
        one_hot = False
    if one_hot:
        if x.dtype == torch.bool:
            return x, bad
        return x != 0, bad + ((x != 0) & (x != 1)).sum()
    if is_target and x.dtype != torch.bool:
        bad = bad + ((x < 0) | (x >= num_classes)).sum()
    classes = torch.arange(num_classes, device=x.device).view(1, -1, *([1] * (x.ndim - 1)))
    return x.unsqueeze(1) == classes, bad


def overlaps_update(
    preds: object,
    target: object,
    num_classes: int,
    input_format: str | None,
    *,
    ignore_index: int | None = None,
    include_background: bool = True,
    method: CountMethod = "auto",
) -> tuple[Tensor, Tensor]:
    """Per image and class ``[intersection, pred size, target size]`` int64 ``(N, C', 3)`` of the
    per-class binary masks (torchmetrics' statistic), and ``(2,)`` invalid counts ``[target, preds]``.

    ``include_background=False`` drops class 0 (when ``C > 1``, as torchmetrics does).
    ``ignore_index`` drops pixels of index targets. Label maps are counted through the per-image
    confusion matrix, without building masks.
    """
    preds, target = check_tensor("preds", preds), check_tensor("target", target)
    if input_format in (None, "index"):
        if input_format is None:
            _refuse_ambiguous(preds, target, num_classes)
        preds, target = check_semantic_inputs(preds, target, num_classes)
        labels, nan = labels_from_preds(preds)
        n = target.shape[0]
        cm, bad = _confusion_matrix_update(
            labels, target, num_classes, ignore_index, num_images=n, method=method
        )
        c = num_classes
        inter = torch.diagonal(cm[..., :c], dim1=-2, dim2=-1)
        counts = torch.stack([inter, cm[..., :c].sum(-2), cm.sum(-1)], -1)
        invalid = torch.stack([bad.sum(), nan])
    else:
        p_hot, t_hot = _one_hot_sides(preds, target, input_format)
        for name, x, hot in (("preds", preds, p_hot), ("target", target, t_hot)):
            if hot:
                _check_class_axis(name, x, num_classes)
        p, bad_p = _class_masks(preds, p_hot, num_classes, is_target=False)
        t, bad_t = _class_masks(target, t_hot, num_classes, is_target=True)
        if p.shape != t.shape:
            fail("preds", f"of the shape of the target's masks {tuple(t.shape)}", Found(f"{tuple(p.shape)}"))
        tn_fp_fn_tp, _ = multilabel_stats_update(p, t, num_classes, per_image=True, method=method)
        fp, fn, tp = tn_fp_fn_tp[..., 1], tn_fp_fn_tp[..., 2], tn_fp_fn_tp[..., 3]
        counts = torch.stack([tp, tp + fp, tp + fn], -1)
        invalid = torch.stack([bad_t, bad_p])
    if not include_background and num_classes > 1:
        counts = counts[:, 1:]
    return counts, invalid


def raise_for_invalid_overlaps(
    invalid: Tensor, num_classes: int, ignore_index: int | None, input_format: str | None
) -> None:
    """Raise if :func:`overlaps_update` counted invalid values (reads two numbers to the host)."""
    if input_format in (None, "index"):
        raise_for_invalid(invalid, num_classes, ignore_index)
        return
    bad_target, bad_preds = (int(v) for v in invalid.tolist())
    if bad_target:
        fail(
            "target",
            f"0/1 one-hot masks or labels in [0, {num_classes})",
            Found(f"{bad_target} other values"),
        )
    if bad_preds:
        fail("preds", "0/1 one-hot masks, labels or scores without NaN", Found(f"{bad_preds} invalid values"))


def _safe_ratio(num: Tensor, den: Tensor) -> Tensor:
    """float32 ``num / den``, NaN where ``den == 0`` (torchmetrics' ``_safe_divide(zero_division="nan")``)."""
    return torch.where(den != 0, num.float() / den.float(), float("nan"))


def iou_from_overlaps(counts: Tensor) -> Tensor:
    """float32 IoU ``(..., C)`` of ``[intersection, pred, target]`` counts; NaN where the union is 0."""
    inter, pred, target = counts.unbind(-1)
    return _safe_ratio(inter, pred + target - inter)


def dice_from_overlaps(counts: Tensor, average: str) -> Tensor:
    """torchmetrics' ``_dice_score_compute`` on rows of ``[intersection, pred, target]`` counts
    ``(R, C, 3)``: ``(R, C)`` for ``"none"``, else ``(R,)``, float32, NaN where undefined."""
    inter, pred, target = counts.unbind(-1)
    num, den = 2 * inter, pred + target
    if average == "micro":
        return _safe_ratio(num.sum(-1), den.sum(-1))
    dice = _safe_ratio(num, den)
    if average == "macro":
        return dice.nanmean(-1)
    if average == "weighted":
        weights = _safe_ratio(target, target.sum(-1, keepdim=True))
        value = (dice * weights).nansum(-1)
        return torch.where(dice.isnan().all(-1), float("nan"), value)
    return dice


def check_aggregation_level(value: object, compat: str, aggregation: str) -> str:
    """DiceScore's ``aggregation_level``: None means our ``aggregation`` (standard) or torchmetrics'
    ``"samplewise"``; ``"global"`` / ``"samplewise"`` are ``aggregation="dataset"`` / ``"image"``."""
    if value is None:
        if compat == "torchmetrics":
            return "samplewise"
        return "global" if aggregation == "dataset" else "samplewise"
    check_choice("aggregation_level", value, ["samplewise", "global"])
    implied = "dataset" if value == "global" else "image"
    if compat == "standard" and aggregation not in ("dataset", implied):
        fail(
            "aggregation",
            f"{implied!r} (or left out) with aggregation_level={value!r}",
            Found(repr(aggregation)),
        )
    return value  # type: ignore[return-value]


def check_compat_arguments(
    compat: object, aggregation: str, ignore_index: int | None, input_format: object
) -> str:
    """Check ``compat`` and the arguments it rules out: torchmetrics' rules fix the aggregation and
    have no ``ignore_index`` for one-hot inputs. Return ``compat``."""
    check_choice("compat", compat, SEMANTIC_COMPAT)
    if compat == "torchmetrics":
        if aggregation != "dataset":
            expectation = "left at 'dataset' with compat='torchmetrics' (which has its own rules)"
            fail("aggregation", expectation, aggregation)
        if ignore_index is not None and input_format in ("one-hot", "mixed"):
            fail("ignore_index", "None with one-hot inputs", ignore_index)
    return compat  # type: ignore[return-value]
