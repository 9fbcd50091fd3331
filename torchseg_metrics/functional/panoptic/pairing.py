"""Panoptic segment pairing: the per-class ``(iou_sum, tp, fp, fn)`` statistic of a batch, on the device.

One call pairs the segments of every image of the batch at once, with no Python loop over images,
segments or pairs (on CPU, step 1 walks the pixels in fixed-size chunks that stay in cache):

1. The pixels are turned into *records* ``(image, target category, target instance, crowd,
   prediction category, prediction instance, weight)``. On CPU, runs of equal consecutive pixels
   are merged into one record weighted by the run length (a 480x640 image has ~10^4 runs, so the
   rest of the work is ~30x smaller), in one native pass when the C kernels of
   :mod:`torchseg_metrics._native` are available, else with torch comparisons and gathers; on CUDA
   every pixel is a record of weight 1, so all shapes are fixed and nothing synchronises with the host.
2. Records are sorted by packed integer prediction keys ``(image, class, instance)``; run boundaries
   and a cumulative sum give compact prediction segment ids. A second, stable sort by the packed
   target keys ``(image, class, crowd, instance)`` puts records in (target segment, prediction
   segment) order, so target segments and (target, prediction) pairs are runs as well. On CPU the
   records of each pair are merged into one (~10^2 pairs per image), before both sorts by one sort
   of packed (target, prediction) keys when these fit in 63 bits, else after them.
3. Areas, intersections, prediction-on-void and prediction-on-crowd overlaps are integer
   ``index_add_`` sums over the compact ids (deterministic on CUDA); matching, false negatives and
   false positives are evaluated on the first record of each pair, target run and prediction run and
   summed per class into fixed ``(C + 1,)`` buffers whose last bin (the void class) is a dump bin.

The only data-dependent shapes (``nonzero`` in steps 1 and 2, the key width read from the largest
instance id) are taken for CPU tensors, where they cost no device synchronisation.

Rules (``compat="panopticapi"``, the default) are panopticapi's ``pq_compute_single_core``: IoU =
I / (|P| + |T| - I - |P ∩ target void|), a match needs IoU > 0.5 and equal categories, crowd target
segments are never matched and never false negatives, an unmatched prediction is forgiven when
target void plus the same-category crowd segment cover more than half of it, and each stuff segment
(distinct instance id) is a segment of its own. ``compat="torchmetrics"`` reproduces torchmetrics
1.9.0 (see :mod:`torchseg_metrics.functional.panoptic.metrics`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from torchseg_metrics import _native
from torchseg_metrics._transfer import to_device
from torchseg_metrics.functional.boundary import boundary_dilation, segment_bands

Compat = Literal["panopticapi", "torchmetrics"]
COMPAT_CHOICES: tuple[str, ...] = ("panopticapi", "torchmetrics")

#: Category and instance ids must lie in ``[0, MAX_ID]`` (they are packed into 32 bits of a key).
MAX_ID = 2**31 - 1


class PanopticStats(NamedTuple):
    """Per-class increments of one batch (class order: sorted things, then sorted stuffs).

    ``bad`` counts offending pixels: ``[preds ids outside [0, MAX_ID], target ids outside
    [0, MAX_ID], preds pixels of an unknown category (0 when those are allowed), target pixels of
    an unknown category other than the void ids (0 when those are allowed)]``.
    """

    iou_sum: Tensor
    tp: Tensor
    fp: Tensor
    fn: Tensor
    bad: Tensor


#: Category ids up to this bound are mapped to classes by a lookup table, larger ones by binary search.
_LUT_MAX_ID = 1 << 16


@lru_cache(maxsize=64)
def _category_table(
    things: tuple[int, ...], stuffs: tuple[int, ...], device: torch.device
) -> tuple[Tensor, bool]:
    """Class index of each category id, cached per device (one asynchronous copy per device, see
    :func:`torchseg_metrics._transfer.to_device`; none per update).

    A lookup table ``lut[cat + 1]`` (``lut[0]`` and ``lut[-1]`` are void) when every id is at most
    ``_LUT_MAX_ID``; otherwise the sorted ids followed by their class indices, for a binary search.
    """
    ids = list(things) + list(stuffs)
    k = len(ids)
    if max(ids) <= _LUT_MAX_ID:
        lut = torch.full((max(ids) + 3,), k, dtype=torch.int64)
        lut[torch.tensor(ids) + 1] = torch.arange(k)
        return to_device(lut, device), True
    order = sorted(range(k), key=ids.__getitem__)
    return to_device(torch.tensor([ids[i] for i in order] + order, dtype=torch.int64), device), False


def _class_index(cat: Tensor, table: Tensor, is_lut: bool, k: int) -> Tensor:
    """Class index of each category id; ``k`` (the void class) for ids outside the table."""
    if is_lut:
        return _take(table, cat.clamp(-1, table.numel() - 2) + 1)
    cats, cls = table[:k], table[k:]
    pos = torch.searchsorted(cats, cat).clamp_(max=k - 1)
    return torch.where(_take(cats, pos) == cat, _take(cls, pos), k)


def _take(values: Tensor, index: Tensor) -> Tensor:
    """``values[index]`` for 1-D tensors (``index_select`` is much faster than advanced indexing on CPU)."""
    return values.index_select(0, index)


def _run_starts(sorted_keys: Tensor) -> Tensor:
    """True where a key differs from its predecessor (and at position 0)."""
    new = torch.ones_like(sorted_keys, dtype=torch.bool)
    torch.ne(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
    return new


#: A dtype twice as wide as each integer dtype, to move a (category, instance) pair as one element.
_PAIR_DTYPE = {
    torch.int64: torch.complex128,
    torch.int32: torch.int64,
    torch.int16: torch.int32,
    torch.int8: torch.int16,
    torch.uint8: torch.int16,
}


def _gather_pairs(pairs: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """Rows ``index`` of an ``(N, 2)`` integer tensor as two int64 columns, possibly strided views.

    A contiguous pair is gathered as one element of twice the width: both ids share a cache line,
    and ``index_select`` of ``(N, 2)`` rows is ~10x slower on CPU than of single elements.
    """
    wide = _PAIR_DTYPE.get(pairs.dtype)
    if wide is None or not pairs.is_contiguous():
        return pairs[:, 0].index_select(0, index).long(), pairs[:, 1].index_select(0, index).long()
    got = pairs.view(wide).squeeze(1).index_select(0, index)
    got = torch.view_as_real(got).view(torch.int64) if wide is torch.complex128 else got.view(pairs.dtype)
    cols = got.reshape(-1, 2).long()
    return cols[:, 0], cols[:, 1]


#: Pixels compacted per step on CPU: the inputs of a chunk (32 bytes a pixel) stay in cache between
#: the comparisons and the gathers, which otherwise read the whole batch from memory a second time.
_CHUNK_PIXELS = 1 << 18


def _run_starts_in_chunk(
    pf: Tensor, tf: Tensor, c: Tensor | None, lo: int, hi: int, per_image: int, buffers: tuple[Tensor, Tensor]
) -> Tensor:
    """Indices from ``lo`` (sorted, int64) of the first pixel of each run among pixels ``lo:hi``.

    ``pf``/``tf`` are the flat ``(category, instance)`` streams (2 elements a pixel), ``c`` the flat
    crowd mask; pixel ``lo`` starts a run, and so does the first pixel of every image. Comparing each
    stream with itself shifted by one pixel gives a bool pair per pixel; the pairs of 4 consecutive
    pixels, viewed as one int64, are non-zero when any of them changed: a ``nonzero`` over blocks, then
    within the few changed ones, is ~2x cheaper than over pixels. CPU only (``nonzero`` is no sync).
    """
    pf, tf, c = pf[2 * lo : 2 * hi], tf[2 * lo : 2 * hi], c[lo:hi] if c is not None else None
    n = hi - lo - 1  # pixel i + 1 starts a run when pair i (pixels i and i + 1) changed
    npad = (n + 3) // 4 * 4
    changed, scratch = buffers[0][: 2 * npad], buffers[1][: 2 * npad]
    torch.ne(pf[2:], pf[:-2], out=changed[: 2 * n])
    torch.ne(tf[2:], tf[:-2], out=scratch[: 2 * n])
    changed[: 2 * n] |= scratch[: 2 * n]
    changed[2 * n :] = False
    first = -lo % per_image or per_image  # the first image start after pixel 0, which starts a run anyway
    changed.view(npad, 2)[first - 1 : n : per_image, 0] = True
    blocks = changed.view(torch.int64)
    hit_blocks = blocks.bool()
    if c is not None:  # one byte per pixel: 4 pixels per int32
        crowd_changed = scratch[:npad]
        torch.ne(c[1:], c[:-1], out=crowd_changed[:n])
        crowd_changed[n:] = False
        crowd_blocks = crowd_changed.view(torch.int32)
        hit_blocks |= crowd_blocks.bool()
    hit = hit_blocks.nonzero().squeeze(1)
    within = blocks.index_select(0, hit).view(torch.int16).bool()
    if c is not None:
        within |= crowd_blocks.index_select(0, hit).view(torch.bool)
    j = within.nonzero().squeeze(1)
    starts = hit.index_select(0, j >> 2) * 4 + (j & 3) + 1
    return torch.cat([starts.new_zeros(1), starts])


def _run_records_torch(
    p: Tensor, t: Tensor, c: Tensor | None, per_image: int
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor, Tensor]:
    """``(idx, t_cat, t_inst, crowd, p_cat, p_inst)`` of the runs of ``(P, 2)`` pixel pairs, with
    torch ops, chunk by chunk (the CPU twin of :func:`torchseg_metrics._native.run_records`)."""
    total = p.shape[0]
    pf, tf = p.reshape(-1), t.reshape(-1)
    size = min(total, _CHUNK_PIXELS)
    flags = torch.empty(2 * size + 8, dtype=torch.bool, device=p.device)
    buffers = (flags, torch.empty_like(flags))
    parts = []
    for lo in range(0, total, size):
        hi = min(lo + size, total)
        local = _run_starts_in_chunk(pf, tf, c, lo, hi, per_image, buffers)
        cc = c[lo:hi].index_select(0, local) if c is not None else None
        parts.append((local + lo, *_gather_pairs(t[lo:hi], local), cc, *_gather_pairs(p[lo:hi], local)))
    idx, t_cat, t_inst = (torch.cat([part[k] for part in parts]) for k in range(3))
    p_cat, p_inst = (torch.cat([part[k] for part in parts]) for k in (4, 5))
    crowd = torch.cat([part[3] for part in parts]) if c is not None else None
    return idx, t_cat, t_inst, crowd, p_cat, p_inst


def _records(
    preds: Tensor, target: Tensor, target_crowd: Tensor | None, compress_runs: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor, Tensor, Tensor]:
    """Flatten ``(B, *spatial, 2)`` inputs to records; returns img, t_cat, t_inst, crowd, p_cat, p_inst, w."""
    batch, device = preds.shape[0], preds.device
    total = preds[..., 0].numel()
    per_image = total // batch
    p = preds.reshape(total, 2)
    t = target.reshape(total, 2)
    c = target_crowd.reshape(total) if target_crowd is not None else None
    if compress_runs:
        # A record per run of consecutive pixels equal in all five channels: in one native pass
        # when the C kernels are available, else found and gathered chunk by chunk with torch ops
        # (a chunk also starts a run: records of equal keys are merged after the sort anyway).
        native = _native.run_records(p, t, c, per_image)
        if native is not None:
            idx, t_cat, t_inst, p_cat, p_inst, crowd = native
        else:
            idx, t_cat, t_inst, crowd, p_cat, p_inst = _run_records_torch(p, t, c, per_image)
        w = torch.diff(idx, append=idx.new_full((1,), total))
        return idx // per_image, t_cat, t_inst, crowd, p_cat, p_inst, w
    img = torch.arange(total, device=device) // per_image
    w = torch.ones(total, dtype=torch.int64, device=device)
    return img, t[:, 0].long(), t[:, 1].long(), c, p[:, 0].long(), p[:, 1].long(), w


def _bands(
    preds: Tensor, target: Tensor, target_crowd: Tensor | None, boundary: tuple[float, str]
) -> tuple[Tensor, Tensor]:
    """int64 per-pixel flags (flattened as the pixel records): in its target segment's band, in its
    prediction segment's band. Segments: equal (category, instance[, crowd]) (panopticapi's ids)."""
    ratio, rounding = boundary
    d = boundary_dilation(tuple(preds.shape[1:-1]), ratio, rounding)  # type: ignore[arg-type]
    t_ids = (target[..., 0].long() << 32) | (target[..., 1].long() << 1)
    if target_crowd is not None:
        t_ids = t_ids | target_crowd.long()
    p_ids = (preds[..., 0].long() << 32) | (preds[..., 1].long() << 1)
    return segment_bands(t_ids, d).reshape(-1).long(), segment_bands(p_ids, d).reshape(-1).long()


def _merge_records(
    key: Tensor, w: Tensor, columns: list[Tensor | None], extra: Tensor | None = None
) -> tuple[Tensor, list, Tensor | None]:
    """CPU only (host compaction): one record per distinct ``key`` with the summed weight (and the
    summed rows of ``extra`` ``(k, n)``, further weights); the ``columns`` must be functions of the
    key (they are taken from any record of it)."""
    key, order = torch.sort(key)
    first = _run_starts(key).nonzero().squeeze(1)
    ends = torch.cat([first[1:], first.new_full((1,), w.numel())]) - 1
    w = _run_sums(_take(w, order), ends)
    if extra is not None:
        extra = _run_sums(extra.index_select(-1, order), ends)
    keep = _take(order, first)
    return w, [None if x is None else _take(x, keep) for x in columns], extra


def _run_sums(values: Tensor, ends: Tensor) -> Tensor:
    """Sums of consecutive runs of ``values`` (along the last axis) that end at ``ends``."""
    totals = torch.cumsum(values, -1).index_select(-1, ends)
    return torch.diff(totals, dim=-1, prepend=torch.zeros_like(totals[..., :1]))


def _raw_record_key(records: list[Tensor | None], batch: int) -> Tensor | None:
    """``(image, crowd, t_cat, t_inst, p_cat, p_inst)`` packed into one int64, or None when an id is
    negative or they do not fit (CPU tensors: reading the extremes is no device sync)."""
    img, t_cat, t_inst, crowd, p_cat, p_inst = records
    if int(torch.stack([t_cat.min(), t_inst.min(), p_cat.min(), p_inst.min()]).min()) < 0:
        return None
    cat_bits = int(torch.maximum(t_cat.max(), p_cat.max())).bit_length()
    inst_bits = int(torch.maximum(t_inst.max(), p_inst.max())).bit_length()
    if (2 * batch).bit_length() + 2 * (cat_bits + inst_bits) > 63:
        return None
    key = img * 2 + crowd if crowd is not None else img
    key = (((key << cat_bits) | t_cat) << inst_bits) | t_inst
    return (((key << cat_bits) | p_cat) << inst_bits) | p_inst


def _panoptic_stats_update(
    preds: Tensor,
    target: Tensor,
    target_crowd: Tensor | None,
    *,
    things: tuple[int, ...],
    stuffs: tuple[int, ...],
    allow_unknown_preds_category: bool,
    target_void: tuple[int, ...] | None = None,
    compat: Compat = "panopticapi",
    modified: bool = False,
    compress_runs: bool | None = None,
    boundary: tuple[float, str] | None = None,
) -> PanopticStats:
    """Per-class ``(iou_sum, tp, fp, fn)`` increments of a batch; mutates nothing.

    Inputs are assumed checked for shape, dtype and device (values are counted into ``bad``, never
    trusted: offending pixels are treated as void so the kernel cannot fail on them).

    Args:
        preds (Tensor[B, *spatial, 2] int): (category_id, instance_id) per pixel.
        target (Tensor[B, *spatial, 2] int): (category_id, instance_id) per pixel; categories
            outside ``things`` and ``stuffs`` are void (see ``target_void``).
        target_crowd (Tensor[B, *spatial] bool | None): target pixels that belong to crowd segments.
        things: sorted thing category ids.
        stuffs: sorted stuff category ids.
        allow_unknown_preds_category: prediction pixels of unknown categories are void (else counted).
        target_void: the target category ids that mark void; pixels of other unknown categories are
            void too but counted in ``bad``. ``None``: every unknown target category is void, uncounted.
        compat: ``"panopticapi"`` rules or ``"torchmetrics"`` 1.9.0 rules.
        modified: PQ-dagger: stuff classes score ΣIoU over all pairs with IoU > 0 divided by the
            number of target segments (stuff merged per image), with no false positives/negatives.
        compress_runs: merge runs of equal pixels into weighted records (host-side compaction);
            ``None`` means on CPU only.
        boundary: ``(dilation_ratio, rounding)`` for boundary PQ (boundary-iou-api): a pair's IoU is
            min(mask IoU, boundary IoU), the boundary union without prediction-band pixels on target
            void, for the > 0.5 test and the sum; bands are per segment on the full image. The band
            flags travel in the instance ids' low bit, so runs split where a band starts or ends.

    Returns:
        PanopticStats: ``iou_sum`` float64 (C,), ``tp``/``fp``/``fn`` int64 (C,), ``bad`` int64 (4,).
    """
    device = preds.device
    num_things, k = len(things), len(things) + len(stuffs)
    if compress_runs is None:
        compress_runs = device.type == "cpu"
    if preds.numel() == 0:
        zeros = torch.zeros(k, dtype=torch.int64, device=device)
        return PanopticStats(zeros.double(), zeros, zeros.clone(), zeros.clone(), zeros.new_zeros(4))
    batch = preds.shape[0]
    band_w = None
    if boundary is not None:  # band flags ride in the instance ids' low bit through the run records
        t_band, p_band = _bands(preds, target, target_crowd, boundary)
        target, preds = target.long().clone(), preds.long().clone()
        target[..., 1] = target[..., 1] * 2 + t_band.view(target.shape[:-1])
        preds[..., 1] = preds[..., 1] * 2 + p_band.view(preds.shape[:-1])
    img, t_cat, t_inst, crowd, p_cat, p_inst, w = _records(preds, target, target_crowd, compress_runs)
    raw_key = _raw_record_key([img, t_cat, t_inst, crowd, p_cat, p_inst], batch) if compress_runs else None
    if raw_key is not None:  # equal records anywhere in an image: one (everything below is per record)
        w, merged, _ = _merge_records(raw_key, w, [img, t_cat, t_inst, crowd, p_cat, p_inst])
        img, t_cat, t_inst, crowd, p_cat, p_inst = merged
    if boundary is not None:  # runs and merges kept the band bits apart: decode them into weights
        t_flag, p_flag = t_inst & 1, p_inst & 1
        t_inst, p_inst = t_inst >> 1, p_inst >> 1
        band_w = torch.stack([w * t_flag, w * p_flag, w * t_flag * p_flag])

    table, is_lut = _category_table(things, stuffs, device)
    pcls, tcls = _class_index(p_cat, table, is_lut, k), _class_index(t_cat, table, is_lut, k)
    # ids in [0, 2**31 - 1] iff no bit above bit 30 is set in either (the sign bit included)
    p_ok, t_ok = ((p_cat | p_inst) >> 31) == 0, ((t_cat | t_inst) >> 31) == 0
    t_void, p_void = tcls == k, pcls == k
    unknown = (w * (p_ok & p_void)).sum() if not allow_unknown_preds_category else w.new_zeros(())
    unknown_t = w.new_zeros(())
    if target_void is not None:  # unknown target categories other than the void ids are counted
        strange = t_ok & t_void
        for void_id in target_void:  # at most two ids
            strange = strange & (t_cat != void_id)
        unknown_t = (w * strange).sum()
    bad = torch.stack([(w * ~p_ok).sum(), (w * ~t_ok).sum(), unknown, unknown_t])

    drop_t, drop_p = t_void | ~t_ok, p_void | ~p_ok
    if compat == "torchmetrics" or modified:  # stuff segments merged per image: instance ignored
        drop_t, drop_p = drop_t | (tcls >= num_things), drop_p | (pcls >= num_things)
    t_inst = torch.where(drop_t, 0, t_inst)
    p_inst = torch.where(drop_p, 0, p_inst)
    g = k + 1
    # Packed keys (image, class[, crowd]) << bits | instance. For CPU tensors reading the largest
    # instance id is no device sync, and narrower keys (int32 when they fit) sort several times faster.
    bits = int(torch.maximum(t_inst.max(), p_inst.max())).bit_length() if device.type == "cpu" else 31
    p_key = ((img * g + pcls) << bits) | p_inst
    t_key = img * g + tcls
    if crowd is not None:
        crowd = crowd & ~t_void
        t_key = t_key * 2 + crowd
    t_key = (t_key << bits) | t_inst
    pair_bits = bits + g.bit_length()
    if compress_runs and ((2 * batch * g) << (bits + pair_bits)).bit_length() <= 63:
        # CPU only (host compaction): merge the records of each (target key, prediction key) pair
        # first (one sort of packed pair keys), so both sorts below and everything after them see
        # ~10^2 records per image instead of ~10^4. Every later quantity is a function of the two
        # keys, and the pairs leave the two stable sorts in the same (target, prediction) order, so
        # the result is bit-identical (the float64 IoU sums too).
        pair_key = (t_key << pair_bits) | (pcls << bits) | p_inst
        w, merged, band_w = _merge_records(
            pair_key, w, [img, tcls, pcls, t_inst, p_key, t_key, crowd], band_w
        )
        img, tcls, pcls, t_inst, p_key, t_key, crowd = merged
    if (2 * batch * g) << bits <= MAX_ID:
        p_key, t_key = p_key.int(), t_key.int()

    # Sort 1: compact prediction ids. Sort 2 (stable): target-major, prediction-minor order.
    p_key1, o1 = torch.sort(p_key, stable=True)
    p_new1 = _run_starts(p_key1)
    ps1 = torch.cumsum(p_new1, 0) - 1
    t_key2, o2 = torch.sort(_take(t_key, o1), stable=True)
    order, ps2 = _take(o1, o2), _take(ps1, o2)
    t_new2 = _run_starts(t_key2)
    pair_new2 = t_new2.clone()
    pair_new2[1:] |= ps2[1:] != ps2[:-1]
    w2 = _take(w, order)
    band_w2 = band_w.index_select(1, order) if band_w is not None else None
    if compress_runs:
        # CPU only (host compaction): merge each (target, prediction) run into one record, so the
        # rest works on ~10^2 pairs per image instead of ~10^4 records.
        first = pair_new2.nonzero().squeeze(1)
        last = torch.cat([first[1:], first.new_full((1,), w2.numel())]) - 1
        w2 = _run_sums(w2, last)
        band_w2 = _run_sums(band_w2, last) if band_w2 is not None else None
        order, ps2, t_new2 = _take(order, first), _take(ps2, first), _take(t_new2, first)
        pair_new2 = torch.ones_like(t_new2)
    ts2 = torch.cumsum(t_new2, 0) - 1
    pr2 = torch.cumsum(pair_new2, 0) - 1
    tcls2, pcls2 = _take(tcls, order), _take(pcls, order)
    t_void2 = tcls2 == k
    crowd2 = _take(crowd, order) if crowd is not None else torch.zeros_like(t_void2)
    t_real2 = ~(t_void2 | crowd2)  # a target segment that can be matched or missed

    m = w2.numel()  # >= the number of target segments, prediction segments and pairs

    def seg_sum(index: Tensor, values: Tensor) -> Tensor:
        return torch.zeros(m, dtype=torch.int64, device=device).index_add_(0, index, values)

    t_area, p_area, inter = seg_sum(ts2, w2), seg_sum(ps2, w2), seg_sum(pr2, w2)
    p_on_void = seg_sum(ps2, w2 * t_void2)
    p_forgiven = p_on_void
    if crowd is not None:
        # panopticapi forgives a prediction with its own category's crowd segment: the *last* one
        # listed, here the crowd segment of that (image, category) with the largest instance id.
        slot2 = _take(img, order) * g + tcls2
        t_inst2 = _take(t_inst, order)
        last_crowd = torch.full((batch * g,), -1, dtype=torch.int64, device=device)
        last_crowd.scatter_reduce_(0, slot2, torch.where(crowd2, t_inst2, -1), reduce="amax")
        own_crowd = crowd2 & (pcls2 == tcls2) & (t_inst2 == _take(last_crowd, slot2))
        p_forgiven = p_on_void + seg_sum(ps2, w2 * own_crowd)

    # Pairs, evaluated on their first record.
    a_t, a_p, i, v_p = _take(t_area, ts2), _take(p_area, ps2), _take(inter, pr2), _take(p_on_void, ps2)
    same = pair_new2 & (tcls2 == pcls2) & t_real2
    if compat == "torchmetrics":
        pv_t = _take(seg_sum(ts2, w2 * (pcls2 == k)), ts2)
        # torchmetrics divides int64 tensors, which yields float32
        iou32 = i.float() / (a_p - v_p + a_t - pv_t - i).float()
        match = same & (iou32 > 0.5)
        iou = iou32.double()
    else:
        union = a_p + a_t - i - v_p
        iou = i.double() / union.double()
        match = same & (2 * i > union)  # == (i / union > 0.5) in float64 for union < 2**52
        if band_w2 is not None:  # boundary PQ: min(mask IoU, boundary IoU), both above one half
            tb2, pb2, both2 = band_w2.unbind(0)  # band pixels of each record: target, pred, both
            ib = _take(seg_sum(pr2, both2), pr2)
            union_b = _take(seg_sum(ts2, tb2), ts2) + _take(seg_sum(ps2, pb2 - pb2 * t_void2), ps2) - ib
            iou_b = torch.where(union_b > 0, ib.double() / union_b.clamp(min=1).double(), 0.0)
            match = match & (2 * ib > union_b)
            iou = torch.minimum(iou, iou_b)
    add_iou = match
    if modified:
        is_thing2 = tcls2 < num_things
        match = match & is_thing2
        add_iou = match | (same & ~is_thing2 & (i > 0))

    def per_class(flag: Tensor, classes: Tensor) -> Tensor:
        return torch.zeros(g, dtype=torch.int64, device=device).index_add_(0, classes, flag.long())

    tp = per_class(match, tcls2)
    iou_sum = torch.zeros(g, dtype=torch.float64, device=device)
    iou_sum.index_add_(0, torch.where(add_iou, tcls2, k), torch.where(add_iou, iou, 0.0))
    t_hit, p_hit = seg_sum(ts2, match.long()), seg_sum(ps2, match.long())

    # False negatives on the first record of each target segment.
    fn_seg = t_new2 & t_real2 & (_take(t_hit, ts2) == 0)
    if compat == "torchmetrics":
        fn_seg &= (pv_t.float() / a_t.float()) <= 0.5
    if modified:
        fn_seg &= is_thing2
        tp += per_class(t_new2 & t_real2 & ~is_thing2, tcls2)
    fn = per_class(fn_seg, tcls2)

    # False positives on the first record of each prediction segment (sort-1 order).
    pcls1 = _take(pcls, o1)
    a_p1, forgiven1 = _take(p_area, ps1), _take(p_forgiven, ps1)
    fp_seg = p_new1 & (pcls1 != k) & (_take(p_hit, ps1) == 0)
    if compat == "torchmetrics":
        fp_seg &= (forgiven1.float() / a_p1.float()) <= 0.5
    else:
        fp_seg &= 2 * forgiven1 <= a_p1
    if modified:
        fp_seg &= pcls1 < num_things
    fp = per_class(fp_seg, pcls1)
    return PanopticStats(iou_sum[:k], tp[:k], fp[:k], fn[:k], bad)
