"""Semantic-segmentation metrics as ``torchmetrics.Metric`` classes over one confusion matrix.

All classes share one state, an int64 ``(C, C + 1)`` confusion matrix (rows = target, last column
= predictions outside ``[0, C)``) summed across processes, so a ``MetricCollection`` of them keeps
a single copy (compute groups). With ``aggregation="image"`` they also keep per-class sums of
per-image scores. Nothing grows with the number of pixels or images.

Aggregation:
    ``"dataset"`` (default): scores of the confusion matrix of every pixel seen (mmseg, Cityscapes,
    detectron2). This differs from torchmetrics' ``segmentation.MeanIoU``, which averages per-image
    scores: with images of different content the two are different numbers; pass
    ``aggregation="image"`` for the per-image mean. Classes absent from target and prediction are
    NaN and left out of means; a class predicted but absent from the target has IoU 0 and counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors

from torchseg_metrics._checks import (
    Found,
    check_bool,
    check_choice,
    check_class_names,
    check_positive_int,
    fail,
    tm_message,
)
from torchseg_metrics._config_state import add_config_state
from torchseg_metrics.functional.counting import CountMethod
from torchseg_metrics.functional.semantic.accuracy_counts import (
    accuracy_counts,
    accuracy_from_counts,
    pooled_accuracy_counts,
)
from torchseg_metrics.functional.semantic.input_formats import (
    DICE_SENTENCES,
    INPUT_FORMATS,
    MEAN_IOU_SENTENCES,
    SEMANTIC_COMPAT,
    InputFormat,
    SemanticCompat,
    check_aggregation_level,
    check_input_format,
    default_input_format,
    dice_from_overlaps,
    iou_from_overlaps,
)
from torchseg_metrics.functional.semantic.inputs import labels_from_preds
from torchseg_metrics.functional.semantic.scores import multiclass_scores
from torchseg_metrics.functional.semantic.stats import (
    DICE_AVERAGES,
    NORMALIZE,
    Aggregation,
    Average,
    DiceAverage,
    Normalize,
    average_key,
    check_semantic_args,
    check_zero_division,
    empty_semantic_stats,
    normalize_confusion,
    semantic_from_stats,
    semantic_stats_update,
)
from torchseg_metrics.semantic_torchmetrics import (
    add_overlap_states,
    check_semantic_compat,
    dice_from_overlap_state,
    mean_iou_from_overlap_state,
    num_out,
    update_overlaps,
)

__all__ = [
    "ConfusionMatrix",
    "DiceScore",
    "FrequencyWeightedIoU",
    "MeanAccuracy",
    "MeanIoU",
    "PixelAccuracy",
    "SemanticMetrics",
]


class _SemanticMetric(Metric):
    """Base class: holds the confusion statistic, validates, updates; subclasses only reduce."""

    is_differentiable: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = True
    full_state_update: ClassVar[bool] = False
    plot_lower_bound: ClassVar[float] = 0.0
    plot_upper_bound: ClassVar[float] = 1.0

    def __init__(
        self,
        num_classes: int,
        *,
        ignore_index: int | None = None,
        per_class: bool = False,
        aggregation: Aggregation = "dataset",
        include_background: bool = True,
        class_names: Sequence[str] | None = None,
        method: CountMethod = "auto",
        input_format: InputFormat | None = None,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # torchmetrics' classification option; the checks here read no values on the host, so
        # they always run (value problems off the CPU are raised by compute(), without a sync)
        self.validate_args = check_bool("validate_args", validate_args)
        self.num_classes, self.ignore_index = check_semantic_args(
            num_classes, ignore_index, include_background, aggregation, method
        )
        self.input_format = check_input_format(input_format)
        self.per_class = check_bool("per_class", per_class)
        self.aggregation = aggregation
        self.include_background = include_background
        self.class_names = check_class_names(class_names, self.num_classes)
        self.method = method
        for name, value in empty_semantic_stats(self.num_classes, aggregation).items():
            self.add_state(name, default=value, dist_reduce_fx="sum")
        formats = (None, *INPUT_FORMATS)
        add_config_state(self, [self.ignore_index, include_background, formats.index(self.input_format)])

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch: ``preds`` labels or scores ``(N, C, ...)``; ``target`` labels ``(N, ...)``.

        Raises:
            TypeError: if an input is not a tensor or has the wrong dtype.
            ValueError: for mismatched shapes, or (CPU inputs) target values outside ``[0, C)`` that
                are not ``ignore_index`` and NaN scores; on other devices those are raised by
                ``compute()``. A failed update leaves the state unchanged.
        """
        increments = semantic_stats_update(
            preds,
            target,
            self.num_classes,
            ignore_index=self.ignore_index,
            include_background=self.include_background,
            aggregation=self.aggregation,
            method=self.method,
            input_format=self.input_format,
        )
        # all checks passed: now mutate. Out of place on purpose: under Lightning's ddp_spawn the
        # initial states live in memory shared between ranks, where an in-place add counts twice.
        for name, value in increments.items():
            setattr(self, name, getattr(self, name) + value)

    def _all_scores(self, *keys: str) -> dict[str, Tensor]:
        """The scores named (every score when none is named), and ``confmat``."""
        stats = {name: getattr(self, name) for name in self._defaults if name != "config"}
        return semantic_from_stats(
            stats,
            ignore_index=self.ignore_index,
            include_background=self.include_background,
            aggregation=self.aggregation,
            keys=keys or None,
            input_format=self.input_format,
        )

    def plot(self, val: Any = None, ax: Any = None) -> Any:
        """Plot a value of this metric (``compute()`` by default) as torchmetrics' ``plot()``: ``(fig, ax)``.

        A per-class ``(C,)`` value is drawn as bars labelled by ``class_names``; a scalar, a dict of
        scalars (``SemanticMetrics``; per-class entries left out) or a list of values over steps by
        torchmetrics' ``Metric._plot``. Needs matplotlib.
        """
        from torchseg_metrics.reporting.plots import plot_metric_value

        return plot_metric_value(self, val, ax, class_names=self.class_names)


def _multiclass(metric: _SemanticMetric, key: str, zero_division: float) -> Tensor:
    """``key`` under torchmetrics' multiclass rules (:func:`multiclass_scores`); with
    ``include_background=False`` class 0 stays NaN and out of the mean."""
    confmat = metric.confmat
    if not metric.include_background:
        confmat = confmat.clone()
        confmat[0] = 0
        confmat[:, 0] = 0
    value = multiclass_scores(confmat, zero_division)[key]
    if not metric.include_background and value.ndim:
        value = value.clone()
        value[0] = float("nan")
    return value


class ConfusionMatrix(_SemanticMetric):
    """Confusion matrix ``(C, C)`` of counts (int64, rows = target, columns = prediction).

    ``normalize`` (``"true"``, ``"pred"``, ``"all"``) returns float64 fractions instead (an empty row
    or column NaN; 0, as ``MulticlassConfusionMatrix``, with ``compat="torchmetrics"``). Valid
    pixels predicted outside ``[0, C)`` appear in no column (their row sums are lower).

    Example:
        >>> import torch
        >>> metric = ConfusionMatrix(num_classes=3)
        >>> metric.update(torch.tensor([[[0, 1, 1], [2, 2, 0]]]), torch.tensor([[[0, 1, 2], [2, 2, 1]]]))
        >>> metric.compute()
        tensor([[1, 0, 0],
                [1, 1, 0],
                [0, 1, 2]])
    """

    higher_is_better: ClassVar[bool | None] = None  # type: ignore[misc]

    def __init__(
        self,
        num_classes: int,
        *,
        normalize: Normalize | None = None,
        compat: Literal["standard", "torchmetrics"] = "standard",
        **kwargs: Any,
    ) -> None:
        check_choice("compat", compat, ["standard", "torchmetrics"])
        self.compat = compat
        if normalize is not None:
            check_choice("normalize", normalize, NORMALIZE)
        super().__init__(num_classes, **kwargs)
        self.normalize = normalize

    def compute(self) -> Tensor:
        """The confusion matrix of every pixel seen."""
        value = normalize_confusion(self._all_scores("confmat")["confmat"], self.normalize)
        if self.compat == "torchmetrics" and value.is_floating_point():  # its empty rows: 0, not NaN
            value = value.nan_to_num(nan=0.0)
        return value

    def plot(self, val: Tensor | None = None, ax: Any = None) -> Any:
        """Heat map of the row-normalised confusion matrix (needs matplotlib)."""
        from torchseg_metrics.reporting.plots import plot_confusion_matrix

        return plot_confusion_matrix(
            self.compute() if val is None else val, class_names=self.class_names, ax=ax
        )


class MeanIoU(_SemanticMetric):
    """Mean intersection over union (Jaccard index), or per-class IoU with ``per_class=True``.

    Takes torchmetrics' ``segmentation.MeanIoU(num_classes, include_background, per_class,
    input_format)`` arguments, in its order, but is dataset-level by default: torchmetrics scores
    each image and averages, so a class's IoU depends on how pixels fall into images and small
    images weigh as much as large ones. ``aggregation="image"`` gives torchmetrics' per-class values
    (for one-hot or index inputs with one class per pixel) and, as the mean, the average over
    images of its functional ``mean_iou``; ``compat="torchmetrics"`` gives its class's numbers
    exactly (float32, -1 for a class never defined, one flat mean over (image, class) values,
    multi-hot one-hot pixels counted per class; see :mod:`torchseg_metrics.semantic_torchmetrics`).

    ``input_format``: None (label maps or scores; integer inputs that could be one-hot masks are
    refused; with ``compat="torchmetrics"`` torchmetrics' default ``"one-hot"``), ``"index"``,
    ``"one-hot"`` (``(N, C, ...)`` 0/1 masks on both sides) or ``"mixed"``.
    ``average`` (torchmetrics' ``MulticlassJaccardIndex`` option): ``"macro"`` (mIoU), ``"micro"``
    (IoU of the counts pooled over classes), ``"weighted"`` (by target pixels: fwIoU) or
    ``"none"``/None (per class, as ``per_class=True``). ``zero_division`` (its option too): the value
    of a 0/0 class (None, the default: NaN); with 0 or 1 the numbers are ``MulticlassJaccardIndex``'s.

    Example:
        >>> import torch
        >>> metric = MeanIoU(num_classes=3, per_class=True)
        >>> metric.update(torch.tensor([[[0, 1, 1], [2, 2, 0]]]), torch.tensor([[[0, 1, 2], [2, 2, 1]]]))
        >>> metric.compute()
        tensor([0.5000, 0.3333, 0.6667], dtype=torch.float64)
    """

    def __init__(
        self,
        num_classes: int | None = None,
        include_background: bool = True,
        per_class: bool = False,
        input_format: InputFormat | None = None,
        *,
        compat: SemanticCompat = "standard",
        average: Average | None = "macro",
        zero_division: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.zero_division = check_zero_division(zero_division)
        if self.zero_division is not None and (
            compat != "standard" or kwargs.get("aggregation", "dataset") != "dataset"
        ):
            fail("zero_division", "None with compat='torchmetrics' or aggregation='image'", zero_division)
        # num_classes=None (torchmetrics' default): taken from the first one-hot batch, which needs
        # torchmetrics' rules (the confusion state of the others has a fixed size from the start)
        with tm_message(MEAN_IOU_SENTENCES):  # torchmetrics' sentences lead the argument errors
            self._lazy = num_classes is None
            if self._lazy and compat != "torchmetrics":
                fail("num_classes", "an integer >= 1 (None only with compat='torchmetrics')", None, TypeError)
            super().__init__(
                1 if num_classes is None else num_classes,
                include_background=include_background,
                per_class=per_class,
                input_format=default_input_format(compat, input_format),
                **kwargs,
            )
            self._key = average_key("iou", average, self.per_class)
            self.average = "none" if self._key == "iou" else average
            self.compat = check_semantic_compat(self, compat)
            if self.compat == "torchmetrics" and self._key not in ("miou", "iou"):
                fail("average", "'macro' or 'none' with compat='torchmetrics' (its MeanIoU)", average)
            if self._lazy and self.input_format not in ("one-hot", "mixed"):
                tm = "Argument `num_classes` must be provided when `input_format` is 'index'"
                fail("input_format", "'one-hot' or 'mixed' with num_classes=None", self.input_format, tm=tm)
            if self.compat == "torchmetrics":  # with num_classes=None, placeholders until the first batch
                add_overlap_states(self, self._width())

    def _width(self) -> int:
        """Values per image in the state: per class, or one (the flat mean needs only the sums)."""
        return num_out(self) if self.per_class else 1

    def _infer_classes(self, preds: Tensor, target: Tensor) -> None:
        """num_classes=None: the class axis of the first batch's one-hot input; the states follow."""
        one_hot = target if self.input_format == "mixed" and target.ndim == preds.ndim + 1 else preds
        if not isinstance(one_hot, Tensor) or one_hot.ndim < 3 or one_hot.shape[1] < 1:
            found = tuple(one_hot.shape) if isinstance(one_hot, Tensor) else type(one_hot).__name__
            tm = "Expected argument `num_classes` to be a positive integer" if one_hot.ndim >= 3 else None
            fail("preds", "one-hot masks (N, C, *spatial) to take num_classes from", Found(f"{found}"), tm=tm)
        self.num_classes = int(one_hot.shape[1])
        add_overlap_states(self, self._width())
        for name in ("overlap_score", "overlap_count", "overlap_invalid"):
            setattr(self, name, getattr(self, name).to(one_hot.device))
        self._lazy = False

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch (see :meth:`_SemanticMetric.update`; one-hot forms with ``input_format``)."""
        if self._lazy:
            self._infer_classes(preds, target)
        if self.compat == "torchmetrics":
            update_overlaps(self, preds, target, iou_from_overlaps)
        else:
            super().update(preds, target)

    def compute(self) -> Tensor:
        """mIoU (float64 scalar) or per-class IoU (float64 ``(C,)``, NaN where undefined);
        float32 with torchmetrics' -1 under ``compat="torchmetrics"``."""
        if self._lazy:
            fail("num_classes", "known before compute(): given, or taken from a first update", None)
        if self.compat == "torchmetrics":
            return mean_iou_from_overlap_state(self)
        if self.zero_division is not None and self._key == "iou":
            return _multiclass(self, self._key, self.zero_division)
        value = self._all_scores(self._key)[self._key]
        if self.zero_division is not None and self._key == "iou_micro":  # nothing counted: 0 / 0
            value = value.nan_to_num(nan=self.zero_division)
        return value


class DiceScore(_SemanticMetric):
    """Dice score (F1) per class or averaged (``average``: macro, micro, weighted, none or None).

    Takes torchmetrics' ``segmentation.DiceScore(num_classes, include_background, average,
    aggregation_level, input_format)`` arguments, in its order. ``aggregation_level``: ``"global"``
    (dataset-level, the default here) or ``"samplewise"`` (per image, then the mean over images:
    torchmetrics' default), the same as ``aggregation="dataset"`` / ``"image"``.
    ``compat="torchmetrics"`` gives torchmetrics' numbers exactly (float32, its NaN rules, its
    default ``"samplewise"``, multi-hot one-hot pixels counted per class).

    Example:
        >>> import torch
        >>> metric = DiceScore(num_classes=3, average="none")
        >>> metric.update(torch.tensor([[[0, 1, 1], [2, 2, 0]]]), torch.tensor([[[0, 1, 2], [2, 2, 1]]]))
        >>> metric.compute()
        tensor([0.6667, 0.5000, 0.8000], dtype=torch.float64)
    """

    def __init__(
        self,
        num_classes: int,
        include_background: bool = True,
        average: DiceAverage | None = "macro",
        aggregation_level: Literal["samplewise", "global"] | None = None,
        input_format: InputFormat | None = None,
        *,
        compat: SemanticCompat = "standard",
        **kwargs: Any,
    ) -> None:
        with tm_message(DICE_SENTENCES):  # torchmetrics' sentences lead the argument errors
            average = "none" if average is None else average
            check_choice("average", average, DICE_AVERAGES)
            check_choice("compat", compat, SEMANTIC_COMPAT)
            aggregation = kwargs.pop("aggregation", "dataset")
            level = check_aggregation_level(aggregation_level, compat, aggregation)
            if compat == "standard":
                aggregation = "dataset" if level == "global" else "image"
            super().__init__(
                num_classes,
                include_background=include_background,
                aggregation=aggregation,
                input_format=default_input_format(compat, input_format),
                **kwargs,
            )
            self.average = "none" if self.per_class else average
            self.aggregation_level = level
            self.compat = check_semantic_compat(self, compat)
            if self.compat == "torchmetrics":
                width = num_out(self) if self.average == "none" else 1
                add_overlap_states(self, None if level == "global" else width)
                # the per-image values depend on average and level, unlike the shared confusion matrix
                rules = [DICE_AVERAGES.index(self.average), float(level == "global")]
                add_config_state(self, [*self.config.tolist(), *rules])

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch (see :meth:`_SemanticMetric.update`; one-hot forms with ``input_format``)."""
        if self.compat != "torchmetrics":
            super().update(preds, target)
            return
        per_image = (
            None if self.aggregation_level == "global" else partial(dice_from_overlaps, average=self.average)
        )
        update_overlaps(self, preds, target, per_image)

    def compute(self) -> Tensor:
        """The Dice value that ``average`` asks for, float64 (float32 under ``compat="torchmetrics"``)."""
        if self.compat == "torchmetrics":
            return dice_from_overlap_state(self)
        key = average_key("dice", self.average)
        return self._all_scores(key)[key]


class PixelAccuracy(_SemanticMetric):
    """Fraction of non-ignored pixels predicted correctly (``aAcc``).

    Example:
        >>> import torch
        >>> metric = PixelAccuracy(num_classes=3)
        >>> metric.update(torch.tensor([[[0, 1, 1], [2, 2, 0]]]), torch.tensor([[[0, 1, 2], [2, 2, 1]]]))
        >>> metric.compute()
        tensor(0.6667, dtype=torch.float64)
    """

    def compute(self) -> Tensor:
        """Pixel accuracy, float64 scalar."""
        return self._all_scores("pixel_accuracy")["pixel_accuracy"]


class MeanAccuracy(_SemanticMetric):
    """Mean class accuracy (``mAcc``): per-class recall averaged over the classes in the target.

    ``average`` (torchmetrics' ``MulticlassAccuracy`` option): ``"macro"`` (mAcc), ``"micro"`` and
    ``"weighted"`` (both the pooled pixel accuracy of the kept classes) or ``"none"``/None. Its other
    options: ``top_k`` (a pixel counts as a hit when its target class is among its ``k`` highest
    scores) and ``multidim_average="samplewise"`` (one value per sample, ``(S,)`` or ``(S, C)``),
    kept as per-class counts (per sample), never pixels. ``compat="torchmetrics"`` gives its numbers:
    a class without target pixels scores 0, and its macro mean also counts a class that is only
    predicted.

    Example:
        >>> import torch
        >>> metric = MeanAccuracy(num_classes=3)
        >>> metric.update(torch.tensor([[[0, 1, 1], [2, 2, 0]]]), torch.tensor([[[0, 1, 2], [2, 2, 1]]]))
        >>> round(metric.compute().item(), 4)
        0.7222
    """

    def __init__(
        self,
        num_classes: int | None,
        *,
        average: Average | None = "macro",
        top_k: int = 1,
        multidim_average: Literal["global", "samplewise"] = "global",
        compat: Literal["standard", "torchmetrics"] = "standard",
        **kwargs: Any,
    ) -> None:
        # torchmetrics' MulticlassAccuracy(num_classes=None): the pooled accuracy only, no classes
        self._pooled_only = num_classes is None
        if self._pooled_only and (average != "micro" or top_k != 1 or multidim_average != "global"):
            fail(
                "num_classes",
                "an integer >= 1 (None only with average='micro', top_k=1, multidim_average='global')",
                None,
                tm="Argument `num_classes` can only be `None` for `average='micro'`",
            )
        super().__init__(1 if num_classes is None else num_classes, **kwargs)
        if self._pooled_only:  # hits and non-ignored pixels: labels of any value count
            self.add_state("pooled", default=torch.zeros(2, dtype=torch.int64), dist_reduce_fx="sum")
        check_choice("compat", compat, ["standard", "torchmetrics"])
        check_choice("multidim_average", multidim_average, ["global", "samplewise"])
        self.top_k = check_positive_int("top_k", top_k)
        if self.top_k > self.num_classes:
            fail("top_k", f"at most num_classes ({self.num_classes})", top_k)
        if compat == "torchmetrics" and self.aggregation != "dataset":
            fail("aggregation", "'dataset' with compat='torchmetrics'", self.aggregation)
        self.compat, self.multidim_average = compat, multidim_average
        self._key = average_key("accuracy", average, self.per_class)
        self.average = "none" if self._key == "accuracy" else average
        # torchmetrics' MulticlassAccuracy options that a confusion matrix of top-1 labels cannot
        # hold: (hits, support, predicted) counts per class, for the batch or per sample
        self._counts = self.top_k > 1 or multidim_average == "samplewise"
        if self._counts:
            if (
                not self.include_background
                or self.input_format not in (None, "index")
                or self.aggregation != "dataset"
            ):
                fail(
                    "top_k",
                    "1 with include_background=False, a one-hot input_format or aggregation='image' "
                    "(and multidim_average 'global')",
                    top_k,
                )
            if multidim_average == "samplewise":
                self.add_state("sample_counts", default=[], dist_reduce_fx="cat")
            else:
                zeros = torch.zeros(3, self.num_classes, dtype=torch.int64)
                self.add_state("topk_counts", default=zeros, dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch (see :meth:`_SemanticMetric.update`); with ``top_k`` > 1, ``preds`` must be
        scores ``(N, C, ...)``."""
        if self._pooled_only:
            self.pooled = self.pooled + pooled_accuracy_counts(preds, target, self.ignore_index)
            return
        if self.top_k > 1 and (
            not isinstance(preds, Tensor) or not preds.dtype.is_floating_point or preds.ndim < 2
        ):
            found = Found(f"{preds.dtype} {tuple(preds.shape)}") if isinstance(preds, Tensor) else preds
            fail("preds", f"scores (N, C, ...) with top_k={self.top_k}", found, TypeError)
        super().update(preds, target)  # checks everything (the state unchanged on failure)
        if not self._counts:
            return
        ranked = preds if self.top_k > 1 else labels_from_preds(preds)[0]
        per_sample = self.multidim_average == "samplewise"
        counts = accuracy_counts(ranked, target, self.num_classes, self.ignore_index, self.top_k, per_sample)
        if per_sample:
            self.sample_counts.append(counts)
        else:
            self.topk_counts = self.topk_counts + counts

    def _sync_dist(
        self, dist_sync_fn: Callable = gather_all_tensors, process_group: Any | None = None
    ) -> None:
        """Give a rank without samples an empty ``(0, 3, C)`` record before gathering."""
        if (
            self.multidim_average == "samplewise"
            and isinstance(self.sample_counts, list)
            and not self.sample_counts
        ):
            self.sample_counts = [torch.zeros(0, 3, self.num_classes, dtype=torch.int64, device=self.device)]
        super()._sync_dist(dist_sync_fn, process_group)

    def compute(self) -> Tensor:
        """mAcc (float64 scalar), or the ``average`` asked for (per class: float64 ``(C,)``); per
        sample with ``multidim_average="samplewise"`` (``(S,)`` or ``(S, C)``)."""
        tm_rules = self.compat == "torchmetrics"
        if self._pooled_only:
            hits, total = self.pooled.double().unbind()
            return torch.where(total > 0, hits / total.clamp(min=1), 0.0 if tm_rules else torch.nan)
        average = "none" if self._key == "accuracy" else str(self.average)
        if self.multidim_average == "samplewise":
            counts = self.sample_counts
            if isinstance(counts, list):
                counts = (
                    dim_zero_cat(counts) if counts else torch.zeros(0, 3, self.num_classes, dtype=torch.int64)
                )
            return accuracy_from_counts(counts, average, tm_rules, self.top_k)
        if self.top_k > 1:
            return accuracy_from_counts(self.topk_counts, average, tm_rules, self.top_k)
        if tm_rules and self._key in ("accuracy", "mean_accuracy"):
            return _multiclass(self, self._key, 0.0)
        return self._all_scores(self._key)[self._key]


class FrequencyWeightedIoU(_SemanticMetric):
    """IoU weighted by each class's share of target pixels (``fwIoU``, as detectron2).

    Example:
        >>> import torch
        >>> metric = FrequencyWeightedIoU(num_classes=3)
        >>> metric.update(torch.tensor([[[0, 1, 1], [2, 2, 0]]]), torch.tensor([[[0, 1, 2], [2, 2, 1]]]))
        >>> round(metric.compute().item(), 4)
        0.5278
    """

    def compute(self) -> Tensor:
        """fwIoU, float64 scalar."""
        return self._all_scores("fwiou")["fwiou"]


class SemanticMetrics(_SemanticMetric):
    """Every semantic score at once, as a dict of tensors for ``self.log_dict``.

    Keys: ``miou``, ``mdice``, ``pixel_accuracy``, ``mean_accuracy``, ``fwiou`` (float64 scalars);
    with ``per_class=True`` also ``iou_per_class``, ``dice_per_class``, ``accuracy_per_class``
    (float64 ``(C,)``; :func:`torchseg_metrics.flatten_for_logging` turns them into scalars).

    Example:
        >>> import torch
        >>> metric = SemanticMetrics(num_classes=3)
        >>> metric.update(torch.tensor([[[0, 1, 1], [2, 2, 0]]]), torch.tensor([[[0, 1, 2], [2, 2, 1]]]))
        >>> {k: round(v.item(), 4) for k, v in metric.compute().items()}
        {'miou': 0.5, 'mdice': 0.6556, 'pixel_accuracy': 0.6667, 'mean_accuracy': 0.7222, 'fwiou': 0.5278}
    """

    def compute(self) -> dict[str, Tensor]:
        """The dict of scores described in the class docstring."""
        scores = self._all_scores()
        result = {k: scores[k] for k in ("miou", "mdice", "pixel_accuracy", "mean_accuracy", "fwiou")}
        if self.per_class:
            result.update({f"{k}_per_class": scores[k] for k in ("iou", "dice", "accuracy")})
        return result
