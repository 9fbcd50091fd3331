"""Pairwise mask IoU against ``pycocotools.mask.iou`` on RLE-encoded copies, bit for bit, every method."""

from __future__ import annotations

import importlib

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from _backends import CPU_ONLY, require_method

from torchseg_metrics import _native
from torchseg_metrics.functional.counting import exact_integer_gemm
from torchseg_metrics.functional.instance.mask_iou import (
    mask_intersections,
    mask_iou,
    mask_iou_from_intersections,
)

# the module itself (``torchseg_metrics.functional.instance.mask_iou`` as an attribute is the function)
mask_iou_module = importlib.import_module("torchseg_metrics.functional.instance.mask_iou")

METHODS = ["native", "int8", "bytes", "matmul", "auto"]


def _blobs(rng: np.random.Generator, n: int, h: int, w: int, empty: float = 0.1) -> np.ndarray:
    """``n`` random ellipses or rectangles (some empty, some touching the border) as bool (n, h, w)."""
    ys, xs = np.mgrid[0:h, 0:w]
    out = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        if rng.random() < empty:
            continue
        cx, cy = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
        a, b = rng.uniform(0.5, 0.4 * w + 1), rng.uniform(0.5, 0.4 * h + 1)
        if rng.random() < 0.5:
            out[i] = ((xs + 0.5 - cx) / a) ** 2 + ((ys + 0.5 - cy) / b) ** 2 <= 1
        else:
            out[i] = (np.abs(xs + 0.5 - cx) <= a) & (np.abs(ys + 0.5 - cy) <= b)
    return out


def _scene(rng: np.random.Generator, d: int, g: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth blobs and detections: shifted, grown or cut copies of them plus random blobs."""
    gt = _blobs(rng, g, h, w)
    det = _blobs(rng, d, h, w)
    for i in range(min(d, 3 * g)):
        src = gt[rng.integers(g)]
        moved = np.roll(src, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
        det[i] = moved | det[i] if rng.random() < 0.3 else moved & ~(det[i] & (rng.random() < 0.5))
    if d > 1 and g:
        det[d - 1] = gt[0]  # an exact copy: IoU 1
    return det, gt


def _rle(masks: np.ndarray) -> list[dict]:
    return [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in masks]


def _coco_iou(det: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools IoU per image, float64 (B, D, G); pycocotools returns [] when D or G is 0."""
    b, d, g = det.shape[0], det.shape[1], gt.shape[1]
    out = np.zeros((b, d, g), dtype=np.float64)
    for i in range(b):
        if d and g:
            out[i] = mask_utils.iou(_rle(det[i]), _rle(gt[i]), crowd[i].astype(np.uint8).tolist())
    return out


def _run(method: str, device: torch.device, det: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    require_method(method, device)
    t = torch.from_numpy
    out = mask_iou(t(det).to(device), t(gt).to(device), t(crowd).to(device), method=method)
    assert out.dtype == torch.float64 and out.device.type == device.type
    return out.cpu().numpy()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("b", "d", "g", "h", "w"),
    [(1, 9, 4, 24, 32), (2, 17, 9, 31, 17), (3, 8, 8, 1, 29), (1, 23, 3, 45, 45), (2, 1, 1, 5, 3)],
)
def test_matches_pycocotools(method: str, b: int, d: int, g: int, h: int, w: int, device) -> None:
    rng = np.random.default_rng([b, d, g, h, w])
    scenes = [_scene(rng, d, g, h, w) for _ in range(b)]
    det, gt = np.stack([s[0] for s in scenes]), np.stack([s[1] for s in scenes])
    crowd = rng.random((b, g)) < 0.3
    expected = _coco_iou(det, gt, crowd)
    assert np.any(expected > 0) and (d * g < 4 or np.any(expected == 0))  # both outcomes occur
    np.testing.assert_array_equal(_run(method, device, det, gt, crowd), expected)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("d", "g"), [(0, 3), (4, 0), (0, 0)])
def test_no_detections_or_no_ground_truths(method: str, d: int, g: int, device) -> None:
    rng = np.random.default_rng(7)
    det, gt = _blobs(rng, 2 * d, 6, 7).reshape(2, d, 6, 7), _blobs(rng, 2 * g, 6, 7).reshape(2, g, 6, 7)
    crowd = np.zeros((2, g), dtype=bool)
    assert _run(method, device, det, gt, crowd).shape == (2, d, g)
    if method in CPU_ONLY and device.type != "cpu":
        return
    inter, det_area, gt_area = mask_intersections(
        torch.from_numpy(det).to(device), torch.from_numpy(gt).to(device), method=method
    )
    assert inter.shape == (2, d, g) and inter.dtype == torch.int64
    np.testing.assert_array_equal(det_area.cpu().numpy(), det.sum((2, 3)))
    np.testing.assert_array_equal(gt_area.cpu().numpy(), gt.sum((2, 3)))


@pytest.mark.parametrize("method", METHODS)
def test_hand_made_cases(method: str, device) -> None:
    """Empty, touching, contained, identical masks and crowd: by hand and by pycocotools."""
    det = np.zeros((1, 4, 4, 6), dtype=bool)
    gt = np.zeros((1, 3, 4, 6), dtype=bool)
    det[0, 0, :2, :2] = True  # 4 px
    det[0, 1, :, 2:4] = True  # 8 px, touches gt 0 along an edge only
    # det 2 stays empty
    det[0, 3, 1:3, 1:3] = True  # 4 px inside gt 2, one of them in det 0 / gt 0
    gt[0, 0, :2, :2] = True  # identical to det 0
    gt[0, 1, :, :] = True  # 24 px, crowd
    gt[0, 2, :, :4] = True  # 16 px
    crowd = np.array([[False, True, False]])
    expected = np.array([[[1.0, 1.0, 4 / 16], [0.0, 1.0, 8 / 16], [0.0, 0.0, 0.0], [1 / 7, 1.0, 4 / 16]]])
    np.testing.assert_array_equal(_coco_iou(det, gt, crowd), expected)
    np.testing.assert_array_equal(_run(method, device, det, gt, crowd), expected)


@pytest.mark.parametrize("method", ["int8", "bytes", "matmul"])
def test_many_small_chunks(method: str, device, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk boundaries (and, for "bytes", blocks of one group pair) change nothing."""
    monkeypatch.setattr(mask_iou_module, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(mask_iou_module, "_MIN_CHUNK", 128)  # 23 * 29 = 5 * 128 + 27 pixels
    rng = np.random.default_rng(3)
    scenes = [_scene(rng, 19, 10, 23, 29) for _ in range(2)]
    det, gt = np.stack([s[0] for s in scenes]), np.stack([s[1] for s in scenes])
    crowd = rng.random((2, 10)) < 0.5
    np.testing.assert_array_equal(_run(method, device, det, gt, crowd), _coco_iou(det, gt, crowd))


@pytest.mark.parametrize("method", ["native", "int8", "bytes", "matmul"])
def test_counts_beyond_float32_exactness(method: str, device) -> None:
    """A 4200x4200 image: areas and intersections above 2**24 stay exact (float32 would round them)."""
    h = w = 4200
    det = np.zeros((1, 3, h, w), dtype=bool)
    gt = np.zeros((1, 2, h, w), dtype=bool)
    det[0, 0] = True
    det[0, 0, :3, :7] = False  # 2**24 + 1_041_063 pixels: odd, not a float32 integer
    det[0, 1, 100:2000, 50:4000] = True
    gt[0, 0] = True
    gt[0, 0, -1, -1] = False
    gt[0, 1, 1000:3000, 1000:3000] = True
    det[0, 2] = gt[0, 1]
    assert det[0, 0].sum() > 2**24 and det[0, 0].sum() % 2 == 1
    crowd = np.array([[False, True]])
    expected = _coco_iou(det, gt, crowd)
    np.testing.assert_array_equal(_run(method, device, det, gt, crowd), expected)
    if method in CPU_ONLY and device.type != "cpu":
        return
    inter, det_area, gt_area = mask_intersections(
        torch.from_numpy(det).to(device), torch.from_numpy(gt).to(device), method=method
    )
    assert int(inter[0, 0, 0]) == h * w - 22 and int(det_area[0, 0]) == h * w - 21
    assert int(gt_area[0, 0]) == h * w - 1


@pytest.mark.parametrize("method", METHODS)
def test_non_contiguous_inputs_and_deterministic_mode(method: str, device) -> None:
    rng = np.random.default_rng(11)
    det, gt = _scene(rng, 12, 5, 26, 19)
    crowd = np.array([[True, False, False, True, False]])
    expected = _coco_iou(det[None], gt[None], crowd)
    # the same masks stored transposed and as a strided slice
    det_t = torch.from_numpy(np.ascontiguousarray(det.transpose(0, 2, 1))).to(device).transpose(1, 2)[None]
    gt_s = torch.from_numpy(np.repeat(gt, 2, axis=0)).to(device)[::2][None]
    require_method(method, device)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        out = mask_iou(det_t, gt_s, torch.from_numpy(crowd).to(device), method=method)
        again = mask_iou(det_t, gt_s, torch.from_numpy(crowd).to(device), method=method)
    finally:
        torch.use_deterministic_algorithms(previous)
    np.testing.assert_array_equal(out.cpu().numpy(), expected)
    assert torch.equal(out, again)


@pytest.mark.parametrize("method", METHODS)
def test_empty_batch(method: str, device) -> None:
    require_method(method, device)
    det, gt = torch.zeros(0, 3, 4, 5, dtype=torch.bool), torch.zeros(0, 2, 4, 5, dtype=torch.bool)
    inter, det_area, gt_area = mask_intersections(det.to(device), gt.to(device), method=method)
    assert inter.shape == (0, 3, 2) and det_area.shape == (0, 3) and gt_area.shape == (0, 2)


def test_default_path_does_not_synchronise(device) -> None:
    if device.type != "cuda":
        pytest.skip("host-device synchronisation exists only on CUDA")
    rng = np.random.default_rng(2)
    det, gt = _scene(rng, 30, 6, 40, 50)
    crowd = torch.tensor([[True, False, False, False, True, False]], device=device)
    det_t, gt_t = torch.from_numpy(det)[None].to(device), torch.from_numpy(gt)[None].to(device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = mask_iou(det_t, gt_t, crowd)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    np.testing.assert_array_equal(out.cpu().numpy(), _coco_iou(det[None], gt[None], crowd.cpu().numpy()))


def test_auto_picks_the_device_default(device, monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_default = "native" if _native.available() else "int8"
    expected = "matmul" if device.type != "cpu" else cpu_default
    assert mask_iou_module._resolve_method("auto", device) == expected
    monkeypatch.setenv("TORCHSEG_METRICS_NATIVE", "0")  # switched off: the int8 GEMM on the CPU
    assert mask_iou_module._resolve_method("auto", device) == ("matmul" if device.type != "cpu" else "int8")
    if device.type == "cpu":
        with pytest.raises(ValueError, match="native"):
            mask_iou_module._resolve_method("native", device)


def test_exact_integer_gemm_restores_the_deterministic_flag() -> None:
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    cuda = torch.device("cuda")  # only the device type is read: no GPU needed
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
        with exact_integer_gemm(cuda):
            assert not torch.are_deterministic_algorithms_enabled()
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        torch.use_deterministic_algorithms(True)
        with pytest.raises(KeyError), exact_integer_gemm(cuda):
            raise KeyError("boom")
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        with exact_integer_gemm(torch.device("cpu")):  # cuBLAS only: the CPU keeps the flag on
            assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def test_iou_from_intersections_uses_pycocotools_division() -> None:
    inter = torch.tensor([[[1, 0, 3]]])
    out = mask_iou_from_intersections(
        inter, torch.tensor([[7]]), torch.tensor([[5, 0, 9]]), torch.tensor([[0, 0, 1]]).bool()
    )
    assert out.tolist() == [[[1 / 11, 0.0, 3 / 7]]]


# ---- bad input ---------------------------------------------------------------------------------


def _ok() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(2, 3, 4, 5, dtype=torch.bool), torch.zeros(2, 1, 4, 5, dtype=torch.bool)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        (
            {"det": torch.zeros(2, 3, 4, 5, dtype=torch.uint8)},
            TypeError,
            r"`det` must be a bool tensor.*uint8",
        ),
        ({"gt": torch.zeros(2, 1, 4, 5)}, TypeError, r"`gt` must be a bool tensor.*float32"),
        ({"det": [[True]]}, TypeError, r"`det` must be a torch.Tensor, got list"),
        (
            {"det": torch.zeros(3, 4, 5, dtype=torch.bool)},
            ValueError,
            r"`det` must be .*\(B, D, H, W\).*\(3, 4, 5\)",
        ),
        (
            {"gt": torch.zeros(2, 1, 4, 6, dtype=torch.bool)},
            ValueError,
            r"`gt` must be of shape \(2, G, 4, 5\).*\(2, 3, 4, 5\).*\(2, 1, 4, 6\)",
        ),
        (
            {"gt": torch.zeros(1, 1, 4, 5, dtype=torch.bool)},
            ValueError,
            r"`gt` must be of shape \(2, G, 4, 5\)",
        ),
        ({"gt_crowd": torch.zeros(2, 1)}, TypeError, r"`gt_crowd` must be a bool or integer tensor.*float32"),
        (
            {"gt_crowd": torch.zeros(2, 2, dtype=torch.bool)},
            ValueError,
            r"`gt_crowd` must be .*\(2, 1\).*\(2, 2\)",
        ),
        ({"method": "bites"}, ValueError, r"`method` must be one of .*'bites'. Did you mean 'bytes'\?"),
    ],
)
def test_bad_input(kwargs: dict, error: type[Exception], pattern: str) -> None:
    det, gt = _ok()
    args = {"det": det, "gt": gt, "gt_crowd": torch.zeros(2, 1, dtype=torch.int64), "method": "auto"} | kwargs
    with pytest.raises(error, match=pattern):
        mask_iou(**args)
    if "gt_crowd" not in kwargs:
        args.pop("gt_crowd")
        with pytest.raises(error, match=pattern):
            mask_intersections(**args)


def test_int8_is_rejected_off_the_cpu() -> None:
    with pytest.raises(ValueError, match=r"`method` must be one of \['auto', 'bytes', 'matmul'\].* on cuda"):
        mask_iou_module._resolve_method("int8", torch.device("cuda"))


# ---- real data -----------------------------------------------------------------------------------


def test_real_coco_masks(real_data) -> None:
    """Real COCO val2014 ground truths (polygons and crowd RLE) against cocoapi's fake segm results.

    The reference is ``pycocotools.mask.iou`` on the original RLEs (GT polygons rasterised by
    ``frPyObjects`` + ``merge``, as COCO does); we see only the decoded bool masks. Three images: the two
    with the most detections and one with a crowd region (image 715).
    """
    import json

    folder = real_data / "coco_val2014_100"
    gt_json = json.loads((folder / "instances_val2014_100.json").read_text())
    results = json.loads((folder / "instances_val2014_fakesegm100_results.json").read_text())
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt_json["images"]}
    for image_id in (164, 196, 715):
        h, w = sizes[image_id]
        anns = [a for a in gt_json["annotations"] if a["image_id"] == image_id]
        gt_rles = []
        for a in anns:
            seg = a["segmentation"]
            if isinstance(seg, list):
                gt_rles.append(mask_utils.merge(mask_utils.frPyObjects(seg, h, w)))
            else:
                gt_rles.append(mask_utils.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg)
        dt_rles = [r["segmentation"] for r in results if r["image_id"] == image_id]
        crowd = [int(a["iscrowd"]) for a in anns]
        expected = np.asarray(mask_utils.iou(dt_rles, gt_rles, crowd), dtype=np.float64)
        det = torch.from_numpy(mask_utils.decode(dt_rles).astype(bool)).permute(2, 0, 1)[None]
        gt = torch.from_numpy(mask_utils.decode(gt_rles).astype(bool)).permute(2, 0, 1)[None]
        assert det.shape[1] >= 30 or any(crowd)
        for method in ("int8", "bytes", "matmul"):
            out = mask_iou(det, gt, torch.tensor([crowd]), method=method)
            np.testing.assert_array_equal(out[0].numpy(), expected, err_msg=f"{image_id} {method}")
