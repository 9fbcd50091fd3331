"""The panoptic reader on the real panopticapi sample, against its 2-channel PNGs, and its errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torchseg_metrics.io.panoptic import iter_panoptic_batches, load_panoptic_files, read_panoptic_png


def _sample(real_data) -> tuple[Path, Path]:
    folder = real_data / "panopticapi_sample"
    return folder / "panoptic_examples.json", folder / "panoptic_examples"


def test_real_sample_matches_two_channel_pngs(real_data, device: torch.device) -> None:
    gt_json, gt_dir = _sample(real_data)
    files = load_panoptic_files(gt_json, gt_dir, gt_json, gt_dir)
    cats = json.loads(gt_json.read_text())["categories"]
    assert files.things == sorted(c["id"] for c in cats if c["isthing"]) and len(files.things) == 80
    assert files.void_category == 201
    batches = list(iter_panoptic_batches(files, batch_size=2, device=device))
    assert len(batches) == 1
    b = batches[0]
    assert b.target.shape == (2, 427, 640, 2) and b.target_crowd.shape == (2, 427, 640)
    assert (
        b.target.dtype == torch.int64
        and b.target_crowd.dtype == torch.bool
        and b.target.device.type == device.type
    )
    assert torch.equal(b.preds, b.target)
    anns = json.loads(gt_json.read_text())["annotations"]
    for k, ann in enumerate(anns):
        two = np.asarray(
            Image.open(real_data / "panopticapi_sample" / "panoptic_examples_2ch_format" / ann["file_name"])
        )
        h, w = two.shape[:2]
        ours = b.target[k].cpu().numpy()
        cat = ours[:h, :w, 0]
        void = two[..., 0] == 0  # the 2-channel format's VOID is category 0
        np.testing.assert_array_equal(cat[~void], two[..., 0][~void])
        assert (cat[void] == files.void_category).all() and (ours[:h, :w, 1][void] == 0).all()
        assert (ours[h:, :, 0] == files.void_category).all()  # the shorter image is padded with VOID
        # the same partition into segments: (category, instance) pairs correspond one to one
        pairs = np.stack([cat.ravel(), ours[:h, :w, 1].ravel(), two[..., 0].ravel(), two[..., 1].ravel()], 1)
        uniq = np.unique(pairs, axis=0)
        assert len(uniq) == len(np.unique(uniq[:, :2], axis=0)) == len(np.unique(uniq[:, 2:], axis=0))
        crowd_ids = [s["id"] for s in ann["segments_info"] if s["iscrowd"]]
        ids = read_panoptic_png(gt_dir / ann["file_name"])
        np.testing.assert_array_equal(b.target_crowd[k, :h, :w].cpu().numpy(), np.isin(ids, crowd_ids))
    # the JSON area equals the PNG pixel count on COCO (spec G), so gt_area="json" reads the same maps
    same = next(iter_panoptic_batches(files, batch_size=2, gt_area="json"))
    assert torch.equal(same.target, b.target.cpu())


def _copy(real_data, tmp_path: Path) -> tuple[dict, Path]:
    gt_json, gt_dir = _sample(real_data)
    folder = tmp_path / "png"
    shutil.copytree(gt_dir, folder)
    return json.loads(gt_json.read_text()), folder


def test_errors_name_the_problem(real_data, tmp_path: Path) -> None:
    data, folder = _copy(real_data, tmp_path)

    def run(gt: dict, pred: dict, **kw: object) -> None:
        list(iter_panoptic_batches(load_panoptic_files(gt, folder, pred, folder), **kw))  # type: ignore[arg-type]

    first = data["annotations"][0]
    dropped = json.loads(json.dumps(data))
    dropped["annotations"][0]["segments_info"] = first["segments_info"][1:]
    with pytest.raises(
        ValueError, match=r"`pred_json: image 142238 .*` must be PNG segment ids listed in the JSON"
    ):
        run(data, dropped)
    extra = json.loads(json.dumps(data))
    extra["annotations"][0]["segments_info"].append({"id": 77, "category_id": 1, "iscrowd": 0, "area": 1})
    with pytest.raises(
        ValueError, match=r"must be every JSON segment present in the PNG, got ids \[77\] absent"
    ):
        run(data, extra)
    unknown = json.loads(json.dumps(data))
    unknown["annotations"][1]["segments_info"][0]["category_id"] = 999
    with pytest.raises(
        ValueError, match=r"`pred_json: image 439180 segment \d+ 'category_id'` must be a category id"
    ):
        run(data, unknown)
    dup = json.loads(json.dumps(data))
    dup["annotations"].append(dup["annotations"][0])
    with pytest.raises(
        ValueError,
        match=r"`gt_json\['annotations'\]` must be one entry per image id, got image id 142238 twice",
    ):
        run(dup, data)
    missing = {"annotations": data["annotations"][:1]}
    with pytest.raises(ValueError, match=r"`pred_json` must be a prediction for every ground-truth image"):
        run(data, missing)
    area = json.loads(json.dumps(data))
    area["annotations"][0]["segments_info"][0]["area"] += 1
    run(area, data)  # png areas (default): the JSON area is not used
    with pytest.raises(
        ValueError, match=r"segment \d+ 'area'` must be its PNG pixel count .* gt_area='json'"
    ):
        run(area, data, gt_area="json")
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "small.png")
    resized = json.loads(json.dumps(data))
    resized["annotations"][0]["file_name"] = "../small.png"
    with pytest.raises(
        ValueError,
        match=r"`pred_dir: image 142238 \(../small.png\)` must be a PNG of the ground truth's size",
    ):
        run(data, resized)
    gone = json.loads(json.dumps(data))
    gone["annotations"][0]["file_name"] = "nope.png"
    with pytest.raises(FileNotFoundError, match=r"`pred_dir` must be an existing PNG file, got .*nope.png"):
        run(data, gone)
    with pytest.raises(FileNotFoundError, match=r"`gt_dir` must be an existing folder"):
        load_panoptic_files(data, tmp_path / "none", data, folder)
    (tmp_path / "cut.json").write_text(json.dumps(data)[:500])
    with pytest.raises(ValueError, match=r"`gt_json` must be a valid JSON file"):
        load_panoptic_files(tmp_path / "cut.json", folder, data, folder)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(ValueError, match=r"`png` must be an RGB panoptic PNG"):
        read_panoptic_png(tmp_path / "grey.png")
