"""Semantic-segmentation benchmark: update + compute per image, this package against its peers.

Workloads (``semantic_workloads.py``): Cityscapes-like (19 classes, 4 x 512 x 1024) and ADE20K-like
(150 classes, 8 x 512 x 512), uint8 label maps, 5% ignore pixels (255) and 20% wrong predictions,
both in blobs. Each contender builds a fresh metric, updates it with the whole batch and computes
mIoU; the median wall time is divided by the number of images. Every contender's mIoU is printed
and checked against a NumPy ``bincount`` confusion matrix (dataset-level, classes absent from both
sides left out); torchmetrics' ``segmentation.MeanIoU`` averages per image and has no
``ignore_index``, so its number differs by construction (see the notes under the table).

Run through ``benchmarks/run.py`` (``python benchmarks/run.py semantic``, or ``--quick``).
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the checkout, when not pip-installed

from _harness import machine_line, markdown_table
from peers import native_kernels
from semantic_workloads import SemanticWorkload, ade20k_like, cityscapes_like

ISSUE_NUMBERS = (
    "Numbers quoted in issue 2 for this machine type (one thread, Cityscapes-like): "
    "`MulticlassJaccardIndex` 38.9 ms per image (9.1 with `validate_args=False`), "
    "`segmentation.MeanIoU` 257 ms, hotcoco 0.89 ms, reading both inputs once 0.50 ms, plain `bincount` "
    "without boolean masking 2.35 ms. Targets: as fast as hotcoco, deterministic mode at most 1.5x the "
    "normal mode; on CUDA above 50% of memory bandwidth for the index-input path (`gpu_check.py`)."
)


#: The timed part of a row: update + compute, returning the mIoU.
Timed = Callable[[], float]


def ready(fn: Timed) -> Callable[[], Timed]:
    """A row with nothing to build before its timed part."""
    return lambda: fn


@dataclass
class Contender:
    """One timed row: ``fn()`` builds the metric (untimed) and returns the timed part, which runs
    update + compute and returns mIoU over ``images`` images."""

    name: str
    fn: Callable[[], Timed]
    images: float
    repeat: int
    warmup: int = 1
    note: str = ""
    same_convention: bool = True
    data: SemanticWorkload | None = None  # what ``fn`` reads, when not the whole workload (a crop)
    key: str = ""  # "ours", "ours_det", "hotcoco", "torchmetrics": rows used by the ratio summary


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` inside the block, restored afterwards."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def reference_miou(w: SemanticWorkload) -> float:
    """Dataset-level mIoU from a NumPy ``bincount`` confusion matrix; absent classes skipped."""
    target = w.target.cpu().numpy().astype(np.int64).ravel()
    preds = w.preds.cpu().numpy().astype(np.int64).ravel()
    keep = target != w.ignore_index
    c = w.num_classes
    cm = np.bincount(target[keep] * c + preds[keep], minlength=c * c).reshape(c, c)
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.nanmean(tp / union))


def ours(
    w: SemanticWorkload, inputs: Tensor | None = None, det: bool = False, native: bool = True
) -> Callable[[], Timed]:
    """This package's ``MeanIoU(num_classes, ignore_index=...)`` on label maps (or on ``inputs`` scores);
    ``native=False`` switches its native CPU kernels off (torch ops only)."""
    preds = w.preds if inputs is None else inputs

    def build() -> Timed:
        from torchseg_metrics.semantic import MeanIoU  # imported here: a missing package fails one row

        metric = MeanIoU(w.num_classes, ignore_index=w.ignore_index).to(w.target.device)

        def fn() -> float:
            with deterministic() if det else contextlib.nullcontext(), native_kernels(native):
                metric.update(preds, w.target)
                return float(metric.compute())

        return fn

    return build


def ours_update_only(w: SemanticWorkload) -> Callable[[], Timed]:
    """``MeanIoU.update`` alone on one metric kept across calls: the steady state of a validation loop."""
    from torchseg_metrics.semantic import MeanIoU

    metric = MeanIoU(w.num_classes, ignore_index=w.ignore_index).to(w.target.device)

    def fn() -> float:
        metric.update(w.preds, w.target)
        return math.nan

    return ready(fn)


def hotcoco_update_only(w: SemanticWorkload) -> Callable[[], Timed]:
    """hotcoco ``SemanticEval.update`` alone on one evaluator kept across calls (its steady state)."""
    from hotcoco import semantic

    target, preds = w.target.cpu().numpy(), w.preds.cpu().numpy()
    ev = semantic.SemanticEval(w.num_classes, ignore_index=w.ignore_index)

    def fn() -> float:
        ev.update(target, preds)
        return math.nan

    return ready(fn)


def torchmetrics_jaccard(w: SemanticWorkload, det: bool = False, **kwargs: object) -> Callable[[], Timed]:
    """torchmetrics ``MulticlassJaccardIndex(num_classes, ignore_index=..., **kwargs)`` (macro average)."""
    from torchmetrics.classification import MulticlassJaccardIndex

    def build() -> Timed:
        metric = MulticlassJaccardIndex(w.num_classes, ignore_index=w.ignore_index, **kwargs)
        metric = metric.to(w.target.device)

        def fn() -> float:
            with deterministic() if det else contextlib.nullcontext():
                metric.update(w.preds, w.target)
                return float(metric.compute())

        return fn

    return build


def torchmetrics_segmentation_miou(w: SemanticWorkload) -> Callable[[], Timed]:
    """torchmetrics ``segmentation.MeanIoU(input_format="index")``: per-image IoU, no ignore_index.

    Ignored pixels become an extra class ``C`` in both maps (done outside the timing), so they never
    count for classes ``0..C-1``; the reported number is the mean of its per-class output over ``0..C-1``
    where defined (its ``-1`` marks classes absent from every image).
    """
    from torchmetrics.segmentation import MeanIoU as SegmentationMeanIoU

    c = w.num_classes
    ignored = w.target == w.ignore_index
    target = torch.where(ignored, c, w.target.long())
    preds = torch.where(ignored, c, w.preds.long())

    def build() -> Timed:
        metric = SegmentationMeanIoU(c + 1, per_class=True, input_format="index").to(target.device)

        def fn() -> float:
            metric.update(preds, target)
            per_class = metric.compute()[:c]
            return float(per_class[per_class >= 0].mean())

        return fn

    return build


def hotcoco_semantic(w: SemanticWorkload) -> Callable[[], Timed]:
    """hotcoco ``semantic.SemanticEval(num_classes, ignore_index=...)`` on NumPy uint8 (untimed copy)."""
    from hotcoco import semantic

    target, preds = w.target.cpu().numpy(), w.preds.cpu().numpy()

    def build() -> Timed:
        ev = semantic.SemanticEval(w.num_classes, ignore_index=w.ignore_index)

        def fn() -> float:
            ev.update(target, preds)
            return float(ev.results()["mIoU"])

        return fn

    return build


def read_floor(w: SemanticWorkload) -> Callable[[], Timed]:
    """The floor: read both label maps once (``preds.max()`` and ``target.max()``); returns NaN (no mIoU)."""

    def fn() -> float:
        torch.stack([w.preds.max(), w.target.max()])
        return math.nan

    return ready(fn)


def plain_bincount(w: SemanticWorkload) -> Callable[[], Timed]:
    """Plain torch: ``bincount(where(ignored, dump, target * C + preds))``, no boolean mask."""
    c = w.num_classes

    def fn() -> float:
        target, preds = w.target.long(), w.preds.long()
        idx = torch.where(target == w.ignore_index, c * c, target * c + preds)
        cm = torch.bincount(idx.reshape(-1), minlength=c * c + 1)[: c * c].reshape(c, c).double()
        tp = cm.diagonal()
        return float((tp / (cm.sum(0) + cm.sum(1) - tp)).nanmean())

    return ready(fn)


def _crop(w: SemanticWorkload, rows: int) -> SemanticWorkload:
    """The first ``rows`` rows of the first image (to time an O(pixels * C^2) path without its memory)."""
    return SemanticWorkload(w.name, w.num_classes, w.ignore_index, w.preds[:1, :rows], w.target[:1, :rows])


def contenders(w: SemanticWorkload, quick: bool) -> list[Contender]:
    """The rows timed for one workload; slow peers get fewer repeats (stated in the table)."""
    n, height = w.num_images, w.target.shape[1]
    fast, slow = (2, 1) if quick else (15, 3)
    rows = [
        Contender("torchseg-metrics `MeanIoU` (uint8 labels)", ours(w), n, fast, key="ours"),
        Contender(
            "torchseg-metrics `MeanIoU`, deterministic mode", ours(w, det=True), n, fast, key="ours_det"
        ),
        Contender(
            "torchseg-metrics `MeanIoU`, torch ops only (`TORCHSEG_METRICS_NATIVE=0`)",
            ours(w, native=False),
            n,
            fast,
        ),
    ]
    if w.num_classes <= 32:  # (N, C, H, W) float32 scores: 160 MB for Cityscapes-like, 1.3 GB for ADE20K-like
        rows.append(
            Contender(
                "torchseg-metrics `MeanIoU` (float32 logits, argmax inside)",
                ours(w, inputs=w.logits()),
                n,
                slow,
                note="input (N, C, H, W)",
            )
        )
    rows += [
        Contender(
            "torchmetrics `MulticlassJaccardIndex`", torchmetrics_jaccard(w), n, slow, key="torchmetrics"
        ),
        Contender(
            "torchmetrics `MulticlassJaccardIndex(validate_args=False)`",
            torchmetrics_jaccard(w, validate_args=False),
            n,
            slow,
        ),
    ]
    # torchmetrics' deterministic bincount compares every pixel with a (pixels, C^2) int64 mesh:
    # O(pixels x C^2) time and memory (over 400 GB for one ADE20K-like batch), so it is timed on at
    # most 2^28 comparisons (one Cityscapes-like image, a crop of an ADE20K-like one), scaled per pixel.
    width = w.target.shape[-1]
    crop_rows = height if quick else max(1, min(height, (1 << 28) // (w.num_classes**2 * width)))
    crop = _crop(w, crop_rows) if not quick else w
    part = "one image" if crop_rows == height else f"a {crop_rows}-row crop of one image"
    rows.append(
        Contender(
            "torchmetrics `MulticlassJaccardIndex`, deterministic mode",
            torchmetrics_jaccard(crop, det=True),
            crop.target.numel() / (w.target[0].numel()),
            1,
            warmup=0 if not quick else 1,
            note=f"timed on {part}, scaled per pixel" if crop is not w else "",
            data=crop,
        )
    )
    rows += [
        Contender(
            "torchmetrics `segmentation.MeanIoU(input_format='index')`",
            torchmetrics_segmentation_miou(w),
            n,
            1 if not quick else 2,
            note="per-image IoU; ignore mapped to an extra class outside the timing",
            same_convention=False,
        ),
        Contender(
            "hotcoco `semantic.SemanticEval` (NumPy uint8)", hotcoco_semantic(w), n, fast, key="hotcoco"
        ),
        Contender(
            "steady state: torchseg-metrics `MeanIoU.update` only (one metric, kept)",
            ours_update_only(w),
            n,
            fast,
            same_convention=False,
            key="ours_steady",
        ),
        Contender(
            "steady state: hotcoco `SemanticEval.update` only (one evaluator, kept)",
            hotcoco_update_only(w),
            n,
            fast,
            same_convention=False,
            key="hotcoco_steady",
        ),
        Contender("plain torch `bincount` with a dump bin (no boolean mask)", plain_bincount(w), n, fast),
        Contender("floor: read both inputs once (`max`)", read_floor(w), n, fast, same_convention=False),
    ]
    return rows


def _interleaved(cs: list[Contender]) -> dict[int, tuple[float | None, float | None, float, str]]:
    """``(median ms per image, best ms per image, mIoU, error)`` of each contender, their repeats
    taken in turn (round robin).

    On a shared machine the speed drifts by tens of percent within a minute; interleaving puts
    every contender's runs in the same time windows, so their ratios do not depend on the order.
    """
    times: dict[int, list[float]] = {id(c): [] for c in cs}
    values: dict[int, float] = {id(c): math.nan for c in cs}
    errors: dict[int, str] = {}

    def one(c: Contender, timed: bool) -> None:
        if id(c) in errors:
            return
        try:
            run = c.fn()  # builds the metric: not timed
            gc.collect()
            start = time.perf_counter()
            values[id(c)] = run()
            if timed:
                times[id(c)].append(time.perf_counter() - start)
        except Exception as exc:  # a missing peer or package must not stop the table
            errors[id(c)] = f"{type(exc).__name__}: {exc}"[:120]

    for c in cs:
        for _ in range(c.warmup):
            one(c, timed=False)
    for r in range(max(c.repeat for c in cs)):
        for c in cs[r % len(cs) :] + cs[: r % len(cs)]:  # rotated: each row follows each other row alike
            if r < c.repeat:
                one(c, timed=True)
    return {
        id(c): (
            None if id(c) in errors else 1000.0 * statistics.median(times[id(c)]) / c.images,
            None if id(c) in errors else 1000.0 * min(times[id(c)]) / c.images,
            values[id(c)],
            errors.get(id(c), ""),
        )
        for c in cs
    }


def _time_workload(w: SemanticWorkload, quick: bool) -> str:
    ref = reference_miou(w)
    results: list[tuple[Contender, float | None, float | None, float, str]] = []
    cs = contenders(w, quick)
    fast = max(c.repeat for c in cs)
    timed = _interleaved([c for c in cs if c.repeat == fast])  # the fast rows, in turn
    for c in cs:
        if id(c) not in timed:  # slow peers: one after the other
            timed.update(_interleaved([c]))
        ms, best, value, err = timed[id(c)]
        results.append((c, ms, best, value if not err else math.nan, err))
        print(f"  {w.name}: {c.name}: {ms} ms/image, mIoU {value}", flush=True)
    base = results[0][1]
    rows = []
    for c, ms, best, value, err in results:
        expected = ref if c.data is None else reference_miou(c.data)
        if math.isnan(value):
            check = "—"
        elif abs(value - expected) <= 1e-6:
            check = f"{value:.6f} ✓"
        else:
            check = f"{value:.6f} ≠" if not c.same_convention else f"{value:.6f} **MISMATCH**"
        ratio = f"{ms / base:.2f}" if ms is not None and base else "—"
        time_str = f"{ms:.3f}" if ms is not None else "failed"
        best_str = f"{best:.3f}" if best is not None else ""
        note = err or c.note
        rows.append([c.name, time_str, best_str, ratio, check, str(c.repeat), note])
    header = ["contender", "ms / image (median)", "best", "× ours", "mIoU", "repeats", "note"]
    shape = "x".join(str(s) for s in w.target.shape)
    title = f"**{w.name}** ({w.num_classes} classes, uint8 {shape}; NumPy reference mIoU {ref:.6f})"
    return title + "\n\n" + markdown_table(header, rows) + "\n\n" + _summary(results)


def _summary(results: list[tuple[Contender, float | None, float | None, float, str]]) -> str:
    """One line with the ratios the issue sets targets for (of medians; of best runs in brackets)."""
    ms = {c.key: t for c, t, _, _, _ in results if c.key and t}
    best = {c.key: b for c, _, b, _, _ in results if c.key and b}
    parts = []
    if "ours" in ms and "hotcoco" in ms:
        parts.append(
            f"this package / hotcoco = {ms['ours'] / ms['hotcoco']:.2f} "
            f"(best runs: {best['ours'] / best['hotcoco']:.2f}; target: 1 or less)"
        )
    if "ours_steady" in ms and "hotcoco_steady" in ms:
        parts.append(f"steady state (update only) = {ms['ours_steady'] / ms['hotcoco_steady']:.2f}")
    if "ours" in ms and "ours_det" in ms:
        parts.append(f"deterministic / normal mode = {ms['ours_det'] / ms['ours']:.2f} (target: 1.5 or less)")
    if "ours" in ms and "torchmetrics" in ms:
        parts.append(
            f"torchmetrics `MulticlassJaccardIndex` / this package = {ms['torchmetrics'] / ms['ours']:.1f}"
        )
    return "Ratios: " + "; ".join(parts) + "." if parts else ""


def run(quick: bool = False) -> str:
    """Time every contender on both workloads; return the Markdown section for ``benchmarks/README.md``."""
    os.environ.setdefault("RAYON_NUM_THREADS", str(torch.get_num_threads()))  # hotcoco's thread pool
    parts = [
        "## Semantic segmentation: update + compute per image",
        "",
        machine_line(),
        "",
        "Median wall time of one `update` with the whole batch and `compute` of a metric built just "
        "before (its construction not timed, for every contender alike), divided by "
        "the number of images; the rows with the most repeats take their runs in turn (round robin, "
        "the order rotated every round), so that "
        "the drift of a shared machine's speed within a minute touches them alike; `best` is the "
        "fastest of those runs (on this machine some runs of this package's rows take 3 to 5 ms per "
        "batch more, all of it operating-system time during the native kernel's pass over the "
        "inputs, in streaks, with no page fault or allocation counted; its cause is not pinned "
        "down, and the median can land on either side). `× ours` is relative to the first row "
        "(medians). mIoU is checked against a NumPy "
        "`bincount` confusion matrix (✓: within 1e-6; ≠: a different convention by design). hotcoco runs "
        f"with `RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}` (its thread pool).",
    ]
    load_before = os.getloadavg()
    for factory in (cityscapes_like, ade20k_like):
        w = factory(quick=quick)
        parts += ["", _time_workload(w, quick)]
    load_after = os.getloadavg()
    parts += [
        "",
        "Notes: torchmetrics' deterministic mode replaces `bincount` by an O(pixels × C²) comparison, so "
        "it is timed on a crop and scaled per pixel. `segmentation.MeanIoU` has no `ignore_index` and "
        "averages IoU per image and class over the images where the class occurs, so its mIoU differs "
        "from the dataset-level one. Slow peers get fewer repeats (the `repeats` column); "
        "`python benchmarks/run.py semantic` regenerates this section"
        + (" (this is a `--quick` run: tiny shapes, not representative)." if quick else "."),
        "",
        f"Load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
        f"on {os.cpu_count()} cores (a shared machine inflates the slower rows most).",
        "",
        ISSUE_NUMBERS,
    ]
    return "\n".join(parts)


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(run(quick="--quick" in sys.argv))
