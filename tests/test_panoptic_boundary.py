"""Boundary PQ (``PanopticQuality(boundary=True)``) against a NumPy port of boundary-iou-api's
panoptic evaluation: panopticapi's ``pq_compute_single_core`` with, for every candidate pair, the IoU
replaced by min(mask IoU, boundary IoU), whose union leaves out prediction-band pixels on VOID;
bands per segment on the full image (SciPy emulation of the OpenCV rule, ``_boundary_reference``).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
import torch
from _boundary_reference import reference_boundaries
from _panoptic_reference import STUFFS, THINGS, _segments, panopticapi_pq, random_scene

from torchseg_metrics import PanopticQuality


def boundary_pq_stats(preds, target, crowd, things, stuffs, ratio=0.02) -> dict[int, tuple]:
    """``{category: (tp, fp, fn, iou_sum)}`` of boundary PQ, panopticapi's loop on id maps."""
    cats = sorted(things | stuffs)
    stats = defaultdict(lambda: [0, 0, 0, 0.0])
    for b in range(target.shape[0]):
        t_known = np.isin(target[b, ..., 0], cats)
        t_ids, t_info = _segments(target[b, ..., 0], target[b, ..., 1], crowd[b] & t_known, t_known)
        p_known = np.isin(preds[b, ..., 0], cats)
        p_ids, p_info = _segments(preds[b, ..., 0], preds[b, ..., 1], np.zeros_like(p_known), p_known)
        h, w = t_ids.shape
        d = max(1, round(ratio * math.sqrt(h * h + w * w)))  # boundary-iou-api: Python's round
        gt = {s["id"]: s for s in t_info}
        pr = {s["id"]: s for s in p_info}
        band = {("t", i): reference_boundaries((t_ids == i)[None], d)[0] for i in gt}
        band.update({("p", i): reference_boundaries((p_ids == i)[None], d)[0] for i in pr})
        void = t_ids == 0
        matched_g, matched_p = set(), set()
        for g, gs in gt.items():
            for p, ps in pr.items():
                inter = int(((t_ids == g) & (p_ids == p)).sum())
                if inter == 0 or gs["iscrowd"] or gs["category_id"] != ps["category_id"]:
                    continue
                union = ps["area"] + gs["area"] - inter - int(((p_ids == p) & void).sum())
                bg, bp = band["t", g], band["p", p]
                b_inter = int((bg & bp).sum())
                b_union = int(bg.sum()) + int(bp.sum()) - b_inter - int((bp & void).sum())
                iou = min(inter / union, b_inter / b_union)
                if iou > 0.5:
                    stats[gs["category_id"]][0] += 1
                    stats[gs["category_id"]][3] += iou
                    matched_g.add(g)
                    matched_p.add(p)
        crowd_of = {}
        for g, gs in gt.items():
            if gs["iscrowd"]:
                crowd_of[gs["category_id"]] = g  # panopticapi keeps the last one listed
            elif g not in matched_g:
                stats[gs["category_id"]][2] += 1
        for p, ps in pr.items():
            if p in matched_p:
                continue
            forgiven = int(((p_ids == p) & void).sum())
            if ps["category_id"] in crowd_of:
                forgiven += int(((p_ids == p) & (t_ids == crowd_of[ps["category_id"]])).sum())
            if forgiven / ps["area"] > 0.5:
                continue
            stats[ps["category_id"]][1] += 1
    return {c: tuple(stats[c]) for c in cats}


@pytest.mark.parametrize("seed", range(5))
def test_boundary_pq_equals_the_reference(seed) -> None:
    preds, target, crowd = random_scene(np.random.default_rng(70 + seed), batch=3, h=40, w=48)
    ref = boundary_pq_stats(preds, target, crowd, THINGS, STUFFS)
    metric = PanopticQuality(THINGS, STUFFS, allow_unknown_preds_category=True, boundary=True)
    metric.update(*(torch.as_tensor(x) for x in (preds, target, crowd)))
    got = metric.summary()["per_class"]
    for c, (tp, fp, fn, iou) in ref.items():
        assert (got[c]["tp"], got[c]["fp"], got[c]["fn"]) == (tp, fp, fn), c
        assert got[c]["iou_sum"] == pytest.approx(iou, abs=1e-12)


def test_boundary_pq_is_at_most_pq_and_equal_on_clean_edges(tmp_path) -> None:
    preds, target, crowd = random_scene(np.random.default_rng(80), batch=2, h=40, w=48)
    args = (THINGS, STUFFS)
    plain = PanopticQuality(*args, allow_unknown_preds_category=True)
    bq = PanopticQuality(*args, allow_unknown_preds_category=True, boundary=True)
    tensors = [torch.as_tensor(x) for x in (preds, target, crowd)]
    plain.update(*tensors)
    bq.update(*tensors)
    assert bq.compute() <= plain.compute()
    ref = panopticapi_pq(preds, target, *args, tmp_path, crowd)
    assert plain.compute().item() == pytest.approx(ref["All"]["pq"], abs=1e-12)
    # a perfect prediction: boundary PQ 1 as PQ
    perfect = PanopticQuality(*args, allow_unknown_preds_category=True, boundary=True)
    perfect.update(tensors[1], tensors[1], tensors[2])
    assert perfect.compute().item() == pytest.approx(1.0)


def test_boundary_argument_errors() -> None:
    with pytest.raises(ValueError, match="`boundary` must be False with compat='torchmetrics'"):
        PanopticQuality(THINGS, STUFFS, boundary=True, compat="torchmetrics")
    with pytest.raises(TypeError, match="`boundary` must be a bool"):
        PanopticQuality(THINGS, STUFFS, boundary=1)
    with pytest.raises(ValueError, match="Did you mean 'faster-coco-eval'"):
        PanopticQuality(THINGS, STUFFS, boundary=True, boundary_rounding="faster_coco_eval")
