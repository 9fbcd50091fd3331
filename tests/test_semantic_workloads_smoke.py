"""Untimed checks of the benchmark's semantic workload generator (``benchmarks/semantic_workloads.py``).

The benchmark's claims rest on these properties: uint8 label maps of the stated shape, ~5% ignore
pixels and ~80% correct predictions, both in blobs rather than i.i.d. noise, and determinism.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from semantic_workloads import ade20k_like, cityscapes_like, make_workload


def _right_neighbour_agreement(mask: np.ndarray) -> float:
    """P(right neighbour in mask | pixel in mask): ~fraction for i.i.d. noise, near 1 for blobs."""
    left, right = mask[:, :, :-1], mask[:, :, 1:]
    return float((left & right).sum() / left.sum())


@pytest.mark.parametrize(
    ("factory", "classes", "shape"), [(cityscapes_like, 19, (2, 64, 128)), (ade20k_like, 150, (2, 64, 64))]
)
def test_quick_workload_shape_and_statistics(factory, classes, shape) -> None:
    w = factory(quick=True)
    assert w.num_classes == classes and w.ignore_index == 255
    assert w.preds.shape == w.target.shape == torch.Size(shape)
    assert w.preds.dtype == w.target.dtype == torch.uint8
    preds, target = w.preds.numpy().astype(np.int64), w.target.numpy().astype(np.int64)
    assert preds.max() < classes  # predictions are always valid classes
    ignored = target == 255
    assert set(np.unique(target[~ignored])) <= set(range(classes))
    assert abs(ignored.mean() - 0.05) < 0.01
    correct = (preds == target)[~ignored].mean()
    assert abs(correct - 0.8) < 0.03
    # blobs, not i.i.d. noise: neighbours of an ignored / wrong pixel are mostly ignored / wrong too
    assert _right_neighbour_agreement(ignored) > 0.7
    assert _right_neighbour_agreement((preds != target) & ~ignored) > 0.7
    assert w.nbytes == 2 * int(np.prod(shape))


def test_deterministic_and_seed_dependent() -> None:
    a, b, c = cityscapes_like(quick=True), cityscapes_like(quick=True), cityscapes_like(quick=True, seed=5)
    assert torch.equal(a.preds, b.preds) and torch.equal(a.target, b.target)
    assert not torch.equal(a.target, c.target)


def test_logits_argmax_is_preds() -> None:
    w = make_workload("t", num_classes=5, batch=2, height=16, width=24, cell=8, seed=3)
    logits = w.logits()
    assert logits.shape == (2, 5, 16, 24) and logits.dtype == torch.float32
    assert torch.equal(logits.argmax(1), w.preds.long())


def test_unequal_class_frequencies() -> None:
    w = make_workload("t", num_classes=10, batch=2, height=128, width=128, cell=16, class_bias=2.0, seed=0)
    target = w.target.numpy()
    counts = np.bincount(target[target != 255], minlength=10)
    assert counts[0] > 3 * counts[-1]


def test_rejects_too_many_classes() -> None:
    with pytest.raises(ValueError, match="`num_classes` must be"):
        make_workload("t", num_classes=300, batch=1, height=8, width=8)


def test_gpu_check_exits_cleanly_without_a_gpu(tmp_path) -> None:
    """``benchmarks/gpu_check.py`` without CUDA: a message, status 0, no `gpu` section written."""
    import os
    import re
    import subprocess

    root = Path(__file__).resolve().parents[1]
    readme = root / "benchmarks" / "README.md"

    def gpu_section() -> str | None:
        text = readme.read_text() if readme.exists() else ""
        found = re.search(r"<!-- BEGIN gpu -->.*?<!-- END gpu -->", text, re.S)
        return found.group(0) if found else None

    before = gpu_section()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "gpu_check.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device available" in proc.stdout
    assert gpu_section() == before


def test_gpu_check_part_failure_is_reported_and_later_parts_run() -> None:
    from gpu_check import Report

    report, ran = Report(), []
    with report.part("first"):
        raise ValueError("boom")
    with report.part("second"):
        ran.append(True)
    assert ran == [True]
    assert report.failures == ["first: ValueError: boom"]
