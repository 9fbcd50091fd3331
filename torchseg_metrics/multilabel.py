"""Multi-label segmentation metrics (overlapping per-class masks), as ``torchmetrics.Metric`` classes.

See :mod:`torchseg_metrics.functional.semantic.multilabel` for inputs and the **Aggregation** rules. State:
an int64 ``(C, 4)`` count matrix ``[tn, fp, fn, tp]`` (plus per-class sums of per-image scores with
``aggregation="image"``), summed across processes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor
from torchmetrics import Metric

from torchseg_metrics._checks import check_bool, check_choice, check_positive_int, check_probability
from torchseg_metrics._config_state import add_config_state
from torchseg_metrics.functional.semantic.multilabel import (
    MULTILABEL_SCORES,
    multilabel_scores,
    multilabel_stats_update,
    raise_for_invalid_multilabel,
)
from torchseg_metrics.functional.semantic.stats import AGGREGATIONS, Aggregation

__all__ = ["MultilabelDiceScore", "MultilabelMeanIoU"]


class _MultilabelMetric(Metric):
    is_differentiable: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = True
    full_state_update: ClassVar[bool] = False
    plot_lower_bound: ClassVar[float] = 0.0
    plot_upper_bound: ClassVar[float] = 1.0
    _score: ClassVar[str]

    def __init__(
        self,
        num_classes: int,
        *,
        threshold: float = 0.5,
        per_class: bool = False,
        aggregation: Aggregation = "dataset",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.threshold = check_probability("threshold", threshold)
        self.per_class = check_bool("per_class", per_class)
        check_choice("aggregation", aggregation, AGGREGATIONS)
        self.aggregation = aggregation
        c = self.num_classes
        self.add_state("counts", torch.zeros(c, 4, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("num_invalid", torch.zeros(2, dtype=torch.int64), dist_reduce_fx="sum")
        add_config_state(self, [self.threshold])
        if aggregation == "image":
            k = len(MULTILABEL_SCORES)
            self.add_state("image_sum", torch.zeros(k, c, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state("image_count", torch.zeros(k, c, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch of ``(N, C, ...)`` masks (``preds`` may be probabilities).

        Raises:
            TypeError, ValueError: for bad dtypes or shapes (state unchanged). Values outside {0, 1}
                and NaN scores raise at once for CPU tensors, else in ``compute()``.
        """
        per_image = self.aggregation == "image"
        counts, invalid = multilabel_stats_update(
            preds, target, self.num_classes, threshold=self.threshold, per_image=per_image
        )
        if counts.device.type == "cpu":
            raise_for_invalid_multilabel(invalid)  # host data: check now, before the state changes
        if per_image:
            scores = multilabel_scores(counts)
            stacked = torch.stack([scores[k] for k in MULTILABEL_SCORES], dim=1)  # (N, K, C)
            # out of place: states may sit in memory shared between ddp_spawn ranks
            self.image_sum = self.image_sum + stacked.nansum(0)
            self.image_count = self.image_count + (~stacked.isnan()).sum(0)
            counts = counts.sum(0)
        self.counts = self.counts + counts
        self.num_invalid = self.num_invalid + invalid

    def compute(self) -> Tensor:
        """Per-class score ``(C,)`` with ``per_class=True``, else its NaN-skipping mean; float64."""
        raise_for_invalid_multilabel(self.num_invalid)
        if self.aggregation == "image":
            values = (
                self.image_sum[MULTILABEL_SCORES.index(self._score)]
                / self.image_count[MULTILABEL_SCORES.index(self._score)]
            )
        else:
            values = multilabel_scores(self.counts)[self._score]
        return values if self.per_class else values.nanmean()

    def plot(self, val: Any = None, ax: Any = None) -> Any:
        """Plot a value (``compute()`` by default) as torchmetrics' ``plot()``, returning ``(fig, ax)``.

        A per-class ``(C,)`` value is drawn as bars; a scalar or a list of values over steps by
        torchmetrics' ``Metric._plot``. Needs matplotlib.
        """
        from torchseg_metrics.reporting.plots import plot_metric_value

        return plot_metric_value(self, val, ax)


class MultilabelMeanIoU(_MultilabelMetric):
    """IoU of overlapping per-class masks (e.g. BraTS regions), per class or averaged.

    Example:
        >>> import torch
        >>> target = torch.tensor([[[[1, 1, 0]], [[1, 1, 1]]]], dtype=torch.bool)   # (1, 2, 1, 3)
        >>> preds = torch.tensor([[[[1, 0, 0]], [[1, 1, 1]]]], dtype=torch.bool)
        >>> metric = MultilabelMeanIoU(num_classes=2, per_class=True)
        >>> metric.update(preds, target)
        >>> metric.compute()
        tensor([0.5000, 1.0000], dtype=torch.float64)
    """

    _score: ClassVar[str] = "iou"


class MultilabelDiceScore(_MultilabelMetric):
    """Dice of overlapping per-class masks (e.g. BraTS regions), per class or averaged.

    Example:
        >>> import torch
        >>> target = torch.tensor([[[[1, 1, 0]], [[1, 1, 1]]]], dtype=torch.bool)   # (1, 2, 1, 3)
        >>> preds = torch.tensor([[[[0.9, 0.2, 0.1]], [[0.8, 0.7, 0.6]]]])          # probabilities
        >>> metric = MultilabelDiceScore(num_classes=2, per_class=True)
        >>> metric.update(preds, target)
        >>> metric.compute()
        tensor([0.6667, 1.0000], dtype=torch.float64)
    """

    _score: ClassVar[str] = "dice"
