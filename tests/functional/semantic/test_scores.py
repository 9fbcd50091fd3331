"""Scores from a confusion matrix: hand-made cases (values by hand) and the NumPy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _semantic_reference import np_scores

from torchseg_metrics.functional.semantic.scores import (
    MEAN_SCORES,
    PER_CLASS_SCORES,
    class_mask,
    scores_from_confusion,
)


def _cm(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64)


def test_hand_made_conventions() -> None:
    # class 0: 2 px, 1 correct, 1 predicted out of range (column 3); class 1: predicted, absent
    # from the target; class 2: neither in target nor predicted.
    cm = _cm([[1, 1, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
    s = scores_from_confusion(cm, class_mask(3, None, True, cm.device))
    # IoU_0 = 1 / (3 + 1 - 1) = 1/3 (the out-of-range miss stays in the union); IoU_1 = 0 / 1 = 0
    assert s["iou"][0].item() == pytest.approx(1 / 3, abs=0)
    assert s["iou"][1].item() == 0.0
    assert math.isnan(s["iou"][2].item())
    assert s["miou"].item() == pytest.approx(1 / 6, abs=1e-15)  # NaN skipped, predicted-absent counts
    assert math.isnan(s["accuracy"][1].item())  # no target pixel: accuracy undefined
    assert s["pixel_accuracy"].item() == pytest.approx(1 / 3, abs=1e-15)


def test_in_range_ignore_class_is_nan_and_skipped() -> None:
    cm = _cm([[0, 0, 0, 0], [0, 3, 1, 0], [0, 1, 2, 0]])
    s = scores_from_confusion(cm, class_mask(3, 0, True, cm.device))
    assert math.isnan(s["iou"][0].item())
    assert s["miou"].item() == pytest.approx((3 / 5 + 2 / 4) / 2, abs=1e-15)


@pytest.mark.parametrize("ignore", [None, 1])
@pytest.mark.parametrize("include_background", [True, False])
def test_random_matrices_match_reference(ignore: int | None, include_background: bool) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        cm = rng.integers(0, 50, size=(6, 7)) * (rng.random((6, 7)) < 0.5)
        cm[rng.integers(0, 6)] = 0  # an absent target class
        ref = np_scores(cm, ignore, include_background)
        got = scores_from_confusion(
            torch.from_numpy(cm), class_mask(6, ignore, include_background, torch.device("cpu"))
        )
        for k in PER_CLASS_SCORES:
            np.testing.assert_allclose(got[k].numpy(), ref[k], rtol=0, atol=1e-15, equal_nan=True)
        for k in MEAN_SCORES:
            np.testing.assert_allclose(got[k].item(), ref[k], rtol=0, atol=1e-14, equal_nan=True)


def test_batched_matrices() -> None:
    rng = np.random.default_rng(1)
    cms = rng.integers(0, 9, size=(4, 5, 6))
    got = scores_from_confusion(torch.from_numpy(cms), class_mask(5, None, True, torch.device("cpu")))
    for i in range(4):
        np.testing.assert_allclose(got["miou"][i].item(), np_scores(cms[i])["miou"], rtol=0, atol=1e-15)


@pytest.mark.parametrize("key", PER_CLASS_SCORES + MEAN_SCORES)
def test_one_score_alone_is_bit_identical(key: str) -> None:
    rng = np.random.default_rng(2)
    cm = torch.from_numpy(rng.integers(0, 30, size=(3, 6, 7)) * (rng.random((3, 6, 7)) < 0.6))
    keep = class_mask(6, 2, False, cm.device)
    alone = scores_from_confusion(cm, keep, [key])
    assert list(alone) == [key]
    torch.testing.assert_close(
        alone[key], scores_from_confusion(cm, keep)[key], rtol=0, atol=0, equal_nan=True
    )
