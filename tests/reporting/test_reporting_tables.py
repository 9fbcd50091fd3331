"""Tables against the printouts of pycocotools ``COCOeval.summarize`` and panopticapi ``pq_compute``."""

from __future__ import annotations

import contextlib
import io
import math
import re
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from torchseg_metrics.reporting.tables import (
    coco_summary,
    panoptic_table,
    per_class_table,
    render_table,
    semantic_table,
)


def test_coco_summary_equals_cocoeval_printout(real_data) -> None:
    folder = real_data / "faster_coco_eval_shapes"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        gt = COCO(str(folder / "gt_dataset.json"))
        dt = gt.loadRes(str(folder / "dt_dataset.json"))
        ev = COCOeval(gt, dt, "segm")
        ev.evaluate()
        ev.accumulate()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        ev.summarize()
    assert coco_summary(ev.stats.tolist()) == printed.getvalue().rstrip("\n")
    assert -1.0 in ev.stats.tolist()  # the -1 entries print as pycocotools prints them


def test_coco_summary_markdown_and_errors() -> None:
    md = coco_summary([0.1234] * 12, max_dets=(1, 10, 300), markdown=True).splitlines()
    assert md[0] == "| metric | IoU | area | maxDets | value |"
    assert md[2] == "| AP | 0.50:0.95 | all | 100 | 0.123 |"  # stat 0 uses the literal 100 (spec A.6)
    assert md[3] == "| AP | 0.50 | all | 300 | 0.123 |" and len(md) == 14
    with pytest.raises(ValueError, match=r"`stats` must hold the 12 COCOeval numbers, got 3 values"):
        coco_summary([0.0] * 3)


def test_panoptic_table_equals_panopticapi_printout(real_data, tmp_path: Path) -> None:
    from panopticapi.evaluation import pq_compute

    folder = real_data / "panopticapi_sample"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        results = pq_compute(
            str(folder / "panoptic_examples.json"),
            str(folder / "panoptic_examples.json"),
            str(folder / "panoptic_examples"),
            str(folder / "panoptic_examples"),
        )
    lines = out.getvalue().splitlines()
    start = next(i for i, ln in enumerate(lines) if re.match(r"^\s+\|\s+PQ", ln))
    assert panoptic_table(results) == "\n".join(lines[start : start + 5])
    md = panoptic_table(results, markdown=True).splitlines()
    assert md[2] == "| All | 100.0 | 100.0 | 100.0 | 8 |"


def test_semantic_and_per_class_tables() -> None:
    res = {"mIoU": 0.51234, "mDice": 0.6, "aAcc": 0.9, "mAcc": float("nan"), "fwIoU": 0.8}
    text = semantic_table(res).splitlines()
    assert text[0].split() == ["mIoU", "mDice", "aAcc", "mAcc", "fwIoU"]
    assert text[2].split() == ["51.23", "60.00", "90.00", "nan", "80.00"]
    assert semantic_table(res, percent=False).splitlines()[2].split()[0] == "0.5123"
    md = semantic_table(res, markdown=True).splitlines()
    assert md[0] == "|  | mIoU | mDice | aAcc | mAcc | fwIoU |" and md[2].startswith("|  | 51.23 | 60.00")
    table = per_class_table({"IoU": [0.5, math.nan], "AP": [-1.0, 0.25]}, ["road", "car"], percent=True)
    assert table.splitlines()[2].split() == ["road", "50.00", "-100.00"]
    assert table.splitlines()[3].split() == ["car", "nan", "25.00"]
    with pytest.raises(ValueError, match=r"`columns\['IoU'\]` must have 3 values \(one per class\), got 2"):
        per_class_table({"IoU": [0.5, 0.2]}, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"`rows\[0\]` must have 2 cells like the header, got 1"):
        render_table(["a", "b"], [[1]])
    assert (
        render_table(["n", "v"], [["x", np.float64(0.5).item()]], markdown=True).splitlines()[1]
        == "|:---|---:|"
    )
