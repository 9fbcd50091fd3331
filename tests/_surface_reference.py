"""Surface distances with SciPy, following MONAI's ``get_mask_edges`` / ``get_surface_distance``.

Edges: ``mask ^ binary_erosion(mask)`` (SciPy's default cross structure, border value 0; MONAI crops
to the foreground with a margin of 1 first, which changes no edge). Distances:
``distance_transform_edt(~dst, sampling=spacing)[src]``; an empty ``dst`` gives +inf at every
``src`` point and an empty ``src`` (with ``dst`` not empty) +inf at every ``dst`` point.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def edges(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def directed(src: np.ndarray, dst: np.ndarray, spacing) -> np.ndarray:
    if not dst.any():
        return np.full(int(src.sum()), np.inf)
    if not src.any():
        return np.full(int(dst.sum()), np.inf)
    return ndimage.distance_transform_edt(~dst, sampling=spacing)[src]


def _stat(d: np.ndarray, percentile: float | None) -> float:
    if d.size == 0:
        return float("nan")
    if percentile is None or np.isinf(d).any():
        return float(d.max())
    return float(np.percentile(d, percentile))  # linear interpolation, as torch.quantile


def reference_scores(p: np.ndarray, t: np.ndarray, spacing, percentile=None, tolerance=1.0, one_way=False):
    """``(hausdorff, assd, surface_dice)`` of one pair of bool masks."""
    ep, eg = edges(p), edges(t)
    dpg, dgp = directed(ep, eg, spacing), directed(eg, ep, spacing)
    hd = (
        _stat(dpg, percentile) if one_way else float(np.max([_stat(dpg, percentile), _stat(dgp, percentile)]))
    )
    both = np.concatenate([dpg, dgp])
    assd = float(both.mean()) if both.size else float("nan")
    nsd = float((both <= tolerance).mean()) if both.size else float("nan")
    return hd, assd, nsd
