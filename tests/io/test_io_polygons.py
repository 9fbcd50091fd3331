"""Polygon rasterisation against pycocotools ``frPyObjects`` + ``merge`` + ``decode``."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch

from torchseg_metrics.io.polygons import _polygon_runs, rasterize_polygons
from torchseg_metrics.io.rle import _expand_runs, rle_counts_from_string


def _reference(polys: list, h: int, w: int) -> np.ndarray:
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, h, w)))


def test_every_polygon_of_the_real_data(real_data) -> None:
    """All 830 polygon annotations of coco_val2014_100 and every polygon of faster_coco_eval_shapes."""
    segms, heights, widths = [], [], []
    files = [
        real_data / "coco_val2014_100" / "instances_val2014_100.json",
        real_data / "faster_coco_eval_shapes" / "gt_dataset.json",
    ]
    for path in files:
        data = json.loads(path.read_text())
        images = {img["id"]: img for img in data["images"]}
        for ann in data["annotations"]:
            if isinstance(ann["segmentation"], list):
                segms.append(ann["segmentation"])
                heights.append(images[ann["image_id"]]["height"])
                widths.append(images[ann["image_id"]]["width"])
    dets = json.loads((real_data / "faster_coco_eval_shapes" / "dt_dataset.json").read_text())
    segms += [d["segmentation"] for d in dets]
    heights += [256] * len(dets)
    widths += [256] * len(dets)
    assert len(segms) == 830 + 9 + 9
    hs, ws = np.array(heights), np.array(widths)
    counts, n_runs = _polygon_runs(segms, hs, ws, [str(i) for i in range(len(segms))])
    # cheap exact check on every annotation: our run lengths equal pycocotools' merged RLE
    ours = np.split(counts, np.cumsum(n_runs)[:-1])
    for segm, h, w, runs in zip(segms, heights, widths, ours, strict=True):
        ref = mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
        assert runs.tolist() == rle_counts_from_string(ref["counts"])
    # and the dense masks of a slice, expanded by the shared kernel
    k = 60
    flat = _expand_runs(
        counts[: n_runs[:k].sum()], n_runs[:k], int((hs[:k] * ws[:k]).sum()), torch.device("cpu")
    )
    offset = 0
    for segm, h, w in zip(segms[:k], heights[:k], widths[:k], strict=True):
        got = flat[offset : offset + h * w].view(w, h).T.numpy()
        offset += h * w
        np.testing.assert_array_equal(got, _reference(segm, h, w))


@pytest.mark.parametrize("seed", range(3))
def test_random_polygons(seed: int, device: torch.device) -> None:
    """Float and integer vertices, vertices outside the image and negative, repeated vertices,
    tiny (1- and 2-point) extra polygons, odd coordinate counts, several polygons per annotation."""
    rng = np.random.default_rng(seed)
    for trial in range(150):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        polys = []
        for j in range(int(rng.integers(1, 4))):
            k = int(rng.integers(3, 9)) if j == 0 else int(rng.integers(1, 9))
            xy = rng.random(2 * k) * (max(h, w) + 8) - 4
            if trial % 2:
                xy = np.round(xy * 2) / 2
            if trial % 5 == 0 and k > 2:
                xy[2:4] = xy[0:2]  # a zero-length edge
            poly = xy.tolist() + ([1.0] if trial % 7 == 0 and j else [])  # odd length: last ignored
            polys.append(poly)
        got = rasterize_polygons([polys], h, w, device=device)
        assert got.shape == (1, h, w) and got.device.type == device.type
        np.testing.assert_array_equal(got[0].cpu().numpy(), _reference(polys, h, w))


def test_hand_made_square() -> None:
    # an axis-aligned 3x2 rectangle [0, 3] x [0, 2]: pycocotools fills columns 0..2, rows 0..1
    got = rasterize_polygons([[[0, 0, 3, 0, 3, 2, 0, 2]]], 3, 4)
    want = _reference([[0, 0, 3, 0, 3, 2, 0, 2]], 3, 4)
    np.testing.assert_array_equal(got[0].numpy(), want)
    assert int(got.sum()) == 6


@pytest.mark.parametrize(
    ("polygons", "match"),
    [
        ([[]], r"`polygons\[0\]` must be a non-empty list of polygons"),
        ([[[0, 0, 1, 1]]], r"`polygons\[0\]\[0\]` must be a polygon of at least 3 points"),
        ([[[0, 0, 5, 0, 5, 5], [1]]], r"`polygons\[0\]\[1\]` must be a flat list of at least 2 numbers"),
        ([[["a", 0, 5, 0, 5, 5]]], r"`polygons\[0\]\[0\]` must be a flat list of numbers"),
        ([{"counts": [1]}], r"`polygons\[0\]` must be a non-empty list of polygons"),
    ],
)
def test_malformed_polygons_raise(polygons: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        rasterize_polygons(polygons, 8, 8)


def test_bad_size_raises() -> None:
    with pytest.raises(ValueError, match="`height` must be an integer >= 1"):
        rasterize_polygons([[[0, 0, 1, 0, 1, 1]]], 0, 3)
