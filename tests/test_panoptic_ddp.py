"""``PanopticQuality`` in two ``gloo`` processes with uneven data equals one process."""

from __future__ import annotations

import numpy as np
import torch
from _ddp import run_distributed
from _panoptic_reference import STUFFS, THINGS, random_scene

from torchseg_metrics.panoptic import ModifiedPanopticQuality, PanopticQuality


def _batches(seed: int, sizes: list[int]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    rng = np.random.default_rng(seed)
    out = []
    for b in sizes:
        preds, target, crowd = random_scene(rng, batch=b)
        out.append((torch.as_tensor(preds), torch.as_tensor(target), torch.as_tensor(crowd)))
    return out


def _empty_ish() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image: all-void target, a single prediction of an unknown category (void) and one thing."""
    target = torch.zeros(1, 6, 8, 2, dtype=torch.int64)
    preds = torch.full((1, 6, 8, 2), 99, dtype=torch.int64)
    preds[0, :2, :2] = torch.tensor([1, 4])  # an FP-free prediction: it lies on target void
    return preds, target, torch.zeros(1, 6, 8, dtype=torch.bool)


def _run(metric_cls, shards: list) -> tuple[list, dict]:
    metric = metric_cls(THINGS, STUFFS, allow_unknown_preds_category=True, return_per_class=True)
    for preds, target, crowd in shards:
        metric.update(preds, target, crowd)
    with metric.sync_context():  # the states summed over ranks (no-op in one process)
        states = {k: v.clone() for k, v in metric.metric_state.items()}
    return metric.compute(), metric.summary(), states


def _work(rank: int, world_size: int, cases: list[dict]) -> list[tuple]:
    return [_run(case["cls"], case["shards"][rank]) for case in cases]


def test_two_gloo_ranks_uneven_equal_one_process():
    """One spawn (to keep the suite fast), two cases: PQ where rank 1 holds a single empty-ish image,
    and PQ-dagger with data on both ranks."""
    uneven = _batches(0, [3, 1, 2]), [_empty_ish()]
    both = _batches(1, [2, 2, 1]), _batches(2, [1])
    cases = [{"cls": PanopticQuality, "shards": uneven}, {"cls": ModifiedPanopticQuality, "shards": both}]
    results = run_distributed(_work, cases)
    single = _run(PanopticQuality, uneven[0] + uneven[1])
    assert single[2]["tp"].sum() > 0 and single[2]["fp"].sum() > 0
    for pq, summary, states in (r[0] for r in results):
        # rank 1 adds exact zeros to iou_sum, so every number is bitwise equal
        torch.testing.assert_close(pq, single[0], atol=0, rtol=0, equal_nan=True)
        assert all(torch.equal(states[k], single[2][k]) for k in states)
        assert summary["All"] == single[1]["All"] and summary["Things"] == single[1]["Things"]
        for cat, row in single[1]["per_class"].items():
            assert [summary["per_class"][cat][k] for k in ("tp", "fp", "fn")] == [
                row["tp"],
                row["fp"],
                row["fn"],
            ]
    single = _run(ModifiedPanopticQuality, both[0] + both[1])
    for pq, summary, states in (r[1] for r in results):
        for k in ("tp", "fp", "fn", "bad_values"):
            assert torch.equal(states[k], single[2][k]), k
        torch.testing.assert_close(states["iou_sum"], single[2]["iou_sum"], atol=1e-12, rtol=0)
        torch.testing.assert_close(pq, single[0], atol=1e-12, rtol=0, equal_nan=True)
        assert summary["All"]["n"] == single[1]["All"]["n"]
