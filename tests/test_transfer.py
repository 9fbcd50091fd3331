"""Host data moved to the inputs' device without a synchronisation (``torchseg_metrics._transfer``)."""

from __future__ import annotations

import pytest
import torch

from torchseg_metrics._transfer import to_device


def test_values_arrive_unchanged(device: torch.device) -> None:
    host = torch.tensor([[3, 1], [4, 1], [5, 9]])
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")  # a blocking copy would raise here
    try:
        moved = to_device(host.T.contiguous(), device)
    finally:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    assert moved.device.type == device.type and torch.equal(moved.cpu(), host.T)


def test_a_host_tensor_dropped_at_once_keeps_its_values(device: torch.device) -> None:
    if device.type != "cuda":
        pytest.skip("asynchronous copies exist only on CUDA")
    moved = [to_device(torch.full((1000,), k), device) for k in range(50)]  # sources freed at once
    assert all(torch.equal(m.cpu(), torch.full((1000,), k)) for k, m in enumerate(moved))
