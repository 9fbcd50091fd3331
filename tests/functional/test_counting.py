"""Counting kernels (``functional.counting``): histogram lanes and reusable buffers, against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _semantic_reference import blob_labels, np_confusion, perturb

import torchseg_metrics.functional.counting as counting
from torchseg_metrics.functional.counting import count_codes, count_true, release_buffers, reusable_buffer
from torchseg_metrics.functional.semantic.confusion import _confusion_matrix_update


def _runs(rng: np.random.Generator, n: int, nbins: int) -> np.ndarray:
    """Codes in long runs of one value (the case the lanes are for), plus some isolated values."""
    lengths = rng.integers(1, 400, size=n // 50 + 1)
    values = rng.integers(0, nbins, size=lengths.size)
    codes = np.repeat(values, lengths)[:n]
    codes[rng.random(codes.size) < 0.05] = rng.integers(0, nbins)
    return codes


@pytest.mark.parametrize(
    ("n", "nbins", "dtype"),
    [
        (2047, 30, torch.int16),  # too few codes for lanes: one plain bincount
        (2048, 30, torch.int16),  # the smallest input with lanes
        (5000, 420, torch.int16),  # a tail after the last full period keeps lane 0
        (40_000, 5000, torch.int16),  # 8 * 5000 > 2**15: fewer lanes for the int16 codes
        (40_000, 20_000, torch.int32),  # lanes limited by the histogram size
        (30_000, 70_000, torch.int32),  # more bins than the lane budget: one histogram
        (10_000, 9, torch.int64),
    ],
)
def test_bincount_lanes_match_numpy(n: int, nbins: int, dtype: torch.dtype) -> None:
    rng = np.random.default_rng([n, nbins])
    codes = _runs(rng, n, nbins)
    expected = np.bincount(codes, minlength=nbins)
    got = count_codes(torch.from_numpy(codes).to(dtype), nbins, "bincount")
    assert got.shape == (nbins,) and got.dtype == torch.int64
    np.testing.assert_array_equal(got.numpy(), expected)


def test_lane_count_respects_bins_and_dtype() -> None:
    big = torch.zeros(1 << 14, dtype=torch.int16)
    assert counting._lane_count(big, 420) == counting._LANES
    assert counting._lane_count(big, 5000) == 4  # 4 * 5000 < 2**15 < 8 * 5000
    assert counting._lane_count(big.int(), 1 << 15) == 2  # 2 * 2**15 = the lane budget
    assert counting._lane_count(big.int(), 1 << 17) == 1
    assert counting._lane_count(big[:100], 420) == 1


def test_strided_codes_are_counted_without_lanes() -> None:
    codes = torch.from_numpy(_runs(np.random.default_rng(1), 9000, 50))
    strided = codes.repeat_interleave(2)[::2]
    assert not strided.is_contiguous()
    before = strided.clone()
    np.testing.assert_array_equal(
        count_codes(strided, 50, "bincount").numpy(), np.bincount(codes, minlength=50)
    )
    assert torch.equal(strided, before)


def test_reusable_buffer_grows_and_is_per_slot_and_dtype() -> None:
    release_buffers()
    a = reusable_buffer("a", 10, torch.int16, torch.device("cpu"))
    b = reusable_buffer("b", 10, torch.int16, torch.device("cpu"))
    c = reusable_buffer("a", 10, torch.int32, torch.device("cpu"))
    assert len({a.data_ptr(), b.data_ptr(), c.data_ptr()}) == 3
    assert reusable_buffer("a", 5, torch.int16, torch.device("cpu")).data_ptr() == a.data_ptr()
    grown = reusable_buffer("a", 100, torch.int16, torch.device("cpu"))
    assert grown.numel() == 100
    assert reusable_buffer("a", 100, torch.int16, torch.device("cpu")).data_ptr() == grown.data_ptr()
    release_buffers()
    assert reusable_buffer("a", 7, torch.int16, torch.device("cpu")).numel() == 7


def test_large_requests_are_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(counting, "_MAX_REUSED_BYTES", 64)
    release_buffers()
    small = reusable_buffer("s", 32, torch.int16, torch.device("cpu"))
    assert reusable_buffer("s", 32, torch.int16, torch.device("cpu")).data_ptr() == small.data_ptr()
    large = reusable_buffer("l", 33, torch.int16, torch.device("cpu"))
    assert large.numel() == 33
    assert ("l", torch.int16) not in counting._buffers.cache


def test_reusable_buffers_are_per_thread() -> None:
    import threading

    release_buffers()
    mine = reusable_buffer("x", 64, torch.uint8, torch.device("cpu")).data_ptr()
    seen = []
    thread = threading.Thread(
        target=lambda: seen.append(reusable_buffer("x", 64, torch.uint8, torch.device("cpu")))
    )
    thread.start()
    thread.join()
    assert seen[0].data_ptr() != mine


@pytest.mark.parametrize("ignore", [255, None, 0])
def test_confusion_results_never_alias_the_buffers(ignore: int | None) -> None:
    """Successive batches of different sizes through the reused buffers: each result is exact and
    stays so after later calls overwrite the buffers."""
    rng = np.random.default_rng(4)
    results = []
    for shape in [(2, 64, 96), (1, 40, 50), (3, 64, 96)]:
        target = blob_labels(rng, shape, 7)
        preds = perturb(rng, target, 7, low=0, high=9)
        if ignore is not None:
            target[blob_labels(rng, shape, 4) == 0] = ignore
        got, invalid = _confusion_matrix_update(
            torch.from_numpy(preds).byte(), torch.from_numpy(target).byte(), 7, ignore
        )
        assert int(invalid) == 0
        results.append((got, np_confusion(preds, target, 7, ignore)))
    for got, expected in results:
        np.testing.assert_array_equal(got.numpy(), expected)


@pytest.mark.parametrize("p", [0, 1, 7, 1016, 1017, 5000])
def test_count_true(p: int, device) -> None:
    rng = np.random.default_rng(p)
    x = rng.random((2, 3, p)) < 0.6
    x[0, 0] = True
    expected = x.sum(-1)
    np.testing.assert_array_equal(count_true(torch.from_numpy(x).to(device)).cpu().numpy(), expected)
    sliced = torch.from_numpy(np.concatenate([x, x], axis=-1)).to(device)[..., 1 : p + 1]
    np.testing.assert_array_equal(count_true(sliced).cpu().numpy(), expected)  # a rotation of x


@pytest.mark.parametrize("dtype", [torch.int16, torch.int32, torch.int64])
@pytest.mark.parametrize("n", [100, 5 * 1024 + 77])  # one lane; several lanes and a tail
def test_scatter_counts_into_interleaved_copies(dtype: torch.dtype, n: int) -> None:
    """The ``"scatter"`` path (CUDA's default), run here on the CPU: equal to np.bincount, input kept."""
    codes = _runs(np.random.default_rng(n), n, 300)
    x = torch.from_numpy(codes).to(dtype)
    before = x.clone()
    got = count_codes(x, 300, "scatter")
    np.testing.assert_array_equal(got.numpy(), np.bincount(codes, minlength=300))
    assert torch.equal(x, before)


def test_scatter_lanes_shrink_for_large_histograms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(counting, "_SCATTER_LANE_BINS", 1000)  # 300 bins: 2 copies fit, not 4
    codes = _runs(np.random.default_rng(3), 4 * 1024, 300)
    got = count_codes(torch.from_numpy(codes), 300, "scatter")
    np.testing.assert_array_equal(got.numpy(), np.bincount(codes, minlength=300))
