"""Run a function in several ``gloo`` processes and collect what each rank returns.

Used by every distributed test. It never skips: if the process group cannot start or a rank
fails, the calling test fails with that rank's traceback.

Example::

    def _work(rank: int, world_size: int, shards: list) -> dict:
        metric = MeanIoU(num_classes=3)
        for preds, target in shards[rank]:
            metric.update(preds, target)
        return {"miou": metric.compute()}

    results = run_distributed(_work, shards, world_size=2)   # one dict per rank

``fn`` must be a module-level function (it is pickled into spawned processes).
"""

from __future__ import annotations

import os
import pickle
import queue as queue_module
import tempfile
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

_TIMEOUT_S = 240


def _entry(
    fn: Callable[..., Any], rank: int, world_size: int, init_file: str, payload: Any, queue: Any
) -> None:
    try:
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
        try:
            result = fn(rank, world_size, payload)
        finally:
            dist.barrier()
            dist.destroy_process_group()
        # plain pickle bytes: tensors must not travel as shared memory of a process that exits
        queue.put((rank, "ok", pickle.dumps(result)))
    except BaseException:  # report every failure to the parent, which fails the test
        queue.put((rank, "error", traceback.format_exc()))


def run_distributed(fn: Callable[[int, int, Any], Any], payload: Any, world_size: int = 2) -> list[Any]:
    """Run ``fn(rank, world_size, payload)`` on ``world_size`` gloo ranks; return results by rank."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        procs = [
            ctx.Process(target=_entry, args=(fn, rank, world_size, init_file, payload, queue))
            for rank in range(world_size)
        ]
        for p in procs:
            p.start()
        results: dict[int, Any] = {}
        errors: list[str] = []
        for _ in range(world_size):
            try:
                rank, status, value = queue.get(timeout=_TIMEOUT_S)
            except queue_module.Empty:
                errors.append(f"no answer from a rank within {_TIMEOUT_S} s")
                break
            if status == "ok":
                results[rank] = pickle.loads(value)
            else:
                errors.append(f"rank {rank}:\n{value}")
                break
        for p in procs:
            p.join(timeout=_TIMEOUT_S)
            if p.is_alive():
                p.terminate()
        if errors:
            raise AssertionError("distributed run failed\n" + "\n".join(errors))
        bad = [p.exitcode for p in procs if p.exitcode != 0]
        if bad:
            raise AssertionError(f"distributed ranks exited with codes {bad}")
    return [results[r] for r in range(world_size)]
