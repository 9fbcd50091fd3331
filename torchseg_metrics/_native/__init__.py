"""Native CPU kernels: single passes over the pixels, compiled from C at first use.

Some per-pixel steps take several torch operations on the CPU (each a pass over memory) where one
loop suffices: the semantic confusion counts (a code per pixel, then a histogram), the argmax of
float scores over their class planes, the panoptic run records (comparisons with the next pixel,
then gathers) and the mask pixel counts of the instance matching (a GEMM over every pixel, where
bounding boxes confine the work). ``kernels.c`` holds those loops. At
first use it is compiled with the system C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``;
``-O3 -shared -fPIC``, about two seconds) into a private per-user cache folder and loaded with
``ctypes`` (:mod:`.cache`: ownership and mode checks, the compiler in the key, one build across
processes). A large call is split into
independent parts (groups of images, pixel ranges) run on ``torch.get_num_threads()`` threads,
as torch's own CPU operations are (ctypes releases the GIL while a kernel runs).

Every kernel has a torch-op twin, which runs when the library is unavailable (no compiler, a
failed build), switched off (``TORCHSEG_METRICS_NATIVE=0``), or the inputs are not contiguous CPU
tensors of the supported dtypes; the tests compare the two. Results are exact integer counts
either way, and nothing here touches a GPU.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch
from torch import Tensor

from . import cache

__all__ = [
    "available",
    "boundary_counts",
    "channel_argmax",
    "confusion_counts",
    "mask_boundaries",
    "mask_counts",
    "parallel_map",
    "run_records",
    "squared_edt_axis",
    "squared_edt_lines",
    "status",
]

_DTYPE_NAMES = {
    torch.uint8: "u8",
    torch.int8: "i8",
    torch.int16: "i16",
    torch.int32: "i32",
    torch.int64: "i64",
}
_FLOAT_NAMES = {torch.float32: "f32", torch.float64: "f64"}
_I64, _P = ctypes.c_int64, ctypes.c_void_p

_lock = threading.Lock()
_state: dict[str, object] = {}  # "lib": the loaded library or None after a failed build; "error"


def _enabled() -> bool:
    return os.environ.get("TORCHSEG_METRICS_NATIVE", "1").strip().lower() not in ("0", "false", "off", "no")


def _declare(lib: ctypes.CDLL) -> None:
    for tn in _DTYPE_NAMES.values():
        for pn in _DTYPE_NAMES.values():
            fn = getattr(lib, f"confusion_{tn}_{pn}")
            fn.argtypes = [_P, _P, _I64, _I64, _I64, _I64, ctypes.c_int, _P]
            fn.restype = ctypes.c_int
        fn = getattr(lib, f"runs_{tn}")
        fn.argtypes = [_P, _P, _P, _I64, _I64, _I64, _I64, _P, _P, _P, _P]
        fn.restype = _I64
    lib.mask_counts.argtypes = [_P, _P, _I64, _I64, _I64, _I64, _I64, _P, _P, _P]
    lib.mask_counts.restype = ctypes.c_int
    lib.mask_boundaries.argtypes = [_P, _I64, _I64, _I64, _I64, _P]
    lib.mask_boundaries.restype = ctypes.c_int
    lib.edt_lines.argtypes = [_P, _I64, _I64, ctypes.c_double]
    lib.edt_lines.restype = ctypes.c_int
    lib.mask_boxes.argtypes = [_P, _I64, _I64, _I64, _P, _P]
    lib.mask_boxes.restype = None
    lib.box_counts.argtypes = [_P, _P, _I64, _I64, _P, _P, _I64, _I64, _I64, _P]
    lib.box_counts.restype = None
    lib.band_crops.argtypes = [_P, _I64, _I64, _I64, _I64, _P, _P, _P]
    lib.band_crops.restype = ctypes.c_int
    lib.crop_counts.argtypes = [_P, _P, _P, _I64, _I64, _P, _P, _P, _I64, _P, _P]
    lib.crop_counts.restype = None
    lib.edt_axis.argtypes = [_P, _I64, _I64, _I64, _I64, ctypes.c_double, ctypes.c_int, _P]
    lib.edt_axis.restype = ctypes.c_int
    for name in _FLOAT_NAMES.values():
        fn = getattr(lib, f"argmax_{name}")
        fn.argtypes = [_P, _I64, _I64, _I64, _P]
        fn.restype = _I64


def _library() -> ctypes.CDLL | None:
    """The loaded library, or None when switched off or unavailable (the build is tried once)."""
    if not _enabled():
        return None
    if "lib" not in _state:
        with _lock:
            if "lib" not in _state:
                try:
                    lib = cache.load_library()
                    _declare(lib)
                    _state["lib"] = lib
                except Exception as exc:  # no compiler, a failed build or load: the torch ops run
                    _state["lib"], _state["error"] = None, f"{type(exc).__name__}: {exc}"
    return _state["lib"]  # type: ignore[return-value]


def available() -> bool:
    """Whether the native kernels are in use (built, loaded, and not switched off)."""
    return _library() is not None


def status() -> str:
    """One line saying whether the native kernels are in use, and where from or why not.

    Example:
        >>> status().startswith(("in use", "switched off", "unavailable"))
        True
    """
    if not _enabled():
        return "switched off (TORCHSEG_METRICS_NATIVE=0)"
    lib = _library()
    if lib is None:
        return f"unavailable ({_state.get('error')}): the torch-op twins run"
    return f"in use: {lib._name}"


_T = TypeVar("_T")
_R = TypeVar("_R")

#: Work (pixels or mask bytes) below which a call stays on the calling thread.
MIN_PARALLEL_WORK = 1 << 20
#: Thread pools by (process id, threads): a forked child builds its own.
_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}


def parallel_map(fn: Callable[[_T], _R], tasks: Sequence[_T]) -> list[_R]:
    """``[fn(t) for t in tasks]``, in order, on up to ``torch.get_num_threads()`` threads.

    The kernels release the GIL while they run (ctypes does), so independent parts (images, pixel
    ranges) of one call run in parallel, as torch's own CPU operations would; integer counts make the
    results identical to a single thread's.
    """
    threads = min(torch.get_num_threads(), len(tasks))
    if threads <= 1:
        return [fn(t) for t in tasks]
    key = (os.getpid(), threads)  # a forked child (a DataLoader worker) starts a pool of its own
    with _lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = ThreadPoolExecutor(threads, thread_name_prefix="torchseg-native")
    return list(pool.map(fn, tasks))


def _ranges(items: int, work_per_item: int) -> list[tuple[int, int]]:
    """Contiguous ranges of ``items``, one per thread when the work is large enough, else one."""
    parts = min(torch.get_num_threads(), items)
    if parts <= 1 or items * work_per_item < MIN_PARALLEL_WORK:
        return [(0, items)]
    bounds = [items * k // parts for k in range(parts + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def _require(ok: bool, what: str) -> None:
    """A kernel precondition: the C loops read exactly these extents, so a call that breaks one raises
    instead of reading past a tensor's end."""
    if not ok:
        raise ValueError(f"torchseg_metrics native kernel: {what}")


def _usable(*tensors: Tensor) -> bool:
    return all(x.device.type == "cpu" and x.is_contiguous() and x.dtype in _DTYPE_NAMES for x in tensors)


def confusion_counts(
    target: Tensor, preds: Tensor, images: int, num_classes: int, ignore: int | None
) -> Tensor | None:
    """int64 ``(images, C + 2, C + 1)`` counts of (row, column) codes per image, or None (use torch).

    Rows: ``0..C-1`` the target class, ``C`` a target outside ``[0, C)`` that is not ``ignore``,
    ``C + 1`` a pixel whose target equals ``ignore`` (pass None for no ignored value, or for one
    inside ``[0, C)``, which keeps its row). Columns: ``0..C-1`` the predicted class, ``C`` outside.
    ``target`` and ``preds``: contiguous CPU integer tensors of equal size, ``images`` equal parts.
    """
    _require(
        target.numel() == preds.numel(),
        f"`target` and `preds` must hold as many pixels, got {target.numel()} and {preds.numel()}",
    )
    _require(
        (images >= 1 and target.numel() % images == 0) or target.numel() == 0,
        f"`images` must divide the {target.numel()} pixels into equal parts, got {images}",
    )
    _require(num_classes >= 1, f"`num_classes` must be at least 1, got {num_classes}")
    lib = _library()
    if lib is None or not _usable(target, preds):
        return None
    c = num_classes
    has_ignore = ignore is not None and -(2**63) <= ignore < 2**63
    value = ignore if has_ignore else 0
    fn = getattr(lib, f"confusion_{_DTYPE_NAMES[target.dtype]}_{_DTYPE_NAMES[preds.dtype]}")
    t, p = target.reshape(-1), preds.reshape(-1)
    per_image = t.numel() // max(images, 1)

    def count(out: Tensor, start: int, n_images: int, length: int) -> None:
        """Pixels ``start : start + n_images * length`` as ``n_images`` images into ``out``."""
        ptr_t, ptr_p = t.data_ptr() + start * t.element_size(), p.data_ptr() + start * p.element_size()
        if fn(ptr_t, ptr_p, n_images, length, c, value, has_ignore, out.data_ptr()) != 0:
            raise MemoryError("torchseg_metrics: the native confusion kernel could not allocate")

    if images > 1:  # per-image matrices: groups of whole images per thread
        out = torch.zeros(images, c + 2, c + 1, dtype=torch.int64)
        parallel_map(
            lambda r: count(out[r[0] : r[1]], r[0] * per_image, r[1] - r[0], per_image),
            _ranges(images, per_image),
        )
        return out
    # one matrix: any pixel ranges, one per thread, summed
    ranges = _ranges(t.numel(), 1)
    parts = torch.zeros(len(ranges), 1, c + 2, c + 1, dtype=torch.int64)
    parallel_map(lambda k: count(parts[k], ranges[k][0], 1, ranges[k][1] - ranges[k][0]), range(len(ranges)))
    return parts.sum(0) if len(ranges) > 1 else parts[0]


def run_records(
    preds: Tensor, target: Tensor, crowd: Tensor | None, per_image: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None] | None:
    """Records of runs of consecutive pixels equal in every channel, or None (use torch).

    ``preds``/``target``: contiguous ``(P, 2)`` (category, instance) tensors of one dtype;
    ``crowd``: a contiguous bool ``(P,)`` or None. The first pixel of each image (every
    ``per_image`` pixels) starts a run. Returns int64 ``(idx, t_cat, t_inst, p_cat, p_inst)`` and
    the bool crowd flags (None without ``crowd``), one entry per run.
    """
    _require(
        preds.ndim == 2 and preds.shape[1] == 2 and preds.shape == target.shape,
        f"`preds` and `target` must both be (P, 2), got {tuple(preds.shape)} and {tuple(target.shape)}",
    )
    _require(
        crowd is None or tuple(crowd.shape) == (preds.shape[0],),
        f"`crowd` must be ({preds.shape[0]},), got {tuple(crowd.shape) if crowd is not None else None}",
    )
    _require(
        (per_image >= 1 and preds.shape[0] % per_image == 0) or preds.shape[0] == 0,
        f"`per_image` must divide the {preds.shape[0]} pixels into whole images, got {per_image}",
    )
    lib = _library()
    if lib is None or not _usable(preds, target) or preds.dtype != target.dtype:
        return None
    if crowd is not None and not (
        crowd.dtype == torch.bool and crowd.is_contiguous() and crowd.device.type == "cpu"
    ):
        return None
    total = preds.shape[0]
    fn = getattr(lib, f"runs_{_DTYPE_NAMES[preds.dtype]}")
    crowd_ptr = crowd.data_ptr() if crowd is not None else None

    def scan(span: tuple[int, int]) -> list[tuple[Tensor, Tensor, Tensor]]:
        """The records of pixels ``span`` (whole images), in blocks of records."""
        start, stop = span
        found = []
        cap = min(stop - start, (stop - start) // 16 + 4096)
        nxt = ctypes.c_int64(0)
        while start < stop:  # a new block of records when the previous one filled up (rarely)
            idx = torch.empty(cap, dtype=torch.int64)
            cols = torch.empty(4, cap, dtype=torch.int64)
            flags = torch.empty(cap, dtype=torch.bool)
            n = fn(
                preds.data_ptr(),
                target.data_ptr(),
                crowd_ptr,
                start,
                stop,
                per_image,
                cap,
                idx.data_ptr(),
                cols.data_ptr(),
                flags.data_ptr(),
                ctypes.byref(nxt),
            )
            found.append((idx[:n], cols[:, :n], flags[:n]))
            start, cap = nxt.value, min(stop - nxt.value, 2 * cap)
        return found

    images = total // per_image if per_image else 0
    spans = [(a * per_image, b * per_image) for a, b in _ranges(images, per_image)] if images else [(0, 0)]
    parts = [part for found in parallel_map(scan, spans) for part in found]
    if not parts:
        parts = [
            (
                torch.empty(0, dtype=torch.int64),
                torch.empty(4, 0, dtype=torch.int64),
                torch.empty(0, dtype=torch.bool),
            )
        ]
    idx = torch.cat([q[0] for q in parts]) if len(parts) > 1 else parts[0][0]
    cols = torch.cat([q[1] for q in parts], 1) if len(parts) > 1 else parts[0][1]
    flags = torch.cat([q[2] for q in parts]) if len(parts) > 1 else parts[0][2]
    return idx, cols[0], cols[1], cols[2], cols[3], flags if crowd is not None else None


#: Bytes of box-confined counting allowed per byte of detection masks before ``mask_counts`` leaves
#: an image to the GEMM (about the GEMM's cost: large, overlapping objects make boxes useless).
MASK_WORK_PER_BYTE = 4


def mask_counts(det: Tensor, gt: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
    """``(inter (D, G), det_area (D,), gt_area (G,))`` int64 pixel counts of one image's bool
    ``(D, H, W)`` and ``(G, H, W)`` masks, or None (use torch). Each mask is read once for its
    count and bounding box; intersections are counted over overlapping boxes only, and None is
    also returned when that would cost more than ``MASK_WORK_PER_BYTE`` times the detection bytes."""
    lib = _library()
    ok = det.dtype == gt.dtype == torch.bool and det.ndim == gt.ndim == 3 and det.shape[1:] == gt.shape[1:]
    if lib is None or not ok or not all(x.device.type == "cpu" and x.is_contiguous() for x in (det, gt)):
        return None
    d, h, w = det.shape
    g = gt.shape[0]
    inter = torch.empty(d, g, dtype=torch.int64)
    det_area = torch.empty(d, dtype=torch.int64)
    gt_area = torch.empty(g, dtype=torch.int64)
    budget = MASK_WORK_PER_BYTE * det.numel()
    rc = lib.mask_counts(
        det.data_ptr(),
        gt.data_ptr(),
        d,
        g,
        h,
        w,
        budget,
        inter.data_ptr(),
        det_area.data_ptr(),
        gt_area.data_ptr(),
    )
    if rc == -2:  # large overlapping boxes: the GEMM over every pixel is cheaper
        return None
    if rc != 0:
        raise MemoryError("torchseg_metrics: the native mask kernel could not allocate its boxes")
    return inter, det_area, gt_area


def mask_boundaries(masks: Tensor, dilation: int) -> Tensor | None:
    """bool ``(N, H, W)`` boundary bands of contiguous CPU bool masks (see
    :func:`torchseg_metrics.functional.boundary.mask_boundaries`), or None (use torch). Each mask's
    bounding box only is visited; masks are split over threads."""
    lib = _library()
    if lib is None or masks.dtype != torch.bool or masks.ndim != 3 or masks.device.type != "cpu":
        return None
    _require(dilation >= 1, f"dilation must be >= 1, got {dilation}")
    masks = masks.contiguous()
    n, h, w = masks.shape
    out = torch.zeros_like(masks)

    if n == 0 or h * w == 0:
        return out

    def band(span: tuple[int, int]) -> int:
        a, b = span
        return lib.mask_boundaries(masks[a].data_ptr(), b - a, h, w, dilation, out[a].data_ptr())

    if any(code != 0 for code in parallel_map(band, _ranges(n, h * w))):
        raise MemoryError("torchseg_metrics: the native boundary kernel could not allocate its rows")
    return out


def squared_edt_lines(f: Tensor, spacing: float) -> bool:
    """In place: each contiguous last-axis line of float64 CPU ``f`` becomes its 1-D squared distance
    transform at ``spacing`` (the exact lower envelope, see ``edt_lines`` in ``kernels.c``); False
    (nothing done) without the kernels. Lines are split over threads."""
    lib = _library()
    if lib is None or f.dtype != torch.float64 or f.device.type != "cpu" or not f.is_contiguous():
        return False
    n = f.shape[-1]
    rows = f.numel() // n if n else 0
    if rows == 0:
        return True
    flat = f.view(rows, n)

    def run(span: tuple[int, int]) -> int:
        a, b = span
        return lib.edt_lines(flat[a].data_ptr(), b - a, n, float(spacing))

    if any(code != 0 for code in parallel_map(run, _ranges(rows, n))):
        raise MemoryError("torchseg_metrics: the native distance transform could not allocate its lines")
    return True


def _band_crops(lib: ctypes.CDLL, masks: Tensor, dilation: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every mask's boundary band cut to its bounding box: (uint8 blocks back to back, int64
    boxes (N, 4) y0 y1 x0 x1, int64 offsets (N,), int64 mask areas (N,)), one scan of each mask for
    its box and area. Host data throughout."""
    n, h, w = masks.shape
    boxes = torch.zeros(n, 4, dtype=torch.int64)
    areas = torch.zeros(n, dtype=torch.int64)
    if n == 0 or h * w == 0:
        return torch.empty(0, dtype=torch.uint8), boxes, torch.zeros(n, dtype=torch.int64), areas
    spans = _ranges(n, h * w)

    def scan(r: tuple[int, int]) -> None:
        lib.mask_boxes(
            masks[r[0]].data_ptr(), r[1] - r[0], h, w, boxes[r[0]].data_ptr(), areas[r[0]].data_ptr()
        )

    parallel_map(scan, spans)
    sizes = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
    offsets = torch.zeros(n, dtype=torch.int64)
    offsets[1:] = sizes.cumsum(0)[:-1]
    crops = torch.empty(int(sizes.sum()), dtype=torch.uint8)  # host data: no device sync

    def band(r: tuple[int, int]) -> int:
        a, b = r
        return lib.band_crops(
            masks[a].data_ptr(),
            b - a,
            h,
            w,
            dilation,
            boxes[a].data_ptr(),
            offsets[a].data_ptr(),
            crops.data_ptr(),
        )

    if any(code != 0 for code in parallel_map(band, spans)):
        raise MemoryError("torchseg_metrics: the native band kernel could not allocate its rows")
    return crops, boxes, offsets, areas


Counts = tuple[Tensor, Tensor, Tensor]


def boundary_counts(det: Tensor, gt: Tensor, dilation: int) -> tuple[Counts, Counts] | None:
    """The ``(inter (D, G), det_area (D,), gt_area (G,))`` int64 pixel counts of one image's bool
    ``(D, H, W)`` and ``(G, H, W)`` masks and of their boundary bands (see :func:`mask_boundaries`),
    or None (use torch). Each mask is scanned once for its box and area; each band is kept inside
    its mask's box only, never as a full image; intersections are counted over overlapping boxes."""
    lib = _library()
    ok = det.dtype == gt.dtype == torch.bool and det.ndim == gt.ndim == 3 and det.shape[1:] == gt.shape[1:]
    if lib is None or not ok or not all(x.device.type == "cpu" for x in (det, gt)):
        return None
    _require(dilation >= 1, f"dilation must be >= 1, got {dilation}")
    det, gt = det.contiguous(), gt.contiguous()
    (dc, db, do, da), (gc, gb, go, ga) = _band_crops(lib, det, dilation), _band_crops(lib, gt, dilation)
    (d, h, w), g = det.shape, gt.shape[0]
    inter, band_inter = torch.empty(d, g, dtype=torch.int64), torch.empty(d, g, dtype=torch.int64)
    det_band, gt_band = torch.empty(d, dtype=torch.int64), torch.empty(g, dtype=torch.int64)
    crops = (dc.data_ptr(), db.data_ptr(), do.data_ptr())
    gts = (gc.data_ptr(), gb.data_ptr(), go.data_ptr())

    def pairs(r: tuple[int, int]) -> None:
        lib.box_counts(
            det.data_ptr(), db.data_ptr(), r[0], r[1], gt.data_ptr(), gb.data_ptr(), g, h, w, inter.data_ptr()
        )
        lib.crop_counts(*crops, r[0], r[1], *gts, g, band_inter.data_ptr(), det_band.data_ptr())

    parallel_map(pairs, _ranges(d, g * 64))
    lib.crop_counts(*gts, 0, g, *gts, 0, band_inter.data_ptr(), gt_band.data_ptr())  # areas only: no pairs
    return (inter, da, ga), (band_inter, det_band, gt_band)


def squared_edt_axis(
    f: Tensor, axis: int, spacing: float, binary: bool = False, sites: Tensor | None = None
) -> bool:
    """In place: every line of contiguous float64 CPU ``f`` along ``axis`` becomes its 1-D squared
    distance transform at ``spacing`` (``edt_axis`` in ``kernels.c``: no transposed copy; ``binary``:
    every entry is 0 or +inf, the first axis; ``sites``: a contiguous bool tensor of ``f``'s shape
    to read those entries from, 0 at a site, ``f`` then only written); False (nothing done) without
    the kernels. Lines are split over threads."""
    lib = _library()
    if lib is None or f.dtype != torch.float64 or f.device.type != "cpu" or not f.is_contiguous():
        return False
    if sites is not None and (
        sites.dtype != torch.bool or sites.shape != f.shape or not sites.is_contiguous()
    ):
        return False
    n = f.shape[axis]
    inner = math.prod(f.shape[axis + 1 :])
    lines = f.numel() // n if n else 0
    if lines == 0:
        return True
    ptr, at = f.data_ptr(), (None if sites is None else sites.data_ptr())

    def run(span: tuple[int, int]) -> int:
        return lib.edt_axis(
            ptr, n, inner, span[0], span[1], float(spacing), int(binary or at is not None), at
        )

    if any(code != 0 for code in parallel_map(run, _ranges(lines, n))):
        raise MemoryError("torchseg_metrics: the native distance transform could not allocate its lines")
    return True


def channel_argmax(scores: Tensor) -> tuple[Tensor, Tensor] | None:
    """uint8 labels ``(N, *spatial)`` of the first maximal class of ``(N, C, *spatial)`` scores, and
    the int64 number of pixels whose scores hold a NaN (their label is unspecified); or None (use
    torch). One pass over the scores: contiguous CPU float32/float64, ``1 < C <= 256``."""
    lib = _library()
    if lib is None or scores.dtype not in _FLOAT_NAMES or scores.ndim < 2 or not 1 < scores.shape[1] <= 256:
        return None
    if scores.device.type != "cpu" or not scores.is_contiguous():
        return None
    n, c = scores.shape[:2]
    labels = torch.empty((n, *scores.shape[2:]), dtype=torch.uint8)
    pixels = labels[0].numel() if n else 0
    fn = getattr(lib, f"argmax_{_FLOAT_NAMES[scores.dtype]}")

    def images(r: tuple[int, int]) -> int:  # groups of whole images per thread
        return fn(scores[r[0] : r[1]].data_ptr(), r[1] - r[0], c, pixels, labels[r[0] : r[1]].data_ptr())

    nans = sum(parallel_map(images, _ranges(n, c * pixels)))
    return labels, torch.tensor(nans, dtype=torch.int64)
