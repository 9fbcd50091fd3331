"""panopticapi as the independent reference: write PNG + JSON in its format, run its own evaluation.

``panopticapi_pq`` converts (category, instance) maps to panopticapi's format the way a user would
(one segment id per distinct (category, instance, crowd) of an image, id 0 = VOID, RGB-encoded PNG,
``segments_info`` listed by increasing (category, instance)), then runs
``panopticapi.evaluation.pq_compute_single_core`` on the files and ``PQStat.pq_average``, which is
what ``pq_compute`` does without its process pool. Per-class tp/fp/fn/iou come from its ``PQStat``.
``random_scene`` draws the blob scenes (void, crowd, split stuff, unknown predictions, empty images)
that the tests feed to both.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def _write_png(ids: np.ndarray, path: Path) -> None:
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(path)


def _segments(
    cat: np.ndarray, inst: np.ndarray, crowd: np.ndarray, known: np.ndarray
) -> tuple[np.ndarray, list]:
    """An id map (0 = VOID) and segments_info for the pixels in ``known``."""
    ids = np.zeros(cat.shape, dtype=np.int64)
    if not known.any():
        return ids, []
    rows = np.stack([cat[known], inst[known], crowd[known].astype(np.int64)], axis=1)
    uniq, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    ids[known] = inverse.reshape(-1) + 1
    info = [
        {"id": i + 1, "category_id": int(c), "iscrowd": int(k), "area": int(n)}
        for i, ((c, _, k), n) in enumerate(zip(uniq, counts, strict=True))
    ]
    return ids, info


def panopticapi_pq(
    preds: np.ndarray,
    target: np.ndarray,
    things: set[int],
    stuffs: set[int],
    folder: Path,
    target_crowd: np.ndarray | None = None,
) -> dict[str, Any]:
    """Run panopticapi on ``(B, H, W, 2)`` maps; unknown prediction categories are written as VOID.

    Returns panopticapi's ``{"All"|"Things"|"Stuff": {"pq","sq","rq","n"}}`` (an empty group, where
    panopticapi divides by zero, as NaN with n 0) plus ``"stats"``: ``{category: (tp, fp, fn, iou)}``.
    """
    from panopticapi.evaluation import pq_compute_single_core

    preds, target = np.asarray(preds, dtype=np.int64), np.asarray(target, dtype=np.int64)
    crowd = np.zeros(target.shape[:-1], bool) if target_crowd is None else np.asarray(target_crowd, bool)
    cats = sorted(things | stuffs)
    categories = {c: {"id": c, "name": str(c), "isthing": int(c in things)} for c in cats}
    gt_dir, pred_dir = folder / "gt", folder / "pred"
    gt_dir.mkdir(parents=True, exist_ok=True)
    pred_dir.mkdir(parents=True, exist_ok=True)
    pairs = []
    for b in range(target.shape[0]):
        name = f"{b:06d}.png"
        t_known = np.isin(target[b, ..., 0], cats)
        t_ids, t_info = _segments(target[b, ..., 0], target[b, ..., 1], crowd[b] & t_known, t_known)
        p_known = np.isin(preds[b, ..., 0], cats)
        p_ids, p_info = _segments(preds[b, ..., 0], preds[b, ..., 1], np.zeros_like(p_known), p_known)
        _write_png(t_ids, gt_dir / name)
        _write_png(p_ids, pred_dir / name)
        for seg in p_info:
            del seg["area"], seg["iscrowd"]
        pairs.append(
            (
                {"image_id": b, "file_name": name, "segments_info": t_info},
                {"image_id": b, "file_name": name, "segments_info": p_info},
            )
        )
    (folder / "gt.json").write_text(json.dumps({"annotations": [g for g, _ in pairs], "categories": cats}))
    with contextlib.redirect_stdout(io.StringIO()):
        pq_stat = pq_compute_single_core(0, pairs, str(gt_dir), str(pred_dir), categories)
    return summarize(pq_stat, categories)


def summarize(pq_stat: Any, categories: dict[int, dict]) -> dict[str, Any]:
    """``pq_compute``'s result dict from a ``PQStat``, with NaN for an empty group and raw stats."""
    results: dict[str, Any] = {}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        try:
            results[name], per_class = pq_stat.pq_average(categories, isthing=isthing)
        except ZeroDivisionError:
            results[name] = {"pq": math.nan, "sq": math.nan, "rq": math.nan, "n": 0}
            continue
        if name == "All":
            results["per_class"] = per_class
    results["stats"] = {
        c: (pq_stat[c].tp, pq_stat[c].fp, pq_stat[c].fn, float(pq_stat[c].iou)) for c in categories
    }
    return results


#: Categories of the random scenes: 3 things, 2 stuffs; 0 is void in the target, 99 unknown in preds.
THINGS = {1, 2, 3}
STUFFS = {10, 11}


def _box(rng: np.random.Generator, h: int, w: int) -> tuple[slice, slice]:
    y, x = rng.integers(0, h), rng.integers(0, w)
    return slice(y, y + rng.integers(1, h // 2)), slice(x, x + rng.integers(1, w // 2))


def random_scene(
    rng: np.random.Generator,
    batch: int = 3,
    h: int = 24,
    w: int = 32,
    unknown: bool = True,
    crowd: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Blob scenes ``(preds, target, target_crowd)`` of ``(B, H, W, 2)`` maps.

    Targets: two stuff bands (the first with a random instance id), rectangles of void, of stuff
    instances and of things (a quarter of them crowd). Predictions: the target, sometimes shifted,
    overpainted with rectangles of things, stuff instances and (if ``unknown``) category 99; pixels
    still void get a thing. About one image in ten has an all-void target.
    """
    target = np.zeros((batch, h, w, 2), np.int64)
    crowd_mask = np.zeros((batch, h, w), bool)
    for b in range(batch):
        if rng.random() < 0.1:
            continue
        cut = rng.integers(0, h)
        target[b, :cut] = (10, rng.integers(0, 3))
        target[b, cut:] = (11, 0)
        for _ in range(rng.integers(0, 8)):
            box, r = _box(rng, h, w), rng.random()
            if r < 0.15:
                target[b][box] = (0, 0)
            elif r < 0.2:
                target[b][box] = (10, rng.integers(0, 3))
            else:
                target[b][box] = (rng.integers(1, 4), rng.integers(0, 6))
                crowd_mask[b][box] = crowd and rng.random() < 0.25
        crowd_mask[b] &= np.isin(target[b, ..., 0], list(THINGS))
    preds = target.copy()
    for b in range(batch):
        if rng.random() < 0.5:
            preds[b] = np.roll(preds[b], rng.integers(-2, 3), axis=int(rng.integers(0, 2)))
        for _ in range(rng.integers(0, 6)):
            box, r = _box(rng, h, w), rng.random()
            if r < 0.2 and unknown:
                preds[b][box] = (99, 0)
            elif r < 0.4:
                preds[b][box] = (rng.choice([10, 11]), rng.integers(0, 3))
            else:
                preds[b][box] = (rng.integers(1, 4), rng.integers(0, 6))
        preds[b][~np.isin(preds[b, ..., 0], [*THINGS, *STUFFS, 99])] = (1, 7)
    return preds, target, crowd_mask if crowd else None
