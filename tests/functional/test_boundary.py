"""Mask boundaries against a SciPy emulation of boundary-iou-api's OpenCV code, 2-D and 3-D.

boundary-iou-api (``boundary_utils.py``) pads one zero pixel with ``cv2.copyMakeBorder``, erodes
``d`` times with a 3x3 kernel (``cv2.erode``, border +inf) and subtracts; SciPy's
``binary_erosion(iterations=d, border_value=1)`` after the same padding is that operation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _boundary_reference import reference_boundaries
from scipy import ndimage

from torchseg_metrics import _native
from torchseg_metrics.functional.boundary import boundary_dilation, mask_boundaries, segment_bands


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ndim", [2, 3])
def test_random_masks_equal_the_opencv_rule(seed, ndim, device) -> None:
    rng = np.random.default_rng(seed)
    shape = (4, *rng.integers(1, 40 if ndim == 2 else 14, size=ndim))
    masks = rng.random(shape) < rng.uniform(0.4, 0.99)
    masks = ndimage.binary_closing(masks, np.ones((1,) + (3,) * ndim), iterations=2) if seed % 2 else masks
    for d in (1, 2, int(rng.integers(3, 12))):
        got = mask_boundaries(torch.from_numpy(masks).to(device), d).cpu().numpy()
        np.testing.assert_array_equal(got, reference_boundaries(masks, d), err_msg=f"d={d}")


def test_edge_cases() -> None:
    full = np.ones((1, 6, 7), bool)  # touching every border: a band of d pixels along the edges
    np.testing.assert_array_equal(
        mask_boundaries(torch.from_numpy(full), 2).numpy(), reference_boundaries(full, 2)
    )
    assert mask_boundaries(torch.from_numpy(full), 2)[0, 2:4, 2:5].sum() == 0
    assert mask_boundaries(torch.from_numpy(full), 4).all()  # wider than half the image: all boundary
    dot = np.zeros((1, 5, 5), bool)
    dot[0, 2, 2] = True  # a single pixel is its own boundary
    assert np.array_equal(mask_boundaries(torch.from_numpy(dot), 1).numpy(), dot)
    empty = torch.zeros(0, 5, 5, dtype=torch.bool)
    assert mask_boundaries(empty, 3).shape == (0, 5, 5)
    assert not mask_boundaries(torch.zeros(2, 5, 5, dtype=torch.bool), 1).any()


def test_dilation_rounding() -> None:
    # spec F / edge case 20: 0.02 * 175 = 3.5 exactly on a 105 x 140 image
    assert boundary_dilation((105, 140), 0.02) == 4  # boundary-iou-api: Python's round
    assert boundary_dilation((105, 140), 0.02, "faster-coco-eval") == 3  # round(x - 1e-10)
    assert (
        boundary_dilation((480, 640), 0.02) == boundary_dilation((480, 640), 0.02, "faster-coco-eval") == 16
    )
    assert boundary_dilation((10, 10), 0.02) == 1  # at least one pixel
    assert boundary_dilation((30, 40, 50), 0.01) == 1  # 3-D: the volume's diagonal


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="`masks` must be a bool tensor"):
        mask_boundaries(torch.zeros(1, 3, 3), 1)
    with pytest.raises(ValueError, match=r"`masks` must be of shape \(N, H, W\)"):
        mask_boundaries(torch.zeros(3, 3, dtype=torch.bool), 1)
    with pytest.raises(ValueError, match="`dilation` must be an integer >= 1"):
        mask_boundaries(torch.zeros(1, 3, 3, dtype=torch.bool), 0)
    with pytest.raises(ValueError, match="Did you mean 'faster-coco-eval'"):
        boundary_dilation((3, 3), 0.02, "faster_coco_eval")  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(3))
def test_native_and_torch_paths_agree(seed, monkeypatch: pytest.MonkeyPatch) -> None:
    # on the CPU 2-D masks take the native kernel (bounding boxes only); the torch twin must match
    rng = np.random.default_rng(seed)
    masks = rng.random((7, 33, 47)) < 0.8
    masks[0] = False  # empty
    masks[1] = True  # the whole image
    masks[2, 5:9, 40:47] = True  # touching the right edge
    masks = ndimage.binary_opening(masks, np.ones((1, 2, 2)))
    m = torch.from_numpy(masks)
    for d in (1, 3, 9, 30):
        native = mask_boundaries(m, d)
        with monkeypatch.context() as patch:
            patch.setattr(_native, "mask_boundaries", lambda *args: None)
            twin = mask_boundaries(m, d)
        assert torch.equal(native, twin), d
        np.testing.assert_array_equal(native.numpy(), reference_boundaries(masks, d))


@pytest.mark.parametrize("ndim", [2, 3])
def test_segment_bands_equal_the_band_of_every_segment(ndim) -> None:
    rng = np.random.default_rng(10 + ndim)
    for trial in range(8):
        shape = (2, *rng.integers(2, 22 if ndim == 2 else 10, size=ndim))
        ids = ndimage.median_filter(rng.integers(0, 4, size=shape), size=(1,) + (3,) * ndim)
        d = int(rng.integers(1, 5))
        expected = np.zeros(shape, bool)
        for b in range(shape[0]):
            for v in np.unique(ids[b]):
                expected[b] |= reference_boundaries((ids[b] == v)[None], d)[0]
        np.testing.assert_array_equal(
            segment_bands(torch.from_numpy(ids), d).numpy(), expected, err_msg=str(trial)
        )
