"""GPU check in one call: the CUDA tests, GPU timings of the three tasks, and a Markdown table.

Usage (on a machine with a CUDA device, from the repository root)::

    python benchmarks/gpu_check.py              # tests + benchmarks, writes the `gpu` README section
    python benchmarks/gpu_check.py --no-write   # print only
    python benchmarks/gpu_check.py --quick      # tiny shapes (a smoke run of this script)

Parts, each guarded so that a failure is printed and the next part still runs:

1. ``pytest -q -k cuda`` over ``tests/`` (the ``cuda`` parameter of the ``device`` fixture);
2. semantic: ``MeanIoU`` on the Cityscapes-like and ADE20K-like workloads (``semantic_workloads``)
   on the GPU, label input (normal and deterministic mode) and float logits, against torchmetrics'
   ``MulticlassJaccardIndex`` and the floor of reading both inputs once; the achieved bandwidth of
   the index-input path is the bytes of both label maps divided by the time of update + compute;
   the ``update`` is also run under ``torch.cuda.set_sync_debug_mode("error")``;
3. instance (``MeanAveragePrecision``, ``iou_type`` ``"segm"`` and ``"boundary"``) and panoptic
   (``PanopticQuality``) on the ``workloads`` generators at moderate size, on the GPU and on the
   CPU, with equal results checked.

All times are CUDA-synchronised medians, in ms per image. Without CUDA the script prints a message
and exits with status 0. It exits 1 when a part failed or a check did not hold. The reference
packages that the tests import are missing on the lent GPU machine: ``benchmarks/gpu_wheels.sh``
fetches them beforehand, and ``benchmarks/README.md`` (the GPU paragraph) gives the one call to make.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(ROOT))  # the checkout, when not pip-installed

from _harness import machine_line, markdown_table, median_seconds, write_section  # noqa: E402

NO_CUDA_MESSAGE = "gpu_check: no CUDA device available; nothing to check (run it on a machine with a GPU)."
#: nominal DRAM bandwidth in GB/s by device-name fragment, for the "% of nominal" column
NOMINAL_GBPS = {"H200": 4800.0, "H100 SXM": 3350.0, "H100": 2000.0, "A100": 1555.0, "L4": 300.0, "A10": 600.0}


class Report:
    """Collects table rows and failures of the parts."""

    def __init__(self) -> None:
        self.sections: list[str] = []
        self.failures: list[str] = []

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Run a part; on an exception print it, note the failure and go on."""
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            yield
        except Exception:
            text = traceback.format_exc()
            print(text, flush=True)
            self.failures.append(f"{name}: {text.strip().splitlines()[-1]}")
        print(f"== {name}: {time.perf_counter() - start:.1f} s", flush=True)


def _nominal_gbps(device: str) -> float | None:
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in NOMINAL_GBPS.items() if k in name), None)


def run_cuda_tests(report: Report, timeout_s: int) -> None:
    """``pytest -q -k cuda tests/`` in a subprocess; its summary line goes into the report."""
    # a test module whose optional reference package (pycocotools, hotcoco...) is missing on the GPU
    # machine must not stop the CUDA tests of the others: its collection error is reported, not fatal
    cmd = [sys.executable, "-m", "pytest", "-q", "-k", "cuda", "-p", "no:cacheprovider"]
    cmd += ["--continue-on-collection-errors", "tests"]
    with contextlib.suppress(ImportError):
        import xdist  # noqa: F401

        cmd[4:4] = ["-n", "4"]
    print(" ".join(cmd), flush=True)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode(errors="replace")
        print(out[-4000:], flush=True)
        report.failures.append(f"CUDA tests: timed out after {timeout_s} s")
        report.sections.append(f"CUDA tests (`pytest -k cuda`): **timed out after {timeout_s} s**.")
        return
    tail = (proc.stdout + proc.stderr)[-6000:]
    print(tail, flush=True)
    lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
    summary = lines[-1] if lines else "(no output)"
    failed_ids = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    # exit 5: nothing collected (no test has a cuda parameter yet) -- a note, not a failure
    if proc.returncode not in (0, 5):
        report.failures.append(f"CUDA tests: exit status {proc.returncode}: {summary}")
    body = f"CUDA tests (`pytest -k cuda`, exit status {proc.returncode}): {summary}"
    if failed_ids:
        body += "\n\n" + "\n".join(f"- `{ln[:200]}`" for ln in failed_ids[:20])
    report.sections.append(body)


def _ms(build: Callable[[], Callable[[], object]], images: float, repeat: int, device: str) -> float:
    """ms per image of the timed part that ``build()`` returns (the build itself not timed)."""
    seconds = median_seconds(build, repeat=repeat, warmup=1, sync=device == "cuda", built=True)
    return 1000.0 * seconds / images


def semantic_part(report: Report, quick: bool, device: str = "cuda") -> None:
    """GPU rows for ``MeanIoU`` and its peers; bandwidth of the index-input path."""
    import bench_semantic as bs
    from semantic_workloads import ade20k_like, cityscapes_like

    nominal = _nominal_gbps(device)
    repeat = 3 if quick else 20
    rows: list[list[str]] = []
    for factory in (cityscapes_like, ade20k_like):
        w = factory(quick=quick).to(device)
        n = w.num_images
        ref = bs.reference_miou(w)
        logits = w.logits().to(device)

        contenders: list[tuple[str, Callable[[], float], int | None]] = [
            ("torchseg-metrics `MeanIoU`, uint8 labels", bs.ours(w), w.nbytes),
            ("torchseg-metrics `MeanIoU`, uint8 labels, deterministic", bs.ours(w, det=True), w.nbytes),
            (
                "torchseg-metrics `MeanIoU`, float32 logits (N, C, H, W)",
                bs.ours(w, inputs=logits),
                logits.numel() * logits.element_size() + w.target.numel(),
            ),
            ("torchmetrics `MulticlassJaccardIndex`", bs.torchmetrics_jaccard(w), None),
            (
                "torchmetrics `MulticlassJaccardIndex(validate_args=False)`",
                bs.torchmetrics_jaccard(w, validate_args=False),
                None,
            ),
        ]
        if w.num_classes**2 * w.target.numel() <= 2**31:  # its deterministic path: pixels x C^2 bools
            contenders.append(
                (
                    "torchmetrics `MulticlassJaccardIndex`, deterministic",
                    bs.torchmetrics_jaccard(w, det=True),
                    None,
                )
            )
        contenders.append(("floor: read both label maps once (`max`)", bs.read_floor(w), w.nbytes))
        for name, fn, nbytes in contenders:
            try:
                value = fn()()
                ms = _ms(fn, n, repeat if "deterministic" not in name or "torchseg" in name else 2, device)
                check = (
                    "—" if math.isnan(value) else ("✓" if abs(value - ref) <= 1e-6 else f"**{value:.6f}**")
                )
                if "torchseg" in name and check != "✓":
                    report.failures.append(f"semantic {w.name} {name}: mIoU {value} != reference {ref}")
                rate = _gbps(nbytes, ms * 1e-3 * n, nominal) if nbytes else ""
                rows.append([w.name, name, f"{ms:.4f}", rate, check])
            except Exception as exc:  # one contender failing must not hide the others
                print(traceback.format_exc(), flush=True)
                report.failures.append(f"semantic {w.name} {name}: {type(exc).__name__}: {exc}")
                rows.append([w.name, name, "failed", "", f"{type(exc).__name__}: {str(exc)[:80]}"])
            print(" | ".join(rows[-1]), flush=True)
        rows += _steady_state_rows(report, w, device, tile=1 if quick else 2, nominal=nominal)
        if device == "cuda":
            rows.append([w.name, "update() under `set_sync_debug_mode('error')`", "", "", _sync_free(w)])
            if rows[-1][-1] != "no sync":
                report.failures.append(f"semantic {w.name}: update synchronised: {rows[-1][-1]}")
            del logits
            torch.cuda.empty_cache()
    header = ["workload", "contender", "ms / image", "GB/s read", "mIoU = NumPy (1e-6)"]
    report.sections.append(
        "**Semantic** (update + compute per batch, per image; GB/s = bytes of both inputs / time)\n\n"
        + markdown_table(header, rows)
    )


def _gbps(nbytes: int, seconds: float, nominal: float | None) -> str:
    """``nbytes / seconds`` in GB/s, with its share of the nominal bandwidth when known."""
    rate = nbytes / seconds / 1e9 if seconds > 0 else math.nan
    return f"{rate:.3g}" + (f" ({100 * rate / nominal:.0f}% of nominal)" if nominal else "")


def _steady_state_rows(
    report: Report, w: Any, device: str, tile: int, nominal: float | None
) -> list[list[str]]:
    """Bandwidth of ``MeanIoU.update`` alone, 10 updates in a row on a large batch (launch costs amortised).

    The batch is the workload tiled ``tile`` x ``tile`` in space and 4x in images (Cityscapes-like:
    16 x 1024 x 2048, 64 MiB of labels), so that reading it takes well over a kernel launch.
    """
    import bench_semantic as bs

    from torchseg_metrics.semantic import MeanIoU

    reps = 4 if tile > 1 else 1
    preds, target = w.preds.repeat(reps, tile, tile), w.target.repeat(reps, tile, tile)
    nbytes = preds.numel() + target.numel()
    label = f"{tuple(preds.shape)}, 10 updates"
    rows = []
    for name, det in (("`MeanIoU.update` only", False), ("`MeanIoU.update` only, deterministic", True)):
        try:
            with bs.deterministic() if det else contextlib.nullcontext():
                metric = MeanIoU(w.num_classes, ignore_index=w.ignore_index).to(device)

                def updates(metric: Any = metric) -> None:
                    for _ in range(10):
                        metric.update(preds, target)

                seconds = median_seconds(updates, repeat=5, warmup=1, sync=device == "cuda") / 10
            rate = _gbps(nbytes, seconds, nominal)
            rows.append([w.name, f"{name}: {label}", f"{1000 * seconds:.4f} per update", rate, ""])
        except Exception as exc:
            print(traceback.format_exc(), flush=True)
            report.failures.append(f"semantic {w.name} {name}: {type(exc).__name__}: {exc}")
            rows.append([w.name, f"{name}: {label}", "failed", "", f"{type(exc).__name__}: {str(exc)[:80]}"])
        print(" | ".join(rows[-1]), flush=True)

    def read() -> None:
        torch.stack([preds.max(), target.max()])

    seconds = median_seconds(read, repeat=5, warmup=1, sync=device == "cuda")
    rate = _gbps(nbytes, seconds, nominal)
    rows.append([w.name, f"floor: read both once: {label[:-12]}", f"{1000 * seconds:.4f} per read", rate, ""])
    return rows


def _sync_free(w: Any) -> str:
    """Run one ``MeanIoU.update`` with CUDA sync debugging set to error: "no sync" or the error."""
    from torchseg_metrics.semantic import MeanIoU

    metric = MeanIoU(w.num_classes, ignore_index=w.ignore_index).to("cuda")
    metric.update(w.preds, w.target)  # warm-up outside the check (lazy initialisation)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        metric.update(w.preds, w.target)
        return "no sync"
    except RuntimeError as exc:
        return f"**synchronised**: {str(exc)[:100]}"
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _to(obj: Any, device: str) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(v, device) for v in obj)
    return obj


def _time_metric(
    make: Callable[[], Any],
    batches: list[Any],
    update: Callable[[Any, Any], None],
    result: Callable[[Any], float],
    device: str,
    repeat: int,
) -> tuple[float, float]:
    """Median seconds of a fresh metric's updates over ``batches`` plus compute; and its value."""
    values: list[float] = []

    def run_once() -> None:
        metric = make().to(device)
        for batch in batches:
            update(metric, batch)
        values.append(result(metric))

    seconds = median_seconds(run_once, repeat=repeat, warmup=1, sync=device == "cuda")
    return seconds, values[-1]


def instance_panoptic_part(report: Report, quick: bool, device: str = "cuda") -> None:
    """GPU and CPU timings of ``MeanAveragePrecision(segm)`` and ``PanopticQuality``, equal values checked."""
    from workloads import InstanceWorkload, PanopticWorkload

    rows: list[list[str]] = []
    images, size = (4, (120, 160)) if quick else (32, (480, 640))
    repeat = 1 if quick else 3

    def task(
        name: str, make: Callable[[], Any], cpu_batches: list[Any], update: Any, result: Any, count: int = 0
    ) -> None:
        per = count or images  # images the times are divided by
        try:
            gpu_batches = _to(cpu_batches, device)
            gpu_s, gpu_value = _time_metric(make, gpu_batches, update, result, device, repeat)
            cpu_s, cpu_value = _time_metric(make, cpu_batches, update, result, "cpu", 1)
            same = gpu_value == cpu_value or (math.isnan(gpu_value) and math.isnan(cpu_value))
            if not same:
                report.failures.append(f"{name}: GPU {gpu_value!r} != CPU {cpu_value!r}")
            rows.append(
                [
                    name,
                    f"{1000 * gpu_s / per:.3f}",
                    f"{1000 * cpu_s / per:.3f}",
                    f"{gpu_value:.12f}",
                    "✓" if same else f"**CPU {cpu_value:.12f}**",
                ]
            )
        except Exception as exc:
            print(traceback.format_exc(), flush=True)
            report.failures.append(f"{name}: {type(exc).__name__}: {exc}")
            rows.append([name, "failed", "", "", f"{type(exc).__name__}: {str(exc)[:80]}"])
        print(" | ".join(rows[-1]), flush=True)

    iw = InstanceWorkload(num_images=images, height=size[0], width=size[1])

    def make_map() -> Any:
        from torchseg_metrics.instance import MeanAveragePrecision

        return MeanAveragePrecision(iou_type="segm")

    task(
        f"`MeanAveragePrecision(iou_type='segm')`, {images} images {size[0]}x{size[1]}, "
        f"{iw.dets_per_image} detections/image",
        make_map,
        list(iw.batches(8)),
        lambda m, b: m.update(*b),
        lambda m: float(m.compute()["map"]),
    )

    def make_boundary_map() -> Any:
        from torchseg_metrics.instance import MeanAveragePrecision

        return MeanAveragePrecision(iou_type="boundary")

    task(
        f"`MeanAveragePrecision(iou_type='boundary')`, {images} images {size[0]}x{size[1]}, "
        f"{iw.dets_per_image} detections/image",
        make_boundary_map,
        list(iw.batches(8)),
        lambda m, b: m.update(*b),
        lambda m: float(m.compute()["map"]),
    )

    from bench_surface import workloads as surface_workloads

    for name, p, t, c, spacing in surface_workloads(quick):

        def make_hd(c: int = c, spacing: tuple = spacing) -> Any:
            from torchseg_metrics.surface import HausdorffDistance

            return HausdorffDistance(c, percentile=95, spacing=spacing)

        task(
            f"`HausdorffDistance(percentile=95)`, {name}",
            make_hd,
            [(p[i : i + 1], t[i : i + 1]) for i in range(p.shape[0])],
            lambda m, b: m.update(*b),
            lambda m: float(m.compute()),
            count=p.shape[0],
        )

    pw = PanopticWorkload(num_images=images, height=size[0], width=size[1])

    def make_pq() -> Any:
        from torchseg_metrics.panoptic import PanopticQuality

        return PanopticQuality(pw.things, pw.stuffs, allow_unknown_preds_category=True)

    task(
        f"`PanopticQuality`, {images} images {size[0]}x{size[1]}",
        make_pq,
        list(pw.batches(8)),
        lambda m, b: m.update(b[0], b[1], target_crowd=b[2]),
        lambda m: float(m.compute()),
    )
    header = [
        "metric (update + compute, batches of 8)",
        "GPU ms / image",
        "CPU ms / image",
        "value",
        "GPU = CPU",
    ]
    report.sections.append("**Instance and panoptic**\n\n" + markdown_table(header, rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few repeats")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--skip-tests", action="store_true", help="benchmarks only")
    parser.add_argument("--test-timeout", type=int, default=200, help="seconds for the CUDA tests")
    parser.add_argument("--device", default="cuda", help="'cpu': a dry run of the benchmark parts (no GPU)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA_MESSAGE, flush=True)
        return 0
    start = time.perf_counter()
    report = Report()
    if not args.skip_tests:
        with report.part("CUDA tests"):
            run_cuda_tests(report, args.test_timeout)
    torch.set_num_threads(min(8, os.cpu_count() or 1))  # CPU columns: several threads, as on a GPU node
    with report.part("semantic"):
        semantic_part(report, args.quick, args.device)
    with report.part("instance and panoptic"):
        instance_panoptic_part(report, args.quick, args.device)
    status = "all checks passed" if not report.failures else f"{len(report.failures)} problem(s)"
    body = "\n\n".join(
        [
            "## GPU check (`python benchmarks/gpu_check.py`)",
            machine_line() + f" CPU columns: {torch.get_num_threads()} threads.",
            *report.sections,
            f"Result: {status}; the whole check took {time.perf_counter() - start:.0f} s."
            + ("" if not args.quick else " (`--quick`: tiny shapes, not representative.)"),
            *(f"- {f}" for f in report.failures),
        ]
    )
    print("\n" + body, flush=True)
    if not args.no_write and not args.quick and args.device == "cuda":
        try:
            write_section("gpu", body)
        except OSError as exc:
            print(f"could not write benchmarks/README.md: {exc}", flush=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
