"""Which counting methods can run here: CPU-only kernels, and the native ones only with a compiler."""

from __future__ import annotations

import pytest
import torch

from torchseg_metrics import _native

#: Methods whose kernels exist for CPU tensors only.
CPU_ONLY = ("int8", "native")


def require_method(method: str, device: torch.device | str = "cpu") -> None:
    """Skip the calling test when ``method`` cannot run on ``device`` in this environment."""
    if method in CPU_ONLY and torch.device(device).type != "cpu":
        pytest.skip(f"the {method!r} kernels are CPU-only")
    if method == "native" and not _native.available():
        pytest.skip("the native kernels are unavailable here (no C compiler, or switched off)")
