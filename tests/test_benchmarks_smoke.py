"""Smoke tests of the benchmark workload generators (``benchmarks/workloads.py``): shapes, dtypes,
determinism and the advertised fractions, at tiny sizes. Nothing is timed here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from workloads import (
    SEGMENT_OFFSET,
    VOID_CATEGORY,
    InstanceWorkload,
    PanopticWorkload,
    segment_ids,
    segments_info,
)

TINY_INSTANCE = InstanceWorkload(num_images=40, height=48, width=64, dets_per_image=12, crowd_fraction=0.05)
TINY_PANOPTIC = PanopticWorkload(num_images=12, height=96, width=128, crowd_fraction=0.2)


def test_instance_image_shapes_and_dtypes() -> None:
    wl = TINY_INSTANCE
    for pred, target in zip(*next(wl.batches(batch_size=5)), strict=True):
        assert set(pred) == {"masks", "scores", "labels"}
        assert set(target) == {"masks", "labels", "iscrowd"}
        assert pred["masks"].dtype == torch.bool and target["masks"].dtype == torch.bool
        assert pred["masks"].shape == (wl.dets_per_image, wl.height, wl.width)
        assert pred["scores"].shape == pred["labels"].shape == (wl.dets_per_image,)
        assert pred["scores"].dtype == torch.float32 and pred["labels"].dtype == torch.int64
        assert ((pred["scores"] > 0) & (pred["scores"] < 1)).all()
        g = target["labels"].shape[0]
        assert g >= 1 and target["masks"].shape == (g, wl.height, wl.width)
        assert target["iscrowd"].shape == (g,) and target["iscrowd"].dtype == torch.int64
        for labels in (pred["labels"], target["labels"]):
            assert ((labels >= 0) & (labels < wl.num_classes)).all()
        assert target["masks"].flatten(1).any(1).all(), "every ground truth has pixels"


def test_instance_workload_statistics() -> None:
    wl = TINY_INSTANCE
    gts = crowd = 0
    overlap = []
    for preds, targets in wl.batches(batch_size=8):
        for pred, target in zip(preds, targets, strict=True):
            gts += target["labels"].numel()
            crowd += int(target["iscrowd"].sum())
            # Detections are jittered copies: the best IoU of the top-scored detection is high.
            d = pred["masks"][pred["scores"].argmax()].flatten().float()
            t = target["masks"].flatten(1).float()
            inter = t @ d
            overlap.append(float((inter / (t.sum(1) + d.sum() - inter)).max()))
    assert 4.5 <= gts / wl.num_images <= 9.5  # ~7 per image
    assert 0 < crowd / gts < 0.15  # crowd_fraction = 5% here
    assert np.median(overlap) > 0.5


def test_instance_workload_is_deterministic() -> None:
    a_pred, a_target = TINY_INSTANCE.image(3)
    b_pred, b_target = TINY_INSTANCE.image(3)
    c_pred, _ = InstanceWorkload(**{**TINY_INSTANCE.__dict__, "seed": 1}).image(3)
    for key in a_pred:
        assert torch.equal(a_pred[key], b_pred[key])
    for key in a_target:
        assert torch.equal(a_target[key], b_target[key])
    assert not torch.equal(a_pred["scores"], c_pred["scores"])


def test_panoptic_batches_shapes_and_categories() -> None:
    wl = TINY_PANOPTIC
    preds, targets, crowd = next(wl.batches(batch_size=3))
    assert preds.shape == targets.shape == (3, wl.height, wl.width, 2)
    assert preds.dtype == targets.dtype == torch.int64
    assert crowd.shape == (3, wl.height, wl.width) and crowd.dtype == torch.bool
    assert set(wl.things).isdisjoint(wl.stuffs) and len(wl.things) == 80 and len(wl.stuffs) == 53
    allowed = {VOID_CATEGORY, *wl.things, *wl.stuffs}
    for maps in (preds.numpy(), targets.numpy()):
        assert set(np.unique(maps[..., 0]).tolist()) <= allowed
        assert (maps[..., 1] >= 0).all()
    cat, inst, crowd_np = targets[..., 0].numpy(), targets[..., 1].numpy(), crowd.numpy()
    void = cat == VOID_CATEGORY
    assert void.any() and (inst[void] == 0).all()
    assert not (crowd_np & void).any()
    assert crowd_np.any() and np.isin(cat[crowd_np], wl.things).all()


def test_panoptic_workload_statistics() -> None:
    wl = TINY_PANOPTIC
    voids, segments, changed = [], [], []
    for preds, targets, _ in wl.batches(batch_size=4):
        ids = segment_ids(targets, np.asarray(wl.things + wl.stuffs))
        for b in range(len(ids)):
            voids.append(float((targets[b, ..., 0] == VOID_CATEGORY).float().mean()))
            segments.append(len(segments_info(ids[b], None)))
            changed.append(float((preds[b] != targets[b]).any(-1).float().mean()))
    assert 0.01 < np.mean(voids) < 0.08  # ~3% void
    assert 10 <= np.mean(segments) <= 20  # ~15 segments
    assert 0.02 < np.mean(changed) < 0.6  # predictions are perturbed, not copies


def test_segments_info_marks_crowd_and_areas() -> None:
    _preds, targets, crowd = TINY_PANOPTIC.image(0)
    ids = segment_ids(targets[None], np.asarray(TINY_PANOPTIC.things + TINY_PANOPTIC.stuffs))[0]
    info = segments_info(ids, crowd.numpy())
    assert sum(s["area"] for s in info) == int((ids != 0).sum())
    assert {s["id"] for s in info if s["iscrowd"]} == set(np.unique(ids[crowd.numpy()]).tolist())
    for s in info:
        assert s["category_id"] in TINY_PANOPTIC.things + TINY_PANOPTIC.stuffs


@pytest.mark.parametrize("index", [0, 5])
def test_panoptic_workload_is_deterministic(index: int) -> None:
    a, b = TINY_PANOPTIC.image(index), TINY_PANOPTIC.image(index)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def test_segment_ids_void_and_unknown_categories() -> None:
    maps = torch.tensor([[[[0, 0], [3, 2]], [[7, 0], [9, 1]]]])  # (1, 2, 2, 2): void, thing, stuff, unknown
    ids = segment_ids(maps, np.asarray([3, 7]))
    assert ids.dtype == np.uint32
    assert ids.tolist() == [[[0, 3 * SEGMENT_OFFSET + 3], [7 * SEGMENT_OFFSET + 1, 0]]]


def test_bench_modules_expose_run() -> None:
    import bench_instance
    import bench_panoptic

    for module in (bench_instance, bench_panoptic):
        assert callable(module.run)
        assert module.QUICK.num_images < module.FULL.num_images
