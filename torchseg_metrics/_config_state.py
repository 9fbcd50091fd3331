"""A state holding the settings that change what ``update()`` adds, for ``MetricCollection``.

torchmetrics' ``MetricCollection`` merges metrics into one compute group when their states are
equal after the first ``update()``, and from then on updates only one of them. Two metrics whose
``update()`` differs (another ``ignore_index``, threshold or matching rule) can have equal states
after a first batch by chance, and would then silently share the wrong state. A constant state
holding those settings keeps them apart, and costs a few bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

#: Stands for an unset (None) setting; NaN would stop even identical metrics from sharing a group.
UNSET = -1e300


def add_config_state(metric: Metric, values: Sequence[float | int | bool | None]) -> None:
    """Register ``values`` as the float64 state ``config`` (reduced with ``max``: equal on every rank)."""
    numbers = [UNSET if v is None else float(v) for v in values]
    metric.add_state("config", default=torch.tensor(numbers, dtype=torch.float64), dist_reduce_fx="max")
