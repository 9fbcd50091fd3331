"""PQ, SQ and RQ from the per-class ``(iou_sum, tp, fp, fn)`` statistic, plus the argument checks they share.

Every reduction here is pure and runs on whatever device the statistic lives on.

Aggregation:
    Dataset-level: the statistic sums over every image seen; per-class scores come from those sums
    and the means are over classes with ``tp + fp + fn > 0`` (panopticapi's ``pq_average``). With
    ``compat="panopticapi"`` a class with ``tp + fp + fn = 0`` is NaN in per-class output; an empty
    group (no such class) gives NaN with ``n = 0``.
"""

from __future__ import annotations

import numbers
from collections.abc import Collection, Iterable
from typing import Any

import torch
from torch import Tensor

from torchseg_metrics._checks import (
    Found,
    check_choice,
    check_integer_tensor,
    check_same_device,
    check_tensor,
    fail,
)
from torchseg_metrics.functional.boundary import BOUNDARY_ROUNDINGS
from torchseg_metrics.functional.panoptic.pairing import COMPAT_CHOICES, MAX_ID, Compat


def _bad_messages(void: tuple[int, ...] | None) -> tuple[tuple[str, str, str], ...]:
    """(argument, expectation, found) of each ``bad`` counter; ``void``: the accepted target void ids."""
    ids = " or ".join(str(v) for v in void or ())
    return (
        ("preds", f"integer ids (category and instance) in [0, {MAX_ID}]", "{} pixels outside that range"),
        ("target", f"integer ids (category and instance) in [0, {MAX_ID}]", "{} pixels outside that range"),
        (
            "preds",
            "categories in `things` or `stuffs` (or pass allow_unknown_preds_category=True)",
            "{} pixels of unknown categories",
        ),
        (
            "target",
            f"categories in `things`, `stuffs` or the void category ({ids}) (or pass "
            "allow_unknown_target_category=True to make every unknown category void)",
            "{} pixels of unknown categories",
        ),
    )


def void_categories(things: tuple[int, ...], stuffs: tuple[int, ...]) -> tuple[int, ...]:
    """The target category ids that mark void: panopticapi's VOID id 0 when 0 is not a category,
    and torchmetrics' void colour ``1 + max(things | stuffs)`` (what :mod:`torchseg_metrics.io`
    writes), when that is a valid id.

    Example:
        >>> void_categories((1, 2), (7,)), void_categories((0, 1), (6,))
        ((0, 8), (7,))
    """
    ids = (*things, *stuffs)
    zero = () if 0 in ids else (0,)
    above = (max(ids) + 1,) if max(ids) < MAX_ID else ()
    return zero + above


def check_boundary_args(
    boundary: object, ratio: object, rounding: object, compat: str, modified: bool
) -> tuple[float, str] | None:
    """``(ratio, rounding)`` for boundary PQ, or None without it (panopticapi's rules only)."""
    if not isinstance(boundary, bool):
        fail("boundary", "a bool", boundary, TypeError)
    if not boundary:
        return None
    if compat != "panopticapi" or modified:
        fail("boundary", "False with compat='torchmetrics' or ModifiedPanopticQuality", boundary)
    check_choice("boundary_rounding", rounding, BOUNDARY_ROUNDINGS)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        fail("boundary_dilation_ratio", "a float in [0, 1]", ratio)
    return float(ratio), rounding  # type: ignore[return-value]


def resolve_unknown_target(allow: object, compat: Compat) -> bool:
    """``allow_unknown_target_category``: None means True with ``compat="torchmetrics"`` (its rule)."""
    if allow is None:
        return compat == "torchmetrics"
    if not isinstance(allow, bool):
        fail("allow_unknown_target_category", "a bool or None", allow, TypeError)
    return bool(allow)


def parse_categories(
    things: Collection[int], stuffs: Collection[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Check ``things`` and ``stuffs`` and return them as sorted, deduplicated tuples.

    Raises:
        TypeError: If either is not a collection of integers.
        ValueError: If an id is outside ``[0, 2**31 - 1]``, if they share an id, or if both are empty.
    """
    parsed = []
    for name, value in (("things", things), ("stuffs", stuffs)):
        tm = f"Expected argument `{name}` to contain `int` categories"
        if isinstance(value, (str, bytes, Tensor)) or not isinstance(value, Iterable):
            fail(name, "a collection of integer category ids", value, TypeError, tm=tm)
        items = list(value)
        if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in items):
            fail(name, "a collection of integer category ids", value, TypeError, tm=tm)
        if any(not 0 <= int(v) <= MAX_ID for v in items):
            fail(name, f"category ids in [0, {MAX_ID}]", value)
        parsed.append(tuple(sorted({int(v) for v in items})))
    shared = set(parsed[0]) & set(parsed[1])
    if shared:
        fail(
            "stuffs",
            "disjoint from `things`",
            Found(f"shared ids {sorted(shared)}"),
            tm="Expected arguments `things` and `stuffs` to have distinct keys",
        )
    if not parsed[0] and not parsed[1]:
        fail(
            "things",
            "non-empty when `stuffs` is empty",
            things,
            tm="At least one of `things` and `stuffs` must be non-empty",
        )
    return parsed[0], parsed[1]


def check_compat(compat: object) -> Compat:
    """Return ``compat`` if it is a known rule set."""
    check_choice("compat", compat, COMPAT_CHOICES)
    return compat  # type: ignore[return-value]


def check_panoptic_inputs(
    preds: object, target: object, target_crowd: object, compat: Compat, num_classes: int
) -> tuple[Tensor, Tensor]:
    """Check types, dtypes, shapes and devices of one update's inputs (metadata only: no sync);
    return ``(preds, target)`` as integer tensors (see :func:`integer_ids`).

    Raises:
        TypeError: If an input is not a tensor, ``preds``/``target`` are neither integer nor float
            tensors, or ``target_crowd`` is not bool.
        ValueError: If shapes differ or are not ``(B, *spatial, 2)``, if ``target_crowd`` is given with
            ``compat="torchmetrics"`` or is not ``(B, *spatial)``, or if tensors are on different devices.
    """
    preds, target = (
        check_tensor(name, x, tm=f"Expected argument `{name}` to be of type `torch.Tensor`")
        for name, x in (("preds", preds), ("target", target))
    )
    for name, x in (("preds", preds), ("target", target)):
        if not x.dtype.is_floating_point:
            check_integer_tensor(name, x)
    if target.shape != preds.shape:  # torchmetrics' order of the shape checks
        fail(
            "target",
            f"of the same shape as `preds` {tuple(preds.shape)}",
            Found(f"shape {tuple(target.shape)}"),
            tm="Expected argument `preds` and `target` to have the same shape",
        )
    if preds.ndim < 3 or preds.shape[-1] != 2:
        fail(
            "preds",
            "of shape (B, *spatial, 2) holding (category_id, instance_id)",
            Found(f"shape {tuple(preds.shape)}"),
            tm="Expected argument `preds` to have at least one spatial dimension (B, *spatial_dims, 2)"
            if preds.ndim < 3
            else "Expected argument `preds` to have exactly 2 channels in the last dimension "
            "(category, instance)",
        )
    tensors = [preds, target]
    if target_crowd is not None:
        if compat == "torchmetrics":
            fail(
                "target_crowd",
                "None with compat='torchmetrics' (torchmetrics has no crowd)",
                Found("a tensor"),
            )
        crowd = check_tensor("target_crowd", target_crowd)
        if crowd.dtype != torch.bool:
            fail("target_crowd", "a bool tensor", Found(f"dtype {crowd.dtype}"), TypeError)
        if crowd.shape != preds.shape[:-1]:
            fail("target_crowd", f"of shape {tuple(preds.shape[:-1])}", Found(f"shape {tuple(crowd.shape)}"))
        tensors.append(crowd)
    check_same_device(["preds", "target", "target_crowd"][: len(tensors)], tensors)
    if preds.shape[0] * (num_classes + 1) * 2 > MAX_ID:
        fail("preds", f"at most {MAX_ID // (2 * (num_classes + 1))} images per update", preds.shape[0])
    return integer_ids(preds), integer_ids(target)


def integer_ids(x: Tensor) -> Tensor:
    """Float ids (torchmetrics takes any tensor) as int64; a value that is no integer in
    ``[0, MAX_ID]`` (fractional, NaN, inf) becomes -1, which the update counts as an invalid id."""
    if not x.dtype.is_floating_point:
        return x
    whole = (x == x.round()) & (x >= 0) & (x <= MAX_ID)  # NaN compares False
    return torch.where(whole, x, -1).long()


def raise_on_bad_values(bad: Tensor, void: tuple[int, ...] | None = None) -> None:
    """Raise the error that a non-zero ``bad`` counter stands for (reads ``bad`` on the host).

    ``void``: the target void ids accepted by the update (named in the unknown-target message).
    """
    counts = bad.tolist()
    for (name, expectation, found), count in zip(_bad_messages(void), counts, strict=True):
        if count:
            unknown = "unknown categories" in found  # torchmetrics' sentence for that check
            fail(
                name,
                expectation,
                Found(found.format(count)),
                tm="Unknown categories found" if unknown else None,
            )


def _per_class(iou_sum: Tensor, tp: Tensor, fp: Tensor, fn: Tensor, compat: Compat) -> tuple[Tensor, ...]:
    """Per-class pq, sq, rq (float64) and the mask of classes with tp + fp + fn > 0."""
    if compat == "torchmetrics":  # torchmetrics 1.9.0 `_panoptic_quality_compute`, int32 counts included
        tp32, fp32, fn32 = tp.int(), fp.int(), fn.int()
        sq = torch.where(tp32 > 0.0, iou_sum / tp32, 0.0)
        denominator = tp32 + 0.5 * fp32 + 0.5 * fn32
        rq = torch.where(denominator > 0.0, tp32 / denominator, 0.0)  # float32, as in torchmetrics
        return sq * rq, sq, rq, denominator > 0
    present = (tp + fp + fn) > 0
    tp, fp, fn = tp.double(), fp.double(), fn.double()
    denominator = tp + 0.5 * fp + 0.5 * fn
    nan = torch.full_like(iou_sum, float("nan"))
    pq = torch.where(present, iou_sum / denominator, nan)  # panopticapi: iou / denominator
    sq = torch.where(present, torch.where(tp > 0, iou_sum / tp, 0.0), nan)
    rq = torch.where(present, tp / denominator, nan)
    return pq, sq, rq, present


def _mean(values: Tensor, present: Tensor, compat: Compat) -> Tensor:
    if compat == "torchmetrics":
        return torch.mean(values[present]).double()  # float32 mean for rq, as torchmetrics
    return torch.where(present, values, 0.0).sum() / present.sum()


def panoptic_quality_from_stats(
    iou_sum: Tensor,
    tp: Tensor,
    fp: Tensor,
    fn: Tensor,
    *,
    return_sq_and_rq: bool = False,
    return_per_class: bool = False,
    compat: Compat = "panopticapi",
) -> Tensor:
    """PQ (and SQ, RQ) from per-class sums, in torchmetrics' output shapes.

    Args:
        iou_sum (Tensor[C] float64): sum of matched IoUs per class.
        tp (Tensor[C] int): true positives; ``fp``, ``fn`` likewise.
        return_sq_and_rq: also return SQ and RQ.
        return_per_class: per-class values instead of the mean over classes.
        compat: ``"panopticapi"``: PQ_c = iou_sum / (tp + fp/2 + fn/2) and absent classes NaN;
            ``"torchmetrics"``: torchmetrics 1.9.0's arithmetic (PQ_c = SQ_c * RQ_c, RQ in float32,
            absent classes 0).

    Returns:
        Tensor (float64): scalar PQ; ``(3,)`` [PQ, SQ, RQ]; ``(1, C)`` per-class PQ; or ``(C, 3)``
        per-class [PQ, SQ, RQ] when both flags are set.

    Aggregation:
        Means are over classes with ``tp + fp + fn > 0``; NaN when there is none.

    Example:
        >>> import torch
        >>> iou_sum, tp = torch.tensor([1.5, 0.0]), torch.tensor([2, 0])
        >>> fp, fn = torch.tensor([0, 1]), torch.tensor([0, 0])
        >>> panoptic_quality_from_stats(iou_sum, tp, fp, fn, return_per_class=True)
        tensor([[0.7500, 0.0000]], dtype=torch.float64)
    """
    pq, sq, rq, present = _per_class(iou_sum.double(), tp, fp, fn, compat)
    if return_per_class:
        if return_sq_and_rq:
            return torch.stack((pq, sq, rq.double()), dim=-1)
        return pq.view(1, -1)
    if return_sq_and_rq:
        return torch.stack([_mean(v, present, compat) for v in (pq, sq, rq)])
    return _mean(pq, present, compat)


def panoptic_summary_from_stats(
    iou_sum: Tensor,
    tp: Tensor,
    fp: Tensor,
    fn: Tensor,
    *,
    things: tuple[int, ...],
    stuffs: tuple[int, ...],
    compat: Compat = "panopticapi",
) -> dict[str, Any]:
    """panopticapi's result layout as Python numbers.

    Returns:
        ``{"All" | "Things" | "Stuff": {"pq", "sq", "rq", "n"}, "per_class": {category_id: {"pq",
        "sq", "rq", "tp", "fp", "fn", "iou_sum"}}}``; classes ordered things then stuffs (sorted).
        An empty group gives NaN scores and ``n = 0``.

    Example:
        >>> import torch
        >>> iou_sum, tp = torch.tensor([1.5, 0.0]), torch.tensor([2, 0])
        >>> fp, fn = torch.tensor([0, 1]), torch.tensor([0, 0])
        >>> s = panoptic_summary_from_stats(iou_sum, tp, fp, fn, things=(1,), stuffs=(7,))
        >>> s["All"], s["Stuff"]["n"], s["per_class"][1]["pq"]
        ({'pq': 0.375, 'sq': 0.375, 'rq': 0.5, 'n': 2}, 1, 0.75)
    """
    pq, sq, rq, present = _per_class(iou_sum.double(), tp, fp, fn, compat)
    num_things = len(things)
    groups = {"All": slice(None), "Things": slice(0, num_things), "Stuff": slice(num_things, None)}
    result: dict[str, Any] = {}
    for name, part in groups.items():
        n = int(present[part].sum())
        if n == 0:
            result[name] = {"pq": float("nan"), "sq": float("nan"), "rq": float("nan"), "n": 0}
            continue
        result[name] = {
            key: float(_mean(v[part], present[part], compat))
            for key, v in (("pq", pq), ("sq", sq), ("rq", rq))
        }
        result[name]["n"] = n
    rows = zip(
        list(things) + list(stuffs),
        pq.tolist(),
        sq.tolist(),
        rq.double().tolist(),
        tp.tolist(),
        fp.tolist(),
        fn.tolist(),
        iou_sum.double().tolist(),
        strict=True,
    )
    result["per_class"] = {
        cat: {"pq": a, "sq": b, "rq": c, "tp": d, "fp": e, "fn": f, "iou_sum": g}
        for cat, a, b, c, d, e, f, g in rows
    }
    return result
