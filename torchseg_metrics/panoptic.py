"""Panoptic quality as ``torchmetrics.Metric`` classes over one per-class ``(iou_sum, tp, fp, fn)`` statistic.

A drop-in for ``torchmetrics.detection.PanopticQuality`` / ``ModifiedPanopticQuality`` (same
constructor, inputs and output shapes), with panopticapi's rules by default, crowd regions,
``compat="torchmetrics"`` for torchmetrics' numbers, and :meth:`PanopticQuality.summary` for
panopticapi's All/Things/Stuff table. Rules, crowd and void are described in
:mod:`torchseg_metrics.functional.panoptic.metrics`.

State: ``iou_sum`` float64 ``(C,)``, ``tp``/``fp``/``fn`` int64 ``(C,)`` and ``bad_values`` int64
``(4,)`` (offending pixels counted on CUDA, see *Raises*), all summed across processes. No maps or
per-image records are kept.
"""

from collections.abc import Collection
from typing import Any, ClassVar

import torch
from torch import Tensor
from torchmetrics import Metric

from torchseg_metrics._checks import check_bool
from torchseg_metrics._config_state import add_config_state
from torchseg_metrics.functional.boundary import BOUNDARY_ROUNDINGS
from torchseg_metrics.functional.panoptic.pairing import Compat, _panoptic_stats_update
from torchseg_metrics.functional.panoptic.scores import (
    check_boundary_args,
    check_compat,
    check_panoptic_inputs,
    panoptic_quality_from_stats,
    panoptic_summary_from_stats,
    parse_categories,
    raise_on_bad_values,
    resolve_unknown_target,
    void_categories,
)

__all__ = ["ModifiedPanopticQuality", "PanopticQuality"]


class PanopticQuality(Metric):
    """Panoptic quality (PQ, SQ, RQ) with panopticapi's rules, computed on the device.

    Args:
        things: thing category ids.
        stuffs: stuff category ids, disjoint from ``things``.
        allow_unknown_preds_category: prediction pixels of categories outside ``things`` and
            ``stuffs`` are void (panopticapi's id 0) instead of an error.
        return_sq_and_rq: :meth:`compute` returns [PQ, SQ, RQ].
        return_per_class: :meth:`compute` returns per-class values (things sorted, then stuffs sorted).
        compat: ``"panopticapi"`` (default) or ``"torchmetrics"`` (torchmetrics 1.9.0's numbers).
        allow_unknown_target_category: target pixels of every category outside ``things`` and
            ``stuffs`` are void, instead of only those of :attr:`void_categories`; ``None``
            (default) means True with ``compat="torchmetrics"`` (torchmetrics' rule), else False.
        boundary: boundary PQ (Cheng et al., boundary-iou-api's panoptic evaluation): a pair's IoU
            is min(mask IoU, boundary IoU) for the match and the sum; panopticapi rules otherwise.
        boundary_dilation_ratio: the band width as a fraction of the image diagonal (0.02).
        boundary_rounding: ``"boundary-iou-api"`` (Python's ``round``) or ``"faster-coco-eval"``.
        kwargs: passed to ``torchmetrics.Metric``.

    Inputs to ``update``:
        preds (Tensor[B, *spatial, 2] int): (category_id, instance_id) per pixel.
        target (Tensor[B, *spatial, 2] int): (category_id, instance_id); void pixels have a category
            of :attr:`void_categories` (0 when 0 is not a category, and ``1 + max(things | stuffs)``).
        target_crowd (Tensor[B, *spatial] bool | None): target pixels that belong to crowd segments
            (panopticapi's ``iscrowd``); not accepted with ``compat="torchmetrics"``.

    Output of ``compute`` (float64): scalar PQ; ``(3,)`` [PQ, SQ, RQ]; ``(1, C)`` per-class PQ; or
    ``(C, 3)`` with both flags, as torchmetrics returns them.

    Aggregation:
        Segments are paired within each image; per-class sums run over every image seen (all
        processes), and PQ/SQ/RQ are means over classes with ``tp + fp + fn > 0`` (NaN if none).
        Classes with ``tp + fp + fn = 0`` are NaN in per-class output (0 with ``compat="torchmetrics"``).

    Raises:
        TypeError: If ``things``/``stuffs`` are not collections of ints, inputs are not integer
            tensors or ``target_crowd`` is not bool.
        ValueError: If categories overlap or are both empty, ``compat`` is unknown, or input shapes
            are wrong. Ids outside ``[0, 2**31 - 1]`` and unknown prediction or target categories
            (when not allowed) raise in ``update`` for CPU tensors; for CUDA tensors they are
            counted without a sync and ``compute``/``summary`` raise. A failing ``update`` leaves
            the state unchanged.

    Example:
        >>> import torch
        >>> target = torch.tensor([[[[1, 1], [1, 1], [7, 0]], [[1, 1], [7, 0], [7, 0]]]])
        >>> preds = torch.tensor([[[[1, 2], [1, 2], [1, 2]], [[1, 2], [1, 2], [7, 0]]]])
        >>> metric = PanopticQuality(things={1}, stuffs={7}, return_sq_and_rq=True)
        >>> metric.update(preds, target)
        >>> metric.compute()
        tensor([0.3000, 0.3000, 0.5000], dtype=torch.float64)
        >>> metric.summary()["Things"]
        {'pq': 0.6, 'sq': 0.6, 'rq': 1.0, 'n': 1}
    """

    is_differentiable: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = True
    full_state_update: ClassVar[bool] = False
    plot_lower_bound: ClassVar[float] = 0.0
    plot_upper_bound: ClassVar[float] = 1.0
    _modified: ClassVar[bool] = False

    iou_sum: Tensor
    tp: Tensor
    fp: Tensor
    fn: Tensor
    bad_values: Tensor

    def __init__(
        self,
        things: Collection[int],
        stuffs: Collection[int],
        allow_unknown_preds_category: bool = False,
        return_sq_and_rq: bool = False,
        return_per_class: bool = False,
        *,
        compat: Compat = "panopticapi",
        allow_unknown_target_category: bool | None = None,
        boundary: bool = False,
        boundary_dilation_ratio: float = 0.02,
        boundary_rounding: str = "boundary-iou-api",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.things, self.stuffs = parse_categories(things, stuffs)
        self.allow_unknown_preds_category = check_bool(
            "allow_unknown_preds_category", allow_unknown_preds_category
        )
        self.return_sq_and_rq = check_bool("return_sq_and_rq", return_sq_and_rq)
        self.return_per_class = check_bool("return_per_class", return_per_class)
        self.compat: Compat = check_compat(compat)
        self.allow_unknown_target_category = resolve_unknown_target(allow_unknown_target_category, compat)
        #: Target categories that mark void (see the ``target`` input).
        self.void_categories = void_categories(self.things, self.stuffs)
        self._target_void = None if self.allow_unknown_target_category else self.void_categories
        self.boundary = check_boundary_args(
            boundary, boundary_dilation_ratio, boundary_rounding, self.compat, self._modified
        )
        #: Where value errors are raised: None = in ``update`` for CPU inputs, else counted for ``compute``.
        self._validate_on_host: bool | None = None
        num_classes = len(self.things) + len(self.stuffs)
        self.add_state("iou_sum", default=torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("tp", "fp", "fn"):
            self.add_state(name, default=torch.zeros(num_classes, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("bad_values", default=torch.zeros(4, dtype=torch.int64), dist_reduce_fx="sum")
        # things as +id, stuffs as -id - 1, then the rules: what changes the statistics of an update
        categories = [*self.things, *(-s - 1 for s in self.stuffs)]
        rules = [self._modified, self.compat == "torchmetrics", self.allow_unknown_preds_category]
        rules.append(self.allow_unknown_target_category)
        rules += [self.boundary[0], BOUNDARY_ROUNDINGS.index(self.boundary[1])] if self.boundary else [-1.0]
        add_config_state(self, [*categories, *rules])

    def update(self, preds: Tensor, target: Tensor, target_crowd: Tensor | None = None) -> None:
        """Pair the segments of a batch and add its per-class sums (see the class docstring)."""
        num_classes = len(self.things) + len(self.stuffs)
        preds, target = check_panoptic_inputs(preds, target, target_crowd, self.compat, num_classes)
        stats = _panoptic_stats_update(
            preds,
            target,
            target_crowd,
            things=self.things,
            stuffs=self.stuffs,
            allow_unknown_preds_category=self.allow_unknown_preds_category,
            target_void=self._target_void,
            compat=self.compat,
            boundary=self.boundary,
            modified=self._modified,
        )
        on_host = self._validate_on_host if self._validate_on_host is not None else preds.device.type == "cpu"
        if on_host:
            raise_on_bad_values(stats.bad, self._target_void)  # CPU tensors: reading values is no device sync
        else:
            self.bad_values = self.bad_values + stats.bad  # no sync on CUDA: compute() raises instead
        # out of place: under Lightning's ddp_spawn the states may sit in memory shared by the ranks
        self.iou_sum = self.iou_sum + stats.iou_sum
        self.tp = self.tp + stats.tp
        self.fp = self.fp + stats.fp
        self.fn = self.fn + stats.fn

    def compute(self) -> Tensor:
        """PQ, or the shapes selected by ``return_sq_and_rq`` / ``return_per_class`` (float64)."""
        raise_on_bad_values(self.bad_values, self._target_void)
        return panoptic_quality_from_stats(
            self.iou_sum,
            self.tp,
            self.fp,
            self.fn,
            return_sq_and_rq=self.return_sq_and_rq,
            return_per_class=self.return_per_class,
            compat=self.compat,
        )

    def plot(self, val: Any = None, ax: Any = None) -> Any:
        """Plot a value (``compute()`` by default) as torchmetrics' ``plot()``, returning ``(fig, ax)``.

        Per-class output (``return_per_class=True``) is drawn as PQ bars labelled by category id;
        PQ, [PQ, SQ, RQ] or a list of them over steps by torchmetrics' ``Metric._plot``. Needs matplotlib.
        """
        from torchseg_metrics.reporting.plots import plot_panoptic_value

        return plot_panoptic_value(self, val, ax)

    def summary(self) -> dict[str, Any]:
        """panopticapi's result layout, as Python numbers, synchronised across processes.

        Returns:
            ``{"All" | "Things" | "Stuff": {"pq", "sq", "rq", "n"}, "per_class": {category_id:
            {"pq", "sq", "rq", "tp", "fp", "fn", "iou_sum"}}}``. An empty group gives NaN with
            ``n = 0``; a class with ``tp + fp + fn = 0`` has NaN scores.
        """
        with self.sync_context():
            raise_on_bad_values(self.bad_values, self._target_void)
            return panoptic_summary_from_stats(
                self.iou_sum,
                self.tp,
                self.fp,
                self.fn,
                things=self.things,
                stuffs=self.stuffs,
                compat=self.compat,
            )


class ModifiedPanopticQuality(PanopticQuality):
    """PQ-dagger (Porzi et al., "Seamless Scene Segmentation"): stuff scored by IoU, without threshold.

    Things are scored as in :class:`PanopticQuality`. Stuff is merged per image; every same-class
    (target, prediction) pair with IoU > 0 adds its IoU, ``tp`` counts target stuff segments and
    there are no stuff false positives or negatives. ``compat="torchmetrics"`` reproduces
    ``torchmetrics.detection.ModifiedPanopticQuality`` 1.9.0. Arguments, inputs, outputs,
    **Aggregation** and **Raises** are those of :class:`PanopticQuality`.

    Example:
        >>> import torch
        >>> target = torch.tensor([[[1, 1], [1, 1], [7, 0], [7, 0]]])
        >>> preds = torch.tensor([[[1, 2], [1, 2], [7, 0], [1, 2]]])
        >>> metric = ModifiedPanopticQuality(things={1}, stuffs={7}, return_per_class=True)
        >>> metric(preds, target)
        tensor([[0.6667, 0.5000]], dtype=torch.float64)
    """

    _modified: ClassVar[bool] = True
