"""Exact integer counting kernels shared by every statistic: histograms and 0/1 GEMMs.

Counts must be exact integers on every device and never synchronise: ``torch.bincount`` is the
fastest CPU histogram but reads the maximum back to the host on CUDA, so CUDA uses an integer
scatter-add, and deterministic mode a sort with ``searchsorted`` bin edges. GEMMs of 0/1 values
with float32 accumulation are exact while partial sums stay below 2**24.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor

CountMethod = Literal["auto", "bincount", "scatter", "matmul"]
COUNT_METHODS: tuple[str, ...] = ("auto", "bincount", "scatter", "matmul")


def count_codes(codes: Tensor, nbins: int, method: CountMethod = "auto") -> Tensor:
    """int64 histogram of ``codes`` (integers in ``[0, nbins)``) of length ``nbins``, without a sync.

    ``"bincount"`` is the CPU default. On CUDA ``torch.bincount`` reads the maximum back to the host,
    so ``"scatter"`` (integer scatter-add: exact and order-independent) is the default there, and
    under ``torch.use_deterministic_algorithms(True)`` a sort with ``searchsorted`` bin edges
    (``"matmul"`` names the confusion-matrix kernel, which falls back to it for plain histograms).
    """
    if method == "auto":
        if codes.device.type == "cpu":
            method = "bincount"
        else:
            method = "matmul" if torch.are_deterministic_algorithms_enabled() else "scatter"
    if method == "bincount":
        return torch.bincount(codes, minlength=nbins)
    if method == "scatter":
        out = torch.zeros(nbins, dtype=torch.int64, device=codes.device)
        ones = torch.ones((), dtype=torch.int64, device=codes.device).expand(codes.numel())
        return out.scatter_add_(0, codes.long(), ones)
    if method == "matmul":
        edges = torch.arange(nbins + 1, device=codes.device, dtype=codes.dtype)
        return torch.searchsorted(codes.sort().values, edges).diff()
    raise ValueError(f"`method` must be one of {list(COUNT_METHODS)}, got {method!r}.")


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
