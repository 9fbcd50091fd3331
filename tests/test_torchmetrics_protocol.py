"""The drop-in classes go through torchmetrics' own test protocol, against torchmetrics' classes.

torchmetrics tests every metric class the same way (its ``MetricTester``): built with
``dist_sync_on_step``, read-only ``is_differentiable`` / ``higher_is_better``, scriptable,
clonable, picklable, ``forward`` per batch equal to the reference on that batch (and, on the
first batch, to ``update`` + ``compute``), hashable, an empty ``state_dict()``, and the final
``compute()`` equal to the reference over all batches; under DDP each rank's ``forward`` is its own
batch's value (or, with ``dist_sync_on_step=True``, the value over every rank's batch of that
step) and ``compute()`` the value over all ranks. Here the reference is torchmetrics' class with
the same arguments, and ours runs with ``compat="torchmetrics"``.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torchmetrics.detection as tm_detection
import torchmetrics.segmentation as tm_segmentation
from _ddp import run_distributed
from _torchmetrics_map import _torchvision

from torchseg_metrics import (
    DiceScore,
    MeanAveragePrecision,
    MeanIoU,
    ModifiedPanopticQuality,
    PanopticQuality,
)

C = 4
NUM_BATCHES = 4  # two steps of two ranks


def _semantic_batches(input_format: str, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(NUM_BATCHES):
        if input_format == "one-hot":  # torchmetrics' own test inputs: random multi-hot masks
            p, t = (torch.randint(0, 2, (3, C, 12, 10), generator=gen) for _ in range(2))
        else:
            p, t = (torch.randint(0, C, (3, 12, 10), generator=gen) for _ in range(2))
            if input_format == "mixed":
                p = torch.nn.functional.one_hot(p, C).movedim(-1, 1)
        out.append((p, t))
    return out


def _detection_batches(seed: int) -> list[tuple[list[dict], list[dict]]]:
    gen = torch.Generator().manual_seed(seed)

    def boxes(n: int) -> torch.Tensor:
        xy = torch.rand(n, 2, generator=gen) * 30
        return torch.cat([xy, xy + 2 + torch.rand(n, 2, generator=gen) * 20], 1)

    out = []
    for b in range(NUM_BATCHES):
        preds, target = [], []
        for i in range(2):
            n = 0 if (b, i) == (1, 0) else int(torch.randint(1, 6, (1,), generator=gen))
            m = 0 if (b, i) == (2, 1) else int(torch.randint(1, 5, (1,), generator=gen))
            preds.append(
                {
                    "boxes": boxes(n),
                    "masks": torch.rand(n, 24, 24, generator=gen) > 0.5,
                    "scores": torch.rand(n, generator=gen),
                    "labels": torch.randint(0, 3, (n,), generator=gen),
                }
            )
            target.append(
                {
                    "boxes": boxes(m),
                    "masks": torch.rand(m, 24, 24, generator=gen) > 0.5,
                    "labels": torch.randint(0, 3, (m,), generator=gen),
                }
            )
        out.append((preds, target))
    return out


def _panoptic_batches(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)

    def scene() -> torch.Tensor:
        cat = torch.tensor([0, 1, 6, 7, 5])[torch.randint(0, 5, (2, 10, 10), generator=gen)]
        return torch.stack([cat, torch.randint(0, 3, (2, 10, 10), generator=gen)], -1)

    return [(scene(), scene()) for _ in range(NUM_BATCHES)]


PANOPTIC = {"things": {0, 1}, "stuffs": {6, 7}, "allow_unknown_preds_category": True}

#: name -> (our class, torchmetrics' class name, arguments, batches)
CASES: dict[str, tuple[type, str, dict[str, Any], Callable[[], list]]] = {
    "MeanIoU-one-hot": (
        MeanIoU,
        "MeanIoU",
        {"num_classes": C, "per_class": True},
        lambda: _semantic_batches("one-hot", 0),
    ),
    "MeanIoU-index-nobg": (
        MeanIoU,
        "MeanIoU",
        {"num_classes": C, "include_background": False, "input_format": "index"},
        lambda: _semantic_batches("index", 1),
    ),
    "MeanIoU-mixed": (
        MeanIoU,
        "MeanIoU",
        {"num_classes": C, "input_format": "mixed"},
        lambda: _semantic_batches("mixed", 2),
    ),
    "DiceScore-one-hot": (
        DiceScore,
        "DiceScore",
        {"num_classes": C, "average": "micro"},
        lambda: _semantic_batches("one-hot", 3),
    ),
    "DiceScore-index-global": (
        DiceScore,
        "DiceScore",
        {"num_classes": C, "average": None, "aggregation_level": "global", "input_format": "index"},
        lambda: _semantic_batches("index", 4),
    ),
    "MAP-bbox": (
        MeanAveragePrecision,
        "MeanAveragePrecision",
        {"class_metrics": True},
        lambda: _detection_batches(5),
    ),
    "MAP-segm": (
        MeanAveragePrecision,
        "MeanAveragePrecision",
        {"iou_type": "segm", "extended_summary": True},
        lambda: _detection_batches(6),
    ),
    "MAP-both": (
        MeanAveragePrecision,
        "MeanAveragePrecision",
        {"iou_type": ("bbox", "segm"), "average": "micro"},
        lambda: _detection_batches(7),
    ),
    "PanopticQuality": (
        PanopticQuality,
        "PanopticQuality",
        {**PANOPTIC, "return_sq_and_rq": True, "return_per_class": True},
        lambda: _panoptic_batches(8),
    ),
    "ModifiedPanopticQuality": (
        ModifiedPanopticQuality,
        "ModifiedPanopticQuality",
        PANOPTIC,
        lambda: _panoptic_batches(9),
    ),
}


def _theirs(name: str, **kwargs: Any) -> Any:
    tm_name, tm_kwargs = CASES[name][1], {**CASES[name][2], **kwargs}
    if tm_name == "MeanAveragePrecision":
        with _torchvision() as mean_ap:
            return mean_ap.MeanAveragePrecision(**tm_kwargs)
    module = tm_segmentation if tm_name in ("MeanIoU", "DiceScore") else tm_detection
    return getattr(module, tm_name)(**tm_kwargs)


def _ours(name: str, **kwargs: Any) -> Any:
    cls, _, args, _ = CASES[name]
    return cls(**args, **kwargs, compat="torchmetrics")


def _call(metric: Any, method: str, *args: Any) -> Any:
    """A method of a torchmetrics MeanAveragePrecision needs its torchvision helpers."""
    with _torchvision():
        return getattr(metric, method)(*args)


def _assert_same(ours: Any, theirs: Any, what: str = "result") -> None:
    if isinstance(theirs, dict):
        assert set(ours) == set(theirs), (
            f"{what}: keys {sorted(map(str, ours))} vs {sorted(map(str, theirs))}"
        )
        for key, value in theirs.items():
            _assert_same(ours[key], value, f"{what}[{key!r}]")
    elif isinstance(theirs, torch.Tensor):
        assert isinstance(ours, torch.Tensor), what
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, (
            f"{what}: {ours.dtype} {tuple(ours.shape)} vs {theirs.dtype} {tuple(theirs.shape)}"
        )
        torch.testing.assert_close(ours, theirs, rtol=2e-6, atol=1e-6, equal_nan=True, msg=what)
    else:
        assert ours == theirs, what


def _cat(batches: list) -> tuple[Any, Any]:
    """One batch made of several (tensors concatenated, lists joined)."""
    preds, target = zip(*batches, strict=True)
    if isinstance(preds[0], torch.Tensor):
        return torch.cat(preds), torch.cat(target)
    return [p for b in preds for p in b], [t for b in target for t in b]


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_single_process_protocol(name) -> None:
    batches = CASES[name][3]()
    metric = _ours(name, dist_sync_on_step=False)
    for attr in ("is_differentiable", "higher_is_better"):
        with pytest.raises(RuntimeError):
            setattr(metric, attr, not getattr(metric, attr))
    theirs = _theirs(name)
    assert (metric.is_differentiable, metric.higher_is_better) == (
        theirs.is_differentiable,
        theirs.higher_is_better,
    )
    torch.jit.script(metric)
    clone = metric.clone()
    assert clone is not metric and type(clone) is type(metric)
    metric = pickle.loads(pickle.dumps(metric))
    first = copy.deepcopy(metric)
    for i, (preds, target) in enumerate(batches):
        value = metric(preds, target)
        _assert_same(value, _call(theirs, "forward", preds, target), f"forward[{i}]")
        if i == 0:
            first.update(preds, target)
            _assert_same(value, first.compute(), "forward vs update + compute")
    assert hash(metric)
    assert metric.state_dict() == {}
    _assert_same(metric.compute(), _call(theirs, "compute"), "compute")


def _ranks(rank: int, world_size: int, payload: tuple[str, bool]) -> dict[str, Any]:
    name, sync_on_step = payload
    batches = CASES[name][3]()
    metric = _ours(name, dist_sync_on_step=sync_on_step)
    steps = [metric(*batches[i]) for i in range(rank, NUM_BATCHES, world_size)]
    return {"steps": steps, "compute": metric.compute()}


DDP_CASES = ["MeanIoU-one-hot", "DiceScore-index-global", "MAP-segm", "MAP-both", "PanopticQuality"]


@pytest.mark.parametrize("sync_on_step", [False, True])
@pytest.mark.parametrize("name", DDP_CASES)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_two_ranks_protocol(name, sync_on_step) -> None:
    batches = CASES[name][3]()
    results = run_distributed(_ranks, (name, sync_on_step), world_size=2)
    total = _theirs(name)
    _call(total, "update", *_cat(batches))
    expected_total = _call(total, "compute")
    # after the gather, ours numbers images rank by rank (torchmetrics' list states gather so too)
    sizes = [len(p) if isinstance(p, list) else p.shape[0] for p, _ in batches]
    firsts = [sum(sizes[:i]) for i in range(NUM_BATCHES)]
    order = [firsts[i] + j for r in range(2) for i in range(r, NUM_BATCHES, 2) for j in range(sizes[i])]
    for rank, result in enumerate(results):
        if isinstance(result["compute"], dict) and "ious" in result["compute"]:
            result["compute"]["ious"] = {
                (order[img], c): v for (img, c), v in result["compute"]["ious"].items()
            }
        _assert_same(result["compute"], expected_total, f"rank {rank} compute")
        for step, value in enumerate(result["steps"]):
            i = 2 * step + rank
            seen = batches[2 * step : 2 * step + 2] if sync_on_step else [batches[i]]
            expected = _theirs(name)
            _call(expected, "update", *_cat(seen))
            _assert_same(value, _call(expected, "compute"), f"rank {rank} forward[{i}]")
