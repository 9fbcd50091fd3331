"""Surface distances (HD95, ASSD, surface Dice): this package against MONAI on the same tensors.

MONAI (``monai.metrics``) is the reference implementation of these definitions: per (image,
class), edges by SciPy erosion, then SciPy's ``distance_transform_edt`` on the crop of the two
masks. Both sides get the same label maps (MONAI one-hot, as it requires); values are checked to
agree (MONAI rounds distances to float32).
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _harness import machine_line, markdown_table
from peers import load_note


def _blobs(rng: np.random.Generator, shape: tuple[int, ...], classes: int, blobs: int) -> np.ndarray:
    """Label map of random boxes of random classes over class 0, then rolled: a sloppy prediction."""
    out = np.zeros(shape, np.int64)
    for _ in range(blobs):
        lo = [int(rng.integers(0, s)) for s in shape]
        hi = [min(s, a + int(rng.integers(2, max(3, s // 3)))) for a, s in zip(lo, shape, strict=True)]
        out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = rng.integers(1, classes)
    return out


def workloads(quick: bool) -> list[tuple[str, torch.Tensor, torch.Tensor, int, tuple[float, ...]]]:
    rng = np.random.default_rng(0)
    n2, s2, n3, s3 = (2, 128, 1, 32) if quick else (8, 512, 2, 128)
    t2 = np.stack([_blobs(rng, (s2, s2), 19, 60) for _ in range(n2)])
    t3 = np.stack([_blobs(rng, (s3, s3, s3), 4, 12) for _ in range(n3)])
    out = []
    for name, t, c, spacing in (
        (f"2-D: {n2}x{s2}x{s2}, 19 classes", t2, 19, (1.0, 1.0)),
        (f"3-D: {n3}x{s3}x{s3}x{s3}, 4 classes, spacing (1.5, 1, 1)", t3, 4, (1.5, 1.0, 1.0)),
    ):
        p = np.roll(t, 2, axis=-1)
        out.append((name, torch.from_numpy(p), torch.from_numpy(t), c, spacing))
    return out


def _median_s(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def run(quick: bool) -> str:
    """Time HD95, ASSD and surface Dice, ours against MONAI, and return the Markdown section."""
    import monai.metrics as monai

    from torchseg_metrics import AverageSurfaceDistance, HausdorffDistance, SurfaceDice

    load_before = os.getloadavg()
    rows = []
    for name, p, t, c, spacing in workloads(quick):
        hot = [torch.nn.functional.one_hot(x, c).movedim(-1, 1) for x in (p, t)]
        for label, ours_cls, kw, ref_make in (
            (
                "HD95",
                HausdorffDistance,
                {"percentile": 95},
                lambda: monai.HausdorffDistanceMetric(percentile=95),
            ),
            ("ASSD", AverageSurfaceDistance, {}, lambda: monai.SurfaceDistanceMetric(symmetric=True)),
            (
                "surface Dice (1.0)",
                SurfaceDice,
                {"tolerance": 1.0},
                lambda c=c: monai.SurfaceDiceMetric([1.0] * (c - 1)),
            ),
        ):

            def ours(cls: Any = ours_cls, kw: dict = kw, data: tuple = (p, t, c, spacing)) -> Any:
                p_, t_, c_, spacing_ = data
                metric = cls(c_, spacing=spacing_, **kw)
                metric.update(p_, t_)
                return metric.compute().item()

            def reference(make: Any = ref_make, hot: list = hot, spacing: tuple = spacing) -> Any:
                metric = make()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # MONAI warns of every empty class
                    metric(*hot, spacing=spacing)
                return metric.aggregate().item()

            ours_s, ours_v = _median_s(ours, 1 if quick else 3)
            ref_s, ref_v = _median_s(reference, 1)
            images = p.shape[0]
            agree = abs(ours_v - ref_v) <= 1e-5 * max(1.0, abs(ref_v)) or (
                np.isinf(ours_v) and np.isinf(ref_v)
            )
            rows.append(
                [name, label, f"{1000 * ours_s / images:.1f}", f"{1000 * ref_s / images:.1f}",
                 f"{ref_s / ours_s:.1f}x", f"{ours_v:.6f}", "✓" if agree else f"**MONAI {ref_v:.6f}**"]
            )  # fmt: skip
    header = ["workload", "metric", "ours ms/image", "MONAI ms/image", "MONAI / ours", "value", "= MONAI"]
    load_after = os.getloadavg()
    return "\n".join(
        [
            "## Surface distances (issue 13)",
            "",
            machine_line(),
            "",
            "Label maps of random boxes, the prediction shifted by two pixels along the last axis; "
            "`update` + `compute` of a metric built just before, median of 3 runs (MONAI: one); "
            "MONAI 1.6.1 gets the same maps one-hot. Background excluded on both sides.",
            "",
            markdown_table(header, rows),
            "",
            load_note(load_before, load_after),
        ]
    )
