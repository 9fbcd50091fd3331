"""Shared timing and reporting for the benchmarks: medians, machine facts, README sections.

Every ``bench_<task>.py`` module exposes ``run(quick: bool) -> str`` returning a Markdown section
(a table of medians and ratios); ``benchmarks/run.py`` writes it into ``benchmarks/README.md``
between ``<!-- BEGIN <task> -->`` and ``<!-- END <task> -->`` markers.
"""

from __future__ import annotations

import datetime as _dt
import gc
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

README = Path(__file__).with_name("README.md")


def median_seconds(
    fn: Callable[[], Any], repeat: int = 5, warmup: int = 1, sync: bool = False, *, built: bool = False
) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs after ``warmup`` runs (CUDA-synced if asked).

    ``built=True``: ``fn`` builds what is timed; each run calls it untimed and times what it returns.
    """
    for _ in range(warmup):
        (fn() if built else fn)()
    times = []
    for _ in range(repeat):
        run = fn() if built else fn
        gc.collect()
        if sync:
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine_line() -> str:
    """One line naming the machine, thread count, torch version and date."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    date = _dt.date.today().isoformat()
    return (
        f"Machine: {cpu}, {os.cpu_count()} cores, torch.get_num_threads()={torch.get_num_threads()}{gpu}; "
        f"torch {torch.__version__}, Python {platform.python_version()}; {date}."
    )


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table from a header and rows of strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_section(task: str, body: str, readme: Path = README) -> None:
    """Replace (or append) the ``task`` section of ``benchmarks/README.md`` with ``body``."""
    begin, end = f"<!-- BEGIN {task} -->", f"<!-- END {task} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    readme.write_text(text)
