"""Semantic Boundary IoU as a ``torchmetrics.Metric``: :class:`BoundaryIoU`.

State: int64 ``(C, 3)`` band counts ``[intersection, pred band, target band]`` and int64 ``(2,)``
invalid-value counts, summed across processes; nothing grows with pixels or images.
"""

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor
from torchmetrics import Metric

from torchseg_metrics._checks import (
    check_bool,
    check_choice,
    check_class_names,
    check_optional_int,
    check_probability,
    fail,
)
from torchseg_metrics._config_state import add_config_state
from torchseg_metrics.functional.boundary import BOUNDARY_ROUNDINGS, BoundaryRounding
from torchseg_metrics.functional.semantic.boundary_iou import (
    boundary_iou_from_stats,
    boundary_iou_stats_update,
)
from torchseg_metrics.functional.semantic.inputs import raise_for_invalid
from torchseg_metrics.functional.semantic.scores import class_mask
from torchseg_metrics.functional.semantic.stats import check_semantic_args

__all__ = ["BoundaryIoU"]


class BoundaryIoU(Metric):
    """Boundary IoU (Cheng et al., CVPR 2021) per class, or its mean over classes.

    For every class, the IoU of the boundary bands of the predicted and the target class masks
    (see :mod:`torchseg_metrics.functional.semantic.boundary_iou`): sloppy edges of large regions, which
    barely move the mIoU, lower it.

    Args:
        num_classes: ``C``.
        ignore_index: target value whose pixels count in no band (bands are found on full maps).
        per_class: :meth:`compute` returns the ``(C,)`` vector instead of the mean.
        include_background: when False, class 0 is dropped from the output and the mean.
        dilation_ratio: band width as a fraction of the image diagonal (boundary-iou-api's 0.02).
        dilation: band width in pixels instead (overrides ``dilation_ratio``).
        rounding: ``"boundary-iou-api"`` (Python's ``round``) or ``"faster-coco-eval"``.
        class_names: names for plots and tables.
        kwargs: ``torchmetrics.Metric`` keyword arguments.

    Inputs of ``update``: ``preds`` labels ``(N, ...)`` or scores ``(N, C, ...)`` (argmax), and
    ``target`` labels ``(N, ...)``, with 2-D or 3-D spatial dimensions.

    Aggregation:
        Dataset-level: band pixel counts summed over every image, then IoU per class; classes with
        no band pixel in target or prediction are NaN and left out of the mean.

    Raises:
        ValueError: bad arguments or shapes; target values outside ``[0, C)`` that are not
            ``ignore_index`` and NaN scores (in ``update`` for CPU tensors, else in ``compute``).
        TypeError: tensors or arguments of the wrong type.

    Example:
        >>> import torch
        >>> target = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> target[0, 2:6, 2:6] = 1
        >>> preds = target.clone()
        >>> preds[0, 2, 2:6] = 0  # the top edge of the square missed
        >>> metric = BoundaryIoU(num_classes=2, per_class=True, dilation=1)
        >>> metric.update(preds, target)
        >>> metric.compute()
        tensor([0.8077, 0.5714], dtype=torch.float64)
    """

    is_differentiable: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = True
    full_state_update: ClassVar[bool] = False
    plot_lower_bound: ClassVar[float] = 0.0
    plot_upper_bound: ClassVar[float] = 1.0

    # (no ``from __future__ import annotations`` in this module: TorchScript reads these)
    counts: Tensor
    num_invalid: Tensor

    def __init__(
        self,
        num_classes: int,
        *,
        ignore_index: int | None = None,
        per_class: bool = False,
        include_background: bool = True,
        dilation_ratio: float = 0.02,
        dilation: int | None = None,
        rounding: BoundaryRounding = "boundary-iou-api",
        class_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.ignore_index = check_semantic_args(
            num_classes, ignore_index, include_background, "dataset", "auto"
        )
        self.per_class = check_bool("per_class", per_class)
        self.include_background = include_background
        self.dilation_ratio = check_probability("dilation_ratio", dilation_ratio)
        self.dilation = check_optional_int("dilation", dilation)
        if self.dilation is not None and self.dilation < 1:
            fail("dilation", "None or an integer >= 1", dilation)
        check_choice("rounding", rounding, BOUNDARY_ROUNDINGS)
        self.rounding = rounding
        self.class_names = check_class_names(class_names, self.num_classes)
        c = self.num_classes
        self.add_state("counts", default=torch.zeros(c, 3, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("num_invalid", default=torch.zeros(2, dtype=torch.int64), dist_reduce_fx="sum")
        config = [
            self.ignore_index,
            self.dilation_ratio,
            self.dilation or 0,
            BOUNDARY_ROUNDINGS.index(rounding),
        ]
        add_config_state(self, config)

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch (see the class docstring); a failing update leaves the state unchanged."""
        counts, invalid = boundary_iou_stats_update(
            preds,
            target,
            self.num_classes,
            ignore_index=self.ignore_index,
            dilation_ratio=self.dilation_ratio,
            dilation=self.dilation,
            rounding=self.rounding,  # type: ignore[arg-type]
        )
        if counts.device.type == "cpu":  # host data: reading two counts is no device sync
            raise_for_invalid(invalid, self.num_classes, self.ignore_index, target)
        self.counts = self.counts + counts  # out of place: states may be shared under ddp_spawn
        self.num_invalid = self.num_invalid + invalid

    def compute(self) -> Tensor:
        """Mean Boundary IoU (float64 scalar) or per class (float64 ``(C,)``, NaN where undefined)."""
        raise_for_invalid(self.num_invalid, self.num_classes, self.ignore_index)
        keep = class_mask(self.num_classes, self.ignore_index, self.include_background, self.counts.device)
        iou = torch.where(keep, boundary_iou_from_stats(self.counts), float("nan"))
        first = 0 if self.include_background else 1
        return iou[first:] if self.per_class else iou.nanmean()
