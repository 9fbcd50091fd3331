"""Semantic metrics on real COCO label maps (shared/data/panopticapi_sample) against NumPy.

The semantic map of each image is the category of each pixel's segment (RGB-id PNG + JSON), mapped
to contiguous indices 0..132 in category order; VOID is 255. The prediction is the map rolled by
3 columns (the spec's section G recipe, columns 0-2 set to VOID, which the prediction reports as
an out-of-range label 255: a miss)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _semantic_reference import np_confusion, np_scores
from PIL import Image
from torchmetrics.classification import MulticlassJaccardIndex

from torchseg_metrics import SemanticMetrics


def _label_maps(root) -> tuple[list[np.ndarray], int]:
    gt = json.loads((root / "panoptic_examples.json").read_text())
    index = {c["id"]: i for i, c in enumerate(gt["categories"])}
    maps = []
    for ann in gt["annotations"]:
        rgb = np.asarray(Image.open(root / "panoptic_examples" / ann["file_name"]), dtype=np.uint32)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
        labels = np.full(ids.shape, 255, np.uint8)
        for seg in ann["segments_info"]:
            labels[ids == seg["id"]] = index[seg["category_id"]]
        maps.append(labels)
    return maps, len(index)


def test_real_label_maps(real_data) -> None:
    maps, c = _label_maps(real_data / "panopticapi_sample")
    assert c == 133
    metric = SemanticMetrics(c, ignore_index=255, per_class=True)
    preds_all, target_all = [], []
    for target in maps:
        preds = np.roll(target, 3, axis=1)
        preds[:, :3] = 255
        metric.update(torch.from_numpy(preds)[None], torch.from_numpy(target)[None])
        preds_all.append(preds.ravel())
        target_all.append(target.ravel())
    p, t = np.concatenate(preds_all), np.concatenate(target_all)
    ref = np_scores(np_confusion(p, t, c, 255))
    got = metric.compute()
    for key in ("miou", "mdice", "pixel_accuracy", "mean_accuracy", "fwiou"):
        assert got[key].item() == pytest.approx(ref[key], abs=1e-14), key
    np.testing.assert_allclose(got["iou_per_class"].numpy(), ref["iou"], rtol=0, atol=1e-15, equal_nan=True)
    assert 0.5 < got["miou"].item() < 1.0  # a 3-pixel shift keeps most pixels right


def test_real_label_maps_match_torchmetrics_on_present_classes(real_data) -> None:
    maps, c = _label_maps(real_data / "panopticapi_sample")
    tm = MulticlassJaccardIndex(num_classes=c, average="none", ignore_index=255)
    ours = SemanticMetrics(c, ignore_index=255, per_class=True)
    for target in maps:
        preds = np.roll(target, 3, axis=1)
        preds[preds == 255] = 0  # torchmetrics rejects out-of-range predictions
        tm.update(torch.from_numpy(preds)[None].long(), torch.from_numpy(target)[None].long())
        ours.update(torch.from_numpy(preds)[None], torch.from_numpy(target)[None])
    got = ours.compute()["iou_per_class"]
    present = ~got.isnan()
    np.testing.assert_allclose(got[present].numpy(), tm.compute().double()[present].numpy(), rtol=1e-6)
