"""Panoptic quality (PQ, SQ, RQ) and PQ-dagger as functions: check, pair segments, reduce.

The statistic is one ``(iou_sum, tp, fp, fn)`` per class (things sorted, then stuffs sorted), built
by :func:`~torchseg_metrics.functional.panoptic.pairing._panoptic_stats_update` and reduced by
:func:`~torchseg_metrics.functional.panoptic.scores.panoptic_quality_from_stats`.

Rules:
    ``compat="panopticapi"`` (default) reproduces panopticapi ``pq_compute``: prediction pixels on
    target void are removed from the union, a match needs IoU > 0.5 (exactly 0.5 is not a match),
    crowd target segments (``target_crowd``) are never matched nor missed, an unmatched prediction
    is forgiven when target void plus its category's crowd segment cover more than half of it, each
    stuff segment (distinct instance id) is a segment of its own, and classes with
    ``tp + fp + fn = 0`` are left out of means.

    ``compat="torchmetrics"`` reproduces ``torchmetrics.detection.PanopticQuality`` 1.9.0: stuff
    segments merged per image, prediction-void pixels also removed from the target area, a target
    segment mostly covered by prediction void is not a false negative, no crowd, float32 IoU and RQ.

Crowd:
    ``target_crowd`` marks target pixels that belong to crowd segments (panopticapi's
    ``iscrowd = 1``); a pixel mask keeps the input in tensor form. A target segment is the set of
    pixels sharing (category, instance, crowd flag). When an image holds several crowd segments of one
    category, panopticapi uses only the last one listed in ``segments_info``; here it is the one with
    the largest instance id (panopticapi's choice when segments are listed by increasing id).

Void:
    Target pixels of a void category are void: panopticapi's VOID id 0 when 0 is not a thing or
    stuff, and torchmetrics' void colour ``1 + max(things | stuffs)`` (see
    :func:`~torchseg_metrics.functional.panoptic.scores.void_categories`). A target pixel of any
    other category outside ``things`` and ``stuffs`` is an error (a typo in ``stuffs`` would
    otherwise silently void a class), unless ``allow_unknown_target_category=True`` makes every
    unknown category void; ``compat="torchmetrics"`` allows them by default, as torchmetrics does.
    Prediction pixels of unknown categories are void with ``allow_unknown_preds_category=True`` and
    an error otherwise.
"""

from __future__ import annotations

from collections.abc import Collection

from torch import Tensor

from torchseg_metrics._checks import check_bool
from torchseg_metrics.functional.panoptic.pairing import Compat, _panoptic_stats_update
from torchseg_metrics.functional.panoptic.scores import (
    check_boundary_args,
    check_compat,
    check_panoptic_inputs,
    panoptic_quality_from_stats,
    parse_categories,
    raise_on_bad_values,
    resolve_unknown_target,
    void_categories,
)

__all__ = ["modified_panoptic_quality", "panoptic_quality"]


def _functional(
    preds: Tensor,
    target: Tensor,
    things: Collection[int],
    stuffs: Collection[int],
    target_crowd: Tensor | None,
    allow_unknown_preds_category: bool,
    return_sq_and_rq: bool,
    return_per_class: bool,
    compat: Compat,
    modified: bool,
    allow_unknown_target_category: bool | None,
    boundary: bool = False,
) -> Tensor:
    thing_ids, stuff_ids = parse_categories(things, stuffs)
    compat = check_compat(compat)
    bands = check_boundary_args(boundary, 0.02, "boundary-iou-api", compat, modified)
    target_void = (
        None
        if resolve_unknown_target(allow_unknown_target_category, compat)
        else void_categories(thing_ids, stuff_ids)
    )
    check_bool("allow_unknown_preds_category", allow_unknown_preds_category)
    check_bool("return_sq_and_rq", return_sq_and_rq)
    check_bool("return_per_class", return_per_class)
    preds, target = check_panoptic_inputs(
        preds, target, target_crowd, compat, len(thing_ids) + len(stuff_ids)
    )
    stats = _panoptic_stats_update(
        preds,
        target,
        target_crowd,
        things=thing_ids,
        stuffs=stuff_ids,
        allow_unknown_preds_category=allow_unknown_preds_category,
        target_void=target_void,
        compat=compat,
        modified=modified,
        boundary=bands,
    )
    raise_on_bad_values(stats.bad, target_void)
    return panoptic_quality_from_stats(
        stats.iou_sum,
        stats.tp,
        stats.fp,
        stats.fn,
        return_sq_and_rq=return_sq_and_rq,
        return_per_class=return_per_class,
        compat=compat,
    )


def panoptic_quality(
    preds: Tensor,
    target: Tensor,
    things: Collection[int],
    stuffs: Collection[int],
    *,
    target_crowd: Tensor | None = None,
    allow_unknown_preds_category: bool = False,
    return_sq_and_rq: bool = False,
    return_per_class: bool = False,
    compat: Compat = "panopticapi",
    allow_unknown_target_category: bool | None = None,
    boundary: bool = False,
) -> Tensor:
    """Panoptic quality of a batch, with panopticapi's rules by default (see the module docstring).

    Args:
        preds (Tensor[B, *spatial, 2] int): (category_id, instance_id) per pixel.
        target (Tensor[B, *spatial, 2] int): (category_id, instance_id) per pixel; void pixels
            have a void category (0 when 0 is not a category, or ``1 + max(things | stuffs)``).
        things: thing category ids.
        stuffs: stuff category ids (disjoint from ``things``).
        target_crowd (Tensor[B, *spatial] bool | None): target pixels of crowd segments.
        allow_unknown_preds_category: treat prediction pixels of unknown categories as void.
        return_sq_and_rq: also return SQ and RQ.
        return_per_class: per-class values (things sorted, then stuffs sorted).
        compat: ``"panopticapi"`` or ``"torchmetrics"`` rules.
        allow_unknown_target_category: treat target pixels of every category outside ``things`` and
            ``stuffs`` as void; ``None`` (default): only with ``compat="torchmetrics"``.
        boundary: boundary PQ (min of mask and boundary IoU, bands at 0.02 of the diagonal; see
            :class:`~torchseg_metrics.PanopticQuality` for the other band options).

    Returns:
        Tensor (float64): scalar PQ, ``(3,)`` [PQ, SQ, RQ], ``(1, C)`` per-class PQ, or ``(C, 3)``.

    Aggregation:
        Segments are paired within each image; the per-class sums run over the whole batch and PQ is
        the mean over classes with ``tp + fp + fn > 0`` (NaN if none). Absent classes are NaN in
        per-class output (0 with ``compat="torchmetrics"``).

    Raises:
        TypeError: If inputs are not integer tensors, ``target_crowd`` is not bool, or ``things`` /
            ``stuffs`` are not collections of ints.
        ValueError: If shapes are wrong or differ, categories overlap or are both empty, ids are
            negative or above 2**31 - 1, a prediction or target category is unknown and not allowed, or
            ``compat`` is unknown.

    Example:
        >>> import torch
        >>> target = torch.tensor([[[[1, 1], [1, 1], [7, 0]], [[1, 1], [7, 0], [7, 0]]]])
        >>> preds = torch.tensor([[[[1, 2], [1, 2], [1, 2]], [[1, 2], [1, 2], [7, 0]]]])
        >>> panoptic_quality(preds, target, things={1}, stuffs={7}, return_per_class=True)
        tensor([[0.6000, 0.0000]], dtype=torch.float64)
    """
    return _functional(
        preds,
        target,
        things,
        stuffs,
        target_crowd,
        allow_unknown_preds_category,
        return_sq_and_rq,
        return_per_class,
        compat,
        modified=False,
        allow_unknown_target_category=allow_unknown_target_category,
        boundary=boundary,
    )


def modified_panoptic_quality(
    preds: Tensor,
    target: Tensor,
    things: Collection[int],
    stuffs: Collection[int],
    *,
    target_crowd: Tensor | None = None,
    allow_unknown_preds_category: bool = False,
    return_sq_and_rq: bool = False,
    return_per_class: bool = False,
    compat: Compat = "panopticapi",
    allow_unknown_target_category: bool | None = None,
) -> Tensor:
    """PQ-dagger (Porzi et al., "Seamless Scene Segmentation") of a batch.

    Things follow :func:`panoptic_quality`. Stuff is merged per image (instance ids ignored) and has
    no threshold: every same-class (target, prediction) pair with IoU > 0 adds its IoU, ``tp`` counts
    target stuff segments, and there are no stuff false positives or negatives, so
    PQ-dagger_stuff = ΣIoU / number of target segments. ``compat="torchmetrics"`` reproduces
    ``torchmetrics.detection.ModifiedPanopticQuality`` 1.9.0.

    Args and Returns: as :func:`panoptic_quality`.

    Aggregation:
        As :func:`panoptic_quality`.

    Raises:
        TypeError, ValueError: as :func:`panoptic_quality`.

    Example:
        >>> import torch
        >>> target = torch.tensor([[[1, 1], [1, 1], [7, 0], [7, 0]]])
        >>> preds = torch.tensor([[[1, 2], [1, 2], [7, 0], [1, 2]]])
        >>> modified_panoptic_quality(preds, target, things={1}, stuffs={7}, return_per_class=True)
        tensor([[0.6667, 0.5000]], dtype=torch.float64)
    """
    return _functional(
        preds,
        target,
        things,
        stuffs,
        target_crowd,
        allow_unknown_preds_category,
        return_sq_and_rq,
        return_per_class,
        compat,
        modified=True,
        allow_unknown_target_category=allow_unknown_target_category,
    )
