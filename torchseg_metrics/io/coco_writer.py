"""torchmetrics' ``tm_to_coco``: kept per-image inputs of ``MeanAveragePrecision`` as COCO files.

:func:`keep_image_inputs` turns one update's per-image dicts into host-side records (boxes, scores,
labels, crowd flags and areas as CPU tensors, masks as compressed COCO RLEs), and
:func:`write_coco_files` writes all records as ``{name}_preds.json`` (a COCO results list) and
``{name}_target.json`` (a COCO dataset), the layout torchmetrics writes: image ids are the images'
positions over all updates, category ids the labels, annotation ids count from 1, boxes ``xywh``,
and a target area is the given ``area`` or else the mask's (segm) or box's area.

Example:
    >>> import json, tempfile, torch
    >>> preds = [{"boxes": torch.tensor([[1.0, 2.0, 5.0, 6.0]]), "scores": torch.tensor([0.5]),
    ...           "labels": torch.tensor([3])}]
    >>> target = [{"boxes": torch.tensor([[1.0, 2.0, 4.0, 6.0]]), "labels": torch.tensor([3])}]
    >>> records = keep_image_inputs(preds, target, ("bbox",), "xyxy")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_coco_files(records, f"{tmp}/run", ("bbox",))
    ...     json.load(open(f"{tmp}/run_preds.json"))[0]["bbox"]
    [1.0, 2.0, 4.0, 4.0]
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from torchseg_metrics.functional.instance.box_iou import _to_xywh64
from torchseg_metrics.io.rle import encode_rle


def keep_image_inputs(
    preds: Sequence[Mapping[str, Tensor]],
    target: Sequence[Mapping[str, Tensor]],
    iou_types: Sequence[str],
    box_format: str,
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Host records of checked inputs (this reads them back to the host: a sync off the CPU, the
    price of ``keep_inputs=True``)."""
    out = []
    for p, t in zip(preds, target, strict=True):
        pair = []
        for side, d in (("preds", p), ("target", t)):
            labels = d["labels"].reshape(-1).long().cpu()
            rec: dict[str, Any] = {"labels": labels}
            if side == "preds":
                rec["scores"] = d["scores"].reshape(-1).double().cpu()
            for key in ("iscrowd", "area"):
                if key in d:
                    rec[key] = d[key].reshape(-1).cpu()
            if "bbox" in iou_types:
                boxes = d["boxes"].reshape(-1, 4)
                rec["bbox"] = _to_xywh64(boxes.double(), box_format).cpu()
            if "segm" in iou_types or "boundary" in iou_types:
                masks = d["masks"]
                rec["masks"] = encode_rle(masks != 0) if masks.ndim == 3 and masks.shape[0] else []
                rec["size"] = list(masks.shape[1:]) if masks.ndim == 3 else None
            pair.append(rec)
        out.append((pair[0], pair[1]))
    return out


def _annotation(
    rec: Mapping[str, Any], k: int, image_id: int, with_box: bool, with_masks: bool
) -> dict[str, Any]:
    ann: dict[str, Any] = {"image_id": image_id, "category_id": int(rec["labels"][k])}
    if with_box:
        ann["bbox"] = [float(v) for v in rec["bbox"][k].tolist()]
    if with_masks:
        rle = rec["masks"][k]
        ann["segmentation"] = {"size": rle["size"], "counts": rle["counts"]}
    return ann


def _area(rec: Mapping[str, Any], k: int, with_masks: bool) -> float:
    if "area" in rec and float(rec["area"][k]) > 0:
        return float(rec["area"][k])
    if with_masks:
        from torchseg_metrics.io.rle import decode_rle

        return float(decode_rle([rec["masks"][k]]).sum())
    w, h = rec["bbox"][k, 2:].tolist()
    return float(w * h)


def write_coco_files(
    records: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]], name: str, iou_types: Sequence[str]
) -> None:
    """Write ``{name}_preds.json`` and ``{name}_target.json`` from :func:`keep_image_inputs` records."""
    with_box = "bbox" in iou_types
    with_masks = "segm" in iou_types or "boundary" in iou_types
    images, annotations, results, labels = [], [], [], set()
    for image_id, (pred, tgt) in enumerate(records):
        image: dict[str, Any] = {"id": image_id}
        size = tgt.get("size") or pred.get("size")
        if with_masks and size:
            image["height"], image["width"] = int(size[0]), int(size[1])
        images.append(image)
        crowd = tgt.get("iscrowd")
        for k in range(tgt["labels"].shape[0]):
            ann = _annotation(tgt, k, image_id, with_box, with_masks)
            ann.update(id=len(annotations) + 1, area=_area(tgt, k, with_masks))
            ann["iscrowd"] = int(crowd[k]) if crowd is not None else 0
            annotations.append(ann)
        for k in range(pred["labels"].shape[0]):
            res = _annotation(pred, k, image_id, with_box, with_masks)
            res["score"] = float(pred["scores"][k])
            if "area" in pred:
                res["area"] = float(pred["area"][k])
            results.append(res)
        labels.update(torch.cat([pred["labels"], tgt["labels"]]).tolist())
    dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": int(c), "name": str(c)} for c in sorted(labels)],
    }
    with open(f"{name}_preds.json", "w") as f:
        json.dump(results, f, indent=2)
    with open(f"{name}_target.json", "w") as f:
        json.dump(dataset, f, indent=2)
