"""Boundary AP (Boundary IoU, iou_type="boundary"): this package against faster-coco-eval on one workload.

faster-coco-eval is the CPU peer that computes boundary AP (``COCOeval_faster(iouType="boundary")``,
its C++ boundary on RLE); pycocotools, hotcoco and torchmetrics have no boundary AP. Both sides use
faster-coco-eval's rounding of the band width, so the numbers must agree to 1e-12.
"""

from __future__ import annotations

import os
from typing import Any

from _harness import machine_line, markdown_table
from bench_instance import FasterCocoEvalInstance, OursInstance, _take, _value_columns
from peers import (
    TABLE_HEADER,
    Contender,
    TorchOpsOnly,
    load_note,
    pass_totals,
    quiet,
    run_on_workload,
    table_rows,
)
from workloads import InstanceWorkload

FULL = InstanceWorkload(num_images=50)
QUICK = InstanceWorkload(num_images=6, height=120, width=160, dets_per_image=20)


class OursBoundary(OursInstance):
    """This package's ``MeanAveragePrecision(iou_type="boundary")``."""

    name = '**torchseg-metrics** `MeanAveragePrecision(iou_type="boundary")`'

    def reset(self) -> None:
        self.metric = self.cls(iou_type="boundary", boundary_rounding="faster-coco-eval")


class FasterCocoEvalBoundary(FasterCocoEvalInstance):
    name = 'faster-coco-eval `COCOeval_faster(iouType="boundary")`'
    note = "rle_iou_max_workers=1, boundary_cpu_count=1"

    def compute(self) -> float:
        with quiet():
            gt = self.coco(self.dataset())
            dt = gt.loadRes([dict(d) for d in self.dts])
            ev = self.cocoeval(gt, dt, "boundary", rle_iou_max_workers=1, boundary_cpu_count=1)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return float(ev.stats[0])


def run(quick: bool) -> str:
    """Time both on the boundary workload and return the Markdown section."""
    load_before = os.getloadavg()
    workload = QUICK if quick else FULL
    batch_size = 4 if quick else 10
    ours, reference = OursBoundary(), FasterCocoEvalBoundary()
    contenders: list[Contender] = [ours, TorchOpsOnly(OursBoundary()), reference]
    if quick:
        ours.repeats = 1
    results = run_on_workload(contenders, workload, batch_size, _take, 4 if quick else 10)
    load_after = os.getloadavg()
    by: dict[int, Any] = {id(r.contender): r for r in results}
    r_ours, r_ref = by[id(ours)], by[id(reference)]
    header = [*TABLE_HEADER, "boundary AP", "|AP - faster-coco-eval|"]
    lines = [
        "## Boundary AP (issue 13)",
        "",
        machine_line(),
        "",
        f"Workload: {workload.describe()}; batches of {batch_size} images; band width 0.02 of the image "
        "diagonal (16 pixels at 480x640), faster-coco-eval's rounding on both sides.",
        "",
        markdown_table(header, table_rows(results, r_ours, _value_columns(r_ref))),
        "",
        "Time per image as in the instance table: `update` over all batches + one `compute`, divided by "
        "the images; for faster-coco-eval `update` is RLE-encoding and `compute` is `loadRes` + "
        "`evaluate` (which computes the boundaries) + `accumulate` + `summarize`.",
        *pass_totals(r_ours),
        "",
        load_note(load_before, load_after),
    ]
    return "\n".join(lines)
