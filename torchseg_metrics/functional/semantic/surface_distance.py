"""Surface distances of binary masks (Hausdorff, HD95, average symmetric surface distance, surface Dice).

Definitions (MONAI ``monai.metrics``: ``get_mask_edges``, ``get_surface_distance``):

- The surface (edge set) of a mask is the mask minus its erosion by the cross-shaped structuring
  element (face neighbours), everything outside the image being 0 (SciPy ``binary_erosion``'s
  ``border_value=0``), in 2-D or 3-D.
- ``d(P -> G)``: for each surface point of the prediction, the Euclidean distance (with the voxel
  ``spacing``) to the nearest surface point of the target; ``d(G -> P)`` the other way.
- Empty surfaces (MONAI's rules): both empty: no distance at all (every score NaN); exactly one
  empty: every distance is +inf (Hausdorff and ASSD +inf, surface Dice 0). (MONAI's percentile
  Hausdorff is NaN there, ``torch.quantile`` of infinities; here it is +inf, as the maximum is.)
- Hausdorff: the maximum (or the ``percentile``-th value, linear interpolation as
  ``torch.quantile``) of each direction, then the larger of the two (``directed``: P -> G only).
  ASSD: the mean of both directions' distances together. Surface Dice at ``tolerance``: the share
  of both directions' distances that are ``<= tolerance``.

Both paths of :func:`surface_scores` evaluate the exact Euclidean distance transform
(:func:`distance_transform`, separable: on the CPU a native O(n) lower envelope per line, else a
brute-force minimum over each line, float64) of each surface. On the CPU the values at the other
surface's points are then taken out (host data, no sync) and reduced per pair; elsewhere masked
reductions of fixed shape give the same numbers without reading anything back to the host.
Distances are float64 (MONAI rounds them to float32).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from torchseg_metrics import _native
from torchseg_metrics._checks import Found, fail

SurfaceMethod = Literal["auto", "points", "dense"]
#: Elements of one chunk of min-plus temporaries (float64: 8 bytes each).
_CHUNK = 1 << 22


def surface_edges(masks: Tensor) -> Tensor:
    """bool surfaces of bool ``(M, *spatial)`` masks (2-D or 3-D): the mask minus its face-neighbour
    erosion, outside the image 0.

    Example:
        >>> m = torch.zeros(1, 4, 5, dtype=torch.bool)
        >>> m[0, 1:4, 1:4] = True
        >>> surface_edges(m)[0].int()
        tensor([[0, 0, 0, 0, 0],
                [0, 1, 1, 1, 0],
                [0, 1, 0, 1, 0],
                [0, 1, 1, 1, 0]], dtype=torch.int32)
    """
    eroded = masks.clone()
    for dim in range(1, masks.ndim):
        n = masks.shape[dim]
        if n < 3:  # every pixel touches the border along this axis
            return masks.clone()
        inner = masks.narrow(dim, 0, n - 2) & masks.narrow(dim, 2, n - 2)
        eroded.narrow(dim, 1, n - 2).logical_and_(inner)
        eroded.narrow(dim, 0, 1).zero_()
        eroded.narrow(dim, n - 1, 1).zero_()
    return masks & ~eroded


def _crop(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Both masks cut to the bounding box of their union (host data), as MONAI crops. The surfaces
    of the cut masks are those of the whole masks: nothing of either lies outside the box."""
    union = a | b
    box = []
    for axis in range(union.ndim):
        others = [d for d in range(union.ndim) if d != axis]
        hits = torch.nonzero(union.amax(dim=others) if others else union)  # host data: no device sync
        if hits.shape[0] == 0:
            return a, b
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return a[tuple(box)], b[tuple(box)]


def _directed(src: Tensor, to_dst2: Tensor | None, n_src: int, n_dst: int) -> Tensor:
    """MONAI's ``get_surface_distance(src, dst)`` for one pair of surfaces (host data): the distances
    at the ``src`` points (``to_dst2``: the squared transform of ``dst``, None when a surface is
    empty; ``n_src``, ``n_dst``: the point counts), with MONAI's empty rules."""
    if n_dst == 0:
        return torch.full((n_src,), math.inf, dtype=torch.float64)
    if n_src == 0:
        return torch.full((n_dst,), math.inf, dtype=torch.float64)
    assert to_dst2 is not None  # both surfaces hold points
    return to_dst2[src].sqrt()  # the root of the points' values only


def _quantile(values: Tensor, q: float | None) -> Tensor:
    if values.numel() == 0:
        return torch.tensor(math.nan, dtype=torch.float64)
    # host data (the CPU path only): reading the flag is no device sync
    if q is None or bool(torch.isinf(values).any()):  # all +inf (one surface empty): +inf
        return values.max()
    return torch.quantile(values, q)


def _scores_points(
    preds: Tensor, target: Tensor, spacing: Sequence[float], q: float | None, tolerance: float, directed: bool
) -> Tensor:
    """The scores of each (mask, mask) pair (host data): cut to the pair's box, surfaces, then the
    squared transforms of both, read at the other surface's points."""
    out = torch.empty(preds.shape[0], 3, dtype=torch.float64)
    for k in range(preds.shape[0]):  # one (image, class) pair at a time: its point sets differ in size
        a, b = _crop(preds[k], target[k])  # both surfaces lie in the masks' joint bounding box
        a, b = surface_edges(a[None])[0], surface_edges(b[None])[0]
        n_a, n_b = int(torch.count_nonzero(a)), int(torch.count_nonzero(b))  # host data: no device sync
        both_hold_points = n_a > 0 and n_b > 0  # else every distance is +inf: no transform needed
        to_b = distance_transform(b[None], spacing, squared=True)[0] if both_hold_points else None
        to_a = distance_transform(a[None], spacing, squared=True)[0] if both_hold_points else None
        d_pg = _directed(a, to_b, n_a, n_b)
        d_gp = _directed(b, to_a, n_b, n_a)
        hd = _quantile(d_pg, q) if directed else torch.maximum(_quantile(d_pg, q), _quantile(d_gp, q))
        both = torch.cat([d_pg, d_gp])
        nan = torch.tensor(math.nan, dtype=torch.float64)
        out[k, 0] = hd
        out[k, 1] = both.mean() if both.numel() else nan
        out[k, 2] = (both <= tolerance).double().mean() if both.numel() else nan
    return out


def distance_transform(targets: Tensor, spacing: Sequence[float], squared: bool = False) -> Tensor:
    """Exact Euclidean distance (float64, with ``spacing``; its square with ``squared``) from every
    pixel to the nearest True pixel of each bool ``(M, *spatial)`` mask; +inf where a mask is empty.
    Separable: the squared distance is minimised along one axis after the other (on the CPU the
    native O(n) lower envelope, in place along each axis; elsewhere brute force over each line,
    chunked).

    Example:
        >>> t = torch.zeros(1, 1, 5, dtype=torch.bool)
        >>> t[0, 0, 1] = True
        >>> distance_transform(t, (1.0, 2.0))
        tensor([[[2., 0., 2., 4., 6.]]], dtype=torch.float64)
    """
    sp = [float(v) for v in spacing]  # host numbers: nothing is read from the device
    f = torch.empty(targets.shape, dtype=torch.float64, device=targets.device)
    sites = targets.contiguous()
    if not _native.squared_edt_axis(f, 1, sp[0], sites=sites):  # CPU: the first axis from the sites
        f.fill_(math.inf).masked_fill_(targets, 0.0)
        sites = None
    for axis in range(1, targets.ndim):
        if sites is not None and axis == 1:
            continue  # done above
        if _native.squared_edt_axis(f, axis, sp[axis - 1]):  # CPU: in place
            continue
        n = targets.shape[axis]
        moved = f.movedim(axis, -1).contiguous()  # (..., n): lines along this axis
        idx = torch.arange(n, dtype=torch.float64, device=targets.device)
        d2 = ((idx[:, None] - idx[None, :]) * sp[axis - 1]).square()  # (i, j)
        lines = moved.view(-1, n)
        out = torch.empty_like(lines)
        step = max(1, _CHUNK // (n * n))
        for start in range(0, lines.shape[0], step):  # chunks of lines, bounded memory
            block = lines[start : start + step]
            out[start : start + step] = (block[:, None, :] + d2[None]).amin(-1)
        f = out.view(moved.shape).movedim(-1, axis)
    return f if squared else f.sqrt()


def _masked_quantile(values: Tensor, mask: Tensor, q: float | None) -> Tensor:
    """Per row, the max (q None) or linear-interpolated quantile of ``values`` where ``mask``; NaN
    for an empty row. Fixed shapes and device-side indices: no sync."""
    v = values.flatten(1)
    m = mask.flatten(1)
    n = m.sum(1)
    if q is None:
        top = torch.where(m, v, -math.inf).amax(1)
        return torch.where(n > 0, top, math.nan)
    ordered = torch.where(m, v, math.inf).sort(1).values
    pos = q * (n - 1).clamp(min=0).double()
    lo, hi = pos.floor().long(), pos.ceil().long()
    a, b = ordered.gather(1, lo[:, None])[:, 0], ordered.gather(1, hi[:, None])[:, 0]
    frac = pos - lo.double()
    value = torch.where(a == b, a, a + (b - a) * frac)  # inf - inf would be NaN
    return torch.where(n > 0, value, math.nan)


def _scores_dense(
    ep: Tensor, eg: Tensor, spacing: Sequence[float], q: float | None, tolerance: float, directed: bool
) -> Tensor:
    to_g = distance_transform(eg, spacing)  # distance to the target surface
    to_p = distance_transform(ep, spacing)
    n_p, n_g = ep.flatten(1).sum(1), eg.flatten(1).sum(1)
    # MONAI's empty rules: one surface empty -> every distance +inf, counted over the other surface
    one_empty = (n_p == 0) ^ (n_g == 0)
    hd_pg, hd_gp = _masked_quantile(to_g, ep, q), _masked_quantile(to_p, eg, q)
    hd = hd_pg if directed else torch.maximum(hd_pg, hd_gp)
    total = torch.where(ep, to_g, 0.0).flatten(1).sum(1) + torch.where(eg, to_p, 0.0).flatten(1).sum(1)
    count = (n_p + n_g).double()
    within = (
        (ep & (to_g <= tolerance)).flatten(1).sum(1) + (eg & (to_p <= tolerance)).flatten(1).sum(1)
    ).double()
    nan = torch.full_like(count, math.nan)
    assd = torch.where(count > 0, total / count.clamp(min=1), nan)
    nsd = torch.where(count > 0, within / count.clamp(min=1), nan)
    hd = torch.where(one_empty, math.inf, hd)
    assd = torch.where(one_empty, math.inf, assd)
    nsd = torch.where(one_empty, 0.0, nsd)
    return torch.stack([hd, assd, nsd], 1)


def surface_scores(
    preds: Tensor,
    target: Tensor,
    spacing: Sequence[float] | None = None,
    *,
    percentile: float | None = None,
    tolerance: float = 1.0,
    directed: bool = False,
    method: SurfaceMethod = "auto",
) -> Tensor:
    """``[hausdorff, assd, surface_dice]`` float64 ``(M, 3)`` of bool ``(M, *spatial)`` mask pairs.

    Args:
        preds, target (Tensor[M, H, W] or Tensor[M, D, H, W] bool): the masks, pair by pair.
        spacing: the voxel size per spatial axis (default 1).
        percentile: Hausdorff at this percentile of each direction (e.g. 95), else the maximum.
        tolerance: surface Dice tolerance, in the units of ``spacing``.
        directed: Hausdorff of ``preds -> target`` only.
        method: ``"points"`` (CPU default: values taken out per pair), ``"dense"`` (default
            elsewhere: masked reductions, no host sync), ``"auto"``.

    Example:
        >>> p = torch.zeros(1, 8, 8, dtype=torch.bool)
        >>> p[0, 2:5, 2:5] = True
        >>> t = torch.roll(p, 1, dims=2)
        >>> surface_scores(p, t, tolerance=0.5)
        tensor([[1.0000, 0.5000, 0.5000]], dtype=torch.float64)
    """
    if preds.shape != target.shape or preds.dtype != torch.bool or target.dtype != torch.bool:
        fail(
            "target",
            f"a bool tensor of the shape of `preds` {tuple(preds.shape)}",
            Found(f"{target.dtype} {tuple(target.shape)}"),
        )
    if preds.ndim not in (3, 4):
        fail("preds", "masks of shape (M, H, W) or (M, D, H, W)", Found(f"shape {tuple(preds.shape)}"))
    sp = (
        torch.ones(preds.ndim - 1, dtype=torch.float64)
        if spacing is None
        else torch.as_tensor(spacing, dtype=torch.float64)
    )
    q = None if percentile is None else percentile / 100
    if method == "auto":
        method = "points" if preds.device.type == "cpu" else "dense"
    if method == "points":  # on CUDA only when asked for: the masks are copied to the host
        return _scores_points(preds.cpu(), target.cpu(), sp.tolist(), q, tolerance, directed).to(preds.device)
    ep, eg = surface_edges(preds), surface_edges(target)
    return _scores_dense(ep, eg, sp.tolist(), q, tolerance, directed)  # sp: a host tensor of the spacing
