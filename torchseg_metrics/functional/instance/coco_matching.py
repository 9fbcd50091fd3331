"""Per-image greedy COCO matching for every IoU threshold and area range at once.

This reproduces pycocotools ``COCOeval.evaluateImg`` (cocoeval.py 235-313; spec A.4) for a batch of
images, vectorised over images, classes, IoU thresholds and area ranges:

* detections are stable-sorted by descending score within their image (ties keep the given order,
  as ``loadRes`` does) and only the first ``max_det`` of each (image, class) cell take part;
* a ground truth is ignored when it is crowd or its area lies outside the area range (inclusive
  bounds); ignored ground truths are considered only when no regular one is available;
* among the available candidates with ``IoU >= min(t, 1 - 1e-10)`` the highest IoU wins and ties
  go to the later ground truth (its original order within its group); crowd ground truths absorb any
  number of detections; a regular ground truth is taken at most once per threshold and area range;
* a matched detection takes its ground truth's ignore flag; an unmatched one is ignored when its own
  area is outside the range.

Greedy matching is sequential by nature (a detection may only take what higher-scoring ones left).
``method="parallel"`` computes it as a fixed point: every round recomputes each detection's choice
from the previous round's choices of the detections before it. After round ``k`` the first ``k``
detections are final, so at most ``D`` rounds are needed, and a round that changes nothing proves
the fixed point, which is the unique greedy result. Real data needs a handful of rounds (the
longest chain of detections displaced from their first choice). Before the rounds it drops the
detections without any candidate (they take nothing, so they change nothing), which reads one count
on the host; testing for "nothing changed" reads one flag per round, each a host-device sync on CUDA.
``method="sequential"`` runs exactly ``D`` steps over the detection rank instead (each step
vectorised over images, thresholds and area ranges) and never syncs.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

from torchseg_metrics._checks import check_choice

MatchMethod = Literal["auto", "parallel", "sequential"]

#: Elements of one (images, thresholds, areas, detections, ground truths) block; bounds peak memory.
_BLOCK_ELEMENTS = 1 << 22


class CocoMatches(NamedTuple):
    """Per-detection matching records of a batch, detections in per-image score order.

    Attributes:
        order (Tensor[B, D] int64): for each sorted position, the detection's index in the input.
        rank (Tensor[B, D] int64): rank of the detection within its (image, class) cell.
        matched (Tensor[B, D, T, A] bool): matched to a ground truth at threshold ``t``, area range ``a``.
        ignored (Tensor[B, D, T, A] bool): neither TP nor FP (matched to an ignored ground truth, or
            unmatched with its own area outside the range).
        gt_counted (Tensor[B, G, A] bool): the ground truth counts in the recall denominator
            (valid, not crowd, area inside the range).
    """

    order: Tensor
    rank: Tensor
    matched: Tensor
    ignored: Tensor
    gt_counted: Tensor


def _out_of_range(area: Tensor, area_ranges: Tensor) -> Tensor:
    """``area < lo or area > hi`` for every range: (..., A) bool."""
    return (area[..., None] < area_ranges[:, 0]) | (area[..., None] > area_ranges[:, 1])


def _sort_and_rank(scores: Tensor, labels: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Stable per-image order by descending score (padding last) and the rank within each class."""
    b, d = scores.shape
    order = torch.sort(-scores, dim=1, stable=True).indices
    order = order.gather(1, torch.sort((~valid).gather(1, order).to(torch.uint8), dim=1, stable=True).indices)
    lab = labels.gather(1, order)
    # rank within (image, class): stable sort by label keeps score order inside each class run
    by_label = torch.sort(lab, dim=1, stable=True)
    pos = torch.arange(d, device=scores.device).expand(b, d)
    start = torch.ones_like(by_label.values, dtype=torch.bool)
    start[:, 1:] = by_label.values[:, 1:] != by_label.values[:, :-1]
    run_start = torch.where(start, pos, torch.zeros_like(pos)).cummax(dim=1).values
    rank = torch.empty_like(pos).scatter_(1, by_label.indices, pos - run_start)
    return order, rank


def _preference_score(ious: Tensor, candidate: Tensor, gt_regular: Tensor) -> tuple[Tensor, Tensor]:
    """Scores whose maximum over ground truths is the greedy choice, and the score-to-GT table.

    ``ious`` (b, D, G) float64, ``candidate`` (b, T, D, G) bool, ``gt_regular`` (b, A, G) bool.
    Returns ``score`` (b, T, A, G, D) small ints, 0 for a pair that cannot match (other class,
    padding, IoU below the threshold), and ``owner`` (b, A, D, 2G + 1) int64 with
    ``owner[..., score] = g``. Regular (non-ignored) ground truths score above ignored ones; within a
    group a higher IoU scores higher and equal IoUs score the later ground truth higher
    (pycocotools' ``>=`` scan). Scores are distinct within a row, so a plain ``amax`` over the
    ground-truth axis (laid out before the detection axis, where it vectorises) finds the choice.
    """
    g = ious.shape[-1]
    dtype = torch.int8 if 2 * g < 127 else torch.int16 if 2 * g < 32767 else torch.int32
    masked = torch.where(candidate.any(1), ious, torch.full_like(ious, -torch.inf))
    asc = torch.sort(masked, dim=-1, stable=True).indices  # ties keep ground-truth order
    pos = torch.empty_like(asc).scatter_(-1, asc, torch.arange(1, g + 1, device=ious.device).expand_as(asc))
    key = pos[:, None] + g * gt_regular[:, :, None, :].long()  # (b, A, D, G), distinct values >= 1
    owner = torch.full((*key.shape[:-1], 2 * g + 1), -1, dtype=torch.long, device=ious.device)
    owner.scatter_(-1, key, torch.arange(g, device=ious.device).expand_as(key))
    # a product rather than ``torch.where``: several times faster on the CPU, and exact for these small ints
    score = candidate.transpose(-1, -2).contiguous()[:, :, None] * key.to(dtype).transpose(-1, -2)[:, None]
    return score, owner


def _choice(available: Tensor, owner: Tensor) -> Tensor:
    """The ground truth with the highest available score, or -1 (score 0): (b, T, A, D) int64."""
    b, t, a, g, d = available.shape
    if available.device.type == "cpu":  # pairwise maxima: several times faster than a small-int amax
        while g > 1:
            half = g // 2
            top = torch.maximum(available[..., :half, :], available[..., half : 2 * half, :])
            if g % 2:  # fold the odd row into the first one (``top`` is a new tensor)
                torch.maximum(top[..., 0, :], available[..., g - 1, :], out=top[..., 0, :])
            available, g = top, half
    best = available.amax(dim=-2)  # (b, T, A, D)
    # owner (b, A, D, width) is shared by all thresholds
    return owner[:, None].expand(b, t, a, d, owner.shape[-1]).gather(-1, best.long()[..., None])[..., 0]


def _greedy_parallel(score: Tensor, owner: Tensor, absorbs: Tensor) -> Tensor:
    """Fixed-point greedy matching from ``score`` (b, T, A, G, D); returns the picks (b, T, A, D)."""
    b, t, a, g, d = score.shape
    device = score.device
    det_index = torch.arange(d, device=device)
    src = det_index.expand(b, t, a, d)
    pick = torch.full((b, t, a, d), -1, dtype=torch.long, device=device)
    # prefix[k]: all bits set for detections 0..k, zero after; ``score & prefix[first]`` keeps the
    # detections that come no later than a ground truth's first taker (a lookup, not a comparison)
    prefix = -(det_index <= torch.arange(d + 1, device=device)[:, None]).to(score.dtype)
    available = score
    for _ in range(d):
        new_pick = _choice(available, owner)
        # one flag read per round (a sync on CUDA): the number of rounds depends on the data
        if torch.equal(new_pick, pick):
            break
        pick = new_pick
        first = torch.full((b, t, a, g + 1), d, dtype=torch.long, device=device)
        first.scatter_reduce_(-1, pick + 1, src, reduce="amin")
        first = torch.where(absorbs, d, first[..., 1:])  # crowd ground truths are never used up
        # ground truths not taken before each detection
        available = score & prefix.index_select(0, first.reshape(-1)).view(b, t, a, g, d)
    return pick


def _greedy_sequential(score: Tensor, owner: Tensor, absorbs: Tensor) -> Tensor:
    """Greedy matching in detection order, one step per rank, never reading values on the host."""
    b, t, a, g, d = score.shape
    gt_index = torch.arange(g, device=score.device)
    free = torch.ones((b, t, a, g), dtype=torch.bool, device=score.device)
    picks = []
    for i in range(d):  # sequential by definition; each step covers all images, thresholds, areas
        pick = _choice((score[..., i] * free)[..., None], owner[:, :, i : i + 1].contiguous())[..., 0]
        free &= (pick[..., None] != gt_index) | absorbs
        picks.append(pick)
    return torch.stack(picks, dim=-1)


def _match_block(cand: Tensor, ious: Tensor, gt_ignored: Tensor, gt_crowd: Tensor, method: str) -> Tensor:
    """Greedy picks (b, T, A, D) of a block from candidates (b, T, D, G), IoUs (b, D, G), flags (b, G, A).

    ``"parallel"`` first drops the detections without any candidate (most false positives: they take
    nothing and leave everything), keeping the others in order; this reads one count on the host.
    """
    b, t, d, g = cand.shape
    a = gt_ignored.shape[-1]
    sel = None
    if method != "sequential":
        active = cand.any(-1).any(1)  # (b, D)
        keep = int(active.sum(1).max())
        if keep < d:  # the first ``keep`` of each image's active-first stable order cover all its active ones
            sel = torch.sort((~active).to(torch.uint8), dim=1, stable=True).indices[:, :keep]
            ious = ious.gather(1, sel[:, :, None].expand(b, keep, g))
            cand = cand.gather(2, sel[:, None, :, None].expand(b, t, keep, g))
    greedy = _greedy_sequential if method == "sequential" else _greedy_parallel
    score, owner = _preference_score(ious, cand, ~gt_ignored.permute(0, 2, 1))
    pick = greedy(score, owner, gt_crowd[:, None, None, :])
    if sel is None:
        return pick
    full = torch.full((b, t, a, d), -1, dtype=pick.dtype, device=pick.device)
    return full.scatter_(-1, sel[:, None, None, :].expand(b, t, a, sel.shape[1]), pick)


def _coco_match_update(
    ious: Tensor,
    det_scores: Tensor,
    det_labels: Tensor,
    det_valid: Tensor,
    det_area: Tensor,
    gt_labels: Tensor,
    gt_valid: Tensor,
    gt_crowd: Tensor,
    gt_area: Tensor,
    iou_thresholds: Tensor,
    area_ranges: Tensor,
    max_det: int,
    *,
    method: MatchMethod = "auto",
) -> CocoMatches:
    """COCO greedy matching of a padded batch for all thresholds and area ranges; mutates nothing.

    Args:
        ious (Tensor[B, D, G] float64): IoU of every detection with every ground truth of its image,
            detections and ground truths in input order (crowd columns: intersection over detection area).
        det_scores (Tensor[B, D] float): detection scores.
        det_labels (Tensor[B, D] int64): detection classes (all zero to pool classes).
        det_valid (Tensor[B, D] bool): real detections (``False`` marks padding).
        det_area (Tensor[B, D] float64): detection areas, for the area-range ignore rule.
        gt_labels (Tensor[B, G] int64): ground-truth classes.
        gt_valid (Tensor[B, G] bool): real ground truths.
        gt_crowd (Tensor[B, G] bool): crowd flags.
        gt_area (Tensor[B, G] float64): ground-truth areas.
        iou_thresholds (Tensor[T] float64): IoU thresholds.
        area_ranges (Tensor[A, 2] float64): inclusive area ranges.
        max_det: detections kept per (image, class) cell (pycocotools ``maxDets[-1]``).
        method: ``"parallel"`` (fixed-point rounds, one flag read per round), ``"sequential"`` (one
            step per detection rank, sync-free) or ``"auto"`` (``"parallel"``).

    Returns:
        :class:`CocoMatches`, detections in per-image stable score order.

    Raises:
        ValueError: if ``method`` is unknown.

    Example:
        >>> f64 = torch.float64
        >>> ious = torch.tensor([[[0.9], [0.6]]], dtype=f64)  # 2 detections, 1 ground truth
        >>> one, two = torch.ones(1, 1, dtype=torch.bool), torch.ones(1, 2, dtype=torch.bool)
        >>> m = _coco_match_update(
        ...     ious, torch.tensor([[0.5, 0.8]]), torch.zeros(1, 2, dtype=torch.long), two,
        ...     torch.full((1, 2), 100.0, dtype=f64), torch.zeros(1, 1, dtype=torch.long), one, ~one,
        ...     torch.full((1, 1), 100.0, dtype=f64), torch.tensor([0.5, 0.75], dtype=f64),
        ...     torch.tensor([[0.0, 1e10]], dtype=f64), 100)
        >>> m.order.tolist()  # the 0.8 detection comes first ...
        [[1, 0]]
        >>> m.matched[0, :, :, 0].tolist()  # ... takes the GT at t = 0.5; at 0.75 only the 0.9 IoU matches
        [[True, False], [False, True]]
    """
    check_choice("method", method, ["auto", "parallel", "sequential"])
    b, d = det_scores.shape
    g = gt_labels.shape[1]
    t, a = iou_thresholds.shape[0], area_ranges.shape[0]
    device = ious.device
    order, rank = _sort_and_rank(det_scores, det_labels, det_valid)
    lab = det_labels.gather(1, order)
    valid = det_valid.gather(1, order)
    area = det_area.gather(1, order)
    ious = ious.gather(1, order[:, :, None].expand(b, d, g))

    gt_ignored = gt_crowd[:, :, None] | _out_of_range(gt_area, area_ranges)  # (B, G, A)
    gt_counted = gt_valid[:, :, None] & ~gt_ignored
    det_out = _out_of_range(area, area_ranges).permute(0, 2, 1)[:, None]  # (B, 1, A, D)
    matched = torch.zeros((b, t, a, d), dtype=torch.bool, device=device)
    ignored = det_out.expand(b, t, a, d).clone()
    if d > 0 and g > 0:
        eligible = valid & (rank < max_det)
        pairable = (lab[:, :, None] == gt_labels[:, None, :]) & gt_valid[:, None, :] & eligible[:, :, None]
        best_bound = torch.clamp(iou_thresholds, max=1 - 1e-10)
        per_image = t * a * d * g
        step = max(1, _BLOCK_ELEMENTS // max(per_image, 1))
        for lo in range(0, b, step):  # image blocks bound peak memory
            sl = slice(lo, min(b, lo + step))
            cand = pairable[sl, None] & (ious[sl, None] >= best_bound[:, None, None])  # (b, T, D, G)
            pick = _match_block(cand, ious[sl], gt_ignored[sl], gt_crowd[sl], method)
            hit = pick >= 0
            ign_of_pick = gt_ignored[sl].permute(0, 2, 1)[:, None].expand(-1, t, -1, -1)
            ign_of_pick = ign_of_pick.gather(-1, pick.clamp(min=0))
            matched[sl] = hit
            ignored[sl] = torch.where(hit, ign_of_pick, det_out[sl].expand_as(hit))
    return CocoMatches(
        order=order,
        rank=rank,
        matched=matched.permute(0, 3, 1, 2),
        ignored=ignored.permute(0, 3, 1, 2),
        gt_counted=gt_counted,
    )


def _pack_match_flags(matched: Tensor, ignored: Tensor) -> Tensor:
    """Pack (N, T, A) ``matched`` and ``ignored`` flags into (N, ceil(2 T A / 8)) uint8 (little-endian)."""
    n, t, a = matched.shape
    bits = torch.cat([matched.reshape(n, t * a), ignored.reshape(n, t * a)], dim=1)
    width = -(-bits.shape[1] // 8)
    bits = torch.nn.functional.pad(bits, (0, width * 8 - bits.shape[1])).view(n, width, 8)
    weights = 2 ** torch.arange(8, device=bits.device)  # built on the device: no host-to-device copy
    return (bits.long() * weights).sum(dim=-1).to(torch.uint8)


def _unpack_match_flags(packed: Tensor, t: int, a: int) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`_pack_match_flags`: (N, T, A) ``matched`` and ``ignored``."""
    n, width = packed.shape
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    bits = ((packed[:, :, None] >> shifts) & 1).bool().reshape(n, width * 8)
    return bits[:, : t * a].reshape(n, t, a), bits[:, t * a : 2 * t * a].reshape(n, t, a)
