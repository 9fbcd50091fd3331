"""Exact integer counting kernels shared by every statistic: histograms and 0/1 GEMMs.

Counts must be exact integers on every device and never synchronise: ``torch.bincount`` is the
fastest CPU histogram but reads the maximum back to the host on CUDA, so CUDA uses an integer
scatter-add, and deterministic mode a sort with ``searchsorted`` bin edges. GEMMs of 0/1 values
with float32 accumulation are exact while partial sums stay below 2**24.

On the CPU, ``bincount`` counts consecutive pixels into interleaved copies of the histogram (see
``_LANES``), and per-update temporaries can live in per-thread buffers reused from call to call
(:func:`reusable_buffer`), which spares the page faults of fresh multi-MB allocations.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

CountMethod = Literal["auto", "native", "bincount", "scatter", "matmul"]
COUNT_METHODS: tuple[str, ...] = ("auto", "native", "bincount", "scatter", "matmul")


_buffers = threading.local()
_MAX_REUSED_BYTES = 16 << 20


def reusable_buffer(slot: str, numel: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """An uninitialised 1-D tensor for a kernel's temporaries, reused from call to call on the CPU.

    A fresh CPU allocation of a few MB comes straight from the operating system, and touching its
    pages costs page faults on every update (on a virtual machine, about as much as the kernel's
    own work). Each thread keeps one buffer per ``slot`` and dtype, grown to the largest request
    up to ``_MAX_REUSED_BYTES`` (16 MiB; larger requests allocate normally), held until
    :func:`release_buffers`: at most a few tens of MB per thread in all. A caller must
    use distinct slots for buffers alive at the same time and never return a view of one. Other
    devices allocate normally (their caching allocators already reuse memory).
    """
    if device.type != "cpu" or numel * dtype.itemsize > _MAX_REUSED_BYTES:
        return torch.empty(numel, dtype=dtype, device=device)
    cache = _buffers.__dict__.setdefault("cache", {})
    buf = cache.get((slot, dtype))
    if buf is None or buf.numel() < numel:
        buf = cache[(slot, dtype)] = torch.empty(numel, dtype=dtype)
    return buf[:numel]


def release_buffers() -> None:
    """Free this thread's reusable CPU buffers (see :func:`reusable_buffer`)."""
    _buffers.__dict__.pop("cache", None)


#: Histogram lanes of the CPU ``bincount`` path: consecutive pixels count into ``_LANES`` separate
#: copies of the histogram, summed at the end. Label maps come in long runs of one code, and with a
#: single histogram every increment waits for the previous one to the same counter; interleaved
#: lanes break that chain (about 2x faster on blob-shaped maps). Fewer lanes when the copies would
#: outgrow ``_LANE_BINS`` counters (the L2 cache) or the codes' dtype.
_LANES = 8
_LANE_BINS = 1 << 16
_LANE_PERIOD = 1024  # length of the lane-offset pattern added per row of codes (a vectorised add)


@lru_cache(maxsize=32)
def _lane_offsets(lanes: int, nbins: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(i mod lanes) * nbins`` for ``i < _LANE_PERIOD``, cached per device and made there (no copy)."""
    return ((torch.arange(_LANE_PERIOD, device=device) % lanes) * nbins).to(dtype)


def _lane_count(codes: Tensor, nbins: int) -> int:
    lanes = _LANES
    limit = torch.iinfo(codes.dtype).max + 1
    while lanes > 1 and (lanes * nbins > max(_LANE_BINS, nbins) or lanes * nbins > limit):
        lanes //= 2
    return lanes if codes.numel() >= 2 * _LANE_PERIOD else 1


def count_codes(codes: Tensor, nbins: int, method: CountMethod = "auto") -> Tensor:
    """int64 histogram of ``codes`` (integers in ``[0, nbins)``) of length ``nbins``, without a sync.

    ``"bincount"`` is the CPU default; it may overwrite ``codes`` (callers pass a temporary), adding
    lane offsets to count consecutive pixels into separate histogram copies (see ``_LANES``). On
    CUDA ``torch.bincount`` reads the maximum back to the host, so ``"scatter"`` (integer
    scatter-add into interleaved copies, see ``_SCATTER_LANES``: exact and order-independent, and
    ``codes`` left as they are) is the default there, and under
    ``torch.use_deterministic_algorithms(True)`` a sort with ``searchsorted`` bin edges
    (``"matmul"`` names the confusion-matrix kernel, which falls back to it for plain histograms).
    """
    if method == "native":  # the native kernels count confusion codes themselves; histograms: bincount
        method = "bincount"
    if method == "auto":
        if codes.device.type == "cpu":
            method = "bincount"
        else:
            method = "matmul" if torch.are_deterministic_algorithms_enabled() else "scatter"
    if method == "bincount":
        lanes = _lane_count(codes, nbins)
        if lanes == 1 or not codes.is_contiguous():
            return torch.bincount(codes, minlength=nbins)
        whole = codes.numel() // _LANE_PERIOD * _LANE_PERIOD  # the tail keeps lane 0
        codes.view(-1)[:whole].view(-1, _LANE_PERIOD).add_(
            _lane_offsets(lanes, nbins, codes.dtype, codes.device)
        )
        return torch.bincount(codes.view(-1), minlength=lanes * nbins).view(lanes, nbins).sum(0)
    if method == "scatter":
        return _scatter_count(codes.reshape(-1), nbins)
    if method == "matmul":
        edges = torch.arange(nbins + 1, device=codes.device, dtype=codes.dtype)
        return torch.searchsorted(codes.sort().values, edges).diff()
    raise ValueError(f"`method` must be one of {list(COUNT_METHODS)}, got {method!r}.")


#: Histogram copies of the ``"scatter"`` path (CUDA): consecutive pixels, mostly of one code in a
#: label map, go to ``_SCATTER_LANES`` different counters, so the 32 threads of a warp do not
#: serialise their atomic adds on one address; fewer when the copies would exceed
#: ``_SCATTER_LANE_BINS`` counters.
_SCATTER_LANES = 32
_SCATTER_LANE_BINS = 1 << 22


def _scatter_count(flat: Tensor, nbins: int) -> Tensor:
    """Integer scatter-add histogram of 1-D ``flat`` codes into interleaved copies (exact, no sync)."""
    n, device = flat.numel(), flat.device
    lanes = _SCATTER_LANES
    while lanes > 1 and lanes * nbins > max(_SCATTER_LANE_BINS, nbins):
        lanes //= 2
    if n < 2 * _LANE_PERIOD:
        lanes = 1
    index = torch.empty(n, dtype=torch.int64, device=device)  # the int64 index scatter_add_ needs
    whole = n // _LANE_PERIOD * _LANE_PERIOD  # the tail keeps lane 0
    if lanes > 1:
        offsets = _lane_offsets(lanes, nbins, torch.int64, device)
        torch.add(flat[:whole].view(-1, _LANE_PERIOD), offsets, out=index[:whole].view(-1, _LANE_PERIOD))
        index[whole:] = flat[whole:]
    else:
        index.copy_(flat)
    out = torch.zeros(lanes * nbins, dtype=torch.int64, device=device)
    ones = torch.ones((), dtype=torch.int64, device=device).expand(n)
    return out.scatter_add_(0, index, ones).view(lanes, nbins).sum(0)


@contextlib.contextmanager
def exact_integer_gemm(device: torch.device) -> Iterator[None]:
    """Suspend the deterministic-algorithms check around GEMMs whose results are exact integers.

    Every partial sum of these GEMMs is an integer that the accumulator represents exactly, so any
    summation order gives the same bits; cuBLAS is refused in deterministic mode only because of
    possible float reordering. The previous setting (and ``warn_only``) is restored on exit.
    """
    if device.type == "cpu" or not torch.are_deterministic_algorithms_enabled():
        yield
        return
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(True, warn_only=warn_only)


#: Slabs of words added by :func:`count_true`: fewer stream faster from memory, more leave fewer lanes.
_SLABS = 16


def count_true(x: Tensor) -> Tensor:
    """int64 ``(B, R)`` number of True values along the last axis of a bool ``(B, R, P)`` tensor.

    Eight bytes at a time: the 0/1 bytes are viewed as int64 words, and ``_SLABS`` equal slabs of
    them are added element-wise (a vectorised reduction over a middle axis that streams through
    memory; each byte lane of the sums stays <= ``_SLABS``, no carry); the lanes of those words are
    then added within each word (:func:`_word_byte_sums`). Pads (a copy) only when ``P`` is not a
    multiple of 8 or the layout does not allow the int64 view.
    """
    b, r, p = x.shape
    if p == 0 or x.numel() == 0:
        return torch.zeros(b, r, dtype=torch.int64, device=x.device)
    u = x.view(torch.uint8)
    if p % 8 or u.stride(-1) != 1 or u.storage_offset() % 8 or any(s % 8 for s in u.stride()[:-1]):
        u = F.pad(u, (0, -p % 8))
    words = u.view(torch.int64)
    q = words.shape[-1] // _SLABS
    total = _word_byte_sums(words[..., q * _SLABS :])  # the last words: 0/1 bytes
    if q:
        total += _word_byte_sums(words[..., : q * _SLABS].reshape(b, r, _SLABS, q).sum(2))
    return total


#: Masks selecting the low half of each 16-bit and of each 32-bit lane of an int64.
_LOW_BYTES = 0x00FF00FF00FF00FF
_LOW_SHORTS = 0x0000FFFF0000FFFF


def _word_byte_sums(words: Tensor) -> Tensor:
    """int64 sums over the last axis of the byte values of int64 ``words``, each byte at most 127.

    Adjacent bytes are added into 16-bit lanes, those into 32-bit lanes, then the two halves
    (masks and shifts only: the words are non-negative and nothing overflows).
    """
    pairs = (words & _LOW_BYTES) + ((words >> 8) & _LOW_BYTES)
    quads = (pairs & _LOW_SHORTS) + ((pairs >> 16) & _LOW_SHORTS)
    return ((quads & 0xFFFFFFFF) + (quads >> 32)).sum(-1)
