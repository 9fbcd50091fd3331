"""Surface-distance metrics as ``torchmetrics.Metric`` classes: Hausdorff (HD95), ASSD, surface Dice.

Each image and class gives one value (see
:mod:`torchseg_metrics.functional.semantic.surface_distance` for the definitions, MONAI's), kept
in a ``"cat"`` state of per-image ``(images, classes)`` float64 rows: small, synchronised across
processes. ``compute()`` aggregates as MONAI's ``reduction="mean"`` (each image's mean over its
defined classes, then the mean over the images; NaN values, from empty masks, are left out, +inf
counts) or, with ``per_class=True``, as ``"mean_batch"`` (per class, over images). Where nothing is
defined the result is NaN (MONAI returns 0).
"""

import math
from collections.abc import Callable, Sequence
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
    check_positive_int,
    check_tensor,
    fail,
    is_integer_dtype,
)
from torchseg_metrics._config_state import add_config_state
from torchseg_metrics.functional.semantic.surface_distance import SurfaceMethod, surface_scores

__all__ = ["AverageSurfaceDistance", "HausdorffDistance", "SurfaceDice"]


def _check_spacing(spacing: object) -> tuple[float, ...] | None:
    if spacing is None:
        return None
    values = tuple(spacing) if isinstance(spacing, Sequence) else None  # type: ignore[arg-type]
    if not values or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values
    ):
        fail("spacing", "None or a sequence of positive finite voxel sizes, one per spatial axis", spacing)
    return tuple(float(v) for v in values)  # type: ignore[union-attr]


class _SurfaceMetric(Metric):
    """Shared input handling and state; subclasses pick the score column and its options."""

    is_differentiable: ClassVar[bool] = False
    full_state_update: ClassVar[bool] = False
    _column: ClassVar[int] = 0

    # (no ``from __future__ import annotations`` in this module: TorchScript reads these)
    values: list[Tensor]
    num_invalid: Tensor

    def __init__(
        self,
        num_classes: int,
        *,
        include_background: bool = False,
        per_class: bool = False,
        spacing: Sequence[float] | None = None,
        input_format: Literal["index", "one-hot"] = "index",
        method: SurfaceMethod = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.include_background = check_bool("include_background", include_background)
        self.per_class = check_bool("per_class", per_class)
        self.spacing = _check_spacing(spacing)
        check_choice("input_format", input_format, ["index", "one-hot"])
        check_choice("method", method, ["auto", "points", "dense"])
        self.input_format, self.method = input_format, method
        self.add_state("values", default=[], dist_reduce_fx="cat")
        self.add_state("num_invalid", default=torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def _add_config(self) -> None:
        """The settings that change the per-image values (score, options, classes scored, spacing),
        so that ``MetricCollection`` never lets two differing metrics share the ``values`` state."""
        options = [None if v is None else float(v) for v in self._options().values()]
        fmt = float(self.input_format == "one-hot")
        config = [float(self._column), *options, float(self.include_background), fmt, *(self.spacing or ())]
        add_config_state(self, config)

    def _masks(self, preds: object, target: object) -> tuple[Tensor, Tensor, Tensor]:
        """bool ``(N, C', *spatial)`` masks of both inputs and the count of invalid values."""
        preds, target = check_tensor("preds", preds), check_tensor("target", target)
        if preds.shape != target.shape:
            fail(
                "target",
                f"of the shape of `preds` {tuple(preds.shape)}",
                Found(f"shape {tuple(target.shape)}"),
            )
        c = self.num_classes
        if self.input_format == "index":
            if preds.ndim not in (3, 4):
                fail(
                    "preds",
                    "label maps of shape (N, H, W) or (N, D, H, W)",
                    Found(f"shape {tuple(preds.shape)}"),
                )
            out, bad = [], torch.zeros((), dtype=torch.int64, device=preds.device)
            first = 0 if self.include_background or c == 1 else 1  # only the scored classes' masks
            classes = torch.arange(first, c, device=preds.device).view(
                1, c - first, *([1] * (preds.ndim - 1))
            )
            for name, x in (("preds", preds), ("target", target)):
                if not is_integer_dtype(x.dtype) and x.dtype != torch.bool:
                    fail(name, "an integer tensor of class indices", Found(f"dtype {x.dtype}"), TypeError)
                bad = bad + ((x < 0) | (x >= c)).sum()
                out.append(x.unsqueeze(1) == classes)
            p, t = out
        else:
            if preds.ndim not in (4, 5) or preds.shape[1] != c:
                fail(
                    "preds",
                    f"one-hot masks of shape (N, {c}, H, W) or (N, {c}, D, H, W)",
                    Found(f"shape {tuple(preds.shape)}"),
                )
            bad = torch.zeros((), dtype=torch.int64, device=preds.device)
            for name, x in (("preds", preds), ("target", target)):
                if x.dtype.is_complex:
                    fail(name, "bool or 0/1 masks", Found(f"dtype {x.dtype}"), TypeError)
                if x.dtype != torch.bool:
                    bad = bad + ((x != 0) & (x != 1)).sum()
            p, t = preds != 0, target != 0
            if not self.include_background and c > 1:
                p, t = p[:, 1:], t[:, 1:]
        if self.spacing is not None and len(self.spacing) != p.ndim - 2:
            fail("spacing", f"{p.ndim - 2} voxel sizes for {p.ndim - 2}-D inputs", self.spacing)
        return p, t, bad

    def _options(self) -> dict[str, Any]:
        return {}

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch: label maps ``(N, *spatial)`` (``input_format="index"``) or one-hot masks
        ``(N, C, *spatial)``; 2-D or 3-D. A failing update leaves the state unchanged."""
        p, t, bad = self._masks(preds, target)
        n, k = p.shape[:2]
        if p.device.type == "cpu" and int(bad):  # host data: reading the count is no device sync
            fail(
                "target",
                "class indices in [0, num_classes) (or 0/1 masks)",
                Found(f"{int(bad)} invalid values"),
            )
        scores = surface_scores(
            p.reshape(n * k, *p.shape[2:]),
            t.reshape(n * k, *t.shape[2:]),
            self.spacing,
            method=self.method,  # type: ignore[arg-type]
            **self._options(),
        )
        self.values.append(scores[:, self._column].reshape(n, k))
        self.num_invalid = self.num_invalid + bad

    def _width(self) -> int:
        return self.num_classes - (0 if self.include_background or self.num_classes == 1 else 1)

    def _rows(self) -> Tensor:
        if isinstance(self.values, Tensor):
            return self.values
        if not self.values:
            return torch.zeros(0, self._width(), dtype=torch.float64, device=self.device)
        return dim_zero_cat(self.values)

    def _sync_dist(
        self, dist_sync_fn: Callable = gather_all_tensors, process_group: Any | None = None
    ) -> None:
        """Give a rank without images an empty ``(0, classes)`` block before gathering."""
        if isinstance(self.values, list) and not self.values:
            self.values = [torch.zeros(0, self._width(), dtype=torch.float64, device=self.device)]
        super()._sync_dist(dist_sync_fn, process_group)

    def per_image(self) -> Tensor:
        """The ``(images, classes)`` float64 values of every image seen by every process, in (rank,
        update) order: MONAI's ``reduction="none"``."""
        with self.sync_context():
            return self._rows().clone()

    def compute(self) -> Tensor:
        """The mean of the defined values (float64 scalar), or per class with ``per_class=True``."""
        if int(self.num_invalid):
            fail(
                "target",
                "class indices in [0, num_classes) (or 0/1 masks)",
                Found(f"{int(self.num_invalid)} invalid values"),
            )
        values = self._rows()
        defined = ~values.isnan()
        zeroed = torch.where(defined, values, 0.0)
        if self.per_class:  # MONAI's "mean_batch": per class, over the images where it is defined
            return zeroed.sum(0) / defined.sum(0)
        # MONAI's "mean": each image's mean over its defined classes, then the mean over the images
        # that have one (NaN here where MONAI returns 0 for nothing defined)
        per_image = zeroed.sum(1) / defined.sum(1)
        has = defined.any(1)
        return torch.where(has, per_image, 0.0).sum() / has.sum()


class HausdorffDistance(_SurfaceMetric):
    """Hausdorff distance between the surfaces of predicted and target class masks, per image and class.

    Args:
        num_classes: ``C`` (label maps ``0 .. C-1`` or one-hot channels).
        percentile: e.g. 95 for HD95 (each direction's 95th percentile); None: the maximum.
        directed: prediction -> target only.
        include_background: score class 0 too (MONAI's default: False).
        per_class: :meth:`compute` gives one mean per class over the images.
        spacing: voxel size per spatial axis (distances in those units).
        input_format: ``"index"`` (label maps) or ``"one-hot"`` (``(N, C, ...)`` masks, as MONAI).
        method: ``"auto"`` (point sets on the CPU, a dense exact distance transform elsewhere,
            sync-free), ``"points"`` or ``"dense"``.

    Aggregation:
        Per image and class (NaN when both surfaces are empty, +inf when one is), then MONAI's
        ``reduction="mean"`` (per image over classes, then over images); ``per_class``:
        ``"mean_batch"``.

    Example:
        >>> p = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> p[0, 2:5, 2:5] = 1
        >>> metric = HausdorffDistance(num_classes=2)
        >>> metric.update(p, torch.roll(p, 2, dims=2))
        >>> metric.compute()
        tensor(2., dtype=torch.float64)
    """

    higher_is_better: ClassVar[bool] = False
    plot_lower_bound: ClassVar[float] = 0.0

    def __init__(
        self, num_classes: int, *, percentile: float | None = None, directed: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(num_classes, **kwargs)
        if percentile is not None and (
            isinstance(percentile, bool)
            or not isinstance(percentile, (int, float))
            or not 0 <= percentile <= 100
        ):
            fail("percentile", "None or a number in [0, 100]", percentile)
        self.percentile = percentile
        self.directed = check_bool("directed", directed)
        self._add_config()

    def _options(self) -> dict[str, Any]:
        return {"percentile": self.percentile, "directed": self.directed}


class AverageSurfaceDistance(_SurfaceMetric):
    """Average symmetric surface distance (ASSD): the mean of the distances of both directions.

    Arguments, inputs and aggregation as :class:`HausdorffDistance` (without ``percentile`` and
    ``directed``); MONAI's ``SurfaceDistanceMetric(symmetric=True)``.

    Example:
        >>> p = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> p[0, 2:5, 2:5] = 1
        >>> metric = AverageSurfaceDistance(num_classes=2)
        >>> metric.update(p, torch.roll(p, 1, dims=2))
        >>> metric.compute()
        tensor(0.5000, dtype=torch.float64)
    """

    higher_is_better: ClassVar[bool] = False
    plot_lower_bound: ClassVar[float] = 0.0
    _column: ClassVar[int] = 1

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_classes, **kwargs)
        self._add_config()


class SurfaceDice(_SurfaceMetric):
    """Normalised surface Dice at a tolerance: the share of both surfaces within ``tolerance`` of the other.

    Args:
        num_classes: ``C``.
        tolerance: in the units of ``spacing`` (MONAI's ``class_thresholds``, one for all classes).
        kwargs: as :class:`HausdorffDistance` (``include_background``, ``per_class``, ``spacing``, ...).

    Aggregation:
        Per image and class (NaN when both surfaces are empty, 0 when one is), then the mean.

    Example:
        >>> p = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> p[0, 2:5, 2:5] = 1
        >>> metric = SurfaceDice(num_classes=2, tolerance=1.0)
        >>> metric.update(p, torch.roll(p, 2, dims=2))
        >>> metric.compute()
        tensor(0.6250, dtype=torch.float64)
    """

    higher_is_better: ClassVar[bool] = True
    plot_lower_bound: ClassVar[float] = 0.0
    plot_upper_bound: ClassVar[float] = 1.0
    _column: ClassVar[int] = 2

    def __init__(self, num_classes: int, *, tolerance: float = 1.0, **kwargs: Any) -> None:
        super().__init__(num_classes, **kwargs)
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
            fail("tolerance", "a number >= 0", tolerance)
        self.tolerance = float(tolerance)
        self._add_config()

    def _options(self) -> dict[str, Any]:
        return {"tolerance": self.tolerance}
