"""The confusion-matrix kernel against a NumPy ``np.add.at`` reference, for every counting method."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _backends import require_method
from _semantic_reference import blob_labels, np_confusion, perturb

import torchseg_metrics.functional.semantic.confusion as confusion
from torchseg_metrics.functional.counting import count_codes
from torchseg_metrics.functional.semantic.confusion import _confusion_matrix_update

METHODS = ["native", "bincount", "scatter", "matmul", "auto"]


def _case(seed: int, shape: tuple[int, ...], c: int, ignore: int | None, dtype: torch.dtype):
    rng = np.random.default_rng(seed)
    target = blob_labels(rng, shape, c)
    info = torch.iinfo(dtype) if dtype != torch.bool else None
    low = -3 if info is not None and info.min < 0 else 0
    high = c + 3 if info is None or info.max >= c + 3 else c
    preds = perturb(rng, target, c, low=low, high=high)  # out-of-range predictions included
    if ignore is not None:
        target[blob_labels(rng, shape, 5) == 0] = ignore
    return torch.from_numpy(preds).to(dtype), torch.from_numpy(target).to(dtype)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("dtype", "ignore"),
    [
        (torch.uint8, 255),
        (torch.uint8, None),
        (torch.uint8, 0),
        (torch.int16, -1),
        (torch.int32, 255),
        (torch.int64, 3),
        (torch.int64, 1000),
    ],
)
@pytest.mark.parametrize("shape", [(2, 17, 23), (2, 5, 6, 7), (2, 41, 53)])  # the last: several lanes
def test_matches_numpy(
    method: str, dtype: torch.dtype, ignore: int | None, shape: tuple[int, ...], device
) -> None:
    require_method(method, device)
    c = 7
    preds, target = _case(0, shape, c, ignore, dtype)
    confmat, invalid = _confusion_matrix_update(preds.to(device), target.to(device), c, ignore, method=method)
    expected = np_confusion(preds.numpy(), target.numpy(), c, ignore)
    if ignore is not None and 0 <= ignore < c:
        expected[ignore] = 0  # an in-range ignore_index keeps no row of its own
    assert confmat.dtype == torch.int64 and confmat.device.type == device.type
    np.testing.assert_array_equal(confmat.cpu().numpy(), expected)
    assert int(invalid) == 0


@pytest.mark.parametrize("method", METHODS)
def test_per_image_matrices(method: str, device) -> None:
    require_method(method, device)
    preds, target = _case(1, (3, 11, 13), 5, 255, torch.uint8)
    confmat, invalid = _confusion_matrix_update(
        preds.to(device), target.to(device), 5, 255, num_images=3, method=method
    )
    assert confmat.shape == (3, 5, 6) and invalid.shape == (3,)
    for i in range(3):
        np.testing.assert_array_equal(
            confmat[i].cpu().numpy(), np_confusion(preds[i].numpy(), target[i].numpy(), 5, 255)
        )


@pytest.mark.parametrize("method", METHODS)
def test_invalid_targets_are_counted_not_dropped(method: str) -> None:
    require_method(method, "cpu")
    target = torch.tensor([[0, 1, 9, -2, 255, 2]])
    preds = torch.tensor([[0, 1, 1, 1, 1, 2]])
    confmat, invalid = _confusion_matrix_update(preds, target, 3, 255, method=method)
    assert int(invalid) == 2  # 9 and -2; 255 is ignored
    assert int(confmat.sum()) == 3


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ignore", [255, 254, 200, None])
def test_invalid_uint8_targets_with_each_row_layout(method: str, ignore: int | None, device) -> None:
    require_method(method, device)
    """uint8 targets: ignore 255 (rows shifted by one, ignored pixels first) and other values."""
    rng = np.random.default_rng(ignore or 0)
    target = rng.integers(0, 6, (3, 37, 41)).astype(np.uint8)
    target[rng.random(target.shape) < 0.1] = 255
    target[rng.random(target.shape) < 0.05] = 254
    target[rng.random(target.shape) < 0.05] = 200
    target[rng.random(target.shape) < 0.05] = 6
    preds = rng.integers(0, 9, target.shape).astype(np.uint8)
    for num_images in (None, 3):
        confmat, invalid = _confusion_matrix_update(
            torch.from_numpy(preds).to(device),
            torch.from_numpy(target).to(device),
            6,
            ignore,
            num_images=num_images,
            method=method,
        )
        for i in range(3) if num_images else [None]:
            t, p = (target, preds) if i is None else (target[i], preds[i])
            keep = t != ignore if ignore is not None else np.ones(t.shape, bool)
            bad = keep & (t >= 6)
            got = (confmat, invalid) if i is None else (confmat[i], invalid[i])
            assert int(got[1]) == int(bad.sum())
            np.testing.assert_array_equal(
                got[0].cpu().numpy(), np_confusion(p[keep & ~bad], t[keep & ~bad], 6, None)
            )


def test_matmul_chunks_stay_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """The matmul path sums fixed-size chunks; force tiny chunks and compare with bincount."""
    monkeypatch.setattr(confusion, "_MATMUL_MAX_PIXELS", 7)
    preds, target = _case(2, (2, 9, 10), 4, 255, torch.uint8)
    a, _ = _confusion_matrix_update(preds, target, 4, 255, method="matmul")
    b, _ = _confusion_matrix_update(preds, target, 4, 255, method="bincount")
    assert torch.equal(a, b)


def test_many_classes_use_wide_codes() -> None:
    """C = 300 needs int32 codes ((C + 2)(C + 1) > 2**15)."""
    preds, target = _case(3, (2, 31, 29), 300, 255, torch.int64)
    confmat, _ = _confusion_matrix_update(preds, target, 300, 255)
    np.testing.assert_array_equal(confmat.numpy(), np_confusion(preds.numpy(), target.numpy(), 300, 255))


def test_deterministic_mode(device) -> None:
    preds, target = _case(4, (2, 16, 16), 6, 255, torch.uint8)
    expected, _ = _confusion_matrix_update(preds, target, 6, 255)
    torch.use_deterministic_algorithms(True)
    try:
        got, _ = _confusion_matrix_update(preds.to(device), target.to(device), 6, 255)
    finally:
        torch.use_deterministic_algorithms(False)
    assert torch.equal(got.cpu(), expected)


@pytest.mark.parametrize("method", METHODS)
def test_count_codes_histogram(method: str, device) -> None:
    require_method(method, device)
    """The plain histogram behind every statistic, against np.bincount, for every method."""
    codes = torch.from_numpy(np.random.default_rng(5).integers(0, 37, size=1000)).to(torch.int32)
    got = count_codes(codes.to(device), 40, method)
    np.testing.assert_array_equal(got.cpu().numpy(), np.bincount(codes.numpy(), minlength=40))


@pytest.mark.parametrize("method", METHODS)
def test_extreme_values_of_signed_types(method: str) -> None:
    require_method(method, "cpu")
    """The dtype's minimum and maximum are outside [0, C): invalid targets, missed predictions."""
    t = torch.tensor([[-128, -1, 0, 1, 2, 127]], dtype=torch.int8)
    p = torch.tensor([[0, 0, 0, 1, -128, 127]], dtype=torch.int8)
    confmat, invalid = _confusion_matrix_update(p, t, 3, None, method=method)
    assert confmat.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]
    assert int(invalid) == 3
