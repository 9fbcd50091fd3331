"""MeanAveragePrecision on real COCO data against pycocotools run on the same JSON files.

Data and published numbers: ``shared/data/SOURCES.md`` (coco_val2014_100: cocoapi's fake segm/bbox
results, whose pycocotools 2.0.11 stats are printed in ``val2014_fake_eval_res.txt``;
faster_coco_eval_shapes: the segm stats listed there). Masks are decoded with pycocotools itself
(``frPyObjects`` + ``merge`` for polygons and uncompressed RLE, ``decode`` for compressed RLE).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from torchseg_metrics.instance import MeanAveragePrecision

# SOURCES.md, coco_val2014_100 table (pycocotools 2.0.11 == val2014_fake_eval_res.txt)
PUBLISHED = {
    "segm": [0.3195452759, 0.5622883973, 0.2989265341, 0.3873740316, 0.3101827240, 0.3269339071,
             0.2682297226, 0.4154486811, 0.4168394992, 0.4694498623, 0.3767592267, 0.3814715100],
    "bbox": [0.5045806987, 0.6969727247, 0.5729816670, 0.5856257209, 0.5193996948, 0.5013978986,
             0.3868127796, 0.5936795763, 0.5953529829, 0.6398109626, 0.5664205979, 0.5642905983],
}  # fmt: skip
# SOURCES.md, faster_coco_eval_shapes segm stats
PUBLISHED_SHAPES = [0.6947194719, 0.6947194719, 0.6947194719, -1, 0.7367986799, 0.0,
                    0.6666666667, 0.75, 0.75, -1, 0.7916666667, 0.0]  # fmt: skip


def _decode(segm: object, h: int, w: int) -> np.ndarray:
    if isinstance(segm, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
    elif isinstance(segm["counts"], list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segm, h, w)
    else:
        rle = segm
    return mask_utils.decode(rle).astype(bool)


def _masks(segms: list, h: int, w: int) -> torch.Tensor:
    if not segms:
        return torch.zeros((0, h, w), dtype=torch.bool)
    return torch.from_numpy(np.stack([_decode(s, h, w) for s in segms]))


def _pycocotools(gt_file: Path, dt: list[dict], iou_type: str) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        ev = COCOeval(gt, gt.loadRes(dt), iouType=iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _feed(
    metric: MeanAveragePrecision, gt_json: dict, dt: list[dict], iou_type: str, batch: int = 10
) -> None:
    """Tensors per image in sorted image-id order (pycocotools' order), in batches of ``batch`` images."""
    gts, dts = defaultdict(list), defaultdict(list)
    for ann in gt_json["annotations"]:
        gts[ann["image_id"]].append(ann)
    for ann in dt:
        dts[ann["image_id"]].append(ann)
    images = sorted(gt_json["images"], key=lambda im: im["id"])
    for lo in range(0, len(images), batch):
        preds, target = [], []
        for im in images[lo : lo + batch]:
            h, w, g, d = im["height"], im["width"], gts[im["id"]], dts[im["id"]]
            tgt = {
                "labels": torch.tensor([a["category_id"] for a in g], dtype=torch.long),
                "iscrowd": torch.tensor([a["iscrowd"] for a in g], dtype=torch.long),
                "area": torch.tensor([a["area"] for a in g], dtype=torch.float64),
            }
            pred = {
                "scores": torch.tensor([a["score"] for a in d], dtype=torch.float64),
                "labels": torch.tensor([a["category_id"] for a in d], dtype=torch.long),
            }
            if iou_type == "segm":
                tgt["masks"] = _masks([a["segmentation"] for a in g], h, w)
                pred["masks"] = _masks([a["segmentation"] for a in d], h, w)
            else:
                tgt["boxes"] = torch.tensor([a["bbox"] for a in g], dtype=torch.float64).reshape(-1, 4)
                pred["boxes"] = torch.tensor([a["bbox"] for a in d], dtype=torch.float64).reshape(-1, 4)
            preds.append(pred)
            target.append(tgt)
        metric.update(preds, target)


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_coco_val2014_100(real_data: Path, iou_type: str) -> None:
    folder = real_data / "coco_val2014_100"
    gt_file = folder / "instances_val2014_100.json"
    dt = json.loads((folder / f"instances_val2014_fake{iou_type}100_results.json").read_text())
    ref = _pycocotools(gt_file, dt, iou_type)
    metric = MeanAveragePrecision(
        iou_type=iou_type, box_format="xywh", class_metrics=True, extended_summary=True
    )
    _feed(metric, json.loads(gt_file.read_text()), dt, iou_type)
    result = metric.compute()
    stats = metric.coco_stats()
    torch.testing.assert_close(stats, torch.from_numpy(ref.stats), rtol=0, atol=1e-12)
    torch.testing.assert_close(
        stats, torch.tensor(PUBLISHED[iou_type], dtype=torch.float64), rtol=0, atol=5e-11
    )
    # pycocotools' K axis holds every GT category; ours the classes seen (the others are all -1 there)
    cols = [list(ref.params.catIds).index(c) for c in result["classes"].tolist()]
    unseen = [k for k in range(len(ref.params.catIds)) if k not in cols]
    for key in ("precision", "recall", "scores"):
        expected = torch.from_numpy(ref.eval[key])
        axis = 2 if key != "recall" else 1
        torch.testing.assert_close(
            result[key], expected.index_select(axis, torch.tensor(cols)), rtol=0, atol=1e-12
        )
        assert (expected.index_select(axis, torch.tensor(unseen, dtype=torch.long)) == -1).all()
    # per-class AP/AR as torchmetrics defines them (stats[0] and stats[8] of a one-class COCOeval)
    classes = result["classes"].tolist()
    assert classes == sorted(
        {a["category_id"] for a in json.loads(gt_file.read_text())["annotations"]}
        | {a["category_id"] for a in dt}
    )
    precision, recall = ref.eval["precision"][:, :, :, 0, 2], ref.eval["recall"][:, :, 0, 2]
    cat_ids = list(ref.params.catIds)
    for k, c in enumerate(classes[:20]):
        if c not in cat_ids:
            assert result["map_per_class"][k] == -1
            continue
        p, r = precision[:, :, cat_ids.index(c)], recall[:, cat_ids.index(c)]
        ap = p[p > -1].mean() if (p > -1).any() else -1.0
        ar = r[r > -1].mean() if (r > -1).any() else -1.0
        assert abs(result["map_per_class"][k].item() - ap) <= 1e-12
        assert abs(result["mar_100_per_class"][k].item() - ar) <= 1e-12


def test_faster_coco_eval_shapes(real_data: Path) -> None:
    folder = real_data / "faster_coco_eval_shapes"
    gt_file = folder / "gt_dataset.json"
    gt_json = json.loads(gt_file.read_text())
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt_json["images"]}
    raw = json.loads((folder / "dt_dataset.json").read_text())
    # as SOURCES.md says: one RLE per detection from its polygons, no bbox (area = mask area)
    dt = []
    for ann in raw:
        h, w = sizes[ann["image_id"]]
        rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], h, w))
        dt.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "score": ann["score"],
                "segmentation": rle,
            }
        )
    ref = _pycocotools(gt_file, dt, "segm")
    metric = MeanAveragePrecision(iou_type="segm", extended_summary=True)
    _feed(metric, gt_json, raw, "segm")
    stats = metric.coco_stats()
    torch.testing.assert_close(stats, torch.from_numpy(ref.stats), rtol=0, atol=1e-12)
    torch.testing.assert_close(stats, torch.tensor(PUBLISHED_SHAPES, dtype=torch.float64), rtol=0, atol=5e-11)
    torch.testing.assert_close(
        metric.compute()["precision"], torch.from_numpy(ref.eval["precision"]), rtol=0, atol=1e-12
    )


def _faster_coco_eval(gt_file: Path, dt: list[dict], iou_type: str) -> object:
    import faster_coco_eval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = faster_coco_eval.COCO(str(gt_file))
        ev = faster_coco_eval.COCOeval_faster(gt, gt.loadRes(dt), iouType=iou_type, boundary_cpu_count=1)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def test_coco_val2014_100_boundary_ap_equals_faster_coco_eval(real_data: Path) -> None:
    # Boundary AP (min of mask and boundary IoU) on real masks, at faster-coco-eval's rounding of d
    folder = real_data / "coco_val2014_100"
    gt_file = folder / "instances_val2014_100.json"
    dt = json.loads((folder / "instances_val2014_fakesegm100_results.json").read_text())
    ref = _faster_coco_eval(gt_file, dt, "boundary")
    metric = MeanAveragePrecision(iou_type="boundary", boundary_rounding="faster-coco-eval")
    _feed(metric, json.loads(gt_file.read_text()), dt, "segm")
    stats = metric.coco_stats()
    torch.testing.assert_close(stats, torch.from_numpy(np.asarray(ref.stats[:12])), rtol=0, atol=1e-12)
    assert stats[0] < torch.tensor(PUBLISHED["segm"][0])  # boundaries are harder than masks
