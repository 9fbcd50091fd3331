"""torchmetrics' ``MeanAveragePrecision`` as a reference, where torchvision is not installed.

torchmetrics 1.9 needs torchvision only for ``torchvision.ops.box_convert`` (and to pass its
import check). :func:`torchmetrics_map` builds, updates and computes torchmetrics' metric inside a
context that, only when torchvision is missing, provides a ``box_convert`` written from
torchvision's formulas and afterwards restores ``sys.modules`` and torchmetrics' flag, so that no
other test sees a fake torchvision.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import types
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch


def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
    """torchvision.ops.box_convert for "xyxy", "xywh" and "cxcywh"."""
    if in_fmt == "xywh":
        x, y, w, h = boxes.unbind(-1)
        boxes = torch.stack([x, y, x + w, y + h], -1)
    elif in_fmt == "cxcywh":
        cx, cy, w, h = boxes.unbind(-1)
        boxes = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)
    x1, y1, x2, y2 = boxes.unbind(-1)
    if out_fmt == "xywh":
        return torch.stack([x1, y1, x2 - x1, y2 - y1], -1)
    if out_fmt == "cxcywh":
        return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)
    return boxes


@contextlib.contextmanager
def _torchvision() -> Iterator[Any]:
    from torchmetrics.detection import mean_ap

    if importlib.util.find_spec("torchvision") is not None:
        yield mean_ap
        return
    saved = {name: sys.modules.get(name) for name in ("torchvision", "torchvision.ops")}
    flag = mean_ap._TORCHVISION_AVAILABLE
    ops = types.ModuleType("torchvision.ops")
    ops.box_convert = box_convert  # type: ignore[attr-defined]
    package = types.ModuleType("torchvision")
    package.ops = ops  # type: ignore[attr-defined]
    sys.modules.update({"torchvision": package, "torchvision.ops": ops})
    mean_ap._TORCHVISION_AVAILABLE = True
    try:
        yield mean_ap
    finally:
        mean_ap._TORCHVISION_AVAILABLE = flag
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def torchmetrics_map(batches: Sequence[tuple[list, list]], **kwargs: Any) -> dict[str, Any]:
    """torchmetrics' ``MeanAveragePrecision(**kwargs)`` result over ``(preds, target)`` batches."""
    with _torchvision() as mean_ap, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        metric = mean_ap.MeanAveragePrecision(**kwargs)
        for preds, target in batches:
            metric.update(preds, target)
        return metric.compute()
