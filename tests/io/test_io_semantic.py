"""The label-map folder reader: 8-bit, 16-bit and palette PNGs, matching by name, and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torchseg_metrics.io.semantic import iter_label_map_batches, match_label_maps, read_label_map


def _save(path: Path, labels: np.ndarray, mode: str) -> None:
    if mode == "P":
        im = Image.fromarray(labels.astype(np.uint8), mode="P")
        im.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
        im.save(path)
    elif mode == "I;16":
        Image.fromarray(labels.astype(np.uint16)).save(path)
    else:
        Image.fromarray(labels.astype(np.uint8)).save(path)


@pytest.mark.parametrize("mode", ["L", "P", "I;16"])
def test_round_trip_label_maps(tmp_path: Path, mode: str, device: torch.device) -> None:
    rng = np.random.default_rng(0)
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    high = 1000 if mode == "I;16" else 256  # 16-bit maps hold labels above 255
    maps = {}
    for i, shape in enumerate([(4, 6), (4, 6), (4, 6), (3, 5)]):
        t, p = rng.integers(0, high, shape), rng.integers(0, high, shape)
        _save(gt / f"img{i}.png", t, mode)
        _save(pred / f"img{i}.png", p, mode)
        maps[f"img{i}.png"] = (t, p)
    batches = list(iter_label_map_batches(gt, pred, batch_size=2, device=device))
    assert [b.names for b in batches] == [["img0.png", "img1.png"], ["img2.png"], ["img3.png"]]
    for b in batches:
        assert b.target.dtype == torch.int64 and b.target.device.type == device.type
        for k, name in enumerate(b.names):
            np.testing.assert_array_equal(b.target[k].cpu().numpy(), maps[name][0])
            np.testing.assert_array_equal(b.preds[k].cpu().numpy(), maps[name][1])


def test_errors(tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    with pytest.raises(ValueError, match=r"`gt_dir` must be a folder with PNG label maps"):
        match_label_maps(gt, pred)
    _save(gt / "a.png", np.zeros((2, 3)), "L")
    _save(gt / "b.png", np.zeros((2, 3)), "L")
    _save(pred / "a.png", np.zeros((2, 3)), "L")
    with pytest.raises(
        ValueError,
        match=r"`pred_dir` must be a PNG for every ground-truth file, got 1 missing, e.g. \['b.png'\]",
    ):
        match_label_maps(gt, pred)
    _save(pred / "b.png", np.zeros((3, 3)), "L")
    _save(pred / "c.png", np.zeros((2, 3)), "L")
    with pytest.raises(
        ValueError, match=r"`pred_dir` must be only files that have a ground truth, got 1 extra"
    ):
        match_label_maps(gt, pred)
    (pred / "c.png").unlink()
    with pytest.raises(
        ValueError,
        match=r"`pred_dir: b.png` must be a label map of the ground truth's size \(2, 3\), got \(3, 3\)",
    ):
        list(iter_label_map_batches(gt, pred))
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(pred / "b.png")
    with pytest.raises(ValueError, match=r"`pred_dir` must be a single-channel label map .* of mode RGB"):
        list(iter_label_map_batches(gt, pred))
    (pred / "b.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"`pred_dir` must be a readable PNG image"):
        list(iter_label_map_batches(gt, pred))
    with pytest.raises(FileNotFoundError, match=r"`pred_dir` must be an existing folder"):
        match_label_maps(gt, tmp_path / "none")
    with pytest.raises(FileNotFoundError, match=r"`label_map` must be an existing PNG file"):
        read_label_map(tmp_path / "none.png")
    with pytest.raises(ValueError, match=r"`batch_size` must be an integer >= 1, got 0"):
        next(iter_label_map_batches(gt, pred, batch_size=0))
