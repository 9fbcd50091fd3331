"""Polygon rasterisation exactly as pycocotools does it, vectorised (a port of cocoapi ``rleFrPoly``).

cocoapi (``common/maskApi.c``, ``rleFrPoly``) upsamples each polygon by 5, rounds the vertices with
``(int)(5 * v + .5)``, walks every edge with a DDA line, keeps the points where the upsampled x
coordinate crosses a pixel centre column, downsamples them to (x, ceil(y)) boundary points and turns
those into run-length toggles; ``frPyObjects`` + ``merge`` then take the union of an annotation's
polygons. This module reproduces each step bit for bit with NumPy arrays over *all* polygons of a
batch at once (no loop over polygons or points), including C's truncating integer casts, and takes
the union in run-length space, so the dense masks are expanded once, on the chosen device, by
:func:`torchseg_metrics.io.rle.decode_rle`'s kernel. pycocotools is not needed; the tests compare
against it on every polygon of the real COCO data.

As in ``frPyObjects``, an odd trailing coordinate is ignored and later polygons may have 1 or 2
points. An annotation whose *first* polygon has 4 numbers or fewer is rejected: ``frPyObjects``
reads such a list as boxes, which pycocotools 2.0.11 then fails to convert.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from torchseg_metrics._checks import check_positive_int, fail
from torchseg_metrics.io.rle import _expand_runs

__all__ = ["rasterize_polygons"]

_SCALE = 5.0


def _as_polygons(segm: object, name: str) -> list[np.ndarray]:
    """The polygons of one annotation as float64 arrays of even length, with ``frPyObjects``' rules."""
    if not isinstance(segm, (list, tuple)) or len(segm) == 0:
        fail(name, "a non-empty list of polygons [[x1, y1, x2, y2, ...], ...]", segm)
    polys = []
    for j, p in enumerate(segm):  # type: ignore[union-attr]
        try:
            arr = np.asarray(p, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            fail(f"{name}[{j}]", "a flat list of numbers", p)
        if not isinstance(p, (list, tuple)) or len(arr) < 2:
            fail(f"{name}[{j}]", "a flat list of at least 2 numbers", p)
        if not np.isfinite(arr).all():
            fail(f"{name}[{j}]", "a polygon of finite coordinates", p)
        polys.append(arr)
    if len(polys[0]) <= 4:  # frPyObjects reads such a list as boxes and pycocotools 2.0.11 fails on it
        fail(f"{name}[0]", "a polygon of at least 3 points (more than 4 numbers)", segm[0])  # type: ignore[index]
    return [p[: len(p) // 2 * 2] for p in polys]


def _c_int(x: np.ndarray) -> np.ndarray:
    """C's ``(int)`` cast of a double: truncation toward zero."""
    return np.trunc(x).astype(np.int64)


def _polygon_toggles(
    xy: np.ndarray, k: np.ndarray, h: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Run toggles of ``P`` polygons (``rleFrPoly``), vectorised over polygons and points.

    Args:
        xy: float64 (sum(k), 2) vertices of all polygons, concatenated.
        k: int64 (P,) number of vertices per polygon (>= 1).
        h, w: int64 (P,) image height and width per polygon.

    Returns:
        (positions, polygon index), sorted by polygon then position: the column-major pixel indices
        where the mask flips, i.e. the boundary points of odd multiplicity below ``h * w``.
    """
    n_poly = len(k)
    poly_of_vtx = np.repeat(np.arange(n_poly), k)
    first_vtx = np.cumsum(k) - k
    x = _c_int(_SCALE * xy[:, 0] + 0.5)
    y = _c_int(_SCALE * xy[:, 1] + 0.5)
    nxt = np.arange(len(x)) + 1
    wrap = nxt == (first_vtx + k)[poly_of_vtx]  # x[k] = x[0]: the polygon is closed
    nxt[wrap] = first_vtx[poly_of_vtx[wrap]]
    xs, xe, ys, ye = x, x[nxt], y, y[nxt]
    dx, dy = np.abs(xe - xs), np.abs(ys - ye)
    xmajor = dx >= dy
    flip = (xmajor & (xs > xe)) | (~xmajor & (ys > ye))
    xs, xe = np.where(flip, xe, xs), np.where(flip, xs, xe)
    ys, ye = np.where(flip, ye, ys), np.where(flip, ys, ye)
    big = np.where(xmajor, dx, dy)
    num = np.where(xmajor, ye - ys, xe - xs).astype(np.float64)
    # a zero-length edge divides 0 by 0 in C; its single point's rounded coordinate is never read
    s = np.divide(num, big, out=np.zeros_like(num), where=big > 0)
    # one point per step of every edge: edge e contributes big[e] + 1 points
    n_pts = big + 1
    edge = np.repeat(np.arange(len(x)), n_pts)
    d = np.arange(len(edge)) - np.repeat(np.cumsum(n_pts) - n_pts, n_pts)
    t = np.where(flip[edge], big[edge] - d, d)
    ft = t.astype(np.float64)
    xm = xmajor[edge]
    u = np.where(xm, t + xs[edge], _c_int(xs[edge] + s[edge] * ft + 0.5))
    v = np.where(xm, _c_int(ys[edge] + s[edge] * ft + 0.5), t + ys[edge])
    # boundary points: where u changes between consecutive points of one polygon
    poly_of_pt = poly_of_vtx[edge]
    same_poly = np.r_[False, poly_of_pt[1:] == poly_of_pt[:-1]]
    u_prev, v_prev = np.r_[0, u[:-1]], np.r_[0, v[:-1]]
    cross = same_poly & (u != u_prev)
    xd = np.where(u < u_prev, u, u - 1).astype(np.float64)
    xd = (xd + 0.5) / _SCALE - 0.5
    hp, wp = h[poly_of_pt], w[poly_of_pt]
    keep = cross & (np.floor(xd) == xd) & (xd >= 0) & (xd <= (wp - 1).astype(np.float64))
    yd = np.minimum(v, v_prev).astype(np.float64)
    yd = (yd + 0.5) / _SCALE - 0.5
    yd = np.ceil(np.clip(yd, 0.0, hp.astype(np.float64)))
    pos = xd.astype(np.int64) * hp + yd.astype(np.int64)
    pos, owner = pos[keep], poly_of_pt[keep]
    # qsort + the merge of zero-length runs in rleFrPoly amount to: a pixel index flips the mask
    # once per occurrence, so only indices of odd multiplicity below h*w are toggles
    order = np.lexsort((pos, owner))
    pos, owner = pos[order], owner[order]
    new = np.r_[True, (pos[1:] != pos[:-1]) | (owner[1:] != owner[:-1])] if len(pos) else np.zeros(0, bool)
    starts = np.flatnonzero(new)
    mult = np.diff(np.r_[starts, len(pos)])
    pos, owner = pos[starts], owner[starts]
    odd = (mult % 2 == 1) & (pos < (h * w)[owner])
    return pos[odd], owner[odd]


def _union_runs(
    pos: np.ndarray, poly: np.ndarray, ann_of_poly: np.ndarray, hw: np.ndarray, n_ann: int
) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths of the union of each annotation's polygons (``merge``), from per-polygon toggles.

    Returns (counts int64 concatenated, runs per annotation), ready for ``_expand_runs``.
    """
    # each polygon's toggles pair up into [start, end) intervals; an odd count ends at h*w
    local = np.arange(len(pos)) - np.searchsorted(poly, poly, side="left")
    delta = np.where(local % 2 == 0, 1, -1)
    n_tog = np.bincount(poly, minlength=len(ann_of_poly))
    open_poly = np.flatnonzero(n_tog % 2 == 1)
    ev_pos = np.r_[pos, hw[ann_of_poly[open_poly]]]
    ev_ann = np.r_[ann_of_poly[poly], ann_of_poly[open_poly]]
    ev_delta = np.r_[delta, -np.ones(len(open_poly), np.int64)]
    order = np.lexsort((ev_pos, ev_ann))
    ev_pos, ev_ann, cov = ev_pos[order], ev_ann[order], np.cumsum(ev_delta[order])
    # coverage after all events at one (annotation, position); each annotation's deltas sum to 0
    last = (
        np.r_[(ev_pos[1:] != ev_pos[:-1]) | (ev_ann[1:] != ev_ann[:-1]), True]
        if len(ev_pos)
        else np.zeros(0, bool)
    )
    g_pos, g_ann, after = ev_pos[last], ev_ann[last], cov[last]
    before = np.r_[0, after[:-1]]
    flip = ((before > 0) != (after > 0)) & (g_pos < hw[g_ann])
    t_pos, t_ann = g_pos[flip], g_ann[flip]
    n_t = np.bincount(t_ann, minlength=n_ann).astype(np.int64)
    n_runs = n_t + 1
    first_t = np.cumsum(n_t) - n_t
    local_t = np.arange(len(t_pos)) - first_t[t_ann]
    prev = np.where(local_t > 0, np.r_[0, t_pos[:-1]], 0)
    counts = np.empty(int(n_runs.sum()), np.int64)
    run_start = np.cumsum(n_runs) - n_runs
    counts[run_start[t_ann] + local_t] = t_pos - prev
    last_t = np.zeros(n_ann, np.int64)
    has = n_t > 0
    last_t[has] = t_pos[(first_t + n_t - 1)[has]]
    counts[run_start + n_t] = hw - last_t
    return counts, n_runs


def _polygon_runs(
    segms: Sequence[object], heights: np.ndarray, widths: np.ndarray, names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths (counts, runs per annotation) of the merged polygons of each annotation."""
    polys = [_as_polygons(s, n) for s, n in zip(segms, names, strict=True)]
    n_per_ann = np.array([len(p) for p in polys], dtype=np.int64)
    flat = [p for ps in polys for p in ps]
    ann_of_poly = np.repeat(np.arange(len(polys)), n_per_ann)
    k = np.array([len(p) // 2 for p in flat], dtype=np.int64)
    xy = np.concatenate(flat).reshape(-1, 2) if flat else np.zeros((0, 2))
    h, w = heights[ann_of_poly], widths[ann_of_poly]
    pos, poly = _polygon_toggles(xy, k, h, w)
    return _union_runs(pos, poly, ann_of_poly, heights * widths, len(polys))


def rasterize_polygons(
    polygons: Sequence[Sequence[Sequence[float]]],
    height: int,
    width: int,
    *,
    device: torch.device | str | None = None,
) -> Tensor:
    """Rasterise COCO polygon annotations exactly as ``pycocotools`` (``frPyObjects`` + ``merge``).

    Args:
        polygons: ``N`` annotations, each a list of polygons ``[x1, y1, x2, y2, ...]`` in pixels
            (the ``segmentation`` field of a COCO annotation).
        height: image height ``H``.
        width: image width ``W``.
        device: where the masks are built (default CPU).

    Returns:
        masks (Tensor[N, H, W] bool): the union of each annotation's polygons, bit for bit equal to
        ``pycocotools.mask.decode(merge(frPyObjects(polygons[i], H, W)))``.

    Raises:
        ValueError: if an annotation is not a non-empty list of polygons, or a polygon has fewer
            than 2 numbers (more than 4 for the first one), or ``height``/``width`` are not >= 1.

    Example:
        >>> rasterize_polygons([[[0, 0, 3, 0, 3, 2, 0, 2]]], 3, 4).int()
        tensor([[[1, 1, 1, 0],
                 [1, 1, 1, 0],
                 [0, 0, 0, 0]]], dtype=torch.int32)
    """
    h, w = check_positive_int("height", height), check_positive_int("width", width)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    n = len(polygons)
    heights, widths = np.full(n, h, np.int64), np.full(n, w, np.int64)
    counts, n_runs = _polygon_runs(polygons, heights, widths, [f"polygons[{i}]" for i in range(n)])
    flat = _expand_runs(counts, n_runs, n * h * w, dev)
    return flat.view(n, w, h).transpose(1, 2).contiguous()
