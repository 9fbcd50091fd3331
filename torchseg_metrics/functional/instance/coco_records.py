"""COCO AP/AR as records: the per-detection statistic of one batch, and the results of all records.

:func:`coco_records_update` matches a batch of images (one call per IoU type) and returns its
records: per detection its score, class, rank in its (image, class) cell and packed matched /
ignored bits for every (IoU threshold, area range) pair; per ground truth its class and "counted
in area range" bits. :func:`coco_results_from_records` turns the records of any number of batches
(concatenated, across processes too) into torchmetrics' result dict with pycocotools' numbers.
:func:`mean_average_precision` does both for one call, with ``MeanAveragePrecision``'s arguments.

Rules (spec A): see :class:`torchseg_metrics.instance.MeanAveragePrecision`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor
from torchmetrics.utilities.data import _squeeze_if_scalar

from torchseg_metrics._checks import check_bool, check_choice, check_probability, fail, tm_message
from torchseg_metrics._transfer import to_device
from torchseg_metrics.functional.boundary import BOUNDARY_ROUNDINGS
from torchseg_metrics.functional.instance.box_iou import BOX_FORMATS
from torchseg_metrics.functional.instance.coco_accumulate import (
    CocoEvalArrays,
    _coco_accumulate,
    coco_summary_from_arrays,
    ious_by_cell,
    per_class_from_arrays,
)
from torchseg_metrics.functional.instance.coco_matching import (
    _coco_match_update,
    _pack_match_flags,
    _unpack_match_flags,
)
from torchseg_metrics.functional.instance.coco_params import (
    COCO_AREA_RANGES,
    COCO_IOU_THRESHOLDS,
    COCO_REC_THRESHOLDS,
    max_detections_tuple,
    thresholds_tensor,
)
from torchseg_metrics.functional.instance.inputs import InstanceBatch, _assemble_batch, _check_instance_inputs
from torchseg_metrics.functional.instance.values import _raise_for_invalid

#: Records that depend on the IoU type (the others, scores and labels in score order, do not).
TYPED_RECORDS = frozenset(
    {"det_rank", "det_flags", "gt_flags", "det_rank_class", "det_flags_class", "ext_ious"}
)
STAT_NAMES = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large")
AR_NAMES = ("mar_small", "mar_medium", "mar_large")


class CocoParams(NamedTuple):
    """Checked arguments of the COCO evaluation (the thresholds as float64 tensors)."""

    iou_types: tuple[str, ...]
    box_format: str
    iou_thr: Tensor
    rec_thr: Tensor
    max_dets: tuple[int, int, int]
    average: str
    class_metrics: bool
    extended_summary: bool
    precision_eps: bool
    matching: str
    compat: str = "pycocotools"
    boundary: tuple[float, str] = (0.02, "boundary-iou-api")
    backend: str = "pycocotools"

    def drops_images_without_targets(self) -> bool:
        """torchmetrics' ``iou_type="segm"`` (alone) leaves an image without target masks out of
        the COCO dataset, so its detections count for nothing, and with no target (or no detected)
        mask at all it returns -1 throughout; with ``compat="torchmetrics"`` ours does the same."""
        return self.compat == "torchmetrics" and self.iou_types == ("segm",)

    def ap_max_det(self) -> int:
        """The maxDets of stat 0 (AP): literally 100 in pycocotools (-1 when 100 is not among
        ``max_dets``), the largest in faster-coco-eval."""
        return 100 if self.backend == "pycocotools" else self.max_dets[-1]

    def name(self, record: str, iou_type: str) -> str:
        """The name of a record: type-prefixed for the records of one type when there are two."""
        return f"{iou_type}_{record}" if len(self.iou_types) > 1 and record in TYPED_RECORDS else record

    def method(self, device: torch.device) -> str:
        """The matching method on ``device`` (``"auto"``: parallel on the CPU, else sequential)."""
        if self.matching == "auto":
            return "parallel" if device.type == "cpu" else "sequential"
        return self.matching


def parse_iou_types(iou_type: object) -> tuple[str, ...]:
    """``"bbox"``, ``"segm"`` or a tuple / list of them (torchmetrics' forms) as a tuple without repeats."""
    types = (iou_type,) if isinstance(iou_type, str) else iou_type
    if not isinstance(types, (tuple, list)) or not types:
        fail("iou_type", "'bbox', 'segm' or a tuple of them", iou_type)
    for t in types:  # type: ignore[union-attr]
        check_choice("iou_type", t, ["bbox", "segm", "boundary"])
    return tuple(dict.fromkeys(types))  # type: ignore[arg-type]


def parse_coco_params(
    box_format: object = "xyxy",
    iou_type: object = "bbox",
    iou_thresholds: Sequence[float] | None = None,
    rec_thresholds: Sequence[float] | None = None,
    max_detection_thresholds: Sequence[int] | None = None,
    class_metrics: object = False,
    extended_summary: object = False,
    average: object = "macro",
    backend: object = "pycocotools",
    precision_eps: object = None,
    matching: object = "auto",
    compat: object = "pycocotools",
    boundary_dilation_ratio: object = 0.02,
    boundary_rounding: object = "boundary-iou-api",
) -> CocoParams:
    """Check ``MeanAveragePrecision``'s arguments, with torchmetrics' sentence leading each message.

    ``backend`` picks the reference whose rules the numbers follow: ``"pycocotools"`` or
    ``"faster_coco_eval"`` (no eps in the precision denominator unless ``precision_eps=True``, and
    stat 0 at the largest maxDets); the computation is this package's in both cases.
    """
    check_choice("compat", compat, ["pycocotools", "torchmetrics"])
    check_choice("boundary_rounding", boundary_rounding, BOUNDARY_ROUNDINGS)
    ratio = check_probability("boundary_dilation_ratio", boundary_dilation_ratio)
    with tm_message(f"Expected argument `box_format` to be one of {tuple(BOX_FORMATS)}"):
        check_choice("box_format", box_format, BOX_FORMATS)
    with tm_message("Expected argument `iou_type` to be one of ('segm', 'bbox') or a tuple of"):
        iou_types = parse_iou_types(iou_type)
    with tm_message("Expected argument `average` to be one of ('macro', 'micro')"):
        check_choice("average", average, ["macro", "micro"])
    with tm_message("Expected argument `backend` to be one of ('pycocotools', 'faster_coco_eval')"):
        check_choice("backend", backend, ["pycocotools", "faster_coco_eval"])
    check_choice("matching", matching, ["auto", "parallel", "sequential"])
    if compat == "torchmetrics":  # its defaults: float32 torch.linspace, not numpy's float64 values
        iou_thresholds = torch.linspace(0.5, 0.95, 10).tolist() if iou_thresholds is None else iou_thresholds
        rec_thresholds = torch.linspace(0.0, 1.0, 101).tolist() if rec_thresholds is None else rec_thresholds
    thresholds = []
    for name, values, default in (
        ("iou_thresholds", iou_thresholds, COCO_IOU_THRESHOLDS),
        ("rec_thresholds", rec_thresholds, COCO_REC_THRESHOLDS),
    ):
        with tm_message(f"Expected argument `{name}` to either be `None` or a list of floats"):
            thresholds.append(thresholds_tensor(name, values, default))
    flags = []
    for name, value in (("class_metrics", class_metrics), ("extended_summary", extended_summary)):
        with tm_message(f"Expected argument `{name}` to be a boolean"):
            flags.append(check_bool(name, value))
    if precision_eps is None:
        precision_eps = backend == "pycocotools"
    return CocoParams(
        iou_types=iou_types,
        box_format=box_format,  # type: ignore[arg-type]
        iou_thr=thresholds[0],
        rec_thr=thresholds[1],
        max_dets=max_detections_tuple(max_detection_thresholds),  # type: ignore[arg-type]
        average=average,  # type: ignore[arg-type]
        class_metrics=flags[0],
        extended_summary=flags[1],
        precision_eps=check_bool("precision_eps", precision_eps),
        matching=matching,  # type: ignore[arg-type]
        compat=compat,  # type: ignore[arg-type]
        boundary=(ratio, boundary_rounding),  # type: ignore[arg-type]
        backend=backend,  # type: ignore[arg-type]
    )


def record_layout(params: CocoParams) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """Name -> (dtype, trailing shape) of every record the parameters call for."""
    width = -(-2 * params.iou_thr.numel() * len(COCO_AREA_RANGES) // 8)
    layout: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {
        "det_scores": (torch.float64, ()),
        "det_labels": (torch.long, ()),
        "det_rank": (torch.int32, ()),
        "det_flags": (torch.uint8, (width,)),
        "gt_labels": (torch.long, ()),
        "gt_flags": (torch.uint8, ()),
    }
    if params.extended_summary:  # opt-in, O(detections x ground truths) per image: the ``ious`` output
        layout.update({"ext_ious": (torch.float64, ()), "ext_counts": (torch.long, (2,))})
    if params.average == "micro" and params.class_metrics:  # per-class numbers need per-class matching
        layout.update({"det_rank_class": (torch.int32, ()), "det_flags_class": (torch.uint8, (width,))})
    return {
        params.name(n, t): v
        for n, v in layout.items()
        for t in (params.iou_types if n in TYPED_RECORDS else params.iou_types[:1])
    }


def assemble_batches(
    preds: Sequence[Mapping[str, Tensor]], target: Sequence[Mapping[str, Tensor]], params: CocoParams
) -> tuple[list[InstanceBatch], Tensor | None]:
    """Checked, padded batches (one per IoU type) and their ``(images, checks)`` value flags;
    no batches (and no flags) for empty lists: zero images, which torchmetrics accepts too."""
    for iou_type in params.iou_types:
        _check_instance_inputs(preds, target, iou_type)
    if len(preds) == 0:
        return [], None
    batches = [
        _assemble_batch(preds, target, t, params.box_format, pool_labels=False, boundary=params.boundary)
        for t in params.iou_types
    ]
    invalid = batches[0].invalid
    for other in batches[1:]:  # the boxes of one type, the masks of the other
        invalid = invalid | other.invalid
    return batches, invalid


def coco_records_update(
    batches: Sequence[InstanceBatch], params: CocoParams, area_rng: Tensor
) -> dict[str, Tensor]:
    """The records of one batch (names as :func:`record_layout`); mutates nothing, never syncs
    with the default ``matching`` off the CPU. ``area_rng``: :data:`COCO_AREA_RANGES` on the device."""
    new: dict[str, Tensor] = {}
    for k, (iou_type, batch) in enumerate(zip(params.iou_types, batches, strict=True)):
        records = _match_records(batch, params, area_rng)
        # detections are sorted by score alone, so the records shared by the types are equal: keep one
        new.update({params.name(n, iou_type): v for n, v in records.items() if k == 0 or n in TYPED_RECORDS})
    return new


def _match_records(batch: InstanceBatch, params: CocoParams, area_rng: Tensor) -> dict[str, Tensor]:
    """The records of one batch of one IoU type, flattened in (image, score order) order."""
    device = batch.ious.device
    b, d = batch.det_scores.shape
    g = batch.gt_labels.shape[1]
    thr, max_det = params.iou_thr.to(device), params.max_dets[-1]

    def match(pooled: bool) -> Any:
        labels = torch.zeros_like(batch.det_labels) if pooled else batch.det_labels
        gt_labels = torch.zeros_like(batch.gt_labels) if pooled else batch.gt_labels
        return _coco_match_update(
            batch.ious, batch.det_scores, labels, batch.det_valid, batch.det_area, gt_labels,
            batch.gt_valid, batch.gt_crowd, batch.gt_area, thr, area_rng, max_det,
            method=params.method(device),
        )  # fmt: skip

    main = match(params.average == "micro")
    dropped = None
    if params.drops_images_without_targets():  # host-known counts: a small host-to-device copy
        # rank max_det: beyond every maxDets, so out of the accumulation as if absent
        dropped = to_device(torch.tensor([n == 0 for n in batch.num_gts]), device)[:, None]
        main = main._replace(rank=main.rank.masked_fill(dropped, max_det))
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
    if params.average == "micro" and params.class_metrics:
        per_class = match(False)  # same score order as ``main``: only the labels differ
        if dropped is not None:
            per_class = per_class._replace(rank=per_class.rank.masked_fill(dropped, max_det))
        new["det_rank_class"] = take(per_class.rank.clamp(max=max_det), det_idx, d).int()
        new["det_flags_class"] = _pack_match_flags(
            take(per_class.matched, det_idx, d), take(per_class.ignored, det_idx, d)
        )
    if params.extended_summary:
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


def _arrays(
    record: Callable[[str], Tensor], params: CocoParams, per_class: bool, iou_type: str
) -> tuple[CocoEvalArrays, Tensor]:
    """Accumulated arrays (micro or per class) of one IoU type and the class ids seen."""
    t, a = params.iou_thr.numel(), len(COCO_AREA_RANGES)
    suffix = "_class" if per_class and params.average == "micro" and params.class_metrics else ""
    typed = lambda name: record(params.name(name, iou_type))  # noqa: E731
    labels, gt_labels = record("det_labels"), record("gt_labels")
    classes = torch.unique(torch.cat([labels, gt_labels]))
    if params.average == "micro" and not per_class:
        labels, gt_labels = torch.zeros_like(labels), torch.zeros_like(gt_labels)
    matched, ignored = _unpack_match_flags(typed("det_flags" + suffix), t, a)
    shifts = torch.arange(a, device=gt_labels.device)
    gt_counted = ((typed("gt_flags")[:, None].long() >> shifts) & 1).bool()
    arrays = _coco_accumulate(
        record("det_scores"), labels, typed("det_rank" + suffix).long(), matched, ignored,
        gt_labels, gt_counted, params.rec_thr.to(labels.device), list(params.max_dets),
        precision_eps=params.precision_eps,
    )  # fmt: skip
    return arrays, classes


def _results_one(record: Callable[[str], Tensor], params: CocoParams, iou_type: str) -> tuple[dict, Tensor]:
    """The result keys of one IoU type (unprefixed), and the class ids seen."""
    md = list(params.max_dets)
    arrays, classes = _arrays(record, params, per_class=False, iou_type=iou_type)
    stats = coco_summary_from_arrays(
        arrays.precision, arrays.recall, params.iou_thr.to(arrays.precision.device), md, params.ap_max_det()
    )
    names = (*STAT_NAMES, f"mar_{md[0]}", f"mar_{md[1]}", f"mar_{md[2]}", *AR_NAMES)
    result: dict[str, Any] = {name: stats[i : i + 1] for i, name in enumerate(names)}
    if params.extended_summary:
        labels, gt_labels, cells = record("det_labels"), record("gt_labels"), classes
        if params.average == "micro":  # one pooled cell per image, as pycocotools with one category
            labels, gt_labels, cells = torch.zeros_like(labels), torch.zeros_like(gt_labels), classes[:1] * 0
        rank = record(params.name("det_rank", iou_type)).long()
        ious = record(params.name("ext_ious", iou_type))
        counts = record("ext_counts")
        result["ious"] = ious_by_cell(ious, counts, labels, rank, gt_labels, cells, md[-1])
        if params.drops_images_without_targets():  # torchmetrics: no cells for such an image
            kept = set((counts[:, 1] > 0).nonzero().flatten().tolist())  # compute(): host reads allowed
            result["ious"] = {cell: v for cell, v in result["ious"].items() if cell[0] in kept}
        result.update(precision=arrays.precision, recall=arrays.recall, scores=arrays.scores)
    if params.class_metrics:
        per_class = arrays if params.average == "macro" else _arrays(record, params, True, iou_type)[0]
        ap, ar = per_class_from_arrays(per_class.precision, per_class.recall, md, params.ap_max_det())
    else:
        ap = ar = torch.tensor([-1.0], dtype=torch.float64, device=stats.device)
    result["map_per_class"], result[f"mar_{md[2]}_per_class"] = ap, ar
    return result, classes


def coco_results_from_records(
    record: Callable[[str], Tensor], params: CocoParams, num_images: int | None = None
) -> dict[str, Any]:
    """torchmetrics' result dict (float64 tensors, ``classes`` int32) from all records;
    ``record(name)`` returns the concatenated record of that name (see :func:`record_layout`);
    ``num_images``: how many images were given (only ``compat="torchmetrics"`` reads it)."""
    result: dict[str, Any] = {}
    for iou_type in params.iou_types:
        prefix = f"{iou_type}_" if len(params.iou_types) > 1 else ""
        if _torchmetrics_skips_evaluation(record, params, num_images):
            classes = torch.unique(torch.cat([record("det_labels"), record("gt_labels")]))
            md = params.max_dets
            names = (*STAT_NAMES, f"mar_{md[0]}", f"mar_{md[1]}", f"mar_{md[2]}", *AR_NAMES)
            minus_one = torch.tensor([-1.0], dtype=torch.float64, device=classes.device)
            result.update({prefix + name: minus_one.clone() for name in names})
            continue
        one, classes = _results_one(record, params, iou_type)
        result.update({prefix + key: value for key, value in one.items()})
    result["classes"] = classes.to(torch.int32)
    return _as_torchmetrics(result) if params.compat == "torchmetrics" else result


def _torchmetrics_skips_evaluation(
    record: Callable[[str], Tensor], params: CocoParams, num_images: int | None
) -> bool:
    """Whether torchmetrics returns -1 for every number without evaluating (its COCO dataset of
    targets or of detections holds no image), leaving out the per-class and extended keys."""
    if params.compat != "torchmetrics":
        return False
    if num_images == 0:
        return True
    no_masks = record("gt_labels").numel() == 0 or record("det_labels").numel() == 0  # host shapes
    return params.drops_images_without_targets() and no_masks


#: Result keys that torchmetrics returns as float64 (pycocotools' arrays as they are).
_FLOAT64_KEYS = ("precision", "recall", "scores")


def _as_torchmetrics(result: dict[str, Any]) -> dict[str, Any]:
    """torchmetrics' dtypes: float32 numbers and IoU blocks, float64 precision/recall/scores arrays."""
    out: dict[str, Any] = {}
    for key, value in result.items():
        if key.endswith("ious"):
            out[key] = {cell: v.float() if isinstance(v, Tensor) else v for cell, v in value.items()}
        elif isinstance(value, Tensor) and value.is_floating_point() and not key.endswith(_FLOAT64_KEYS):
            out[key] = value.float()
        else:
            out[key] = value
    return out


def mean_average_precision(
    preds: Sequence[Mapping[str, Tensor]],
    target: Sequence[Mapping[str, Tensor]],
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
) -> dict[str, Any]:
    """COCO mAP/mAR of one set of images: ``MeanAveragePrecision``'s arguments, inputs and result
    dict (pycocotools' numbers), in one call.

    Raises:
        TypeError, ValueError: as ``MeanAveragePrecision`` (arguments and inputs, naming them).

    Example:
        >>> import torch
        >>> preds = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "scores": torch.tensor([0.9]),
        ...           "labels": torch.tensor([1])}]
        >>> target = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 8.0]]), "labels": torch.tensor([1])}]
        >>> round(mean_average_precision(preds, target)["map"].item(), 4)
        0.7
    """
    params = parse_coco_params(
        box_format, iou_type, iou_thresholds, rec_thresholds, max_detection_thresholds,
        class_metrics, extended_summary, average, backend, precision_eps, matching, compat,
        boundary_dilation_ratio, boundary_rounding,
    )  # fmt: skip
    batches, invalid = assemble_batches(preds, target, params)
    if invalid is None:  # no images: the result of an empty evaluation
        layout = record_layout(params)
        records = {n: torch.zeros((0, *tail), dtype=dtype) for n, (dtype, tail) in layout.items()}
        return _squeeze_if_scalar(coco_results_from_records(records.__getitem__, params, 0))
    # one call: the value checks are read here (a sync off the CPU, as compute() has anyway)
    _raise_for_invalid(invalid, preds, target)
    device = batches[0].ious.device
    area_rng = torch.tensor(COCO_AREA_RANGES, dtype=torch.float64).to(device)
    records = coco_records_update(batches, params, area_rng)
    # one-element tensors as 0-d, as the metric's compute() returns them (torchmetrics' wrapper)
    return _squeeze_if_scalar(coco_results_from_records(records.__getitem__, params, len(preds)))
