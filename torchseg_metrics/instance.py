"""COCO-exact instance mask and box AP/AR as a ``torchmetrics.Metric``: :class:`MeanAveragePrecision`.

A thin shell over :mod:`torchseg_metrics.functional.instance.coco_records`: ``update()`` appends the
records of each batch, ``compute()`` reduces them (the functional twin is
:func:`~torchseg_metrics.functional.mean_average_precision`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors
from torchmetrics.utilities.prints import rank_zero_warn

from torchseg_metrics._checks import Found, check_bool, fail
from torchseg_metrics._config_state import add_config_state
from torchseg_metrics.functional.boundary import BOUNDARY_ROUNDINGS
from torchseg_metrics.functional.instance.coco_params import COCO_AREA_RANGES
from torchseg_metrics.functional.instance.coco_records import (
    AR_NAMES,
    STAT_NAMES,
    CocoParams,
    assemble_batches,
    coco_records_update,
    coco_results_from_records,
    parse_coco_params,
    record_layout,
)
from torchseg_metrics.functional.instance.values import VALUE_CHECKS, _item, _raise_for_invalid
from torchseg_metrics.io.coco_writer import keep_image_inputs, write_coco_files

_NO_IMAGE = 2**62  # "no offending image" in the min-reduced value-check states


def _warn_many_detections(limit: int) -> None:
    rank_zero_warn(
        f"Encountered more than {limit} detections in a single image: in each class only the {limit}"
        " with the highest scores take part, as in pycocotools. Raise `max_detection_thresholds` to keep"
        " more, or set the attribute `warn_on_many_detections = False` on the metric to silence this.",
        UserWarning,
    )


class MeanAveragePrecision(Metric):
    """COCO mean average precision and recall for instance masks or boxes, equal to pycocotools.

    A drop-in for ``torchmetrics.detection.MeanAveragePrecision`` (same arguments, inputs and
    output keys) that matches on the input's device in ``update()`` and keeps only compact
    per-detection records, never masks. Numbers equal pycocotools ``COCOeval`` (``stats``, per-class
    AP/AR and the ``precision``/``recall``/``scores`` arrays) to 1e-12; they are float64 tensors.

    Inputs of ``update(preds, target)``, one dict per image:

    - ``preds[i]``: ``masks`` (Tensor[N, H, W] bool, or 0/1 of any number type; ``iou_type="segm"``)
      and/or ``boxes`` (Tensor[N, 4] float or integer, in ``box_format``; ``iou_type="bbox"``),
      ``scores`` (Tensor[N] float), ``labels`` (Tensor[N] int), optional ``area`` (Tensor[N];
      default: mask pixel count, or box area; the COCO reader passes box areas where pycocotools'
      ``loadRes`` would).
    - ``target[i]``: ``masks`` (Tensor[G, H, W], same H, W) and/or ``boxes`` (Tensor[G, 4]),
      ``labels`` (Tensor[G] int), optional ``iscrowd`` (Tensor[G] int/bool), optional ``area``
      (Tensor[G]; default: mask pixel count, or box area).
    - An image without detections or ground truths may give its masks or boxes as ``(0,)``
      (``torch.tensor([])``), as torchmetrics allows.

    Rules (spec A): detections are stable-sorted by score within their image (equal scores keep
    the given order) and the first ``max_detection_thresholds[-1]`` of each (image, class) take
    part; crowd IoU is intersection over detection area; the detection area (for the area ranges)
    is the mask pixel count (or box area). The order in which images reach ``update()`` plays the
    role of pycocotools' sorted image ids: equal scores across images rank the earlier image first.
    Under DDP the order is (rank, image order within the rank), so the result equals one process
    that saw rank 0's images, then rank 1's, and so on.

    State (``"cat"`` records, no masks): per detection its score (float64, exact for any float
    input), class (int64), rank in its (image, class) cell (int32) and matched/ignored bits for every
    (IoU threshold, area range) pair (10 bytes for 10 x 4): 30 bytes with the defaults; per ground
    truth its class and one byte of "counted in area range" bits. ``update()`` reads no value back to
    the host for tensors off the CPU with the default ``matching``; ``extended_summary`` also keeps
    each image's (detections x ground truths) IoU block for the ``ious`` output.

    Aggregation:
        Dataset-level, as pycocotools: one precision/recall curve per (class, IoU threshold, area
        range, max detections) over all images; AP is one flat mean over thresholds, recall
        thresholds and classes of the entries that are not ``-1`` (a class without counted ground
        truth is ``-1`` and left out; ``-1`` if nothing remains). ``average="micro"`` pools all
        classes into one before matching, as torchmetrics does.

    Args:
        box_format: ``"xyxy"``, ``"xywh"`` or ``"cxcywh"`` for ``boxes``.
        iou_type: ``"segm"``, ``"bbox"`` (torchmetrics' default) or ``"boundary"``, or several as a tuple:
            each type is matched and accumulated as if alone, and every result key but ``classes``
            is prefixed by its type (``bbox_map``, ``segm_map``, ...), as torchmetrics does.
        iou_thresholds: IoU thresholds; default numpy's ``linspace(0.5, 0.95, 10)`` bit for bit
            (torchmetrics' float32 ``torch.linspace`` values with ``compat="torchmetrics"``).
        rec_thresholds: recall thresholds; default numpy's ``linspace(0, 1, 101)`` bit for bit
            (the same rule).
        max_detection_thresholds: three max-detection values, default ``[1, 10, 100]`` (sorted).
        class_metrics: also return ``map_per_class`` and ``mar_{max}_per_class``.
        extended_summary: also return the ``precision`` (T, R, K, A, M), ``recall`` (T, K, A, M) and
            ``scores`` (T, R, K, A, M) arrays.
        average: ``"macro"`` (per class, COCO) or ``"micro"`` (all classes pooled).
        backend: the reference whose rules the numbers follow (the computation is this package's
            either way): ``"pycocotools"`` or ``"faster_coco_eval"`` (its precision without eps and
            its stat 0, AP, at the largest ``max_detection_thresholds`` where pycocotools looks up 100
            literally), as torchmetrics' two backends give.
        precision_eps: keep pycocotools' ``np.spacing(1)`` in the precision denominator (a lone
            perfect detection gives AP 0.9999999999999998); ``False`` gives faster-coco-eval's 1.0;
            ``None`` (default): as ``backend``.
        matching: ``"auto"`` (``"parallel"`` on the CPU, ``"sequential"`` elsewhere), ``"parallel"``
            (fixed-point rounds, fastest; one flag read per round, a sync on CUDA) or
            ``"sequential"`` (one step per detection rank, never syncs).
        boundary_dilation_ratio: with ``iou_type="boundary"`` (Boundary IoU AP, Cheng et al.: IoU =
            min(mask IoU, boundary IoU), crowd ground truths by mask), the band width as a fraction
            of the image diagonal (0.02 for COCO, 0.005 for Cityscapes).
        boundary_rounding: how the band width is rounded: ``"boundary-iou-api"`` (Python's
            ``round``) or ``"faster-coco-eval"`` (its C++ rounding); they differ only at exact .5.
        keep_inputs: also keep host copies of every image's inputs (masks as RLE) for
            :meth:`tm_to_coco`; they grow with the data, and off the CPU each update reads its inputs
            back to the host.
        compat: ``"pycocotools"`` (float64 results, pycocotools' numbers) or ``"torchmetrics"``
            (its numbers: float32 values and IoU blocks, its float32 default thresholds, which move
            a recall or IoU that falls on a threshold, and, for ``iou_type="segm"`` alone, its COCO
            dataset without the images that have no target masks: their detections count for
            nothing, and with no target or no detected mask at all every number is -1 and the
            per-class and extended keys are left out).
        kwargs: ``torchmetrics.Metric`` keyword arguments.

    Raises:
        ValueError: for an unknown option (with a "did you mean" hint), thresholds outside [0, 1] or
            not three max detections; in ``update()`` for empty or unequal lists, missing keys, bad
            shapes or image sizes, non-finite (NaN or inf) scores, boxes or areas, negative labels or
            areas (naming the image index and key; for tensors off the CPU, the value problems are
            reported by ``compute()``, without a sync in ``update()``).
        TypeError: for arguments or tensors of the wrong type or dtype.

    Example:
        >>> preds = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "scores": torch.tensor([0.9]),
        ...           "labels": torch.tensor([1])}]
        >>> target = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 8.0]]), "labels": torch.tensor([1])}]
        >>> metric = MeanAveragePrecision(iou_type="bbox")
        >>> metric.update(preds, target)
        >>> result = metric.compute()
        >>> round(result["map"].item(), 4), result["map_50"].item(), result["classes"].item()
        (0.7, 0.9999999999999999, 1)
    """

    is_differentiable: ClassVar[bool] = False
    #: Warn (once per update) when an image has more detections than ``max_detection_thresholds[-1]``.
    warn_on_many_detections: bool = True
    #: Read the value checks in ``update()``; ``None``: only for CPU inputs (else ``compute()`` raises).
    _read_values_on_host: bool | None = None
    higher_is_better: ClassVar[bool] = True
    full_state_update: ClassVar[bool] = False

    def __init__(
        self,
        box_format: Literal["xyxy", "xywh", "cxcywh"] = "xyxy",
        iou_type: Literal["bbox", "segm"] | tuple[str, ...] = "bbox",
        iou_thresholds: Sequence[float] | None = None,
        rec_thresholds: Sequence[float] | None = None,
        max_detection_thresholds: Sequence[int] | None = None,
        class_metrics: bool = False,
        extended_summary: bool = False,
        average: Literal["macro", "micro"] = "macro",
        backend: Literal["pycocotools", "faster_coco_eval"] = "pycocotools",
        *,
        precision_eps: bool | None = None,
        matching: Literal["auto", "parallel", "sequential"] = "auto",
        compat: Literal["pycocotools", "torchmetrics"] = "pycocotools",
        boundary_dilation_ratio: float = 0.02,
        boundary_rounding: Literal["boundary-iou-api", "faster-coco-eval"] = "boundary-iou-api",
        keep_inputs: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # opt-in host copies of every image's inputs for tm_to_coco (boxes, masks as RLE): they grow
        # with the data and cost a device-to-host read per update, so they are off by default
        self.keep_inputs = check_bool("keep_inputs", keep_inputs)
        self._kept = []  # list of (preds, target) host records, one per image
        params = parse_coco_params(
            box_format, iou_type, iou_thresholds, rec_thresholds, max_detection_thresholds,
            class_metrics, extended_summary, average, backend, precision_eps, matching, compat,
            boundary_dilation_ratio, boundary_rounding,
        )  # fmt: skip
        self._coco_params = params
        self._iou_types = params.iou_types
        self.iou_type = params.iou_types[0] if len(params.iou_types) == 1 else params.iou_types
        self.box_format, self.average, self.backend = box_format, average, backend
        self.class_metrics, self.extended_summary = params.class_metrics, params.extended_summary
        self.precision_eps, self.matching, self.compat = params.precision_eps, matching, compat
        self.iou_thresholds: list[float] = params.iou_thr.tolist()
        self.rec_thresholds: list[float] = params.rec_thr.tolist()
        self.max_detection_thresholds: list[int] = list(params.max_dets)
        self.register_buffer("_iou_thr", params.iou_thr, persistent=False)
        self.register_buffer("_rec_thr", params.rec_thr, persistent=False)
        self.register_buffer(
            "_area_rng", torch.tensor(COCO_AREA_RANGES, dtype=torch.float64), persistent=False
        )
        self._records = record_layout(params)
        for name in self._records:
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("num_images", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        # the matching parameters, so that MetricCollection never merges metrics that match differently
        types = [("bbox", "segm", "boundary").index(t) for t in params.iou_types]  # state names hold no type
        ratio, rounding = params.boundary
        config = [*self.iou_thresholds, self.max_detection_thresholds[-1], float(average == "micro"), *types]
        if "boundary" in params.iou_types:
            config += [ratio, BOUNDARY_ROUNDINGS.index(rounding)]
        add_config_state(self, config)
        # per value check (functional/instance/values.py), the first offending image seen off the CPU
        no_image = torch.full((len(VALUE_CHECKS),), _NO_IMAGE)
        self.add_state("first_invalid_image", default=no_image, dist_reduce_fx="min")

    def update(self, preds: Sequence[Mapping[str, Tensor]], target: Sequence[Mapping[str, Tensor]]) -> None:
        """Match one batch of images and append its records (see the class docstring for inputs).

        Raises:
            ValueError, TypeError: as listed in the class docstring; the state is then unchanged.
        """
        batches, invalid = assemble_batches(preds, target, self._params())
        if invalid is None:  # empty lists: zero images, nothing to record
            return
        device = batches[0].ious.device
        host_checked = (
            device.type == "cpu" if self._read_values_on_host is None else self._read_values_on_host
        )
        if host_checked:  # host data: the value checks are read now, before the state changes
            _raise_for_invalid(invalid, preds, target)
        if self.warn_on_many_detections and max(batches[0].num_dets) > self.max_detection_thresholds[-1]:
            _warn_many_detections(self.max_detection_thresholds[-1])  # host-known counts: no sync
        new = coco_records_update(batches, self._params(), self._area_rng.to(device))
        if not host_checked:  # value checks without a sync: remember the first offending image
            image = self.num_images + torch.arange(len(preds), device=device)
            first = torch.where(invalid, image[:, None], _NO_IMAGE).amin(0)
            self.first_invalid_image = torch.minimum(self.first_invalid_image, first)
        for name, value in new.items():
            getattr(self, name).append(value)
        self.num_images = self.num_images + len(preds)  # out of place: states may be shared under ddp_spawn
        if self.keep_inputs:  # opt-in (tm_to_coco): host copies, a device-to-host read off the CPU
            self._kept += keep_image_inputs(preds, target, self._iou_types, self.box_format)

    def reset(self) -> None:
        """Clear the records (and the inputs kept for :meth:`tm_to_coco`)."""
        super().reset()
        self._kept = []

    def tm_to_coco(self, name: str = "tm_map_input") -> None:
        """torchmetrics' ``tm_to_coco``: write the inputs of every ``update()`` on this rank as
        ``{name}_preds.json`` (COCO results) and ``{name}_target.json`` (a COCO dataset), boxes in
        ``xywh``, masks as RLE; see :mod:`torchseg_metrics.io.coco_writer`. Needs
        ``keep_inputs=True``: by default this metric keeps no boxes or masks.

        Raises:
            ValueError: if the metric was built without ``keep_inputs=True``.
        """
        if not self.keep_inputs:
            fail(
                "keep_inputs",
                "True at construction for tm_to_coco (by default only match records stay)",
                False,
            )
        write_coco_files(self._kept, name, self._iou_types)

    def _params(self) -> CocoParams:  # a method, not a property: TorchScript compiles properties
        """The checked arguments, with the thresholds of the metric's device."""
        return self._coco_params._replace(iou_thr=self._iou_thr, rec_thr=self._rec_thr)

    def _cat(self, name: str) -> Tensor:
        value = getattr(self, name)
        if isinstance(value, Tensor):
            return value
        if not value:
            dtype, tail = self._records[name]
            return torch.zeros((0, *tail), dtype=dtype, device=self.device)
        return dim_zero_cat(value)

    def _sync_dist(
        self, dist_sync_fn: Callable = gather_all_tensors, process_group: Any | None = None
    ) -> None:
        """Give a rank without records empty tensors of the right dtype and width before gathering."""
        for name, (dtype, tail) in self._records.items():
            if isinstance(getattr(self, name), list) and not getattr(self, name):
                setattr(self, name, [torch.zeros((0, *tail), dtype=dtype, device=self.device)])
        super()._sync_dist(dist_sync_fn, process_group)

    def compute(self) -> dict[str, Any]:
        """The torchmetrics result dict, as float64 tensors (``classes`` int32).

        Raises:
            ValueError: if an image seen off the CPU failed a value check (non-finite scores, boxes or
                areas, negative labels or areas), naming the first such image and field.
        """
        first = self.first_invalid_image
        image = int(first.min())
        if image != _NO_IMAGE:  # the image index counts every image given to update() (all ranks)
            rule = VALUE_CHECKS[int(first.argmin())]  # the first check failed by that image
            fail(
                _item(rule.kind, image, rule.key),
                f"{rule.expectation} (image index over all update() calls)",
                Found("invalid values"),
            )
        # the image count is read only with compat="torchmetrics" (compute(): host reads allowed)
        num_images = int(self.num_images) if self.compat == "torchmetrics" else None
        return coco_results_from_records(self._cat, self._params(), num_images)

    def plot(self, val: Any = None, ax: Any = None, kind: Literal["bars", "pr", "per_class"] = "bars") -> Any:
        """Plot a result (``compute()`` by default), returning ``(fig, ax)``; needs matplotlib.

        ``kind="bars"``: the summary numbers (``map`` ... ``mar_large``) as bars, or a list of results
        as lines over steps (``Metric._plot``); ``"pr"``: PR curves per IoU threshold (needs
        ``extended_summary=True``); ``"per_class"``: AP per class id (needs ``class_metrics=True``).
        """
        from torchseg_metrics.reporting.plots import plot_detection_result

        return plot_detection_result(self, val, ax, kind)

    @staticmethod
    def coco_to_tm(
        coco_preds: str,
        coco_target: str,
        iou_type: Literal["bbox", "segm"] | tuple[str, ...] = ("bbox",),
        backend: Literal["pycocotools", "faster_coco_eval"] = "pycocotools",
    ) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
        """torchmetrics' ``coco_to_tm``: a COCO results file and a ground-truth file as the per-image
        input lists of :meth:`update` (boxes in ``xywh``: use ``box_format="xywh"``); see
        :func:`torchseg_metrics.io.coco_lists.coco_to_tm`. For large files the streaming readers of
        :mod:`torchseg_metrics.io.coco` (or the ``coco`` command) use far less memory.
        """
        from torchseg_metrics.io.coco_lists import coco_to_tm

        return coco_to_tm(coco_preds, coco_target, iou_type, backend)

    def coco_stats(self, iou_type: str | None = None) -> Tensor:
        """pycocotools' ``COCOeval.stats``: Tensor[12] float64 (AP, AP50, AP75, APs/m/l, AR1/10/100, ARs/m/l).

        ``iou_type`` picks one type of a metric built with ``iou_type=("bbox", "segm")``.

        Example:
            >>> metric = MeanAveragePrecision(iou_type="bbox")
            >>> metric.update([{"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]), "scores": torch.tensor([0.5]),
            ...                 "labels": torch.tensor([0])}],
            ...               [{"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]), "labels": torch.tensor([0])}])
            >>> metric.coco_stats()[:3].tolist()
            [0.9999999999999998, 0.9999999999999999, 0.9999999999999999]
        """
        prefix = self._prefix(iou_type)
        result = self.compute()
        md = self.max_detection_thresholds
        names = (*STAT_NAMES, f"mar_{md[0]}", f"mar_{md[1]}", f"mar_{md[2]}", *AR_NAMES)
        return torch.stack([result[prefix + n].reshape(()) for n in names])

    def _prefix(self, iou_type: str | None) -> str:
        """The result-key prefix of ``iou_type`` (None: the metric's only type)."""
        if iou_type is None and len(self._iou_types) > 1:
            fail("iou_type", f"one of {list(self._iou_types)} for a metric of several IoU types", iou_type)
        if iou_type is not None and iou_type not in self._iou_types:
            fail("iou_type", f"one of this metric's IoU types {list(self._iou_types)}", iou_type)
        return f"{iou_type}_" if len(self._iou_types) > 1 else ""

    def summary(self) -> str:
        """The 12 numbers laid out like ``COCOeval.summarize()``'s printout (3 decimals); with several
        IoU types, one block per type under an ``iou_type=...`` line.

        Example:
            >>> metric = MeanAveragePrecision(iou_type="bbox")
            >>> none = torch.zeros(0, dtype=torch.long)
            >>> metric.update([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": none}],
            ...               [{"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]), "labels": torch.tensor([0])}])
            >>> print(metric.summary().splitlines()[0])
             Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.000
        """
        from torchseg_metrics.reporting.tables import coco_summary

        def block(iou_type: str | None) -> str:
            stats = self.coco_stats(iou_type).tolist()
            return coco_summary(
                stats, iou_thresholds=self.iou_thresholds, max_dets=self.max_detection_thresholds
            )

        if len(self._iou_types) == 1:
            return block(None)
        return "\n".join(f"iou_type={t}\n{block(t)}" for t in self._iou_types)
