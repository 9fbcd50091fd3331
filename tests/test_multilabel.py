"""Multi-label (overlapping masks) IoU/Dice against a per-class NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _semantic_reference import blob_labels, perturb

from torchseg_metrics.functional.semantic.multilabel import multilabel_stats_update
from torchseg_metrics.multilabel import MultilabelDiceScore, MultilabelMeanIoU

C = 3


def nested_masks(labels: np.ndarray, c: int = C) -> np.ndarray:
    """BraTS-style nested regions: mask k = labels > k, shape (N, C, ...)."""
    return np.stack([labels > k for k in range(c)], axis=1)


def _batches(seed: int, n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = blob_labels(rng, (2, 13, 17), C + 1)
        p = perturb(rng, t, C + 1)
        out.append((torch.from_numpy(nested_masks(p)), torch.from_numpy(nested_masks(t))))
    return out


def np_iou_dice(preds: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    iou, dice = np.full(preds.shape[1], np.nan), np.full(preds.shape[1], np.nan)
    for k in range(preds.shape[1]):
        p, t = preds[:, k].astype(bool), target[:, k].astype(bool)
        inter, union, total = (p & t).sum(), (p | t).sum(), p.sum() + t.sum()
        if union:
            iou[k], dice[k] = inter / union, 2 * inter / total
    return iou, dice


def test_dataset_level_matches_numpy(device) -> None:
    batches = _batches(0)
    p = np.concatenate([b[0].numpy() for b in batches])
    t = np.concatenate([b[1].numpy() for b in batches])
    iou, dice = np_iou_dice(p, t)
    miou, mdice = MultilabelMeanIoU(C, per_class=True).to(device), MultilabelDiceScore(C).to(device)
    for pb, tb in batches:
        miou.update(pb.to(device), tb.to(device))
        mdice.update(pb.to(device), tb.to(device))
    np.testing.assert_allclose(miou.compute().cpu().numpy(), iou, rtol=0, atol=1e-15)
    assert mdice.compute().item() == pytest.approx(np.nanmean(dice), abs=1e-15)


def test_image_aggregation_and_probabilities() -> None:
    batches = _batches(1)
    per_image = [
        np_iou_dice(pb[i : i + 1].numpy(), tb[i : i + 1].numpy())[0] for pb, tb in batches for i in range(2)
    ]
    metric = MultilabelMeanIoU(C, per_class=True, aggregation="image", threshold=0.4)
    for pb, tb in batches:
        metric.update(pb.float() * 0.5, tb.to(torch.uint8))  # 0.5 > 0.4: the same binary masks
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(
            metric.compute().numpy(), np.nanmean(np.stack(per_image), 0), rtol=0, atol=1e-15
        )


def test_counts_are_exact() -> None:
    preds = torch.tensor([[[[1, 0, 1, 0]]]])
    target = torch.tensor([[[[1, 1, 0, 0]]]])
    counts, invalid = multilabel_stats_update(preds, target, 1)
    assert counts.tolist() == [[1, 1, 1, 1]]  # tn, fp, fn, tp
    assert invalid.tolist() == [0, 0]


def test_bad_values_and_shapes() -> None:
    metric = MultilabelMeanIoU(2)
    ok = torch.zeros(1, 2, 3, dtype=torch.bool)
    metric.update(ok, ok)
    before = metric.counts.clone()
    with pytest.raises(
        ValueError, match=r"`target` must be binary \(bool or 0/1\), got 1 values outside \{0, 1\}"
    ):
        metric.update(ok, torch.tensor([[[0, 2, 0], [0, 0, 0]]]))
    with pytest.raises(ValueError, match=r"`target` must be of shape \(N, 2, \*spatial\)"):
        metric.update(torch.zeros(1, 3, 3, dtype=torch.bool), torch.zeros(1, 3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="`target` must be a bool or 0/1 integer tensor"):
        metric.update(ok, ok.float())
    nan = torch.zeros(1, 2, 3)
    nan[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="`preds` must be binary"):
        metric.update(nan, ok)
    # negative integers are invalid, not clipped to 0 (a clamp once hid them)
    with pytest.raises(ValueError, match=r"`target` must be binary \(bool or 0/1\), got 2 values outside"):
        metric.update(ok, torch.tensor([[[0, -1, 0], [-128, 0, 0]]], dtype=torch.int8))
    with pytest.raises(ValueError, match=r"`preds` must be binary .*, got 1 invalid values"):
        metric.update(torch.tensor([[[0, -3, 0], [1, 0, 0]]]), ok)
    # probabilities outside [0, 1] (logits passed by mistake) and infinities are invalid
    for bad in (1.5, -0.25, float("inf"), float("-inf")):
        logits = torch.zeros(1, 2, 3)
        logits[0, 1, 2] = bad
        with pytest.raises(ValueError, match=r"probabilities in \[0, 1\] \(apply a sigmoid to logits\)"):
            metric.update(logits, ok)
    assert torch.equal(metric.counts, before)
    # the edges are valid probabilities, and uint8 0/1 are valid labels
    metric.update(
        torch.tensor([[[0.0, 1.0, 0.5], [1.0, 0.0, 0.0]]]),
        torch.tensor([[[0, 1, 0], [1, 0, 0]]], dtype=torch.uint8),
    )
    with pytest.raises(ValueError, match="`threshold` must be a float in"):
        MultilabelDiceScore(2, threshold=2.0)
