"""A plain NumPy reference for the semantic metrics, written from the conventions, not from our code.

Conventions (shared/spec/evaluation-rules.md, "Project conventions" and E): pixels whose target is
``ignore`` are dropped; predictions outside [0, C) on valid pixels are misses; a class with no
target and no prediction is NaN; predicted-but-absent has IoU 0; an ``ignore`` inside [0, C) is
NaN per class and left out of means.
"""

from __future__ import annotations

import numpy as np
import torch


def np_confusion(preds: np.ndarray, target: np.ndarray, c: int, ignore: int | None) -> np.ndarray:
    """(C, C + 1) counts, rows = target, last column = out-of-range predictions, by np.add.at."""
    t = target.reshape(-1).astype(np.int64)
    p = preds.reshape(-1).astype(np.int64)
    keep = np.ones(t.shape, bool) if ignore is None else t != ignore
    t, p = t[keep], p[keep]
    assert ((t >= 0) & (t < c)).all(), "reference called with invalid targets"
    cm = np.zeros((c, c + 1), np.int64)
    np.add.at(cm, (t, np.where((p >= 0) & (p < c), p, c)), 1)
    return cm


def np_scores(cm: np.ndarray, ignore: int | None = None, include_background: bool = True) -> dict:
    """Every score from a (C, C + 1) matrix, with per-class loops (independent of our vectorised code)."""
    c = cm.shape[0]
    keep = [k for k in range(c) if k != ignore and (include_background or k != 0)]
    iou, dice, acc = (np.full(c, np.nan) for _ in range(3))
    for k in keep:
        tp = float(cm[k, k])
        n_target = float(cm[k].sum())
        n_pred = float(cm[:c, k].sum())
        if n_target + n_pred > 0:
            iou[k] = tp / (n_target + n_pred - tp)
            dice[k] = 2 * tp / (n_target + n_pred)
        if n_target > 0:
            acc[k] = tp / n_target

    def mean(v: np.ndarray) -> float:
        v = v[~np.isnan(v)]
        return float(v.mean()) if v.size else float("nan")

    tps = np.array([cm[k, k] for k in keep], float)
    targets = np.array([cm[k].sum() for k in keep], float)
    preds = np.array([cm[:c, k].sum() for k in keep], float)
    total = targets.sum()
    fw = (
        sum(targets[i] / total * iou[k] for i, k in enumerate(keep) if targets[i] > 0)
        if total
        else float("nan")
    )
    weighted = (
        sum(targets[i] / total * dice[k] for i, k in enumerate(keep) if targets[i] > 0)
        if total
        else float("nan")
    )
    return {
        "iou": iou,
        "dice": dice,
        "accuracy": acc,
        "miou": mean(iou),
        "mdice": mean(dice),
        "mean_accuracy": mean(acc),
        "pixel_accuracy": float(tps.sum() / total) if total else float("nan"),
        "fwiou": float(fw),
        "dice_micro": float(2 * tps.sum() / (targets.sum() + preds.sum())) if total else float("nan"),
        "dice_weighted": float(weighted),
        "iou_micro": _ratio(tps.sum(), targets.sum() + preds.sum() - tps.sum()),
    }


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else float("nan")


def blob_labels(rng: np.random.Generator, shape: tuple[int, ...], c: int, n_blobs: int = 6) -> np.ndarray:
    """Label map of axis-aligned blobs of random classes over a random background class."""
    out = np.full(shape, rng.integers(0, c), np.int64)
    for _ in range(n_blobs):
        lo = [rng.integers(0, s) for s in shape]
        hi = [min(s, a + rng.integers(1, max(2, s // 2))) for a, s in zip(lo, shape, strict=True)]
        out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = rng.integers(0, c)
    return out


def perturb(
    rng: np.random.Generator, labels: np.ndarray, c: int, low: int = 0, high: int | None = None
) -> np.ndarray:
    """A prediction: the labels with blob-shaped errors drawn from [low, high)."""
    out = labels.copy()
    errors = blob_labels(rng, labels.shape, c, n_blobs=4)
    mask = blob_labels(rng, labels.shape, 2, n_blobs=3).astype(bool)
    out[mask] = rng.integers(low, c if high is None else high, size=int(mask.sum()))
    out[~mask & (errors % 3 == 0)] = errors[~mask & (errors % 3 == 0)]
    return out


def tie_scores(c: int, shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    """``(N, C, ...)`` scores with many exact ties (few distinct values), signed zeros and infinities;
    ``shape`` is ``(N, ...)``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-3, 4, (shape[0], c, *shape[1:]), generator=g).to(dtype)
    x[x == 3] = float("inf")
    x[x == -3] = float("-inf")
    x[(x == 0) & (torch.rand(x.shape, generator=g) < 0.5)] = -0.0
    return x
