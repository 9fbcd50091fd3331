"""The independent reference: pycocotools ``COCOeval`` built from the same raw tensors as our metric.

Masks are RLE-encoded with ``pycocotools.mask.encode`` itself; image ids are 1, 2, ... in the order
the images are given (pycocotools sorts image ids, so this order decides ties across images);
annotation ids start at 1; detections carry no ``bbox`` key for ``segm`` (so their area is the mask
area, spec A.2); a target ``area`` is passed through when given, else the mask pixel count (segm) or
the box area (bbox), as the spec's tensor conventions say. Category ids are the union of the
detection and ground-truth labels (as torchmetrics builds them); ``average="micro"`` pools all labels
into class 0, like torchmetrics.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

IOU_THRS = np.linspace(0.5, 0.95, round((0.95 - 0.5) / 0.05) + 1)
REC_THRS = np.linspace(0.0, 1.00, round(1.00 / 0.01) + 1)


def _rle(mask: torch.Tensor) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.cpu().numpy().astype(np.uint8)))


def _xywh(box: torch.Tensor) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box.double().cpu())
    return [x1, y1, x2 - x1, y2 - y1]


def build_coco(
    preds: Sequence[dict[str, torch.Tensor]],
    target: Sequence[dict[str, torch.Tensor]],
    iou_type: str = "segm",
    average: str = "macro",
) -> tuple[COCO, COCO]:
    """GT and detection ``COCO`` objects for the given per-image dicts (boxes in xyxy)."""
    images, gt_anns, dt_anns = [], [], []
    labels: set[int] = set()
    for i, (p, t) in enumerate(zip(preds, target, strict=True)):
        img = {"id": i + 1}
        if iou_type == "segm":
            img["height"], img["width"] = int(t["masks"].shape[-2]), int(t["masks"].shape[-1])
        images.append(img)
        crowd = t.get("iscrowd", torch.zeros_like(t["labels"]))
        for j in range(len(t["labels"])):
            label = 0 if average == "micro" else int(t["labels"][j])
            labels.add(label)
            ann: dict[str, Any] = {"id": len(gt_anns) + 1, "image_id": i + 1, "category_id": label}
            ann["iscrowd"] = int(crowd[j])
            if iou_type == "segm":
                rle = _rle(t["masks"][j])
                ann["segmentation"] = rle
                ann["bbox"] = mask_utils.toBbox(rle).tolist()
                area = float(mask_utils.area(rle))
            else:
                ann["bbox"] = _xywh(t["boxes"][j])
                area = ann["bbox"][2] * ann["bbox"][3]
            ann["area"] = float(t["area"][j]) if "area" in t else area
            gt_anns.append(ann)
        for j in range(len(p["labels"])):
            label = 0 if average == "micro" else int(p["labels"][j])
            labels.add(label)
            det: dict[str, Any] = {"image_id": i + 1, "category_id": label, "score": float(p["scores"][j])}
            if iou_type == "segm":
                det["segmentation"] = _rle(p["masks"][j])
            else:
                det["bbox"] = _xywh(p["boxes"][j])
            dt_anns.append(det)
    cats = [{"id": c, "name": str(c)} for c in sorted(labels)]
    gt = COCO()
    gt.dataset = {"images": images, "annotations": gt_anns, "categories": cats}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if dt_anns:
            dt = gt.loadRes(dt_anns)
        else:  # loadRes([]) raises IndexError (spec A.7): build the empty result set directly
            dt = COCO()
            dt.dataset = {"images": images, "annotations": [], "categories": cats}
            dt.createIndex()
    return gt, dt


def coco_eval(
    preds: Sequence[dict[str, torch.Tensor]],
    target: Sequence[dict[str, torch.Tensor]],
    iou_type: str = "segm",
    iou_thresholds: Sequence[float] | None = None,
    rec_thresholds: Sequence[float] | None = None,
    max_dets: Sequence[int] | None = None,
    average: str = "macro",
    cat_ids: Sequence[int] | None = None,
) -> COCOeval:
    """A ``COCOeval`` after ``evaluate``, ``accumulate`` and ``summarize`` (printing suppressed)."""
    gt, dt = build_coco(preds, target, iou_type, average)
    ev = COCOeval(gt, dt, iouType=iou_type)
    if iou_thresholds is not None:
        ev.params.iouThrs = np.array(iou_thresholds, dtype=np.float64)
    if rec_thresholds is not None:
        ev.params.recThrs = np.array(rec_thresholds, dtype=np.float64)
    if max_dets is not None:
        ev.params.maxDets = list(max_dets)
    if cat_ids is not None:
        ev.params.catIds = list(cat_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def coco_iou_matrix(
    pred: dict[str, torch.Tensor], tgt: dict[str, torch.Tensor], iou_type: str = "segm"
) -> np.ndarray:
    """``pycocotools.mask.iou`` of one image's detections (rows, input order) and GTs (columns)."""
    crowd = [int(c) for c in tgt.get("iscrowd", torch.zeros_like(tgt["labels"]))]
    if iou_type == "segm":
        d = [_rle(m) for m in pred["masks"]]
        g = [_rle(m) for m in tgt["masks"]]
    else:
        d = [_xywh(b) for b in pred["boxes"]]
        g = [_xywh(b) for b in tgt["boxes"]]
    if not d or not g:
        return np.zeros((len(d), len(g)))
    return np.asarray(mask_utils.iou(d, g, crowd), dtype=np.float64).reshape(len(d), len(g))


def random_scene(
    gen: torch.Generator,
    num_images: int = 6,
    size: tuple[int, int] = (40, 48),
    num_classes: int = 3,
    max_gt: int = 6,
    max_fp: int = 4,
    copies: int = 3,
    crowd_p: float = 0.15,
    score_levels: int = 6,
    empty_p: float = 0.15,
    with_boxes: bool = False,
) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """Random rectangle scenes: GTs (some crowd), jittered copies as detections, extra FPs.

    Scores are drawn from ``score_levels`` values so that ties within and across images are common;
    some images have no GT and some no detections.
    """
    h, w = size

    def rect(y0: int, x0: int, hh: int, ww: int) -> torch.Tensor:
        m = torch.zeros(h, w, dtype=torch.bool)
        m[max(y0, 0) : max(y0 + hh, 0), max(x0, 0) : max(x0 + ww, 0)] = True
        return m

    def rint(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi, (1,), generator=gen))

    preds, target = [], []
    for _ in range(num_images):
        n_gt = 0 if torch.rand(1, generator=gen) < empty_p else rint(1, max_gt + 1)
        g_boxes = [(rint(0, h - 4), rint(0, w - 4), rint(3, h // 2), rint(3, w // 2)) for _ in range(n_gt)]
        g_labels = [rint(0, num_classes) for _ in range(n_gt)]
        g_crowd = [int(torch.rand(1, generator=gen) < crowd_p) for _ in range(n_gt)]
        d_boxes, d_labels = [], []
        if torch.rand(1, generator=gen) >= empty_p:
            for (y, x, hh, ww), lab in zip(g_boxes, g_labels, strict=True):
                for _ in range(rint(0, copies + 1)):
                    d_boxes.append(
                        (y + rint(-2, 3), x + rint(-2, 3), max(1, hh + rint(-2, 3)), max(1, ww + rint(-2, 3)))
                    )
                    d_labels.append(lab if torch.rand(1, generator=gen) < 0.85 else rint(0, num_classes + 1))
            for _ in range(rint(0, max_fp + 1)):
                d_boxes.append((rint(0, h - 4), rint(0, w - 4), rint(2, h // 2), rint(2, w // 2)))
                d_labels.append(rint(0, num_classes + 1))
        n_dt = len(d_boxes)
        perm = torch.randperm(n_dt, generator=gen).tolist()
        d_boxes = [d_boxes[i] for i in perm]
        d_labels = [d_labels[i] for i in perm]
        scores = (torch.randint(1, score_levels + 1, (n_dt,), generator=gen).float() / score_levels).float()
        pred = {
            "masks": torch.stack([rect(*b) for b in d_boxes])
            if n_dt
            else torch.zeros(0, h, w, dtype=torch.bool),
            "scores": scores,
            "labels": torch.tensor(d_labels, dtype=torch.long),
        }
        tgt = {
            "masks": torch.stack([rect(*b) for b in g_boxes])
            if n_gt
            else torch.zeros(0, h, w, dtype=torch.bool),
            "labels": torch.tensor(g_labels, dtype=torch.long),
            "iscrowd": torch.tensor(g_crowd, dtype=torch.long),
        }
        if with_boxes:
            pred["boxes"] = _boxes_of(d_boxes, h, w)
            tgt["boxes"] = _boxes_of(g_boxes, h, w)
        preds.append(pred)
        target.append(tgt)
    return preds, target


def _boxes_of(rects: list[tuple[int, int, int, int]], h: int, w: int) -> torch.Tensor:
    """xyxy float boxes of (y, x, h, w) rectangles clipped to the image, with a fractional jitter."""
    out = []
    for y, x, hh, ww in rects:
        y0, x0 = max(y, 0), max(x, 0)
        y1, x1 = min(max(y + hh, 0), h), min(max(x + ww, 0), w)
        out.append([x0 + 0.25, y0 + 0.5, x1 + 0.75, y1 - 0.25])
    return torch.tensor(out, dtype=torch.float32).reshape(-1, 4)


def faster_coco_eval(
    preds: Sequence[dict[str, torch.Tensor]],
    target: Sequence[dict[str, torch.Tensor]],
    iou_type: str = "boundary",
    dilation_ratio: float = 0.02,
) -> Any:
    """faster-coco-eval's ``COCOeval_faster`` (e.g. ``iouType="boundary"``) after evaluate, accumulate
    and summarize, on the same COCO datasets as :func:`coco_eval` (masks as RLE)."""
    import faster_coco_eval

    gt, dt = build_coco(preds, target, "segm")
    with contextlib.redirect_stdout(io.StringIO()):
        fgt, fdt = faster_coco_eval.COCO(), faster_coco_eval.COCO()
        fgt.dataset, fdt.dataset = gt.dataset, dt.dataset
        fgt.createIndex()
        fdt.createIndex()
        ev = faster_coco_eval.COCOeval_faster(
            fgt, fdt, iouType=iou_type, boundary_dilation_ratio=dilation_ratio, boundary_cpu_count=1
        )
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev
