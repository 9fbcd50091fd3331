"""Pairwise box IoU against ``pycocotools.mask.iou`` on xywh boxes, bit for bit, in every box format."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch

from torchseg_metrics.functional.instance.box_iou import box_convert_to_xyxy, box_iou


def _random_xywh(rng: np.random.Generator, n: int) -> np.ndarray:
    """Boxes on a coarse grid (so that edges touch and boxes repeat) and at arbitrary float positions."""
    grid = np.concatenate([rng.integers(0, 8, (n, 2)), rng.integers(0, 5, (n, 2))], axis=1) * 2.5
    free = np.concatenate([rng.uniform(-5, 20, (n, 2)), rng.uniform(0, 12, (n, 2))], axis=1)
    return np.where(rng.random((n, 1)) < 0.5, grid, free)


def _coco_box_iou(det_xywh: np.ndarray, gt_xywh: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools per image on float64 xywh boxes, (B, D, G); pycocotools returns [] when D or G is 0."""
    b, d, g = det_xywh.shape[0], det_xywh.shape[1], gt_xywh.shape[1]
    out = np.zeros((b, d, g), dtype=np.float64)
    for i in range(b):
        if d and g:
            out[i] = mask_utils.iou(det_xywh[i], gt_xywh[i], crowd[i].astype(np.uint8).tolist())
    return out


def _from_xywh(xywh: np.ndarray, box_format: str) -> np.ndarray:
    x, y, w, h = np.moveaxis(xywh, -1, 0)
    if box_format == "xyxy":
        return np.stack([x, y, x + w, y + h], axis=-1)
    if box_format == "cxcywh":
        return np.stack([x + w / 2, y + h / 2, w, h], axis=-1)
    return xywh


def _to_xywh(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """The float64 xywh boxes that COCO is given for ``boxes`` (the reference's own conversion)."""
    a, b, c, d = np.moveaxis(boxes.astype(np.float64), -1, 0)
    if box_format == "xyxy":
        return np.stack([a, b, c - a, d - b], axis=-1)
    if box_format == "cxcywh":
        return np.stack([a - c / 2, b - d / 2, c, d], axis=-1)
    return np.stack([a, b, c, d], axis=-1)


@pytest.mark.parametrize("box_format", ["xyxy", "xywh", "cxcywh"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("b", "d", "g"), [(1, 30, 12), (3, 7, 5), (2, 0, 4), (2, 5, 0)])
def test_matches_pycocotools(box_format: str, dtype: torch.dtype, b: int, d: int, g: int, device) -> None:
    rng = np.random.default_rng([b, d, g])
    det = _from_xywh(_random_xywh(rng, b * d).reshape(b, d, 4), box_format)
    gt = _from_xywh(_random_xywh(rng, b * g).reshape(b, g, 4), box_format)
    if d and g:
        det[0, 0] = gt[0, 0]  # identical boxes
    crowd = rng.random((b, g)) < 0.3
    det_t, gt_t = torch.from_numpy(det).to(dtype), torch.from_numpy(gt).to(dtype)
    expected = _coco_box_iou(_to_xywh(det_t.numpy(), box_format), _to_xywh(gt_t.numpy(), box_format), crowd)
    if d * g > 20:  # the random cases hit overlap, no overlap and touching edges
        assert np.any(expected == 0) and np.any((expected > 0) & (expected < 1)) and np.any(expected == 1)
    out = box_iou(
        det_t.to(device), gt_t.to(device), torch.from_numpy(crowd).to(device), box_format=box_format
    )
    assert out.dtype == torch.float64 and out.shape == (b, d, g) and out.device.type == device.type
    np.testing.assert_array_equal(out.cpu().numpy(), expected)


def test_hand_made_boxes(device) -> None:
    """Touching, disjoint, contained, zero-width and crowd boxes, by hand and by pycocotools (xywh)."""
    det = np.array([[[0, 0, 2, 2], [2, 0, 2, 2], [10, 10, 1, 1], [0.5, 0.5, 1, 1], [1, 0, 0, 2]]], float)
    gt = np.array([[[0, 0, 2, 2], [0, 0, 4, 4]]], float)
    crowd = np.array([[False, True]])
    expected = np.array([[[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [0.25, 1.0], [0.0, 0.0]]])
    np.testing.assert_array_equal(_coco_box_iou(det, gt, crowd), expected)
    out = box_iou(
        torch.from_numpy(det).to(device),
        torch.from_numpy(gt).to(device),
        torch.tensor([[0, 1]], device=device),
        box_format="xywh",
    )
    np.testing.assert_array_equal(out.cpu().numpy(), expected)
    no_crowd = box_iou(torch.from_numpy(det), torch.from_numpy(gt), box_format="xywh")
    np.testing.assert_array_equal(no_crowd[0, :, 1].numpy(), [0.25, 0.25, 0.0, 1 / 16, 0.0])


@pytest.mark.parametrize("box_format", ["xyxy", "xywh", "cxcywh"])
def test_box_convert_to_xyxy(box_format: str, device) -> None:
    rng = np.random.default_rng(5)
    xywh = _random_xywh(rng, 20)
    boxes = torch.from_numpy(_from_xywh(xywh, box_format)).to(device)
    out = box_convert_to_xyxy(boxes, box_format).cpu().numpy()
    a, b, c, d = np.moveaxis(boxes.cpu().numpy(), -1, 0)
    expected = {
        "xyxy": np.stack([a, b, c, d], -1),
        "xywh": np.stack([a, b, a + c, b + d], -1),
        "cxcywh": np.stack([a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d], -1),
    }[box_format]
    np.testing.assert_array_equal(out, expected)
    f32 = box_convert_to_xyxy(boxes.float(), box_format)
    assert f32.dtype == torch.float32
    np.testing.assert_allclose(f32.cpu().numpy(), expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        (
            {"det": torch.zeros(1, 2, 4, dtype=torch.int64)},
            TypeError,
            r"`det` must be a floating-point.*int64",
        ),
        (
            {"gt": torch.zeros(1, 2, 3)},
            ValueError,
            r"`gt` must be a tensor of shape \(\.\.\., 4\).*\(1, 2, 3\)",
        ),
        ({"det": torch.zeros(2, 4)}, ValueError, r"`det` must be a tensor of shape \(B, D, 4\).*\(2, 4\)"),
        ({"gt": torch.zeros(2, 1, 4)}, ValueError, r"`gt` must be a batch of 1 images.*\(2, 1, 4\)"),
        (
            {"gt_crowd": torch.zeros(1, 3, dtype=torch.bool)},
            ValueError,
            r"`gt_crowd` must be .*\(1, 1\).*\(1, 3\)",
        ),
        ({"gt_crowd": torch.zeros(1, 1)}, TypeError, r"`gt_crowd` must be a bool or integer tensor"),
        ({"box_format": "xwyh"}, ValueError, r"`box_format` must be one of .*Did you mean 'xywh'\?"),
    ],
)
def test_bad_input(kwargs: dict, error: type[Exception], pattern: str) -> None:
    args = {"det": torch.zeros(1, 2, 4), "gt": torch.zeros(1, 1, 4), "gt_crowd": None, "box_format": "xyxy"}
    with pytest.raises(error, match=pattern):
        box_iou(**(args | kwargs))


def test_convert_bad_input() -> None:
    with pytest.raises(ValueError, match=r"`box_format` must be one of"):
        box_convert_to_xyxy(torch.zeros(1, 4), "xxyy")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"`boxes` must be a floating-point"):
        box_convert_to_xyxy(torch.zeros(1, 4, dtype=torch.int32), "xywh")
