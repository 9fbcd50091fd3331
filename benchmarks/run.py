"""Run the benchmarks and write their tables into ``benchmarks/README.md``.

Usage::

    python benchmarks/run.py                      # every task, full size
    python benchmarks/run.py --quick semantic     # one task, small workload, a few repeats

Each task is a module ``bench_<task>.py`` beside this file exposing ``run(quick: bool) -> str``.
Timings use one thread (``torch.set_num_threads(1)``) unless ``--threads`` says otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from _harness import write_section

TASKS = ["semantic", "instance", "panoptic", "boundary", "surface"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("tasks", nargs="*", help=f"some of {TASKS} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small workloads, few repeats (a smoke run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print the tables only")
    args = parser.parse_args(argv)
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown:
        parser.error(f"unknown task(s) {unknown}; choose from {TASKS}")
    torch.set_num_threads(args.threads)
    for task in args.tasks or TASKS:
        module = importlib.import_module(f"bench_{task}")
        section = module.run(quick=args.quick)
        print(section, flush=True)
        if not args.no_write and not args.quick:
            write_section(task, section)


if __name__ == "__main__":
    main()
