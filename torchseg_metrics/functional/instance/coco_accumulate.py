"""COCO precision/recall/score arrays and the 12-number summary from per-detection match records.

Reproduces pycocotools ``COCOeval.accumulate`` and ``summarize`` (cocoeval.py 315-493; spec A.5, A.6)
in float64 on the records' device, vectorised over classes: records are sorted by (class, score
descending) with a stable sort, so equal scores keep the order of the records (image order, then
the order within the image), exactly like pycocotools' mergesort over the concatenated images.
Segments (one per class) are handled with offsets, never with a loop over classes:

* cumulative TP/FP counts are integer ``cumsum`` minus the count at the start of the segment;
* the right-to-left running maximum of precision, restarted at every segment, takes log2(longest
  segment) doubling steps of ``maximum`` (exact: it returns one of its operands);
* for each ``maxDets`` only the records within it are kept (the others change no count);
* pycocotools' ``searchsorted(recall, recThrs, side="left")`` becomes one batched ``searchsorted``
  (side "left") on integer keys ``class * (N + 1) + tp``: recall ``tp / npig`` is monotone in the
  integer ``tp``, so each recall threshold turns into the smallest ``tp`` whose float64 recall
  reaches it, found by evaluating ``tp / npig >= r`` exactly as pycocotools does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

#: ``np.spacing(1)``: pycocotools adds it to the precision denominator.
_EPS = 2.220446049250313e-16
#: Elements of one (records, thresholds, area ranges) block of the accumulation; bounds peak memory.
_BLOCK_ELEMENTS = 1 << 23


class CocoEvalArrays(NamedTuple):
    """pycocotools' ``COCOeval.eval`` arrays (``-1`` where a class has no counted ground truth).

    Attributes:
        precision (Tensor[T, R, K, A, M] float64): interpolated precision.
        recall (Tensor[T, K, A, M] float64): final recall.
        scores (Tensor[T, R, K, A, M] float64): score at each recall threshold.
        classes (Tensor[K] int64): the sorted class ids of the K axis.
    """

    precision: Tensor
    recall: Tensor
    scores: Tensor
    classes: Tensor


def _segment_bounds(sorted_ids: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Start and end of each id's run in a sorted id vector: two (K,) int64 tensors."""
    ids = torch.arange(k, device=sorted_ids.device, dtype=sorted_ids.dtype)
    start = torch.searchsorted(sorted_ids, ids, side="left")
    end = torch.searchsorted(sorted_ids, ids, side="right")
    return start, end


def _segment_sums(values: Tensor, start: Tensor, end: Tensor) -> Tensor:
    """Sums of integer ``values`` (N, ...) over the row ranges [start, end): (K, ...) int64."""
    csum = torch.cat([values.new_zeros((1, *values.shape[1:]), dtype=torch.long), values.long().cumsum(0)])
    return csum[end] - csum[start]


def _min_count_reaching(thresholds: Tensor, denom: Tensor) -> Tensor:
    """Smallest integer ``c`` with ``c / n >= r`` in float64 (as pycocotools compares), per (n, r): (K, R).

    Float64 division is monotone in ``c``, and the answer lies within one of ``floor(r * n)``.
    """
    base = torch.floor(thresholds[None, :] * denom[:, None]).long()  # (K, R)
    cand = base[..., None] + torch.arange(-1, 3, device=denom.device)  # (K, R, 4), increasing
    cand = cand.clamp(min=0)
    reach = cand.double() / denom[:, None, None] >= thresholds[None, :, None]
    return torch.where(reach, cand, torch.iinfo(torch.long).max // 4).amin(-1)


def _segment_suffix_max_(values: Tensor, seg_end: Tensor, longest: int) -> Tensor:
    """In place: each entry of non-negative float (C, N) ``values`` becomes the maximum of itself and the
    entries after it in its segment of the N axis (a right-to-left running max restarted at every segment).

    ``seg_end`` (N,) is the end of each position's segment, ``longest`` the longest segment. Doubling
    (Hillis-Steele): after shift ``s`` an entry holds the maximum over the next ``2 s`` entries of its
    segment. An entry of another segment is multiplied by 0 and, the values being non-negative, never
    wins; ``maximum`` returns one of its operands, so the result is exact.
    """
    n = values.shape[-1]
    pos = torch.arange(n, device=values.device)
    s = 1
    while s < longest:
        inside = (pos[: n - s] + s < seg_end[: n - s]).to(values.dtype)  # 1 inside the segment, else 0
        torch.maximum(values[:, :-s], values[:, s:] * inside, out=values[:, :-s])
        s *= 2
    return values


def _coco_accumulate(
    scores: Tensor,
    labels: Tensor,
    rank: Tensor,
    matched: Tensor,
    ignored: Tensor,
    gt_labels: Tensor,
    gt_counted: Tensor,
    rec_thresholds: Tensor,
    max_dets: Sequence[int],
    *,
    precision_eps: bool = True,
) -> CocoEvalArrays:
    """Precision, recall and score arrays from match records, like ``COCOeval.accumulate``.

    Args:
        scores (Tensor[N] float): detection scores, records in image order (then in-image score order).
        labels (Tensor[N] int64): detection classes.
        rank (Tensor[N] int64): rank of each detection within its (image, class) cell.
        matched (Tensor[N, T, A] bool): matched at each IoU threshold and area range.
        ignored (Tensor[N, T, A] bool): ignored at each IoU threshold and area range.
        gt_labels (Tensor[Ng] int64): ground-truth classes.
        gt_counted (Tensor[Ng, A] bool): the ground truth counts in range ``a`` (not crowd, area in range).
        rec_thresholds (Tensor[R] float64): recall thresholds.
        max_dets: the sorted ``maxDets`` (M values); a detection counts for ``m`` when ``rank < m``.
        precision_eps: add ``np.spacing(1)`` to the precision denominator as pycocotools does
            (``False`` gives faster-coco-eval's ``tp / (tp + fp)``, 0 when both are 0).

    Returns:
        :class:`CocoEvalArrays` with K = the sorted union of detection and ground-truth classes.

    Example:
        >>> arrays = _coco_accumulate(
        ...     torch.tensor([0.9, 0.8], dtype=torch.float64), torch.tensor([0, 0]), torch.tensor([0, 1]),
        ...     torch.tensor([[[True]], [[False]]]), torch.zeros(2, 1, 1, dtype=torch.bool),
        ...     torch.tensor([0, 0]), torch.ones(2, 1, dtype=torch.bool),
        ...     torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64), [100])
        >>> arrays.precision[0, :, 0, 0, 0].tolist(), arrays.recall[0, 0, 0, 0].item()
        ([0.9999999999999998, 0.9999999999999998, 0.0], 0.5)
    """
    device = scores.device
    n, t, a = matched.shape
    r, m_count = rec_thresholds.shape[0], len(max_dets)
    classes = torch.unique(torch.cat([labels, gt_labels]))
    k = classes.numel()
    precision = torch.full((t, r, k, a, m_count), -1.0, dtype=torch.float64, device=device)
    recall = torch.full((t, k, a, m_count), -1.0, dtype=torch.float64, device=device)
    score_arr = torch.full((t, r, k, a, m_count), -1.0, dtype=torch.float64, device=device)
    if k == 0:
        return CocoEvalArrays(precision, recall, score_arr, classes)

    gcls = torch.searchsorted(classes, gt_labels)
    gorder = torch.sort(gcls, stable=True)
    gstart, gend = _segment_bounds(gorder.values, k)
    npig = _segment_sums(gt_counted[gorder.indices], gstart, gend)  # (K, A)

    cls = torch.searchsorted(classes, labels)
    order = torch.sort(-scores.double(), stable=True).indices
    order = order[torch.sort(cls[order], stable=True).indices]
    cls_s, score_s, rank_s = cls[order], scores.double()[order], rank[order]
    counted = ~ignored[order]
    # records last: cumulative sums and running maxima along the last axis are several times faster
    tp_all = (matched[order] & counted).permute(2, 1, 0).contiguous()  # (A, T, N)
    counted = counted.permute(2, 1, 0).contiguous()  # true and false positives
    need_all = _min_count_reaching(rec_thresholds, npig.T.clamp(min=1).double().reshape(-1)).view(a, 1, k, r)

    for mi, max_det in enumerate(max_dets):
        # only the records within max_det of their (image, class) cell: the others change no count, and
        # where they sit the precision equals that of the record before them, so dropping them changes
        # neither the envelope nor the first record reaching a recall threshold
        keep = (rank_s < max_det).nonzero()[:, 0]
        m = keep.numel()
        flags = (
            (tp_all, counted) if m == n else (tp_all.index_select(-1, keep), counted.index_select(-1, keep))
        )
        cls_m, score_m = cls_s[keep], score_s[keep]
        start, end = _segment_bounds(cls_m, k)
        seg_start = start[cls_m]
        seg_end, longest = end[cls_m], int((end - start).max())
        group = max(1, min(a, _BLOCK_ELEMENTS // max(m * t, 1)))  # area ranges handled together
        for a0 in range(0, a, group):  # blocks of area ranges bound memory; classes stay vectorised
            a1 = min(a, a0 + group)
            w = a1 - a0
            rel = []
            for f in flags:  # counts within each class: (w, T, M) int64, and the running totals
                c = torch.zeros((w, t, m + 1), dtype=torch.long, device=device)
                torch.cumsum(f[a0:a1], -1, out=c[..., 1:])
                rel.append((c[..., 1:] - c.index_select(-1, seg_start), c))
            (tp_rel, tp_c), (cnt_rel, _) = rel
            tp = tp_rel.double()
            n_pos = npig[:, a0:a1].T  # (w, K)
            has_gt = n_pos > 0
            denom = n_pos.clamp(min=1).double()
            if precision_eps:  # fp + tp as pycocotools adds them: an exact integer in float64
                pr = tp / (cnt_rel.double() + _EPS)
            else:
                pr = torch.where(cnt_rel > 0, tp / cnt_rel.clamp(min=1).double(), torch.zeros_like(tp))
            # right-to-left running max restarted at every class segment: (w * T, M)
            env = _segment_suffix_max_(pr.view(w * t, m), seg_end, longest)
            # first position with rc = tp / npig >= r inside each class segment: rc is monotone in the
            # integer tp, so search the smallest tp whose float64 recall reaches r, on integer keys
            flat = cls_m * (m + 1) + tp_rel.view(w * t, m)  # non-decreasing along M
            query = (torch.arange(k, device=device)[:, None] * (m + 1) + need_all[a0:a1]).expand(w, t, k, r)
            hit = torch.searchsorted(flat, query.reshape(w * t, k * r), side="left")  # (w * T, K * R)
            ok = hit < end.repeat_interleave(r)
            if m:
                safe = hit.clamp(max=m - 1)
                q = torch.where(ok, env.gather(1, safe), 0.0)
                ss = torch.where(ok, score_m[safe], 0.0)
            else:
                q = ss = torch.zeros((w * t, k * r), dtype=torch.float64, device=device)
            rec = (tp_c[..., end] - tp_c[..., start]).double() / denom[:, None, :]  # (w, T, K)
            recall[:, :, a0:a1, mi] = torch.where(has_gt[:, None, :], rec, -1.0).permute(1, 2, 0)
            for out, value in ((precision, q), (score_arr, ss)):  # (w, T, K, R) -> (T, R, K, w)
                value = torch.where(has_gt[:, None, :, None], value.view(w, t, k, r), -1.0)
                out[:, :, :, a0:a1, mi] = value.permute(1, 3, 2, 0)
    return CocoEvalArrays(precision, recall, score_arr, classes)


def _mean_valid(values: Tensor) -> np.ndarray:
    """Row means of the entries ``> -1`` of a (rows, n) array, ``-1`` for rows without any.

    pycocotools takes ``np.mean(s[s > -1])``; numpy sums with its pairwise summation, so the mean is
    taken with numpy on the host (a few thousand values) to match it bit for bit rather than to 1 ulp
    (a lone perfect detection then gives 0.9999999999999998, as in pycocotools).
    Each row is either entirely ``-1`` or free of it for the per-class reductions; the 12 summary
    numbers use one row.
    """
    x = values.detach().to("cpu", torch.float64).numpy()
    if x.shape[0] == 1:  # one flat selection, as pycocotools' ``summarize`` takes it
        row = x[0][x[0] > -1]
        return np.array([np.mean(row) if row.size else -1.0])
    out = np.full(x.shape[0], -1.0)
    valid = (x > -1).all(axis=1) & (x.shape[1] > 0)
    if valid.any():  # rows of a C-contiguous array reduce exactly like separate 1-d arrays
        out[valid] = np.mean(np.ascontiguousarray(x[valid]), axis=1)
    return out


def coco_summary_from_arrays(
    precision: Tensor,
    recall: Tensor,
    iou_thresholds: Tensor,
    max_dets: Sequence[int],
    ap_max_det: int = 100,
) -> Tensor:
    """pycocotools' 12 ``COCOeval.stats`` from the accumulated arrays.

    Args:
        precision (Tensor[T, R, K, A, M] float64): from :func:`_coco_accumulate` (A = COCO's 4 ranges).
        recall (Tensor[T, K, A, M] float64): from :func:`_coco_accumulate`.
        iou_thresholds (Tensor[T] float64): the thresholds; AP50/AP75 select ``== 0.5`` / ``== 0.75``.
        max_dets: the sorted three ``maxDets``.
        ap_max_det: the maxDets of stat 0: pycocotools' literal 100 (default), or faster-coco-eval's
            ``max_dets[2]``.

    Returns:
        Tensor[12] float64: AP, AP50, AP75, APs, APm, APl, AR@maxDets[0..2], ARs, ARm, ARl.

    Aggregation:
        Each number is one flat mean over (thresholds, recall thresholds, classes) of the entries
        that are not ``-1``, not a mean of per-class means; ``-1`` if nothing remains. Stat 0 uses
        ``maxDets == ap_max_det``: 100 literally by default (pycocotools quirk), so it is ``-1`` if
        100 is not in ``max_dets``.

    Example:
        >>> p = torch.full((10, 101, 1, 4, 3), 0.5, dtype=torch.float64)
        >>> rc = torch.full((10, 1, 4, 3), 0.25, dtype=torch.float64)
        >>> thr = torch.tensor([0.5 + 0.05 * i for i in range(10)], dtype=torch.float64)
        >>> coco_summary_from_arrays(p, rc, thr, [1, 10, 100])[[0, 8]].tolist()
        [0.5, 0.25]
    """
    dev = precision.device
    md = list(max_dets)
    m_idx = torch.tensor(md, device=dev)
    all_t = torch.ones_like(iou_thresholds, dtype=torch.bool)

    def stat(ap: bool, t_sel: Tensor, area: int, max_det: int) -> float:
        m_sel = m_idx == max_det
        s = precision[:, :, :, area][..., m_sel][t_sel] if ap else recall[:, :, area][..., m_sel][t_sel]
        return float(_mean_valid(s.reshape(1, -1))[0])

    t50, t75 = iou_thresholds == 0.5, iou_thresholds == 0.75
    stats = [
        stat(True, all_t, 0, ap_max_det),
        stat(True, t50, 0, md[2]),
        stat(True, t75, 0, md[2]),
        stat(True, all_t, 1, md[2]),
        stat(True, all_t, 2, md[2]),
        stat(True, all_t, 3, md[2]),
        stat(False, all_t, 0, md[0]),
        stat(False, all_t, 0, md[1]),
        stat(False, all_t, 0, md[2]),
        stat(False, all_t, 1, md[2]),
        stat(False, all_t, 2, md[2]),
        stat(False, all_t, 3, md[2]),
    ]
    return torch.tensor(stats, dtype=torch.float64, device=dev)


def per_class_from_arrays(
    precision: Tensor, recall: Tensor, max_dets: Sequence[int], ap_max_det: int = 100
) -> tuple[Tensor, Tensor]:
    """Per-class AP (stat 0 restricted to one class) and AR at ``max_dets[2]`` (stat 8), like torchmetrics.

    Args:
        precision (Tensor[T, R, K, A, M] float64): accumulated precision.
        recall (Tensor[T, K, A, M] float64): accumulated recall.
        max_dets: the sorted three ``maxDets``.
        ap_max_det: the maxDets of the AP (see :func:`coco_summary_from_arrays`).

    Returns:
        Two Tensor[K] float64: AP over all thresholds at ``maxDets == ap_max_det`` (area "all"), and AR at
        ``max_dets[2]``; ``-1`` for a class without counted ground truth.

    Example:
        >>> p = torch.full((2, 3, 2, 4, 3), 0.5, dtype=torch.float64); p[:, :, 1] = -1
        >>> rc = torch.full((2, 2, 4, 3), 0.25, dtype=torch.float64)
        >>> [x.tolist() for x in per_class_from_arrays(p, rc, [1, 10, 100])]
        [[0.5, -1.0], [0.25, 0.25]]
    """
    m_idx = torch.tensor(list(max_dets), device=precision.device)
    s = precision[:, :, :, 0][..., m_idx == ap_max_det]  # (T, R, K, m)
    ap = _mean_valid(s.permute(2, 0, 1, 3).reshape(s.shape[2], s[:, :, :1].numel()))  # K may be 0
    rc = recall[:, :, 0][..., m_idx == max_dets[2]]  # (T, K, m)
    ar = _mean_valid(rc.permute(1, 0, 2).reshape(rc.shape[1], rc[:, :1].numel()))
    return torch.from_numpy(ap).to(precision.device), torch.from_numpy(ar).to(precision.device)


def ious_by_cell(
    ious: Tensor,
    counts: Tensor,
    det_labels: Tensor,
    det_rank: Tensor,
    gt_labels: Tensor,
    classes: Tensor,
    max_det: int,
) -> dict[tuple[int, int], Tensor | list]:
    """pycocotools' ``COCOeval.ious`` dict from per-image IoU blocks (torchmetrics' ``ious`` output).

    Args:
        ious (Tensor[P] float64): each image's (detections x ground truths) IoU block, flattened,
            detections in per-image score order, ground truths in input order.
        counts (Tensor[I, 2] int64): detections and ground truths of each image.
        det_labels (Tensor[N] int64): detection classes, in the same order as the blocks' rows.
        det_rank (Tensor[N] int64): rank within the (image, class) cell.
        gt_labels (Tensor[Ng] int64): ground-truth classes.
        classes (Tensor[K] int64): every class id.
        max_det: detections kept per cell (``maxDets[-1]``).

    Returns:
        ``{(image index, class id): Tensor[n_det, n_gt] float64}`` for cells with both detections and
        ground truths, ``[]`` for every other (image, class) pair, as pycocotools stores it.

    Example:
        >>> blocks, counts = torch.tensor([0.5, 0.0], dtype=torch.float64), torch.tensor([[1, 2]])
        >>> zero, both = torch.tensor([0]), torch.tensor([0, 1])
        >>> out = ious_by_cell(blocks, counts, zero, zero, both, both, 100)
        >>> out[(0, 0)], out[(0, 1)]
        (tensor([[0.5000]], dtype=torch.float64), [])
    """
    n_det, n_gt = counts[:, 0].tolist(), counts[:, 1].tolist()
    class_ids = classes.tolist()
    out: dict[tuple[int, int], Tensor | list] = {}
    blocks = torch.split(ious, [d * g for d, g in zip(n_det, n_gt, strict=True)])
    det_l, det_r = torch.split(det_labels, n_det), torch.split(det_rank, n_det)
    gt_l = torch.split(gt_labels, n_gt)
    for i, block in enumerate(blocks):  # a dict of per-cell tensors is built on the host, cell by cell
        out.update({(i, c): [] for c in class_ids})
        if n_det[i] == 0 or n_gt[i] == 0:
            continue
        matrix = block.reshape(n_det[i], n_gt[i])
        for c in torch.unique(det_l[i]).tolist():
            rows = (det_l[i] == c) & (det_r[i] < max_det)
            cols = gt_l[i] == c
            if bool(cols.any()):
                out[(i, c)] = matrix[rows][:, cols]
    return out
