"""COCO-exact instance mask and box AP/AR as a ``torchmetrics.Metric``: :class:`MeanAveragePrecision`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors
from torchmetrics.utilities.prints import rank_zero_warn

from torchseg_metrics._checks import Found, check_bool, check_choice, fail
from torchseg_metrics._config_state import add_config_state
from torchseg_metrics._transfer import to_device
from torchseg_metrics.functional.box_iou import BOX_FORMATS
from torchseg_metrics.functional.coco_accumulate import (
    CocoEvalArrays,
    _coco_accumulate,
    coco_summary_from_arrays,
    ious_by_cell,
    per_class_from_arrays,
)
from torchseg_metrics.functional.coco_matching import (
    _coco_match_update,
    _pack_match_flags,
    _unpack_match_flags,
)
from torchseg_metrics.functional.coco_params import (
    COCO_AREA_RANGES,
    COCO_IOU_THRESHOLDS,
    COCO_REC_THRESHOLDS,
    max_detections_tuple,
    thresholds_tensor,
)
from torchseg_metrics.instance_inputs import (
    VALUE_CHECKS,
    InstanceBatch,
    _assemble_batch,
    _check_instance_inputs,
    _item,
    _raise_for_invalid,
)

_NO_IMAGE = 2**62  # "no offending image" in the min-reduced value-check states
#: Records that depend on the IoU type (the others, scores and labels in score order, do not).
_TYPED = frozenset({"det_rank", "det_flags", "gt_flags", "det_rank_class", "det_flags_class", "ext_ious"})


def _parse_iou_types(iou_type: object) -> tuple[str, ...]:
    """``"bbox"``, ``"segm"`` or a tuple / list of them (torchmetrics' forms) as a tuple without repeats."""
    types = (iou_type,) if isinstance(iou_type, str) else iou_type
    if not isinstance(types, (tuple, list)) or not types:
        fail("iou_type", "'bbox', 'segm' or a tuple of them", iou_type)
    for t in types:  # type: ignore[union-attr]
        check_choice("iou_type", t, ["bbox", "segm"])
    return tuple(dict.fromkeys(types))  # type: ignore[arg-type]


def _warn_many_detections(limit: int) -> None:
    rank_zero_warn(
        f"Encountered more than {limit} detections in a single image: in each class only the {limit}"
        " with the highest scores take part, as in pycocotools. Raise `max_detection_thresholds` to keep"
        " more, or set the attribute `warn_on_many_detections = False` on the metric to silence this.",
        UserWarning,
    )


_STAT_NAMES = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large")
_AR_NAMES = ("mar_small", "mar_medium", "mar_large")


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
        iou_type: ``"segm"`` or ``"bbox"`` (torchmetrics' default ``"bbox"``), or both as a tuple:
            each type is matched and accumulated as if alone, and every result key but ``classes``
            is prefixed by its type (``bbox_map``, ``segm_map``, ...), as torchmetrics does.
        iou_thresholds: IoU thresholds; default numpy's ``linspace(0.5, 0.95, 10)`` bit for bit.
        rec_thresholds: recall thresholds; default numpy's ``linspace(0, 1, 101)`` bit for bit.
        max_detection_thresholds: three max-detection values, default ``[1, 10, 100]`` (sorted).
        class_metrics: also return ``map_per_class`` and ``mar_{max}_per_class``.
        extended_summary: also return the ``precision`` (T, R, K, A, M), ``recall`` (T, K, A, M) and
            ``scores`` (T, R, K, A, M) arrays.
        average: ``"macro"`` (per class, COCO) or ``"micro"`` (all classes pooled).
        backend: accepted for compatibility and ignored (there is one exact implementation).
        precision_eps: keep pycocotools' ``np.spacing(1)`` in the precision denominator (a lone
            perfect detection gives AP 0.9999999999999998); ``False`` gives faster-coco-eval's 1.0.
        matching: ``"auto"`` (``"parallel"`` on the CPU, ``"sequential"`` elsewhere), ``"parallel"``
            (fixed-point rounds, fastest; one flag read per round, a sync on CUDA) or
            ``"sequential"`` (one step per detection rank, never syncs).
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
        iou_type: Literal["bbox", "segm"] = "bbox",
        iou_thresholds: Sequence[float] | None = None,
        rec_thresholds: Sequence[float] | None = None,
        max_detection_thresholds: Sequence[int] | None = None,
        class_metrics: bool = False,
        extended_summary: bool = False,
        average: Literal["macro", "micro"] = "macro",
        backend: Literal["pycocotools", "faster_coco_eval"] = "pycocotools",
        *,
        precision_eps: bool = True,
        matching: Literal["auto", "parallel", "sequential"] = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_choice("box_format", box_format, BOX_FORMATS)
        self._iou_types = _parse_iou_types(iou_type)
        iou_type = self._iou_types[0] if len(self._iou_types) == 1 else self._iou_types  # type: ignore[assignment]
        check_choice("average", average, ["macro", "micro"])
        check_choice("backend", backend, ["pycocotools", "faster_coco_eval"])
        check_choice("matching", matching, ["auto", "parallel", "sequential"])
        self.box_format, self.iou_type, self.average, self.backend = box_format, iou_type, average, backend
        self.class_metrics = check_bool("class_metrics", class_metrics)
        self.extended_summary = check_bool("extended_summary", extended_summary)
        self.precision_eps = check_bool("precision_eps", precision_eps)
        self.matching = matching
        iou_thr = thresholds_tensor("iou_thresholds", iou_thresholds, COCO_IOU_THRESHOLDS)
        rec_thr = thresholds_tensor("rec_thresholds", rec_thresholds, COCO_REC_THRESHOLDS)
        self.iou_thresholds: list[float] = iou_thr.tolist()
        self.rec_thresholds: list[float] = rec_thr.tolist()
        self.max_detection_thresholds: list[int] = list(max_detections_tuple(max_detection_thresholds))
        self.register_buffer("_iou_thr", iou_thr, persistent=False)
        self.register_buffer("_rec_thr", rec_thr, persistent=False)
        self.register_buffer(
            "_area_rng", torch.tensor(COCO_AREA_RANGES, dtype=torch.float64), persistent=False
        )
        t, a = len(self.iou_thresholds), len(COCO_AREA_RANGES)
        width = -(-2 * t * a // 8)
        # per detection: score, class, rank in its (image, class) cell, packed matched/ignored bits
        self._records: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {
            "det_scores": (torch.float64, ()),
            "det_labels": (torch.long, ()),
            "det_rank": (torch.int32, ()),
            "det_flags": (torch.uint8, (width,)),
            "gt_labels": (torch.long, ()),
            "gt_flags": (torch.uint8, ()),
        }
        if self.extended_summary:  # opt-in, O(detections x ground truths) per image: the ``ious`` output
            self._records.update({"ext_ious": (torch.float64, ()), "ext_counts": (torch.long, (2,))})
        if average == "micro" and self.class_metrics:  # per-class numbers need per-class matching too
            self._records.update(
                {"det_rank_class": (torch.int32, ()), "det_flags_class": (torch.uint8, (width,))}
            )
        if len(self._iou_types) > 1:  # the matching records once per type, prefixed by it
            self._records = {
                self._name(n, t) if n in _TYPED else n: v
                for n, v in self._records.items()
                for t in (self._iou_types if n in _TYPED else self._iou_types[:1])
            }
        for name in self._records:
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("num_images", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        # the matching parameters, so that MetricCollection never merges metrics that match differently
        config = [*self.iou_thresholds, self.max_detection_thresholds[-1], float(average == "micro")]
        add_config_state(self, config)
        # per value check (instance_inputs.VALUE_CHECKS), the first offending image seen off the CPU
        no_image = torch.full((len(VALUE_CHECKS),), _NO_IMAGE)
        self.add_state("first_invalid_image", default=no_image, dist_reduce_fx="min")

    def update(self, preds: Sequence[Mapping[str, Tensor]], target: Sequence[Mapping[str, Tensor]]) -> None:
        """Match one batch of images and append its records (see the class docstring for inputs).

        Raises:
            ValueError, TypeError: as listed in the class docstring; the state is then unchanged.
        """
        for iou_type in self._iou_types:
            _check_instance_inputs(preds, target, iou_type)
        batches = [
            _assemble_batch(preds, target, t, self.box_format, pool_labels=False) for t in self._iou_types
        ]
        device = batches[0].ious.device
        invalid = batches[0].invalid
        for other in batches[1:]:  # the boxes of one type, the masks of the other
            invalid = invalid | other.invalid
        host_checked = (
            device.type == "cpu" if self._read_values_on_host is None else self._read_values_on_host
        )
        if host_checked:  # host data: the value checks are read now, before the state changes
            _raise_for_invalid(invalid, preds, target)
        if self.warn_on_many_detections and max(batches[0].num_dets) > self.max_detection_thresholds[-1]:
            _warn_many_detections(self.max_detection_thresholds[-1])  # host-known counts: no sync
        new: dict[str, Tensor] = {}
        for k, (iou_type, batch) in enumerate(zip(self._iou_types, batches, strict=True)):
            records = self._match_records(batch, device)
            # detections are sorted by score alone, so the records shared by the types are equal: keep one
            new.update({self._name(n, iou_type): v for n, v in records.items() if k == 0 or n in _TYPED})
        if not host_checked:  # value checks without a sync: remember the first offending image
            image = self.num_images + torch.arange(len(preds), device=device)
            first = torch.where(invalid, image[:, None], _NO_IMAGE).amin(0)
            self.first_invalid_image = torch.minimum(self.first_invalid_image, first)
        for name, value in new.items():
            getattr(self, name).append(value)
        self.num_images = self.num_images + len(preds)  # out of place: states may be shared under ddp_spawn

    def _name(self, record: str, iou_type: str) -> str:
        """The state name of a record: type-prefixed for the records of one type when there are two."""
        return f"{iou_type}_{record}" if len(self._iou_types) > 1 and record in _TYPED else record

    def _match_records(self, batch: InstanceBatch, device: torch.device) -> dict[str, Tensor]:
        """The records of one batch of one IoU type, flattened in (image, score order) order."""
        b, d = batch.det_scores.shape
        g = batch.gt_labels.shape[1]
        thr, area_rng = self._iou_thr.to(device), self._area_rng.to(device)
        max_det = self.max_detection_thresholds[-1]

        def match(pooled: bool) -> Any:
            labels = torch.zeros_like(batch.det_labels) if pooled else batch.det_labels
            gt_labels = torch.zeros_like(batch.gt_labels) if pooled else batch.gt_labels
            return _coco_match_update(
                batch.ious, batch.det_scores, labels, batch.det_valid, batch.det_area, gt_labels,
                batch.gt_valid, batch.gt_crowd, batch.gt_area, thr, area_rng, max_det,
                method=self._method(device),
            )  # fmt: skip

        main = match(self.average == "micro")
        # records of the real detections and ground truths, flattened in (image, sorted) order
        det_idx = torch.cat([torch.arange(n, device=device) + i * d for i, n in enumerate(batch.num_dets)])
        gt_idx = torch.cat([torch.arange(n, device=device) + i * g for i, n in enumerate(batch.num_gts)])

        def take(x: Tensor, idx: Tensor, width: int) -> Tensor:
            return x.reshape(b * width, *x.shape[2:]).index_select(0, idx)

        new = {
            "det_scores": take(batch.det_scores.gather(1, main.order), det_idx, d),
            "det_labels": take(batch.det_labels.gather(1, main.order), det_idx, d),
            "det_rank": take(main.rank.clamp(max=max_det), det_idx, d).int(),
            "det_flags": _pack_match_flags(take(main.matched, det_idx, d), take(main.ignored, det_idx, d)),
            "gt_labels": take(batch.gt_labels, gt_idx, g),
        }
        bits = 2 ** torch.arange(area_rng.shape[0], device=device)
        new["gt_flags"] = (take(main.gt_counted, gt_idx, g).long() * bits).sum(-1).to(torch.uint8)
        if self.average == "micro" and self.class_metrics:
            per_class = match(False)  # same score order as ``main``: only the labels differ
            new["det_rank_class"] = take(per_class.rank.clamp(max=max_det), det_idx, d).int()
            new["det_flags_class"] = _pack_match_flags(
                take(per_class.matched, det_idx, d), take(per_class.ignored, det_idx, d)
            )
        if self.extended_summary:
            sorted_ious = batch.ious.gather(1, main.order[:, :, None].expand(b, d, g))
            new["ext_ious"] = torch.cat(
                [
                    sorted_ious[i, :nd, :ng].reshape(-1)
                    for i, (nd, ng) in enumerate(zip(batch.num_dets, batch.num_gts, strict=True))
                ]
            )
            # host-known counts: a small asynchronous host-to-device copy, only with extended_summary
            counts = torch.tensor([batch.num_dets, batch.num_gts]).T.contiguous()
            new["ext_counts"] = to_device(counts, device)
        return new

    def _method(self, device: torch.device) -> str:
        if self.matching == "auto":
            return "parallel" if device.type == "cpu" else "sequential"
        return self.matching

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

    def _arrays(self, per_class: bool, iou_type: str) -> tuple[CocoEvalArrays, Tensor]:
        """Accumulated arrays (micro or per class) of one IoU type and the class ids seen."""
        t, a = len(self.iou_thresholds), len(COCO_AREA_RANGES)
        suffix = "_class" if per_class and self.average == "micro" and self.class_metrics else ""
        name = lambda record: self._name(record, iou_type)  # noqa: E731
        labels, gt_labels = self._cat("det_labels"), self._cat("gt_labels")
        classes = torch.unique(torch.cat([labels, gt_labels]))
        if self.average == "micro" and not per_class:
            labels, gt_labels = torch.zeros_like(labels), torch.zeros_like(gt_labels)
        matched, ignored = _unpack_match_flags(self._cat(name("det_flags" + suffix)), t, a)
        shifts = torch.arange(a, device=gt_labels.device)
        gt_counted = ((self._cat(name("gt_flags"))[:, None].long() >> shifts) & 1).bool()
        arrays = _coco_accumulate(
            self._cat("det_scores"), labels, self._cat(name("det_rank" + suffix)).long(), matched, ignored,
            gt_labels, gt_counted, self._rec_thr.to(labels.device), self.max_detection_thresholds,
            precision_eps=self.precision_eps,
        )  # fmt: skip
        return arrays, classes

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
        result: dict[str, Any] = {}
        classes = torch.zeros(0)
        for iou_type in self._iou_types:
            prefix = f"{iou_type}_" if len(self._iou_types) > 1 else ""
            one, classes = self._compute_one(iou_type)
            result.update({prefix + key: value for key, value in one.items()})
        result["classes"] = classes.to(torch.int32)
        return result

    def _compute_one(self, iou_type: str) -> tuple[dict[str, Any], Tensor]:
        """The result keys of one IoU type (unprefixed), and the class ids seen."""
        md = self.max_detection_thresholds
        arrays, classes = self._arrays(per_class=False, iou_type=iou_type)
        stats = coco_summary_from_arrays(
            arrays.precision, arrays.recall, self._iou_thr.to(arrays.precision.device), md
        )
        names = (*_STAT_NAMES, f"mar_{md[0]}", f"mar_{md[1]}", f"mar_{md[2]}", *_AR_NAMES)
        result: dict[str, Any] = {name: stats[i : i + 1] for i, name in enumerate(names)}
        if self.extended_summary:
            labels, gt_labels, cells = self._cat("det_labels"), self._cat("gt_labels"), classes
            if self.average == "micro":  # one pooled cell per image, as pycocotools with one category
                labels, gt_labels, cells = (
                    torch.zeros_like(labels),
                    torch.zeros_like(gt_labels),
                    classes[:1] * 0,
                )
            rank = self._cat(self._name("det_rank", iou_type)).long()
            ious = self._cat(self._name("ext_ious", iou_type))
            result["ious"] = ious_by_cell(
                ious, self._cat("ext_counts"), labels, rank, gt_labels, cells, md[-1]
            )
            result.update(precision=arrays.precision, recall=arrays.recall, scores=arrays.scores)
        if self.class_metrics:
            per_class = arrays if self.average == "macro" else self._arrays(True, iou_type)[0]
            ap, ar = per_class_from_arrays(per_class.precision, per_class.recall, md)
        else:
            ap = ar = torch.tensor([-1.0], dtype=torch.float64, device=stats.device)
        result["map_per_class"], result[f"mar_{md[2]}_per_class"] = ap, ar
        return result, classes

    def plot(self, val: Any = None, ax: Any = None, kind: Literal["bars", "pr", "per_class"] = "bars") -> Any:
        """Plot a result (``compute()`` by default), returning ``(fig, ax)``; needs matplotlib.

        ``kind="bars"``: the summary numbers (``map`` ... ``mar_large``) as bars, or a list of results
        as lines over steps (``Metric._plot``); ``"pr"``: PR curves per IoU threshold (needs
        ``extended_summary=True``); ``"per_class"``: AP per class id (needs ``class_metrics=True``).
        """
        from torchseg_metrics.reporting.plots import plot_detection_result

        return plot_detection_result(self, val, ax, kind)

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
        names = (*_STAT_NAMES, f"mar_{md[0]}", f"mar_{md[1]}", f"mar_{md[2]}", *_AR_NAMES)
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
