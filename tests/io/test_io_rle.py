"""RLE decode/encode against ``pycocotools.mask`` (random masks and the real COCO results)."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchseg_metrics.io.rle import (
    _expand_runs,
    _runs_from_rles,
    decode_rle,
    encode_rle,
    rle_counts_from_string,
    rle_string_from_counts,
)


def _random_masks(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Blobs, empty, full and noise masks, (H, W, N) uint8 Fortran order as pycocotools wants."""
    masks = np.zeros((h, w, n), np.uint8)
    for i in range(n):
        kind = i % 4
        if kind == 0:
            masks[:, :, i] = rng.random((h, w)) < 0.5
        elif kind == 1 and h and w:
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            masks[y0 : y0 + rng.integers(1, h + 1), x0 : x0 + rng.integers(1, w + 1), i] = 1
        elif kind == 2:
            masks[:, :, i] = 1
    return np.asfortranarray(masks)


@pytest.mark.parametrize("seed", range(4))
def test_encode_decode_match_pycocotools(seed: int, device: torch.device) -> None:
    rng = np.random.default_rng(seed)
    for h, w in [(1, 1), (3, 7), (17, 5), (40, 33), (0, 4)]:
        m = _random_masks(rng, 6, h, w)
        ref = mask_utils.encode(m)
        ours = encode_rle(torch.from_numpy(m.transpose(2, 0, 1).astype(bool)).to(device))
        assert [r["counts"].decode() for r in ref] == [o["counts"] for o in ours]
        assert all(o["size"] == [h, w] for o in ours)
        unc = encode_rle(torch.from_numpy(m.transpose(2, 0, 1).astype(bool)), compressed=False)
        for r, u in zip(ref, unc, strict=True):
            assert rle_counts_from_string(r["counts"]) == u["counts"]
            assert rle_string_from_counts(u["counts"]) == r["counts"].decode()
        if h * w == 0:
            continue
        want = mask_utils.decode(ref).transpose(2, 0, 1).astype(bool)
        for rles in (ref, unc):
            got = decode_rle(rles, device=device)
            assert got.device.type == device.type and got.dtype == torch.bool
            assert torch.equal(got.cpu(), torch.from_numpy(want))


def test_decode_real_results_and_crowd_gt(real_data) -> None:
    """Every compressed RLE of the real segm results and every uncompressed crowd RLE of the GT."""
    folder = real_data / "coco_val2014_100"
    results = json.loads((folder / "instances_val2014_fakesegm100_results.json").read_text())
    gt = json.loads((folder / "instances_val2014_100.json").read_text())
    crowd = [a["segmentation"] for a in gt["annotations"] if isinstance(a["segmentation"], dict)]
    assert len(crowd) == 9 and len(results) == 734  # as SOURCES.md lists them
    rles = [r["segmentation"] for r in results] + crowd
    counts, n_runs, _ = _runs_from_rles(rles)
    runs = np.split(counts, np.cumsum(n_runs)[:-1])
    assert [r.tolist() for r in runs[-9:]] == [c["counts"] for c in crowd]  # uncompressed: verbatim
    # dense masks: every one with the CPU path; a slice with the device path (repeat_interleave)
    for method, k in (("numpy", len(rles)), ("torch", 40)):
        picked = list(range(len(rles) - 9, len(rles))) + list(range(k - 9)) if k < len(rles) else range(k)
        sub = [rles[i] for i in picked]
        c, r, sz = _runs_from_rles(sub)
        flat = _expand_runs(c, r, int((sz[:, 0] * sz[:, 1]).sum()), torch.device("cpu"), method=method)
        offset = 0
        for rle, (h, w) in zip(sub, sz.tolist(), strict=True):
            obj = rle if isinstance(rle["counts"], str) else mask_utils.frPyObjects(rle, h, w)
            got = flat[offset : offset + h * w].view(w, h).T.numpy()
            offset += h * w
            np.testing.assert_array_equal(got, mask_utils.decode(obj))


def test_empty_and_large_counts() -> None:
    assert decode_rle([]).shape == (0, 0, 0)
    big = [{"size": [2000, 3000], "counts": [5_999_999, 1]}]
    ref = mask_utils.frPyObjects(big[0], 2000, 3000)
    assert rle_counts_from_string(ref["counts"]) == [5_999_999, 1]
    assert decode_rle([ref])[0, 1999, 2999] and int(decode_rle(big).sum()) == 1


@pytest.mark.parametrize(
    ("rles", "match"),
    [
        (
            [{"size": [2, 3], "counts": [1, 2]}],
            r"rles\[0\]\['counts'\]` must be run lengths summing to height\*width = 6",
        ),
        (
            [{"size": [2, 3], "counts": "0\x7f"}],
            r"rles\[0\]\['counts'\]` must be a compressed COCO RLE string",
        ),
        ([{"size": [2, 3], "counts": "0P"}], r"must be a compressed COCO RLE string"),  # truncated number
        ([{"size": [2, 3], "counts": [7, -1]}], r"must be non-negative run lengths"),
        ([{"size": [2], "counts": [6]}], r"rles\[0\]\['size'\]` must be \[height, width\]"),
        ([{"counts": [6]}], r"rles\[0\]` must be a dict with 'size' and 'counts'"),
        (
            [{"size": [2, 3], "counts": [6]}, {"size": [3, 2], "counts": [6]}],
            r"`rles` must be RLEs of one common size",
        ),
        ([{"size": [2, 3], "counts": [1.5, 4.5]}], r"must be a list of ints or a compressed string"),
    ],
)
def test_malformed_rle_raises(rles: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decode_rle(rles)


def test_encode_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match=r"`masks` must be a torch\.Tensor"):
        encode_rle(np.zeros((1, 2, 2), bool))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`masks` must be a tensor of shape \(N, H, W\)"):
        encode_rle(torch.zeros(2, 2, dtype=torch.bool))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2**31 - 1), min_size=0, max_size=12))
def test_string_round_trip(counts: list[int]) -> None:
    """Any run lengths survive encode -> decode, and pycocotools decodes our string to the same mask."""
    text = rle_string_from_counts(counts)
    assert rle_counts_from_string(text) == counts
    small = [c % 7 for c in counts] or [0]
    h = sum(small)
    if h:
        ours = decode_rle([{"size": [h, 1], "counts": rle_string_from_counts(small)}])[0, :, 0].numpy()
        ref = mask_utils.decode({"size": [h, 1], "counts": rle_string_from_counts(small).encode()})[:, 0]
        np.testing.assert_array_equal(ours, ref)
