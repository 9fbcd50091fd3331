"""The machinery of the instance-AP and panoptic benchmarks: contenders, the timing loop, the table.

Every contender is fed the same tensors (see ``workloads.py``) through two timed stages: ``update``
(for the COCO tools: RLE-encoding the tensors; for panopticapi: writing the PNG files) and
``compute`` (the evaluation proper), and returns its headline number (AP or PQ) so the table can show
that all contenders agree. A peer that cannot be imported becomes a "not installed" row.

This module holds what every benchmark shares: the ``Contender`` interface, the loop that times the
contenders and probes their memory, the table rows and small helpers for the peers (silencing their
output, state sizes). The adapters themselves sit beside their workload: the instance-AP peers
(pycocotools, faster-coco-eval, hotcoco, torchmetrics) in ``bench_instance.py``, the panoptic peers
(panopticapi, hotcoco, torchmetrics) in ``bench_panoptic.py``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence ``print`` and writes to file descriptor 1 (the Rust and C++ peers print there)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(io.StringIO()):
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakRss:
    """Peak resident memory of one call above the level just before it (Linux ``VmHWM``).

    Before the call: ``gc.collect()``, ``malloc_trim(0)`` (so freed heap is returned and reuse does not
    hide growth), and ``/proc/self/clear_refs`` = 5 (resets the high-water mark). After: ``VmHWM`` minus
    the ``VmRSS`` before. ``available`` is False where the kernel does not offer this.
    """

    def __init__(self) -> None:
        try:
            self._libc: Any = ctypes.CDLL("libc.so.6")
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.available = _status_kib("VmHWM") is not None
        except OSError:
            self.available = False

    def measure(self, fn: Callable[[], object]) -> int:
        """Run ``fn`` and return its peak extra RSS in bytes (0 where unavailable)."""
        if not self.available:
            fn()
            return 0
        gc.collect()
        self._libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status_kib("VmRSS") or 0
        fn()
        return max(0, (_status_kib("VmHWM") or 0) - before) * 1024


class Contender:
    """One row of a benchmark table. Subclasses implement ``setup``, ``reset``, ``update``, ``compute``."""

    name: str = "?"
    stages: tuple[str, str] = ("update", "compute")
    max_images: int | None = None  #: time only the first images (slow peers)
    repeats: int = 1  #: timed passes (the median is reported)
    note: str = ""

    def setup(self) -> None:
        """Import the peer (raises ImportError when missing)."""

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, batch: Any) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError

    def state_bytes(self) -> int | None:
        """Bytes of the retained state, where meaningful."""
        return None


@contextlib.contextmanager
def native_kernels(enabled: bool) -> Iterator[None]:
    """This package's native CPU kernels on or off inside the block (``TORCHSEG_METRICS_NATIVE``)."""
    before = os.environ.get("TORCHSEG_METRICS_NATIVE")
    os.environ["TORCHSEG_METRICS_NATIVE"] = "1" if enabled else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TORCHSEG_METRICS_NATIVE", None)
        else:
            os.environ["TORCHSEG_METRICS_NATIVE"] = before


class TorchOpsOnly(Contender):
    """One of this package's rows again with its native CPU kernels switched off (torch ops only)."""

    def __init__(self, inner: Contender) -> None:
        self.inner = inner
        self.name = inner.name.replace("**", "") + ", torch ops only (`TORCHSEG_METRICS_NATIVE=0`)"
        self.stages, self.max_images, self.repeats = inner.stages, inner.max_images, 1

    def setup(self) -> None:
        self.inner.setup()

    def reset(self) -> None:
        self.inner.reset()

    def update(self, batch: Any) -> None:
        with native_kernels(False):
            self.inner.update(batch)

    def compute(self) -> float:
        with native_kernels(False):
            return self.inner.compute()

    def state_bytes(self) -> int | None:
        return self.inner.state_bytes()


@dataclass
class Result:
    """What the loop measured for one contender."""

    contender: Contender
    status: str = "ok"
    images: int = 0
    update_s: list[float] = field(default_factory=list)
    compute_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)  #: process CPU time of update + compute, per pass
    value: float = float("nan")
    peak_bytes: int | None = None
    state_bytes: int | None = None

    @property
    def update_ms(self) -> float:
        return 1e3 * statistics.median(self.update_s) / max(self.images, 1)

    @property
    def compute_ms(self) -> float:
        return 1e3 * statistics.median(self.compute_s) / max(self.images, 1)

    @property
    def total_ms(self) -> float:
        totals = [u + c for u, c in zip(self.update_s, self.compute_s, strict=True)]
        return 1e3 * statistics.median(totals) / max(self.images, 1)

    @property
    def cpu_ms(self) -> float:
        return 1e3 * statistics.median(self.cpu_s) / max(self.images, 1)


def _guard(result: Result, fn: Callable[[], object]) -> bool:
    try:
        fn()
        return True
    except ImportError as exc:
        result.status = f"not installed ({exc.name or exc})"
    except Exception as exc:  # a peer failing must not stop the benchmark
        result.status = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
    return False


def run_contenders(
    contenders: list[Contender],
    batches: Callable[[], Iterable[Any]],
    batch_len: Callable[[Any], int],
    take: Callable[[Any, int], Any],
    memory_images: int,
) -> list[Result]:
    """Time every contender on the same batches, then probe its peak memory.

    Each pass generates the batches once and feeds every contender still due a pass, so generation
    is never timed; ``update`` is timed per batch and summed, ``compute`` once at the end. A contender
    with ``max_images`` only sees that many images (``take`` cuts the last batch). After the passes,
    one more pass over the first ``memory_images`` images measures each contender's peak RSS per call.
    """
    results = [Result(c) for c in contenders]
    live = [r for r in results if _guard(r, r.contender.setup)]
    first = next(iter(batches()))
    for r in list(live):  # warm-up on one image: imports, first-call costs
        c = r.contender
        if not _guard(r, lambda c=c: (c.reset(), c.update(take(first, 1)), c.compute())):
            live.remove(r)
    for pass_index in range(max((r.contender.repeats for r in live), default=0)):
        due = [r for r in live if r.contender.repeats > pass_index]
        seen, spent, cpu = {id(r): 0 for r in due}, {id(r): 0.0 for r in due}, {id(r): 0.0 for r in due}
        for r in due:
            r.contender.reset()
        for batch in batches():
            n = batch_len(batch)
            for r in list(due):
                room = n if r.contender.max_images is None else min(n, r.contender.max_images - seen[id(r)])
                if room <= 0:
                    continue
                part = batch if room == n else take(batch, room)
                c0, t0 = time.process_time(), time.perf_counter()
                if not _guard(r, lambda r=r, part=part: r.contender.update(part)):
                    due.remove(r)
                    live.remove(r)
                spent[id(r)] += time.perf_counter() - t0
                cpu[id(r)] += time.process_time() - c0
                seen[id(r)] += room
        for r in list(due):
            c0, t0 = time.process_time(), time.perf_counter()
            if not _guard(r, lambda r=r: setattr(r, "value", float(r.contender.compute()))):
                live.remove(r)
                continue
            r.compute_s.append(time.perf_counter() - t0)
            r.cpu_s.append(cpu[id(r)] + time.process_time() - c0)
            r.update_s.append(spent[id(r)])
            r.images = seen[id(r)]
            r.state_bytes = r.contender.state_bytes()
    probe = PeakRss()
    for r in live if probe.available and memory_images > 0 else []:
        _guard(r, lambda r=r: _probe_memory(r, probe, batches, batch_len, take, memory_images))
    return results


def _probe_memory(
    r: Result,
    probe: PeakRss,
    batches: Callable[[], Iterable[Any]],
    batch_len: Callable[[Any], int],
    take: Callable[[Any, int], Any],
    memory_images: int,
) -> None:
    c, peak, done = r.contender, 0, 0
    cap = min(memory_images, c.max_images or memory_images)
    c.reset()
    for batch in batches():
        if done >= cap:
            break
        part = take(batch, min(batch_len(batch), cap - done))
        done += batch_len(part)
        peak = max(peak, probe.measure(lambda part=part: c.update(part)))
    r.peak_bytes = max(peak, probe.measure(c.compute))
    c.reset()


TABLE_HEADER = [
    "contender",
    "images",
    "update ms/img",
    "compute ms/img",
    "total ms/img",
    "CPU ms/img",
    "vs ours",
    "peak MiB",
]


def table_rows(results: list[Result], ours: Result, value: Callable[[Result], list[str]]) -> list[list[str]]:
    """Rows under :data:`TABLE_HEADER` plus the columns ``value(result)`` gives (the agreement check)."""
    rows = []
    for r in results:
        c = r.contender
        if r.status != "ok":
            rows.append([c.name, r.status] + [""] * (len(TABLE_HEADER) - 2) + ["" for _ in value(r)])
            continue
        ratio = f"{r.total_ms / ours.total_ms:,.1f}x" if ours.status == "ok" else "n/a"
        rows.append(
            [
                c.name + (f" ({c.note})" if c.note else ""),
                f"{r.images}" + (f" x{len(r.update_s)} passes" if len(r.update_s) > 1 else ""),
                f"{fmt_ms(r.update_ms)} ({c.stages[0]})",
                f"{fmt_ms(r.compute_ms)} ({c.stages[1]})",
                fmt_ms(r.total_ms),
                fmt_ms(r.cpu_ms),
                "1.0x" if r is ours else ratio,
                f"{r.peak_bytes / 2**20:.0f}" if r.peak_bytes is not None else "n/a",
                *value(r),
            ]
        )
    return rows


def load_note(before: tuple[float, ...], after: tuple[float, ...]) -> str:
    """A sentence on the machine's load during the run (other processes skew wall times)."""
    return (
        f"Load average (1 min) {before[0]:.1f} before and {after[0]:.1f} after the run on "
        f"{os.cpu_count()} cores; where it exceeds the thread count, other processes shared the CPU and the "
        "wall times are inflated (the CPU-time column, this process's CPU seconds, much less so)."
    )


def pass_totals(ours: Result) -> list[str]:
    """Lines giving this package's total per timed pass (ms/image), when it ran several."""
    if ours.status != "ok" or len(ours.update_s) < 2:
        return []
    spread = [1e3 * (u + c) / ours.images for u, c in zip(ours.update_s, ours.compute_s, strict=True)]
    return ["", f"This package, per-pass totals (ms/img): {', '.join(fmt_ms(s) for s in spread)}."]


def fmt_ms(value: float) -> str:
    """Milliseconds with 3 significant digits."""
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def metric_state_bytes(metric: Any) -> int:
    """Bytes held by a torchmetrics ``Metric``'s states (tensors and lists of tensors)."""
    total = 0
    for value in metric.metric_state.values():
        for t in value if isinstance(value, list) else [value]:
            total += t.element_size() * t.numel()
    return total


def run_on_workload(
    contenders: list[Contender],
    workload: Any,
    batch_size: int,
    take: Callable[[Any, int], Any],
    memory_images: int,
) -> list[Result]:
    """:func:`run_contenders` over ``workload.batches(batch_size)``, whose batches are tuples of
    per-image sequences (``(preds, target, ...)``)."""
    return run_contenders(
        contenders,
        lambda: workload.batches(batch_size),
        batch_len=lambda b: len(b[0]),
        take=take,
        memory_images=memory_images,
    )
