"""Mask boundaries (Boundary IoU, Cheng et al., CVPR 2021) on the device, exact, for 2-D and 3-D masks.

The boundary of a mask at dilation ``d`` is the mask minus its erosion by a 3x3 square kernel
repeated ``d`` times, after padding the image with one zero pixel (boundary-iou-api
``boundary_utils.py`` / faster-coco-eval ``rleToBoundaryCV``: ``cv2.copyMakeBorder`` then
``cv2.erode``), so pixels within ``d`` of the image edge are boundary too. Beyond that one pixel,
OpenCV's erosion border is +inf, which changes nothing: a window that leaves the image already
contains the zero pad. So a pixel survives the erosion iff its whole ``(2d+1)``-square window lies
inside the image and holds only mask pixels: a separable AND, one pass per axis, each by window
doubling (about ``log2(2d+1)`` bool operations per pixel, exact); no loop over pixels. On the CPU,
2-D masks go to a native kernel instead (run lengths over each mask's bounding box only: outside
it the mask is 0, as the pad is), with identical results.

``d = max(1, round(ratio * sqrt(H**2 + W**2)))``: boundary-iou-api rounds with Python's ``round``
(half to even); faster-coco-eval's C++ path with ``round(x - 1e-10)`` (half down). They differ
only when ``ratio * diagonal`` ends in exactly .5 (e.g. a 105 x 140 image at 0.02: 4 and 3).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from torchseg_metrics import _native
from torchseg_metrics._checks import Found, check_choice, fail

BoundaryRounding = Literal["boundary-iou-api", "faster-coco-eval"]
BOUNDARY_ROUNDINGS: tuple[str, ...] = ("boundary-iou-api", "faster-coco-eval")
#: Pixels (masks x pixels) of one chunk of :func:`mask_boundaries` (a few bool temporaries each).
_CHUNK_PIXELS = 1 << 25


def boundary_dilation(
    size: tuple[int, ...], ratio: float, rounding: BoundaryRounding = "boundary-iou-api"
) -> int:
    """The dilation ``d`` in pixels for an image of ``size`` (its diagonal times ``ratio``, at least 1).

    Example:
        >>> boundary_dilation((105, 140), 0.02), boundary_dilation((105, 140), 0.02, "faster-coco-eval")
        (4, 3)
    """
    check_choice("rounding", rounding, BOUNDARY_ROUNDINGS)
    x = ratio * math.sqrt(sum(s * s for s in size))
    d = round(x) if rounding == "boundary-iou-api" else math.floor(x - 1e-10 + 0.5)
    return max(1, int(d))


def _window_and(x: Tensor, length: int, dim: int) -> Tensor:
    """``out[j] = AND of x[j : j + length]`` along ``dim`` (``n - length + 1`` entries, ``length >= 1``).

    By doubling: ``A_2k(j) = A_k(j) & A_k(j + k)`` up to the largest power of two ``m <= length``,
    then ``A_length(j) = A_m(j) & A_m(j + length - m)``: about ``log2(length) + 1`` bool passes.
    """
    n = x.shape[dim]
    run, k = x, 1  # run[j] = AND of x[j : j + k]
    while 2 * k <= length:
        run = run.narrow(dim, 0, n - 2 * k + 1) & run.narrow(dim, k, n - 2 * k + 1)
        k *= 2
    return run.narrow(dim, 0, n - length + 1) & run.narrow(dim, length - k, n - length + 1)


def _centred(values: Tensor, d: int, dim: int) -> Tensor:
    """``values`` (one entry per window start) placed at the window centres, False at the edges."""
    out = torch.zeros(
        (*values.shape[:dim], values.shape[dim] + 2 * d, *values.shape[dim + 1 :]),
        dtype=torch.bool,
        device=values.device,
    )
    out.narrow(dim, d, values.shape[dim]).copy_(values)
    return out


def _erode_axis(inside: Tensor, d: int, dim: int) -> Tensor:
    """Whether each pixel's ``2d+1`` window along ``dim`` lies in the image and is all True."""
    if 2 * d + 1 > inside.shape[dim]:
        return torch.zeros_like(inside)
    return _centred(_window_and(inside, 2 * d + 1, dim), d, dim)


def segment_bands(ids: Tensor, dilation: int) -> Tensor:
    """bool ``(B, *spatial)``: each pixel in the boundary band of its own segment, the segments being
    the regions of equal ``ids`` (int ``(B, *spatial)``, 2-D or 3-D): the pixel's ``(2d+1)``-box
    leaves the image or holds another id. Per segment this is :func:`mask_boundaries` of its mask.

    Axis by axis: the box is constant iff the boxes of one rank lower around each of the ``2d+1``
    pixels along the axis are constant and those pixels' ids are equal (a chain of neighbours).

    Example:
        >>> ids = torch.tensor([[[1, 1, 1, 2, 2], [1, 1, 1, 2, 2], [1, 1, 1, 2, 2]]])
        >>> segment_bands(ids, 1)[0].int()
        tensor([[1, 1, 1, 1, 1],
                [1, 0, 1, 1, 1],
                [1, 1, 1, 1, 1]], dtype=torch.int32)
    """
    constant = torch.ones_like(ids, dtype=torch.bool)
    for dim in range(1, ids.ndim):
        n = ids.shape[dim]
        if 2 * dilation + 1 > n:
            return torch.ones_like(constant)
        chain = ids.narrow(dim, 0, n - 1) == ids.narrow(dim, 1, n - 1)  # equal to the next along dim
        same = _window_and(chain, 2 * dilation, dim)  # ids equal over [j - d, j + d]
        boxes = _window_and(constant, 2 * dilation + 1, dim)  # lower-rank boxes constant there
        constant = _centred(same & boxes, dilation, dim)
    return ~constant


def mask_boundaries(masks: Tensor, dilation: int) -> Tensor:
    """The boundary band of each mask: bool ``(N, *spatial)`` (2-D or 3-D) at ``dilation`` pixels.

    Args:
        masks (Tensor[N, H, W] or Tensor[N, D, H, W] bool): the masks.
        dilation: ``d >= 1``, the erosion depth in pixels (see :func:`boundary_dilation`).

    Example:
        >>> m = torch.zeros(1, 5, 5, dtype=torch.bool)
        >>> m[0, :, :4] = True  # touches the top, bottom and left edges
        >>> mask_boundaries(m, 1)[0].int()
        tensor([[1, 1, 1, 1, 0],
                [1, 0, 0, 1, 0],
                [1, 0, 0, 1, 0],
                [1, 0, 0, 1, 0],
                [1, 1, 1, 1, 0]], dtype=torch.int32)
    """
    if not isinstance(masks, Tensor) or masks.dtype != torch.bool:
        fail(
            "masks",
            "a bool tensor",
            Found(type(masks).__name__ if not isinstance(masks, Tensor) else f"dtype {masks.dtype}"),
            TypeError,
        )
    if masks.ndim not in (3, 4):
        fail("masks", "of shape (N, H, W) or (N, D, H, W)", Found(f"shape {tuple(masks.shape)}"))
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
        fail("dilation", "an integer >= 1", dilation)
    if masks.ndim == 3:  # 2-D on the CPU: the native kernel, visiting each mask's bounding box only
        native = _native.mask_boundaries(masks, dilation)
        if native is not None:
            return native
    per_mask = max(1, math.prod(masks.shape[1:]))
    step = max(1, _CHUNK_PIXELS // per_mask)
    parts = []
    for start in range(0, masks.shape[0], step):  # chunks bound the temporaries' memory
        chunk = masks[start : start + step]
        inner = chunk
        for dim in range(1, chunk.ndim):  # the square window as one pass per axis
            inner = _erode_axis(inner, dilation, dim)
        parts.append(chunk & ~inner)
    return torch.cat(parts) if parts else masks.clone()
