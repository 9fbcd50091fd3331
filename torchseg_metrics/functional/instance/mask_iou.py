"""Pairwise mask intersections and IoU exactly as pycocotools computes them (``maskApi.c`` ``rleIou``).

The statistic is the triple ``(inter, det_area, gt_area)`` of int64 pixel counts per image; IoU is a
float64 division of those counts in pycocotools' order of operations, so :func:`mask_iou` is
bit-identical to ``pycocotools.mask.iou`` on RLE-encoded copies of the masks:
``|D∩G| / |D∪G|``, ``|D∩G| / |D|`` for a crowd ground truth, and 0 wherever ``|D∩G| = 0``.

Four counting kernels, all exact for any image size, none reading a value back to the host (except
``"bytes"`` on CUDA, see below), with shapes fixed by the input shapes:

* ``"native"`` (CPU default when the C kernels of :mod:`torchseg_metrics._native` are available):
  each mask is read once for its pixel count (a ground truth also for its bounding box, a detection
  for its first and last rows), and each intersection is counted over the ground truth's box within
  the detection's rows only, eight bytes at a time. Close to the cost of reading the masks once
  when objects are small; one image at a time.
* ``"int8"`` (CPU default without the C kernels): an int8 GEMM (``torch._int_mm``, int32
  accumulation) of the bool masks viewed as int8 without a copy, against a copy of the ground
  truths plus a row of ones (which yields the detection areas; the ground-truth areas are counted
  from the copy). Pixels are chunked below
  2**30 per GEMM so that the int32 partial counts are exact. ``torch._int_mm`` has no batched form,
  so this path issues one GEMM per image and pixel chunk.
* ``"matmul"`` (default off the CPU): a batched float32 GEMM of 0/1 values, chunked at most 2**24
  pixels, where every float32 partial count is an exact integer; on CUDA a tensor-core GEMM.
* ``"bytes"``: eight masks per byte (bit planes), one joint histogram of (detection byte, ground-truth
  byte) pairs per group of 8 x 8 masks by ``torch.bincount``, decoded into counts by a small matmul.
  ``torch.bincount`` synchronises on CUDA, so use it on the CPU.

Memory: besides the outputs, each kernel works in pixel chunks sized so that each scratch buffer stays
near ``_CHUNK_BYTES`` (64 MiB; a floor of 4096 pixels per chunk), whatever the image size and number of
masks. Measured extra peak (CPU, one 4000x4000 image, 60 or 150 detections alike): ``"int8"`` ~90 MiB,
``"matmul"`` ~135 MiB, ``"bytes"`` ~230 MiB (its int32 keys and histograms exist a few times over).

Determinism: every path sums integers exactly, so results are bit-identical in any summation order.
cuBLAS GEMMs are refused by ``torch.use_deterministic_algorithms(True)`` unless
``CUBLAS_WORKSPACE_CONFIG`` is set; since their integer results cannot vary, the check is suspended
around them (and only around them) on CUDA.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from torchseg_metrics import _native
from torchseg_metrics._checks import Found, check_choice, check_same_device, check_tensor, fail
from torchseg_metrics.functional.counting import count_true, exact_integer_gemm
from torchseg_metrics.functional.instance.box_iou import (
    BOX_FORMATS,
    BoxFormat,
    _check_crowd,
    box_convert_to_xyxy,
    box_iou,
)

MaskMethod = Literal["auto", "native", "int8", "bytes", "matmul"]
MASK_METHODS: tuple[str, ...] = ("auto", "native", "int8", "bytes", "matmul")

__all__ = [
    "BOX_FORMATS",
    "MASK_METHODS",
    "BoxFormat",
    "MaskMethod",
    "box_convert_to_xyxy",
    "box_iou",
    "mask_intersections",
    "mask_iou",
    "mask_iou_from_intersections",
]

_CHUNK_BYTES = 1 << 26  # scratch per pixel chunk
_MIN_CHUNK = 4096  # pixels; keeps the number of chunks (and Python iterations) small
_INT32_MAX_PIXELS = 1 << 30  # int32 GEMM partial counts stay exact below 2**31
_FLOAT_MAX_PIXELS = 1 << 24  # float32 partial counts stay exact up to 2**24
_LANE_WORDS = 127  # int64 words summed per group in _lane_counts: each byte lane stays <= 127
_BIT_TABLE_SIZE = 256


def _check_masks(det: object, gt: object) -> tuple[Tensor, Tensor]:
    det = check_tensor("det", det)
    gt = check_tensor("gt", gt)
    for name, x, letter in (("det", det, "D"), ("gt", gt, "G")):
        if x.dtype != torch.bool:
            fail(name, "a bool tensor of masks", Found(f"dtype {x.dtype}"), TypeError)
        if x.ndim != 4:
            fail(name, f"a tensor of shape (B, {letter}, H, W)", Found(f"shape {tuple(x.shape)}"))
    if (gt.shape[0], *gt.shape[2:]) != (det.shape[0], *det.shape[2:]):
        b, _, h, w = det.shape
        fail("gt", f"of shape ({b}, G, {h}, {w}) to match `det` of shape {tuple(det.shape)}", tuple(gt.shape))
    check_same_device(("det", "gt"), (det, gt))
    return det, gt


@functools.cache
def _cpu_int8_gemm_available() -> bool:
    """Whether this torch build has a CPU ``torch._int_mm`` (an int8 GEMM with int32 accumulation)."""
    try:
        a = torch.ones(1, 8, dtype=torch.int8)
        return int(torch._int_mm(a, a.t())[0, 0]) == 8
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _cpu_fallback() -> str:
    return "int8" if _cpu_int8_gemm_available() else "bytes"


def _resolve_method(method: str, device: torch.device) -> str:
    check_choice("method", method, MASK_METHODS)
    if method == "auto":
        if device.type != "cpu":
            return "matmul"
        return "native" if _native.available() else _cpu_fallback()
    if method == "native" and (device.type != "cpu" or not _native.available()):
        where = f"on {device.type}" if device.type != "cpu" else "without the native kernels"
        fail("method", f"one of ['auto', 'int8', 'bytes', 'matmul'] for masks {where}", method)
    if method == "int8" and (device.type != "cpu" or not _cpu_int8_gemm_available()):
        where = "without a CPU torch._int_mm" if device.type == "cpu" else f"on {device.type}"
        fail("method", f"one of ['auto', 'bytes', 'matmul'] for masks {where}", method)
    return method


def _chunk_pixels(num_pixels: int, bytes_per_pixel: int, cap: int) -> int:
    chunk = _CHUNK_BYTES // max(bytes_per_pixel, 1)
    return max(1, min(num_pixels, cap, max(chunk, _MIN_CHUNK)))


def _lane_counts(u8: Tensor) -> Tensor:
    """int64 ``(R,)`` sums of the 0/1 bytes of a contiguous uint8 ``(R, C)``, ``C`` a multiple of 127 * 8."""
    r, c = u8.shape
    groups = c // (8 * _LANE_WORDS)
    lanes = u8.view(torch.int64).view(r, groups, _LANE_WORDS).sum(-1)
    return lanes.view(torch.uint8).view(r, groups * 8).sum(-1, dtype=torch.int64)


def _int8_scratch(num_gts: int, num_dets: int, num_pixels: int, device: torch.device) -> tuple[Tensor, int]:
    """The GEMM right-hand side shared by images with at most these counts, and the pixel chunk.

    Row 0 is ones (its products are the detection areas); rows 1.. take a chunk of ground truths,
    zero-padded to a multiple of 127 * 8 bytes so that their areas are counted from that copy (no
    second pass over the masks). Rows past an image's ground truths keep 0/1 bytes of an earlier
    image (no refill); their products are discarded.
    """
    n = -(-(num_gts + 1) // 8) * 8  # a multiple of 8 columns: several times faster GEMMs
    chunk = _chunk_pixels(num_pixels, num_dets + n, _INT32_MAX_PIXELS)
    lane = 8 * _LANE_WORDS
    rhs = torch.zeros(n, -(-chunk // lane) * lane, dtype=torch.int8, device=device)
    rhs[0] = 1
    return rhs, chunk


def _int8_image(
    det8: Tensor, gt8: Tensor, scratch: Callable[[], tuple[Tensor, int]]
) -> tuple[Tensor, Tensor, Tensor]:
    """``(inter (D, G), det_area (D,), gt_area (G,))`` of one image's int8 ``(D, P)``, ``(G, P)`` masks.

    ``scratch()`` gives the shared :func:`_int8_scratch` buffer and pixel chunk of the dense path.
    """
    (d, p), g = det8.shape, gt8.shape[0]
    if d == 0 or p == 0 or g == 0:
        zeros = torch.zeros(d, g, dtype=torch.int64, device=det8.device)
        return zeros, count_true(det8.view(torch.bool)[None])[0], count_true(gt8.view(torch.bool)[None])[0]
    rhs, chunk = scratch()
    n = -(-(g + 1) // 8) * 8
    rows = rhs[1 : g + 1]
    total: Tensor | None = None
    counted: Tensor | None = None
    for start in range(0, p, chunk):  # one GEMM per pixel chunk: torch._int_mm is 2-D only
        stop = min(start + chunk, p)
        rows[:, : stop - start].copy_(gt8[:, start:stop])
        if stop - start < rows.shape[1]:
            rows[:, stop - start :] = 0  # the padding (and a short last chunk's tail) counts nothing
        part = torch._int_mm(det8[:, start:stop], rhs[:n, : stop - start].t())  # int32, exact
        area = _lane_counts(rows.view(torch.uint8))
        # out of place: an int64 + int32 add promotes without the slow in-place casting path
        total = part.long() if total is None else total + part
        counted = area if counted is None else counted + area
    assert total is not None and counted is not None
    return total[:, 1 : g + 1], total[:, 0], counted


def _int8_intersections(det: Tensor, gt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(inter (B, D, G), det_area (B, D), gt_area (B, G))`` by int8 GEMMs on the CPU; bool (B, ·, P) in."""
    b, d, p = det.shape
    g = gt.shape[1]
    if b == 0 or d == 0 or p == 0:
        zeros = torch.zeros(b, d, g + 1, dtype=torch.int64, device=det.device)
        return zeros[:, :, 1:], zeros[:, :, 0], count_true(gt)
    scratch = functools.cache(lambda: _int8_scratch(g, d, p, det.device))
    det8, gt8 = det.view(torch.int8), gt.view(torch.int8)
    parts = [_int8_image(det8[i], gt8[i], scratch) for i in range(b)]
    inter, det_area, gt_area = zip(*parts, strict=True)
    return torch.stack(inter), torch.stack(det_area), torch.stack(gt_area)


def _intersections_per_image(
    dets: list[Tensor], gts: list[Tensor], method: str
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """:func:`_mask_intersections` of each image's checked bool ``(D, H, W)`` and ``(G, H, W)`` masks.

    Image sizes may differ between images. The int8 GEMMs of all images share one scratch buffer.
    """
    if method == "native":  # images in parallel on torch's CPU threads (the kernel releases the GIL)
        return _native.parallel_map(lambda pair: _native_image(*pair), list(zip(dets, gts, strict=True)))
    if method != "int8" or not dets:
        out = []
        for d, g in zip(dets, gts, strict=True):
            inter, det_area, gt_area = _mask_intersections(d[None], g[None], method)
            out.append((inter[0], det_area[0], gt_area[0]))
        return out
    det8 = [d.reshape(d.shape[0], d.shape[1] * d.shape[2]).view(torch.int8) for d in dets]
    gt8 = [g.reshape(g.shape[0], g.shape[1] * g.shape[2]).view(torch.int8) for g in gts]
    sizes = [x.shape for x in det8]
    scratch = functools.cache(
        lambda: _int8_scratch(
            max(x.shape[0] for x in gt8), max(s[0] for s in sizes), max(s[1] for s in sizes), dets[0].device
        )
    )
    return [_int8_image(d, g, scratch) for d, g in zip(det8, gt8, strict=True)]


def _native_image(det: Tensor, gt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One image's counts by the native kernel (bool ``(D, H, W)`` and ``(G, H, W)`` masks, each read
    once, intersections over overlapping bounding boxes only); the torch kernels for layouts it
    does not take (non-contiguous masks)."""
    counts = _native.mask_counts(det, gt)
    if counts is not None:
        return counts
    inter, det_area, gt_area = _mask_intersections(det[None], gt[None], _cpu_fallback())
    return inter[0], det_area[0], gt_area[0]


def _matmul_intersections(det: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
    """``(inter (B, D, G), det_area (B, D))`` by batched float32 GEMMs of 0/1 values (exact chunks)."""
    b, d, p = det.shape
    g = gt.shape[1]
    out = torch.zeros(b, d, g + 1, dtype=torch.int64, device=det.device)
    chunk = _chunk_pixels(p, 4 * b * (d + g + 1), _FLOAT_MAX_PIXELS)
    with exact_integer_gemm(det.device):
        for start in range(0, p, chunk):  # a loop over fixed-size pixel chunks, not pixels
            stop = min(start + chunk, p)
            lhs = det[:, :, start:stop].to(torch.float32)
            rhs = torch.ones(b, g + 1, stop - start, dtype=torch.float32, device=det.device)
            rhs[:, :g] = gt[:, :, start:stop]
            # 0/1 inputs (exact in float32, TF32 and bf16) and float32 accumulation of at most 2**24
            # products: every partial sum is an exact integer.
            out += torch.bmm(lhs, rhs.transpose(1, 2)).long()
    return out[:, :, :g], out[:, :, g]


def _pack_bits(u: Tensor, groups: int) -> Tensor:
    """uint8 ``(B, groups, C)``; bit ``k`` of byte ``j`` is mask ``8 j + k`` of 0/1 uint8 ``(B, R, C)``."""
    out = torch.zeros(u.shape[0], groups, u.shape[2], dtype=torch.uint8, device=u.device)
    for k in range(8):  # the eight bit positions, each over every eighth mask
        part = u[:, k::8]
        if part.shape[1]:
            out[:, : part.shape[1]].add_(part, alpha=1 << k)  # disjoint bits: adding is or-ing
    return out


def _bit_table(device: torch.device) -> Tensor:
    """float64 ``(256, 8)``: entry ``[v, k]`` is bit ``k`` of ``v``."""
    v = torch.arange(_BIT_TABLE_SIZE, device=device)[:, None]
    return ((v >> torch.arange(8, device=device)) & 1).to(torch.float64)


def _bytes_intersections(det: Tensor, gt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(inter, det_area, gt_area)`` from joint histograms of packed detection and ground-truth bytes."""
    b, d, p = det.shape
    g = gt.shape[1]
    nd, ng = max(1, -(-d // 8)), max(1, -(-g // 8))  # at least one (possibly empty) group each side
    # detection groups per block, so that its int64 + float64 histograms stay within the scratch bound
    block = max(1, min(nd, _CHUNK_BYTES // (max(b, 1) * ng * _BIT_TABLE_SIZE**2 * 16)))
    chunk = _chunk_pixels(p, 4 * b * block * ng + b * (nd + ng), _INT32_MAX_PIXELS)
    dev = det.device
    key_dtype = torch.int32 if (b * block * ng) << 16 < 2**31 else torch.int64
    table = _bit_table(dev)
    inter = torch.zeros(b, nd, ng, 8, 8, dtype=torch.int64, device=dev)
    det_part = torch.zeros(b, nd, ng, 8, dtype=torch.int64, device=dev)
    gt_part = torch.zeros(b, nd, ng, 8, dtype=torch.int64, device=dev)
    det_u8, gt_u8 = det.view(torch.uint8), gt.view(torch.uint8)
    with exact_integer_gemm(dev):
        for start in range(0, p, chunk):  # fixed-size pixel chunks
            stop = min(start + chunk, p)
            dp = _pack_bits(det_u8[:, :, start:stop], nd)[:, :, None, :]  # (B, nd, 1, C)
            gp = _pack_bits(gt_u8[:, :, start:stop], ng).to(key_dtype)[:, None]  # (B, 1, ng, C)
            for i0 in range(0, nd, block):  # blocks of detection groups
                i1 = min(i0 + block, nd)
                n = b * (i1 - i0) * ng
                offsets = torch.arange(n, device=dev, dtype=key_dtype).view(b, i1 - i0, ng, 1) << 16
                keys = (dp[:, i0:i1].to(key_dtype) << 8) + gp  # (B, i, ng, C)
                keys += offsets
                hist = torch.bincount(keys.view(-1), minlength=n << 16)
                hist = hist.view(b, i1 - i0, ng, _BIT_TABLE_SIZE, _BIT_TABLE_SIZE).to(torch.float64)
                # counts below 2**53: the float64 decoding products and sums are exact integers
                left = table.t() @ hist  # (..., 8 detection bits, 256 GT bytes)
                inter[:, i0:i1] += (left @ table).long()
                det_part[:, i0:i1] += left.sum(-1).long()
                gt_part[:, i0:i1] += (hist.sum(-2) @ table).long()
    inter = inter.permute(0, 1, 3, 2, 4).reshape(b, nd * 8, ng * 8)
    det_area = det_part[:, :, 0].reshape(b, nd * 8)
    gt_area = gt_part[:, 0].reshape(b, ng * 8)
    return inter[:, :d, :g], det_area[:, :d], gt_area[:, :g]


def mask_intersections(
    det: Tensor, gt: Tensor, *, method: MaskMethod = "auto"
) -> tuple[Tensor, Tensor, Tensor]:
    """Pixel counts of every (detection, ground truth) intersection and of every mask, per image.

    Args:
        det (Tensor[B, D, H, W] bool): detection masks; ``D`` may be 0.
        gt (Tensor[B, G, H, W] bool): ground-truth masks of the same images; ``G`` may be 0.
        method: ``"auto"`` (``"int8"`` on the CPU, ``"matmul"`` elsewhere), ``"int8"`` (CPU only),
            ``"matmul"`` or ``"bytes"`` (synchronises on CUDA). All give the same exact counts; see
            the module docstring for what each does and for the memory bound.

    Returns:
        ``inter`` (Tensor[B, D, G] int64), ``det_area`` (Tensor[B, D] int64) and ``gt_area``
        (Tensor[B, G] int64), on the input's device.

    Raises:
        TypeError: if ``det`` or ``gt`` is not a bool tensor.
        ValueError: if a shape is not as above, the batch size or image size of ``gt`` differs from
            ``det``'s, the tensors are on different devices, or ``method`` is unknown or unavailable.

    Example:
        >>> det = torch.tensor([[[[1, 1, 0], [1, 1, 0]]]], dtype=torch.bool)  # (1, 1, 2, 3)
        >>> gt = torch.tensor([[[[0, 1, 1], [0, 1, 1]], [[0, 0, 0], [0, 0, 1]]]], dtype=torch.bool)
        >>> inter, det_area, gt_area = mask_intersections(det, gt)
        >>> inter, det_area, gt_area
        (tensor([[[2, 0]]]), tensor([[4]]), tensor([[4, 1]]))
    """
    det, gt = _check_masks(det, gt)
    return _mask_intersections(det, gt, _resolve_method(method, det.device))


def _mask_intersections(det: Tensor, gt: Tensor, method: str) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`mask_intersections` on checked inputs with a resolved ``method``."""
    b, d, h, w = det.shape
    if method == "native":
        parts = _native.parallel_map(lambda i: _native_image(det[i], gt[i]), range(b))  # over images
        if not parts:
            return _mask_intersections(det, gt, _cpu_fallback())
        inter, det_area, gt_area = zip(*parts, strict=True)
        return torch.stack(inter), torch.stack(det_area), torch.stack(gt_area)
    flat_det, flat_gt = det.reshape(b, d, h * w), gt.reshape(b, gt.shape[1], h * w)
    if method == "bytes":
        return _bytes_intersections(flat_det, flat_gt)
    if method == "int8":
        return _int8_intersections(flat_det, flat_gt)
    inter, det_area = _matmul_intersections(flat_det, flat_gt)
    return inter, det_area, count_true(flat_gt)


def mask_iou_from_intersections(
    inter: Tensor, det_area: Tensor, gt_area: Tensor, gt_crowd: Tensor | None = None
) -> Tensor:
    """IoU from pixel counts, in pycocotools' operations: ``(double) i / (double) u``, 0 where ``i = 0``.

    Args:
        inter (Tensor[B, D, G] int64): intersection counts.
        det_area (Tensor[B, D] int64): detection areas.
        gt_area (Tensor[B, G] int64): ground-truth areas.
        gt_crowd (Tensor[B, G] bool, optional): crowd flags; a crowd IoU is ``inter / det_area``.

    Returns:
        Tensor[B, D, G] float64.

    Example:
        >>> inter = torch.tensor([[[2, 0]]])
        >>> mask_iou_from_intersections(inter, torch.tensor([[4]]), torch.tensor([[4, 1]]))
        tensor([[[0.3333, 0.0000]]], dtype=torch.float64)
    """
    union = det_area[:, :, None] + gt_area[:, None, :] - inter
    if gt_crowd is not None:
        union = torch.where(gt_crowd[:, None, :], det_area[:, :, None], union)
    hit = inter > 0
    return torch.where(hit, inter.double() / torch.where(hit, union, 1).double(), 0.0)


def mask_iou(
    det: Tensor, gt: Tensor, gt_crowd: Tensor | None = None, *, method: MaskMethod = "auto"
) -> Tensor:
    """Pairwise mask IoU per image, bit-identical to ``pycocotools.mask.iou`` on the RLE-encoded masks.

    ``|D∩G| / |D∪G|``; for a crowd ground truth ``|D∩G| / |D|``; 0 wherever the intersection is
    empty (also for empty masks). Counts are exact int64 for any image size (see
    :func:`mask_intersections`), and the division is one float64 division as in pycocotools.

    Args:
        det (Tensor[B, D, H, W] bool): detection masks; ``D`` may be 0.
        gt (Tensor[B, G, H, W] bool): ground-truth masks; ``G`` may be 0.
        gt_crowd (Tensor[B, G] bool or integer, optional): nonzero marks a crowd ground truth.
        method: the counting kernel, as in :func:`mask_intersections`.

    Returns:
        Tensor[B, D, G] float64 on the input's device.

    Raises:
        TypeError: if ``det`` or ``gt`` is not a bool tensor, or ``gt_crowd`` is not bool or integer.
        ValueError: if a shape is not as above or does not match, the tensors are on different
            devices, or ``method`` is unknown or unavailable.

    Example:
        >>> det = torch.tensor([[[[1, 1, 0], [1, 1, 0]]]], dtype=torch.bool)
        >>> gt = torch.tensor([[[[0, 1, 1], [0, 1, 1]], [[1, 1, 1], [1, 1, 1]]]], dtype=torch.bool)
        >>> mask_iou(det, gt)
        tensor([[[0.3333, 0.6667]]], dtype=torch.float64)
        >>> mask_iou(det, gt, torch.tensor([[False, True]]))
        tensor([[[0.3333, 1.0000]]], dtype=torch.float64)
    """
    det, gt = _check_masks(det, gt)
    crowd = _check_crowd(gt_crowd, gt.shape[:2], det, gt)
    inter, det_area, gt_area = _mask_intersections(det, gt, _resolve_method(method, det.device))
    return mask_iou_from_intersections(inter, det_area, gt_area, crowd)
