"""Instance-mask AP (issue 3): torchseg-metrics against torchmetrics, pycocotools, faster-coco-eval, hotcoco.

Every contender starts from the same bool mask tensors (``workloads.InstanceWorkload``). The COCO tools
are charged for RLE-encoding the tensors (their ``update``), then for ``COCOeval`` (their
``compute``); torchmetrics and this package are timed through their own ``update``/``compute``.
Run with ``python benchmarks/run.py instance`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import copy
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _harness import machine_line, markdown_table
from peers import (
    TABLE_HEADER,
    Contender,
    Result,
    TorchOpsOnly,
    fmt_ms,
    load_note,
    metric_state_bytes,
    pass_totals,
    quiet,
    run_on_workload,
    table_rows,
)
from workloads import InstanceWorkload

FULL = InstanceWorkload()
QUICK = InstanceWorkload(num_images=8, height=120, width=160, dets_per_image=20)

ISSUE_NUMBERS = (
    "Numbers quoted in issue 3 for this machine type (one thread): torchmetrics 60 ms per image "
    "(pycocotools backend), 79 ms (faster_coco_eval backend); pycocotools 39 ms encoding + 15.6 ms "
    "evaluation; hotcoco 0.5 ms evaluation + 2.5 ms encoding (masks pre-transposed) or 24 ms. "
    "Targets: 3 ms per image or less on this CPU, state at most 64 bytes per detection."
)


def _encode_masks(encode: Callable[[np.ndarray], list[dict]], masks: Any) -> list[dict]:
    """RLE-encode bool (N, H, W) masks the way pycocotools users do: Fortran (H, W, N) uint8."""
    arr = masks.numpy()
    if arr.shape[0] == 0:
        return []
    return encode(np.asfortranarray(arr.view(np.uint8).transpose(1, 2, 0)))


class _CocoApiInstance(Contender):
    """Shared code of the pycocotools-style peers: encode in ``update``, ``COCOeval`` in ``compute``."""

    stages = ("encode", "evaluate")

    def reset(self) -> None:
        self.images: list[dict] = []
        self.gts: list[dict] = []
        self.dts: list[dict] = []
        self.cats: set[int] = set()

    def encode(self, masks: Any) -> list[dict]:
        return _encode_masks(self.mask.encode, masks)

    def update(self, batch: Any) -> None:
        preds, targets = batch
        for p, t in zip(preds, targets, strict=True):
            img = len(self.images) + 1
            h, w = t["masks"].shape[-2:]
            self.images.append({"id": img, "height": int(h), "width": int(w)})
            rles = self.encode(t["masks"])
            areas = self.mask.area(rles) if rles else []
            for rle, area, label, crowd in zip(
                rles, areas, t["labels"].tolist(), t["iscrowd"].tolist(), strict=True
            ):
                gt = {"image_id": img, "category_id": label, "segmentation": rle, "area": float(area)}
                self.gts.append({**gt, "id": len(self.gts) + 1, "iscrowd": crowd})
            labels = p["labels"].tolist()
            for rle, score, label in zip(self.encode(p["masks"]), p["scores"].tolist(), labels, strict=True):
                self.dts.append({"image_id": img, "category_id": label, "segmentation": rle, "score": score})
            self.cats.update(t["labels"].tolist(), labels)

    def dataset(self) -> dict:
        cats = [{"id": c, "name": str(c)} for c in sorted(self.cats)]
        return {"images": self.images, "annotations": copy.copy(self.gts), "categories": cats}


class PycocotoolsInstance(_CocoApiInstance):
    name = "pycocotools `COCOeval`"

    def setup(self) -> None:
        from pycocotools import mask
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        self.mask, self.coco, self.cocoeval = mask, COCO, COCOeval

    def compute(self) -> float:
        with quiet():
            gt = self.coco()
            gt.dataset = self.dataset()
            gt.createIndex()
            ev = self.cocoeval(gt, gt.loadRes([dict(d) for d in self.dts]), "segm")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return float(ev.stats[0])


class FasterCocoEvalInstance(_CocoApiInstance):
    name = "faster-coco-eval `COCOeval_faster`"
    note = "rle_iou_max_workers=1"

    def setup(self) -> None:
        from faster_coco_eval import COCO, COCOeval_faster
        from faster_coco_eval.core import mask

        self.mask, self.coco, self.cocoeval = mask, COCO, COCOeval_faster

    def compute(self) -> float:
        with quiet():
            gt = self.coco(self.dataset())
            ev = self.cocoeval(gt, gt.loadRes([dict(d) for d in self.dts]), "segm", rle_iou_max_workers=1)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return float(ev.stats[0])


class HotcocoInstance(_CocoApiInstance):
    name = "hotcoco `COCOeval`"
    note = "encodes the (H, W, N) view of the tensors; RAYON_NUM_THREADS=1"

    def setup(self) -> None:
        import hotcoco
        import hotcoco.mask

        self.hotcoco, self.mask = hotcoco, hotcoco.mask

    def encode(self, masks: Any) -> list[dict]:
        arr = masks.numpy()
        return self.mask.encode(arr.transpose(1, 2, 0)) if arr.shape[0] else []

    def compute(self) -> float:
        with quiet():
            gt = self.hotcoco.COCO(self.dataset())
            ev = self.hotcoco.COCOeval(gt, gt.load_res(self.dts), "segm")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return float(ev.stats[0])


def _stub_torchvision() -> None:
    """Let torchmetrics' segm path run without torchvision: it imports ``box_convert`` but uses it only
    for boxes. The stub raises if it is ever called, so no box number can come from it."""
    import types

    def box_convert(*args: object, **kwargs: object) -> None:
        raise NotImplementedError("torchvision is not installed; the benchmark stub has no box_convert")

    ops = types.ModuleType("torchvision.ops")
    ops.box_convert = box_convert  # type: ignore[attr-defined]
    package = types.ModuleType("torchvision")
    package.ops = ops  # type: ignore[attr-defined]
    package.BENCHMARK_STUB = True  # type: ignore[attr-defined]
    sys.modules.setdefault("torchvision", package)
    sys.modules.setdefault("torchvision.ops", ops)


class TorchmetricsInstance(Contender):
    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.name = f"torchmetrics `MeanAveragePrecision` ({backend})"

    def setup(self) -> None:
        import importlib

        importlib.import_module(self.backend)
        from torchmetrics.detection import mean_ap

        if not mean_ap._TORCHVISION_AVAILABLE:
            _stub_torchvision()
            mean_ap._TORCHVISION_AVAILABLE = True
        notes = ["COCOeval_faster with its default thread pool"] if self.backend == "faster_coco_eval" else []
        if getattr(sys.modules.get("torchvision"), "BENCHMARK_STUB", False):
            notes.append("torchvision absent: a stub `box_convert`, never called for segm")
        self.note = "; ".join(notes)
        self.cls = mean_ap.MeanAveragePrecision

    def reset(self) -> None:
        self.metric = self.cls(iou_type="segm", backend=self.backend)

    def update(self, batch: Any) -> None:
        self.metric.update(*batch)

    def compute(self) -> float:
        with quiet():
            return float(self.metric.compute()["map"])


class OursInstance(Contender):
    """This package's ``MeanAveragePrecision(iou_type="segm")``, fed the lists of dicts as they are."""

    name = "**torchseg-metrics** `MeanAveragePrecision`"
    repeats = 3

    def setup(self) -> None:
        from torchseg_metrics.instance import MeanAveragePrecision

        self.cls = MeanAveragePrecision

    def reset(self) -> None:
        self.metric = self.cls(iou_type="segm")

    def update(self, batch: Any) -> None:
        self.metric.update(*batch)

    def compute(self) -> float:
        return float(self.metric.compute()["map"])

    def state_bytes(self) -> int:
        return metric_state_bytes(self.metric)


def _take(batch: Any, k: int) -> Any:
    preds, targets = batch
    return preds[:k], targets[:k]


def _hotcoco_pretransposed_ms(workload: InstanceWorkload, images: int) -> float | None:
    """hotcoco encoding per image when the masks already lie as (N, W, H) (transposition not timed)."""
    try:
        import hotcoco.mask as hmask
    except ImportError:
        return None
    total = 0.0
    for preds, targets in workload.batches(batch_size=1, num_images=images):
        for masks in (preds[0]["masks"], targets[0]["masks"]):
            fortran = masks.transpose(1, 2).contiguous().numpy().transpose(2, 1, 0)  # (H, W, N) Fortran
            t0 = time.process_time()
            hmask.encode(fortran)
            total += time.process_time() - t0
    return 1e3 * total / images


def _value_columns(reference: Result) -> Callable[[Result], list[str]]:
    def columns(r: Result) -> list[str]:
        delta = f"{abs(r.value - reference.value):.1e}" if reference.status == "ok" else "n/a"
        return [f"{r.value:.10f}", delta]

    return columns


def run(quick: bool) -> str:
    """Time every contender on the instance workload and return the Markdown section."""
    os.environ.setdefault("RAYON_NUM_THREADS", str(torch.get_num_threads()))  # hotcoco's thread pool
    load_before = os.getloadavg()
    workload = QUICK if quick else FULL
    batch_size, memory_images = (4, 4) if quick else (10, 20)
    ours = OursInstance()
    reference = PycocotoolsInstance()
    contenders: list[Contender] = [
        ours,
        TorchOpsOnly(OursInstance()),
        TorchmetricsInstance("pycocotools"),
        TorchmetricsInstance("faster_coco_eval"),
        reference,
        FasterCocoEvalInstance(),
        HotcocoInstance(),
    ]
    if quick:
        ours.repeats = 1
    results = run_on_workload(contenders, workload, batch_size, _take, memory_images)
    load_after = os.getloadavg()
    by = {id(r.contender): r for r in results}
    r_ours, r_ref = by[id(ours)], by[id(reference)]
    header = [*TABLE_HEADER, "AP (stats[0])", "|AP - pycocotools|"]
    lines = [
        "## Instance segmentation AP (issue 3)",
        "",
        machine_line(),
        "",
        f"Workload: {workload.describe()}; batches of {batch_size} images.",
        "",
        markdown_table(header, table_rows(results, r_ours, _value_columns(r_ref))),
        "",
        "Time per image = (sum of the `update` calls over all batches + one `compute`) / images, from the "
        "tensors; generating them is not timed. For the COCO tools `update` is RLE-encoding the tensors "
        "(pycocotools and faster-coco-eval: Fortran `(H, W, N)` uint8 copy, as their users do; hotcoco: "
        "its encoder on the `(H, W, N)` view) plus building the annotation dicts, and `compute` is "
        "`loadRes` + `evaluate` + `accumulate` + `summarize`. "
        f"This package: median of {ours.repeats} timed pass(es); peers: one pass after a one-image warm-up.",
        "",
        f"Peak MiB: the largest rise of resident memory during any single `update`/`compute` call over the "
        f"first {memory_images} images (Linux `VmHWM` after resetting it through `/proc/self/clear_refs`, "
        "minus `VmRSS` before the call, after `gc.collect()` and `malloc_trim(0)`); the input tensors "
        "themselves are not counted, copies made of them are. Retained state is not included.",
    ]
    if r_ours.status == "ok" and r_ours.state_bytes is not None:
        dets = r_ours.images * workload.dets_per_image
        lines += [
            "",
            f"State of this package after {r_ours.images} images: {r_ours.state_bytes:,} bytes = "
            f"{r_ours.state_bytes / dets:.1f} bytes per detection ({dets:,} detections).",
        ]
    pre = _hotcoco_pretransposed_ms(workload, min(10, workload.num_images))
    if pre is not None:
        lines += [
            "",
            f"hotcoco encoding when the masks already lie transposed (`(N, W, H)` contiguous, the "
            f"transposition not timed): {fmt_ms(pre)} ms CPU time per image (first "
            f"{min(10, workload.num_images)} images).",
        ]
    lines += [*pass_totals(r_ours), "", load_note(load_before, load_after), "", ISSUE_NUMBERS]
    return "\n".join(lines)
