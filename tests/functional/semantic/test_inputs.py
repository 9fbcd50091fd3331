"""Score inputs: the CPU class-plane argmax against ``torch.max(dim=1)``, labels and NaN counts."""

from __future__ import annotations

import pytest
import torch
from _semantic_reference import tie_scores

from torchseg_metrics.functional import semantic_inputs
from torchseg_metrics.functional.semantic.inputs import _channel_argmax, labels_from_preds


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    ("c", "shape"), [(2, (3, 5, 7)), (19, (2, 16, 9)), (256, (1, 4, 6)), (5, (2, 3, 4, 5))]
)
def test_channel_argmax_equals_torch_max(dtype: torch.dtype, c: int, shape: tuple[int, ...]) -> None:
    x = tie_scores(c, shape, dtype, seed=c)
    values, labels = _channel_argmax(x)
    expected_values, expected_labels = x.max(dim=1)
    assert labels.dtype == torch.uint8 and labels.shape == expected_labels.shape
    assert torch.equal(labels.long(), expected_labels)  # the first maximal class on ties
    assert torch.equal(values, expected_values)


@pytest.mark.parametrize("chunk", [16, 50])
def test_channel_argmax_in_pixel_chunks(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Chunks that divide the image and chunks with a partial last one give torch.max's results."""
    monkeypatch.setattr(semantic_inputs, "_ARGMAX_CHUNK", chunk)
    x = tie_scores(6, (3, 8, 10), torch.float32, seed=7)  # 80 pixels per image
    values, labels = _channel_argmax(x)
    expected_values, expected_labels = x.max(dim=1)
    assert torch.equal(labels.long(), expected_labels) and torch.equal(values, expected_values)


def test_nan_scores_are_counted_like_torch_max() -> None:
    x = tie_scores(7, (2, 8, 8), torch.float32, seed=1)
    x[0, 3, 1, 1] = float("nan")
    x[1, 0, 2, 2] = float("nan")
    x[1, 6, 2, 2] = float("nan")
    x[1, 6, 5, 5] = float("nan")
    _, nan_pixels = labels_from_preds(x)
    assert int(nan_pixels) == 3 == int(x.max(dim=1).values.isnan().sum())


@pytest.mark.parametrize(
    "x",
    [
        tie_scores(300, (1, 4, 5), torch.float32, 0),  # more classes than a byte holds
        tie_scores(6, (2, 5, 7), torch.float32, 0).contiguous(memory_format=torch.channels_last),
        tie_scores(1, (2, 5, 7), torch.float32, 0),
    ],
    ids=["300-classes", "channels-last", "one-class"],
)
def test_other_layouts_take_torch_max(x: torch.Tensor) -> None:
    labels, nan_pixels = labels_from_preds(x)
    assert torch.equal(labels.long(), x.max(dim=1).indices) and int(nan_pixels) == 0


def test_integer_labels_pass_through() -> None:
    labels = torch.tensor([[0, 2], [1, 1]])
    out, nan_pixels = labels_from_preds(labels)
    assert out is labels and int(nan_pixels) == 0
