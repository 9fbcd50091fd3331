"""The COCO reader against pycocotools ``COCO`` / ``loadRes`` / ``annToMask`` on the real data."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from torchseg_metrics.io.coco import iter_coco_batches, load_coco_gt, load_coco_results


def _subset(real_data, n_images: int, kind: str = "segm") -> tuple[dict, list]:
    folder = real_data / "coco_val2014_100"
    gt = json.loads((folder / "instances_val2014_100.json").read_text())
    res = json.loads((folder / f"instances_val2014_fake{kind}100_results.json").read_text())
    keep = {img["id"] for img in sorted(gt["images"], key=lambda i: i["id"])[:n_images]}
    gt["images"] = [i for i in gt["images"] if i["id"] in keep]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
    return gt, [r for r in res if r["image_id"] in keep]


def _pycoco(gt: dict, res: list) -> tuple[COCO, COCO]:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(res))
    return coco_gt, coco_dt


def test_segm_batches_equal_pycocotools(real_data, device: torch.device) -> None:
    gt, res = _subset(real_data, 20)
    coco_gt, coco_dt = _pycoco(gt, res)
    batches = list(iter_coco_batches(gt, res, iou_type="segm", batch_size=7, device=device))
    ids = [i for b in batches for i in b.image_ids]
    assert ids == sorted(coco_gt.getImgIds())  # COCOeval's image order
    n_crowd = 0
    for b in batches:
        for img_id, p, t in zip(b.image_ids, b.preds, b.target, strict=True):
            anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[img_id]))  # file order
            dets = coco_dt.loadAnns(coco_dt.getAnnIds(imgIds=[img_id]))
            h, w = coco_gt.imgs[img_id]["height"], coco_gt.imgs[img_id]["width"]
            assert t["masks"].shape == (len(anns), h, w) and p["masks"].shape == (len(dets), h, w)
            assert t["masks"].device.type == device.type
            for got, ann in zip(t["masks"].cpu().numpy(), anns, strict=True):
                np.testing.assert_array_equal(got, coco_gt.annToMask(ann))
            for got, det in zip(p["masks"].cpu().numpy(), dets, strict=True):
                np.testing.assert_array_equal(got, coco_dt.annToMask(det))
            assert t["area"].tolist() == [a["area"] for a in anns]  # the file's area, not the pixel count
            assert t["area"].dtype == torch.float64
            assert t["iscrowd"].tolist() == [a["iscrowd"] for a in anns]
            assert t["labels"].tolist() == [a["category_id"] for a in anns]
            assert p["scores"].tolist() == [d["score"] for d in dets]
            assert p["labels"].tolist() == [d["category_id"] for d in dets]
            assert "area" not in p  # no bbox in the results: loadRes uses the mask area
            n_crowd += int(t["iscrowd"].sum())
    assert n_crowd > 0


def test_bbox_batches_and_transposed(real_data) -> None:
    gt, res = _subset(real_data, 12, "bbox")
    coco_gt, coco_dt = _pycoco(gt, res)
    for b in iter_coco_batches(gt, res, iou_type="bbox", batch_size=5):
        for img_id, p, t in zip(b.image_ids, b.preds, b.target, strict=True):
            anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[img_id]))
            dets = coco_dt.loadAnns(coco_dt.getAnnIds(imgIds=[img_id]))
            assert t["boxes"].tolist() == [a["bbox"] for a in anns]  # xywh, as in the file
            assert p["boxes"].tolist() == [d["bbox"] for d in dets]
            assert t["boxes"].shape == (len(anns), 4) and p["boxes"].shape == (len(dets), 4)
    gt, res = _subset(real_data, 4)
    plain = list(iter_coco_batches(gt, res, batch_size=3))
    flipped = list(iter_coco_batches(gt, res, batch_size=1, transposed=True))
    got = [p["masks"] for b in flipped for p in b.preds]
    want = [p["masks"].transpose(1, 2) for b in plain for p in b.preds]
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


def test_loadres_area_rules(real_data) -> None:
    """spec A.2: the first result's bbox makes every result's area its box area (loadRes quirk)."""
    gt, res = _subset(real_data, 5)
    boxed = copy.deepcopy(res)
    for r in boxed:
        r["bbox"] = [1.0, 2.0, 10.0 + r["score"], 20.0]
    _, coco_dt = _pycoco(gt, boxed)
    areas = [p["area"] for b in iter_coco_batches(gt, boxed) for p in b.preds]
    ids = sorted({r["image_id"] for r in boxed})
    want = [a["area"] for i in ids for a in coco_dt.loadAnns(coco_dt.getAnnIds(imgIds=[i]))]
    assert torch.cat([a for a in areas if a.numel()]).tolist() == want
    masked = [p for b in iter_coco_batches(gt, boxed, dt_area="mask") for p in b.preds]
    assert all("area" not in p for p in masked)
    with pytest.raises(
        ValueError, match=r"\['bbox'\]` must be \[x, y, width, height\] with 4 numbers, got None"
    ):
        list(iter_coco_batches(gt, [*boxed[1:], res[0]], dt_area="bbox"))  # res[0] has no box to take
    # a result without a mask, in a file whose first result has a bbox: loadRes makes the box a polygon
    only_box = [{k: v for k, v in r.items() if k != "segmentation"} for r in boxed]
    _, coco_dt = _pycoco(gt, only_box)
    first = next(iter_coco_batches(gt, only_box, batch_size=len(ids)))
    for img_id, p in zip(first.image_ids, first.preds, strict=True):
        dets = coco_dt.loadAnns(coco_dt.getAnnIds(imgIds=[img_id]))
        for got, det in zip(p["masks"].numpy(), dets, strict=True):
            np.testing.assert_array_equal(got, coco_dt.annToMask(det))


def _gt() -> dict:
    return {
        "images": [{"id": 1, "height": 4, "width": 5}, {"id": 2, "height": 4, "width": 5}],
        "categories": [{"id": 3, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 4.0, "bbox": [0, 0, 2, 2],
             "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]},
        ],
    }  # fmt: skip


def _res(**change: object) -> list:
    r = {
        "image_id": 1,
        "category_id": 3,
        "score": 0.5,
        "segmentation": {"size": [4, 5], "counts": [0, 2, 18]},
    }
    return [{**r, **change}]


@pytest.mark.parametrize(
    ("gt_change", "res", "match"),
    [
        ({"images": [{"id": 1, "height": 4, "width": 5}] * 2}, _res(), r"must be entries with unique ids"),
        ({"categories": []}, _res(), r"annotation 1 'category_id'` must be an id listed in 'categories'"),
        ({}, _res(category_id=9), r"`results\[0\]\['category_id'\]` must be a category id of the ground"),
        ({}, _res(image_id=7), r"`results\[0\]\['image_id'\]` must be an image id of the ground truth"),
        ({}, _res(score="high"), r"`results\[0\]\['score'\]` must be a number"),
        ({}, _res(segmentation={"size": [5, 4], "counts": [20]}), r"\['size'\]` must be the image size \[4,"),
        ({}, _res(segmentation={"size": [4, 5], "counts": [0, 2, 17]}), r"summing to height\*width = 20"),
        ({}, _res(segmentation={"size": [4, 5], "counts": "0\x01"}), r"\['counts'\]` must be a compressed"),
        ({}, _res(segmentation=[[0, 1]]), r"\['segmentation'\]\[0\]` must be a polygon of at least 3 points"),
        ({}, _res(segmentation=None), r"`results\[0\]\['segmentation'\]` must be polygons or an RLE dict"),
        ({"images": {"id": 1}}, _res(), r"`gt\['images'\]\[0\]` must be a dict with an integer 'id'"),
    ],
)  # fmt: skip
def test_malformed_inputs_raise(gt_change: dict, res: list, match: str) -> None:
    gt = {**_gt(), **gt_change}
    with pytest.raises(ValueError, match=match):
        list(iter_coco_batches(gt, res))


def test_bad_files_and_options(tmp_path, real_data) -> None:
    text = (real_data / "coco_val2014_100" / "instances_val2014_100.json").read_text()
    (tmp_path / "cut.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"`gt` must be a valid JSON file, got .*cut\.json.*truncated"):
        load_coco_gt(tmp_path / "cut.json")
    with pytest.raises(FileNotFoundError, match=r"`results` must be an existing JSON file"):
        load_coco_results(tmp_path / "nope.json", load_coco_gt(_gt()))
    with pytest.raises(ValueError, match=r"`results` must be a JSON list of results, got 'dict'"):
        load_coco_results({"annotations": []}, load_coco_gt(_gt()))
    with pytest.raises(
        ValueError, match=r"`iou_type` must be one of \['segm', 'bbox'\], got 'sgem'. Did you mean 'segm'\?"
    ):
        next(iter_coco_batches(_gt(), _res(), iou_type="sgem"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`results\[0\]\['bbox'\]` must be \[x, y, width, height\]"):
        next(iter_coco_batches(_gt(), _res(), iou_type="bbox"))


def test_empty_results_and_images_without_annotations() -> None:
    batches = list(iter_coco_batches(_gt(), [], batch_size=1))
    assert [b.image_ids for b in batches] == [[1], [2]]
    assert batches[1].target[0]["masks"].shape == (0, 4, 5) and batches[1].preds[0]["scores"].shape == (0,)
    gt = load_coco_gt(_gt())
    assert gt.class_names == {3: "cat"}


def test_batches_are_decoded_lazily() -> None:
    """Masks are decoded batch by batch: a bad RLE in the last image fails only when its batch is read."""
    gt = _gt()
    res = [*_res(), *_res(image_id=2, segmentation={"size": [4, 5], "counts": [3]})]
    batches = iter_coco_batches(gt, res, batch_size=1)
    first = next(batches)
    assert first.image_ids == [1] and first.preds[0]["masks"].shape == (1, 4, 5)
    with pytest.raises(ValueError, match=r"`results\[1\]\['segmentation'\]\['counts'\]` must be run lengths"):
        next(batches)
