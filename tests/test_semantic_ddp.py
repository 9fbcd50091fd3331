"""Two gloo processes with uneven data give exactly the single-process result (semantic and multi-label)."""

from __future__ import annotations

import torch
from _ddp import run_distributed
from test_multilabel import nested_masks
from test_semantic import C, _batches

from torchseg_metrics import BoundaryIoU, ConfusionMatrix, DiceScore, MeanIoU, SemanticMetrics
from torchseg_metrics.multilabel import MultilabelDiceScore


def _make() -> dict:
    return {
        "dataset": SemanticMetrics(C, ignore_index=255, per_class=True),
        "image": SemanticMetrics(C, ignore_index=255, per_class=True, aggregation="image"),
        "confmat": ConfusionMatrix(C, ignore_index=255),
        "multilabel": MultilabelDiceScore(3, per_class=True, aggregation="image"),
        # torchmetrics' per-image rules: float sums of float32 values (exact in float64, any order)
        "tm_miou": MeanIoU(C, per_class=True, ignore_index=255, input_format="index", compat="torchmetrics"),
        "tm_dice": DiceScore(
            C, average="weighted", ignore_index=255, input_format="index", compat="torchmetrics"
        ),
        "boundary": BoundaryIoU(C, ignore_index=255, per_class=True, dilation=2),
        "tm_dice_global": DiceScore(
            C, True, None, "global", "index", ignore_index=255, compat="torchmetrics"
        ),
    }


def _feed(metrics: dict, preds: torch.Tensor, target: torch.Tensor) -> None:
    for key, m in metrics.items():
        if key == "multilabel":
            m.update(
                torch.from_numpy(nested_masks(preds.numpy())), torch.from_numpy(nested_masks(target.numpy()))
            )
        else:
            m.update(preds, target)


def _work(rank: int, world_size: int, shards: list) -> dict:
    metrics = _make()
    for preds, target in shards[rank]:
        _feed(metrics, preds, target)
    return {k: m.compute() for k, m in metrics.items()}


def test_ddp_equals_single_process() -> None:
    batches = _batches(20, n_batches=5, batch=3)
    shards = [batches[:4], batches[4:]]  # uneven: 4 batches on rank 0, 1 on rank 1
    results = run_distributed(_work, shards, world_size=2)
    single = _make()
    for b in batches:
        _feed(single, *b)
    for key, m in single.items():
        expected = m.compute()
        for rank_result in results:
            got = rank_result[key]
            if isinstance(expected, dict):
                for k, v in expected.items():
                    torch.testing.assert_close(got[k], v, rtol=0, atol=0, equal_nan=True)
            else:
                assert torch.equal(got, expected)
