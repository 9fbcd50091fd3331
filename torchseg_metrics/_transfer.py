"""Small host data (tables, per-image counts known on the host) moved to the inputs' device.

A plain ``tensor.to("cuda")`` from ordinary host memory is a blocking copy: the host waits for the
stream, a synchronisation that ``torch.cuda.set_sync_debug_mode("error")`` reports and that
``update()`` must not make. From page-locked (pinned) memory the copy is asynchronous, ordered on
the current stream like any kernel, and the caching host allocator keeps the pinned block until the
copy has completed, so the host tensor may be dropped at once.
"""

from __future__ import annotations

import torch
from torch import Tensor


def to_device(host: Tensor, device: torch.device) -> Tensor:
    """``host`` (a CPU tensor) on ``device``, without a host-device synchronisation on CUDA.

    Example:
        >>> to_device(torch.arange(3), torch.device("cpu"))
        tensor([0, 1, 2])
    """
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)
