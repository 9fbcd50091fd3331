"""Panoptic quality on the real panopticapi sample (2 COCO val2017 images), against panopticapi itself.

Data and published numbers: ``shared/data/SOURCES.md`` (panopticapi_sample) and the evaluation spec,
section G: GT vs itself gives 1.0 (n 8 / 4 / 4); the perturbed prediction (first non-crowd thing
segment of each image set to VOID, id map rolled +3 columns with columns 0-2 VOID) gives All PQ
0.780473, SQ 0.803227, RQ 0.968636, Things PQ 0.673110, Stuff PQ 0.887836.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _panoptic_reference import summarize
from PIL import Image

from torchseg_metrics.panoptic import PanopticQuality

PUBLISHED = {"All": (0.780473, 0.803227, 0.968636), "Things": 0.673110, "Stuff": 0.887836}


def _load(real_data: Path) -> tuple[dict, dict, Path]:
    folder = real_data / "panopticapi_sample"
    gt_json = json.loads((folder / "panoptic_examples.json").read_text())
    categories = {c["id"]: c for c in gt_json["categories"]}
    return gt_json, categories, folder / "panoptic_examples"


def _ids(path: Path) -> np.ndarray:
    rgb = np.array(Image.open(path), dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]


def _to_tensors(ids: np.ndarray, segments: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """(category, instance = segment id) map and crowd mask; id 0 and unlisted ids get category 0 (void)."""
    lut_cat = {s["id"]: s["category_id"] for s in segments}
    cat = np.vectorize(lambda i: lut_cat.get(int(i), 0), otypes=[np.int64])(ids)
    crowd = np.isin(ids, [s["id"] for s in segments if s.get("iscrowd", 0)])
    return torch.as_tensor(np.stack([cat, ids], axis=-1))[None], torch.as_tensor(crowd)[None]


def _things_stuffs(categories: dict) -> tuple[set[int], set[int]]:
    return {c for c, v in categories.items() if v["isthing"]}, {
        c for c, v in categories.items() if not v["isthing"]
    }


def _panopticapi(pairs: list, gt_folder: Path, pred_folder: Path, categories: dict) -> dict:
    from panopticapi.evaluation import pq_compute_single_core

    with contextlib.redirect_stdout(io.StringIO()):
        stat = pq_compute_single_core(0, pairs, str(gt_folder), str(pred_folder), categories)
    return summarize(stat, categories)


def _assert_same(summary: dict, ref: dict) -> None:
    for group in ("All", "Things", "Stuff"):
        assert summary[group]["n"] == ref[group]["n"]
        for key in ("pq", "sq", "rq"):
            assert summary[group][key] == pytest.approx(ref[group][key], abs=1e-12, rel=0), (group, key)
    for cat, (tp, fp, fn, iou) in ref["stats"].items():
        row = summary["per_class"][cat]
        assert (row["tp"], row["fp"], row["fn"]) == (tp, fp, fn), cat
        assert row["iou_sum"] == pytest.approx(iou, abs=1e-12, rel=0)


def test_ground_truth_against_itself(real_data):
    gt_json, categories, gt_folder = _load(real_data)
    things, stuffs = _things_stuffs(categories)
    # void (category 0) in the prediction is an unknown category: VOID, as panopticapi's id 0
    metric = PanopticQuality(things, stuffs, allow_unknown_preds_category=True, return_sq_and_rq=True)
    for ann in gt_json["annotations"]:
        target, crowd = _to_tensors(_ids(gt_folder / ann["file_name"]), ann["segments_info"])
        metric.update(target, target, crowd)
    summary = metric.summary()
    assert [summary[g]["n"] for g in ("All", "Things", "Stuff")] == [8, 4, 4]
    assert all(summary[g][k] == 1.0 for g in ("All", "Things", "Stuff") for k in ("pq", "sq", "rq"))
    assert metric.compute().tolist() == [1.0, 1.0, 1.0]
    pairs = [(ann, ann) for ann in gt_json["annotations"]]
    _assert_same(summary, _panopticapi(pairs, gt_folder, gt_folder, categories))


def test_two_channel_format_predictions_score_one(real_data):
    """The 2-channel PNGs (category, instance) are the same segmentation as the GT: PQ 1.0."""
    gt_json, categories, gt_folder = _load(real_data)
    metric = PanopticQuality(*_things_stuffs(categories), allow_unknown_preds_category=True)
    for ann in gt_json["annotations"]:
        target, crowd = _to_tensors(_ids(gt_folder / ann["file_name"]), ann["segments_info"])
        two = np.array(Image.open(gt_folder.parent / "panoptic_examples_2ch_format" / ann["file_name"]))
        metric.update(torch.as_tensor(two[..., :2].astype(np.int64))[None], target, crowd)
    summary = metric.summary()
    assert [summary[g]["pq"] for g in ("All", "Things", "Stuff")] == [1.0, 1.0, 1.0]
    assert summary["All"]["n"] == 8


def test_perturbed_prediction_matches_panopticapi_and_published_numbers(real_data, tmp_path):
    gt_json, categories, gt_folder = _load(real_data)
    things, stuffs = _things_stuffs(categories)
    metric = PanopticQuality(things, stuffs, allow_unknown_preds_category=True, return_sq_and_rq=True)
    pairs = []
    for ann in gt_json["annotations"]:
        ids = _ids(gt_folder / ann["file_name"])
        target, crowd = _to_tensors(ids, ann["segments_info"])
        erased = next(
            s["id"] for s in ann["segments_info"] if not s["iscrowd"] and s["category_id"] in things
        )
        pred = np.where(ids == erased, 0, ids)
        pred = np.roll(pred, 3, axis=1)
        pred[:, :3] = 0
        kept = [
            {"id": s["id"], "category_id": s["category_id"]}
            for s in ann["segments_info"]
            if (pred == s["id"]).any()
        ]
        rgb = np.stack([pred % 256, pred // 256 % 256, pred // 256**2], axis=-1).astype(np.uint8)
        Image.fromarray(rgb).save(tmp_path / ann["file_name"])
        pairs.append(
            (ann, {"image_id": ann["image_id"], "file_name": ann["file_name"], "segments_info": kept})
        )
        preds, _ = _to_tensors(pred, kept)
        metric.update(preds, target, crowd)
    ref = _panopticapi(pairs, gt_folder, tmp_path, categories)
    summary = metric.summary()
    _assert_same(summary, ref)
    assert metric.compute().tolist() == pytest.approx(list(PUBLISHED["All"]), abs=1e-6)
    assert summary["Things"]["pq"] == pytest.approx(PUBLISHED["Things"], abs=1e-6)
    assert summary["Stuff"]["pq"] == pytest.approx(PUBLISHED["Stuff"], abs=1e-6)
    # torchmetrics' rules give another number on the same data (spec D: 0.831075, crowd as void)
    tm = PanopticQuality(things, stuffs, allow_unknown_preds_category=True, compat="torchmetrics")
    for ann, (_, pred_ann) in zip(gt_json["annotations"], pairs, strict=True):
        ids = _ids(gt_folder / ann["file_name"])
        target, crowd = _to_tensors(ids, ann["segments_info"])
        target[..., 0][crowd] = 0
        preds, _ = _to_tensors(_ids(tmp_path / ann["file_name"]), pred_ann["segments_info"])
        tm.update(preds, target)
    assert tm.compute().item() == pytest.approx(0.831075, abs=1e-6)
