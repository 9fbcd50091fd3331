"""COCO JSON files as torchmetrics' per-image input lists (``MeanAveragePrecision.coco_to_tm``).

The same lists as torchmetrics' ``coco_to_tm``: one dict per image that has ground truth, in the
order its first annotation appears; ``boxes`` in COCO's ``xywh`` (so give the metric
``box_format="xywh"``), masks decoded to uint8 ``(N, H, W)``; ``labels``/``iscrowd`` int32,
``scores``/``area`` float32; images without detections get empty predictions. The COCO API of
``backend`` (pycocotools or faster-coco-eval) reads the files and decodes the masks.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import torch
from torch import Tensor

from torchseg_metrics._checks import check_choice


def _coco_class(backend: str) -> Any:
    check_choice("backend", backend, ["pycocotools", "faster_coco_eval"])
    if backend == "pycocotools":
        from pycocotools.coco import COCO
    else:
        from faster_coco_eval import COCO
    return COCO


def coco_to_tm(
    coco_preds: str,
    coco_target: str,
    iou_type: str | tuple[str, ...] = ("bbox",),
    backend: str = "pycocotools",
) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
    """``(preds, target)`` lists for ``MeanAveragePrecision.update`` from a COCO results file and
    a COCO ground-truth file (see the module text).

    Raises:
        ValueError: an unknown ``iou_type`` or ``backend``.
        ModuleNotFoundError: without the ``backend`` package.
    """
    from torchseg_metrics.functional.instance.coco_records import parse_iou_types

    types = parse_iou_types(iou_type)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = _coco_class(backend)(coco_target)
        dt = gt.loadRes(coco_preds)
    keys = [("boxes", "bbox")] if "bbox" in types else []
    keys += [("masks", "segm")] if "segm" in types else []

    def empty() -> dict[str, list]:
        return {k: [] for k in ("labels", "iscrowd", "area", "scores", *(name for name, _ in keys))}

    target: dict[int, dict[str, list]] = {}
    for ann in gt.dataset["annotations"]:
        row = target.setdefault(ann["image_id"], empty())
        row["labels"].append(ann["category_id"])
        row["iscrowd"].append(ann.get("iscrowd", 0))
        row["area"].append(ann["area"])
        for name, _ in keys:
            row[name].append(ann["bbox"] if name == "boxes" else gt.annToMask(ann))
    preds: dict[int, dict[str, list]] = {}
    for ann in dt.dataset["annotations"]:
        row = preds.setdefault(ann["image_id"], empty())
        row["labels"].append(ann["category_id"])
        row["scores"].append(ann["score"])
        for name, _ in keys:
            row[name].append(ann["bbox"] if name == "boxes" else gt.annToMask(ann))

    def geometry(rows: list, name: str) -> Tensor:
        if name == "boxes":
            return torch.tensor(np.array(rows, dtype=np.float64), dtype=torch.float32)  # empty: (0,)
        return torch.tensor(np.array(rows), dtype=torch.uint8)

    out_p, out_t = [], []
    for image, t in target.items():
        p = preds.get(image, empty())
        bp: dict[str, Tensor] = {
            "scores": torch.tensor(p["scores"], dtype=torch.float32),
            "labels": torch.tensor(p["labels"], dtype=torch.int32),
        }
        bt: dict[str, Tensor] = {
            "labels": torch.tensor(t["labels"], dtype=torch.int32),
            "iscrowd": torch.tensor(t["iscrowd"], dtype=torch.int32),
            "area": torch.tensor(t["area"], dtype=torch.float32),
        }
        for name, _ in keys:
            bp[name], bt[name] = geometry(p[name], name), geometry(t[name], name)
        out_p.append(bp)
        out_t.append(bt)
    return out_p, out_t
