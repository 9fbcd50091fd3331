"""The torchmetrics contract, checked for every metric class on its own inputs.

For each metric: split invariance (one ``update`` of all batches vs one per batch), pickle /
``clone()`` / ``deepcopy`` / ``state_dict`` round trips mid-epoch and ``reset()``, a failed
``update()`` leaving every state exactly unchanged, ``MetricCollection`` with a metric of the same
family, deterministic algorithms, an ``update()`` on the ``meta`` device (the off-CPU code path
with no data to read back: any host sync raises, so this runs on every machine), the same result
with the native CPU kernels switched off, and (CUDA only) a sync-free ``update()`` equal to the CPU
result.
Results are compared exactly (``rtol=atol=0``, NaN equal to NaN, dtypes equal).
"""

from __future__ import annotations

import copy
import itertools
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from _coco_reference import random_scene as coco_scene
from _panoptic_reference import STUFFS, THINGS
from _panoptic_reference import random_scene as panoptic_scene
from _semantic_reference import blob_labels, perturb
from torchmetrics import Metric, MetricCollection

from torchseg_metrics.instance import MeanAveragePrecision
from torchseg_metrics.multilabel import MultilabelDiceScore, MultilabelMeanIoU
from torchseg_metrics.panoptic import ModifiedPanopticQuality, PanopticQuality
from torchseg_metrics.semantic import (
    ConfusionMatrix,
    DiceScore,
    FrequencyWeightedIoU,
    MeanAccuracy,
    MeanIoU,
    PixelAccuracy,
    SemanticMetrics,
)
from torchseg_metrics.semantic_boundary import BoundaryIoU
from torchseg_metrics.surface import AverageSurfaceDistance, HausdorffDistance, SurfaceDice

SIZES = (2, 1, 3, 1)  # uneven batch sizes: images per update() call


@dataclass
class Case:
    """A metric factory, its batches (``update`` argument tuples) and one bad batch."""

    make: Callable[[], Metric]
    batches: list[tuple]
    bad: tuple
    partner: Callable[[], Metric]  # a metric of the same family, for MetricCollection

    def joined(self) -> tuple:
        """All batches as one ``update`` call: tensors concatenated, lists joined."""
        out = []
        for parts in zip(*self.batches, strict=True):
            if parts[0] is None:
                out.append(None)
            elif isinstance(parts[0], list):
                out.append([x for p in parts for x in p])
            else:
                out.append(torch.cat(parts))
        return tuple(out)


def _split(*tensors: Any, sizes: tuple[int, ...] = SIZES) -> list[tuple]:
    return [tuple(t[a:b] for t in tensors) for a, b in itertools.pairwise(np.cumsum((0, *sizes)))]


def _semantic(
    cls: type, seed: int, scores: bool = False, sizes: tuple[int, ...] = SIZES, **kwargs: Any
) -> Callable[[], Case]:
    def build() -> Case:
        rng, c = np.random.default_rng(seed), 5
        target = blob_labels(rng, (sum(sizes), 12, 16), c)
        preds = perturb(rng, target, c, low=-1, high=c + 1)  # some predictions outside [0, C)
        target[blob_labels(rng, target.shape, 6) == 0] = 255  # ignored pixels
        p, t = torch.from_numpy(preds), torch.from_numpy(target)
        if scores:  # float scores (N, C, H, W) whose argmax is the label map
            p = torch.nn.functional.one_hot(p.clamp(0, c - 1), c).permute(0, 3, 1, 2).double()
            p = p + torch.from_numpy(rng.uniform(0, 0.5, p.shape))
        if kwargs.pop("uint8", False):
            t = t.to(torch.uint8)
        batches = _split(p, t, sizes=sizes)
        bad = (p[:1], t[:1].float()) if seed % 2 else (p[:1], t[:1, :-1])  # wrong dtype / wrong shape
        return Case(
            lambda: cls(c, ignore_index=255, **kwargs),
            batches,
            bad,
            lambda: MeanIoU(
                c, ignore_index=255, per_class=True, aggregation=kwargs.get("aggregation", "dataset")
            ),
        )

    return build


def _multilabel(cls: type, seed: int, **kwargs: Any) -> Callable[[], Case]:
    def build() -> Case:
        gen = torch.Generator().manual_seed(seed)
        target = torch.rand(sum(SIZES), 3, 10, 12, generator=gen) > 0.6
        preds = (
            target.double() * 0.6 + torch.rand(target.shape, generator=gen, dtype=torch.float64) * 0.4
        ).float()
        partner = MultilabelDiceScore if cls is MultilabelMeanIoU else MultilabelMeanIoU
        return Case(
            lambda: cls(3, **kwargs),
            _split(preds, target),
            (preds[:1], target[:1, :2]),
            lambda: partner(3, **kwargs),
        )

    return build


def _instance(seed: int, **kwargs: Any) -> Callable[[], Case]:
    def build() -> Case:
        preds, target = coco_scene(
            torch.Generator().manual_seed(seed), num_images=sum(SIZES), size=(16, 20), with_boxes=True
        )
        batches = [(preds[a:b], target[a:b]) for a, b in itertools.pairwise(np.cumsum((0, *SIZES)))]
        wrong = {  # one bad image: mask values other than 0/1 (segm) or wrong box shape (bbox)
            "segm": {"masks": preds[0]["masks"].to(torch.uint8) * 2},
            "bbox": {"boxes": preds[0]["boxes"][:, :3]},
        }
        wrong["boundary"] = wrong["segm"]
        bad_p = [{**preds[0], **wrong[kwargs["iou_type"]]}]
        bad = (bad_p, target[:1])
        return Case(
            lambda: MeanAveragePrecision(**kwargs),
            batches,
            bad,
            lambda: MeanAveragePrecision(**{**kwargs, "max_detection_thresholds": [1, 5, 10]}),
        )

    return build


def _surface(cls: type, seed: int, **kwargs: Any) -> Callable[[], Case]:
    def build() -> Case:
        rng, c = np.random.default_rng(seed), 4
        target = blob_labels(rng, (sum(SIZES), 12, 16), c)
        preds = np.roll(target, 1, axis=-1)
        p, t = torch.from_numpy(preds), torch.from_numpy(target)
        return Case(
            lambda: cls(c, **kwargs),
            _split(p, t),
            (p[:1], t[:1].float()),  # a float target: TypeError
            lambda: AverageSurfaceDistance(c, spacing=kwargs.get("spacing")),
        )

    return build


def _panoptic(cls: type, seed: int, crowd: bool, **kwargs: Any) -> Callable[[], Case]:
    def build() -> Case:
        preds, target, crowd_mask = panoptic_scene(
            np.random.default_rng(seed), batch=sum(SIZES), h=12, w=16, crowd=crowd
        )
        p, t = torch.from_numpy(preds), torch.from_numpy(target)
        c = torch.from_numpy(crowd_mask) if crowd else None
        batches = [(*b, None) for b in _split(p, t)] if c is None else _split(p, t, c)
        bad = (p[:1], t[:1], c[:1].long()) if crowd else (p[:1].float() + 0.5, t[:1], None)  # fractional ids
        partner = ModifiedPanopticQuality if cls is PanopticQuality else PanopticQuality
        plain = {k: v for k, v in kwargs.items() if k != "boundary"}  # PQ-dagger has no boundary PQ
        return Case(
            lambda: cls(THINGS, STUFFS, True, **kwargs),
            batches,
            bad,
            lambda: partner(THINGS, STUFFS, True, **plain),
        )

    return build


CASES = {
    "ConfusionMatrix": _semantic(ConfusionMatrix, 0),
    "MeanIoU": _semantic(MeanIoU, 1, per_class=True),
    "MeanIoU-image": _semantic(MeanIoU, 2, aggregation="image", uint8=True),
    "DiceScore-scores": _semantic(DiceScore, 3, scores=True, average="weighted"),
    "PixelAccuracy": _semantic(PixelAccuracy, 4),
    "MeanAccuracy-image": _semantic(MeanAccuracy, 5, aggregation="image", per_class=True),
    "FrequencyWeightedIoU": _semantic(FrequencyWeightedIoU, 6, include_background=False),
    "SemanticMetrics": _semantic(SemanticMetrics, 7, per_class=True),
    "BoundaryIoU": _semantic(BoundaryIoU, 12, per_class=True, dilation=2),
    "BoundaryIoU-scores": _semantic(BoundaryIoU, 13, scores=True, include_background=False),
    "MeanIoU-torchmetrics": _semantic(
        MeanIoU, 9, per_class=True, input_format="index", compat="torchmetrics"
    ),
    "DiceScore-torchmetrics": _semantic(
        DiceScore, 10, scores=True, average="none", input_format="index", compat="torchmetrics"
    ),
    "DiceScore-torchmetrics-global": _semantic(
        DiceScore,
        11,
        average="weighted",
        aggregation_level="global",
        input_format="index",
        compat="torchmetrics",
    ),
    "HausdorffDistance-95": _surface(HausdorffDistance, 0, percentile=95, spacing=(1.0, 0.5)),
    "SurfaceDice": _surface(SurfaceDice, 1, tolerance=1.0, per_class=True),
    "MultilabelMeanIoU": _multilabel(MultilabelMeanIoU, 0, per_class=True),
    "MultilabelDiceScore-image": _multilabel(MultilabelDiceScore, 1, aggregation="image"),
    "MeanAveragePrecision-segm": _instance(0, iou_type="segm", class_metrics=True),
    "MeanAveragePrecision-boundary": _instance(2, iou_type="boundary", class_metrics=True),
    "MeanAveragePrecision-bbox": _instance(
        1, iou_type="bbox", average="micro", class_metrics=True, extended_summary=True
    ),
    "PanopticQuality": _panoptic(
        PanopticQuality, 0, crowd=True, return_sq_and_rq=True, return_per_class=True
    ),
    "ModifiedPanopticQuality": _panoptic(ModifiedPanopticQuality, 1, crowd=False),
    "PanopticQuality-boundary": _panoptic(PanopticQuality, 2, crowd=True, boundary=True),
}


@pytest.fixture(params=list(CASES), scope="module")
def _built(request: pytest.FixtureRequest) -> tuple[str, Case]:
    return request.param, CASES[request.param]()


@pytest.fixture
def case(_built: tuple[str, Case]) -> Case:
    return _built[1]


def assert_same(actual: Any, expected: Any) -> None:
    """Exact equality of results: dicts, lists and tensors, NaN equal to NaN, dtypes equal."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys()
        for k in expected:
            assert_same(actual[k], expected[k])
    elif isinstance(expected, list | tuple):
        assert isinstance(actual, list | tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            assert_same(a, e)
    else:
        torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True)


def _run(metric: Metric, batches: list[tuple]) -> Any:
    for batch in batches:
        metric.update(*batch)
    return metric.compute()


def _states(metric: Metric) -> dict[str, Any]:
    return {
        k: [t.clone() for t in v] if isinstance(v, list) else v.clone()
        for k, v in metric.metric_state.items()
    }


def test_split_invariance(case: Case) -> None:
    assert_same(_run(case.make(), [case.joined()]), _run(case.make(), case.batches))


def test_pickle_clone_state_dict_and_reset(case: Case) -> None:
    expected = _run(case.make(), case.batches)
    metric = case.make()
    metric.persistent(True)
    _run(metric, case.batches[:2])  # mid-epoch, after a compute()
    loaded = case.make()
    loaded.load_state_dict(copy.deepcopy(metric.state_dict()))
    copies = {
        "pickle": pickle.loads(pickle.dumps(metric)),
        "clone": metric.clone(),
        "deepcopy": copy.deepcopy(metric),
        "state_dict": loaded,
    }
    for name, other in copies.items():
        try:
            assert_same(_run(other, case.batches[2:]), expected)
        except AssertionError as err:
            raise AssertionError(f"after {name}: {err}") from err
    assert_same(_run(metric, case.batches[2:]), expected)  # the original is untouched by the copies
    metric.reset()
    assert_same(_run(metric, case.batches), expected)


@pytest.mark.filterwarnings("ignore:This property will be removed in 2.0.0:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The TorchScript type system doesn't support instance-level")
def test_torch_jit_script(case: Case) -> None:
    # torchmetrics' own class tests script every metric (MetricTester's check_scriptable)
    scripted = torch.jit.script(case.make())
    assert isinstance(scripted, torch.jit.ScriptModule)


def test_failed_update_leaves_state_unchanged(case: Case) -> None:
    metric = case.make()
    metric.update(*case.batches[0])
    before = _states(metric)
    with pytest.raises((TypeError, ValueError)):
        metric.update(*case.bad)
    after = _states(metric)
    assert before.keys() == after.keys()
    for k in before:
        assert_same(after[k], before[k])
    assert_same(_run(metric, case.batches[1:]), _run(case.make(), case.batches))


def _collection_result(**expected: Any) -> dict[str, Any]:
    """What ``MetricCollection.compute()`` returns for these results: dicts flattened, keys
    prefixed with the metric's name only if they collide (torchmetrics 1.9's rule)."""
    keys = [k for v in expected.values() if isinstance(v, dict) for k in v]
    keys += [k for k, v in expected.items() if not isinstance(v, dict)]
    dup = len(keys) != len(set(keys))
    out: dict[str, Any] = {}
    for name, value in expected.items():
        if isinstance(value, dict):
            out.update({f"{name}_{k}" if dup else k: v for k, v in value.items()})
        else:
            out[name] = value
    return out


def _check_collection(make_a: Callable[[], Metric], make_b: Callable[[], Metric], batches: list) -> None:
    collection = MetricCollection({"a": make_a(), "b": make_b()})
    for batch in batches:
        collection.update(*batch)
    expected = _collection_result(a=_run(make_a(), batches), b=_run(make_b(), batches))
    assert_same(collection.compute(), expected)


def test_metric_collection(case: Case) -> None:
    _check_collection(case.make, case.partner, case.batches)


def _first_batch_agrees() -> dict[str, tuple]:
    """Pairs of one family whose ``update()`` differs but whose states agree after a first batch."""
    gen = torch.Generator().manual_seed(0)
    t1, p1 = torch.randint(0, 4, (2, 2, 8, 8), generator=gen)  # no class 4 in the first batch
    t2, p2 = torch.randint(0, 5, (2, 2, 8, 8), generator=gen)
    ml_t = torch.rand(2, 2, 2, 4, 4, generator=gen) > 0.5
    ml_p = [ml_t[0] ^ (torch.rand(2, 2, 4, 4, generator=gen) > 0.7), torch.rand(2, 2, 4, 4, generator=gen)]
    pq_p, pq_t, _ = panoptic_scene(np.random.default_rng(1), batch=sum(SIZES), h=12, w=16, crowd=False)
    return {
        "MeanIoU-ignore_index": (
            lambda: MeanIoU(5),
            lambda: MeanIoU(5, ignore_index=4),
            [(p1, t1), (p2, t2)],
        ),
        "MultilabelMeanIoU-threshold": (  # bool predictions first: the threshold does not matter yet
            lambda: MultilabelMeanIoU(2),
            lambda: MultilabelMeanIoU(2, threshold=0.8),
            [(ml_p[0], ml_t[0]), (ml_p[1], ml_t[1])],
        ),
        "PanopticQuality-modified": (
            lambda: PanopticQuality(THINGS, STUFFS, True),
            lambda: ModifiedPanopticQuality(THINGS, STUFFS, True),
            _split(torch.from_numpy(pq_p), torch.from_numpy(pq_t)),
        ),
    }


_PAIRS = _first_batch_agrees()


@pytest.mark.parametrize("pair", list(_PAIRS))
def test_pairs_agree_after_the_first_batch(pair: str) -> None:
    """The premise of the next test: after the first batch the two metrics' statistics agree (only
    their ``config`` state, the settings that change ``update()``, tells them apart)."""
    make_a, make_b, batches = _PAIRS[pair]
    a, b = make_a(), make_b()
    a.update(*batches[0])
    b.update(*batches[0])
    assert a._defaults.keys() == b._defaults.keys()
    assert not torch.equal(a.config, b.config)
    for k in a._defaults:
        if k != "config":
            assert_same(getattr(a, k), getattr(b, k))
    for batch in batches[1:]:
        a.update(*batch)
        b.update(*batch)
    assert any(not torch.equal(getattr(a, k), getattr(b, k)) for k in a._defaults)  # later they differ


@pytest.mark.parametrize("pair", list(_PAIRS))
def test_metric_collection_keeps_different_updates_apart(pair: str) -> None:
    _check_collection(*_PAIRS[pair])


def test_deterministic_algorithms(case: Case) -> None:
    expected = _run(case.make(), case.batches)
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        result = _run(case.make(), case.batches)
    finally:
        torch.use_deterministic_algorithms(before)
    assert_same(result, expected)


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to(v, device) for v in value)
    return value


_CUDA = pytest.param(
    "cuda",
    id="cuda",
    marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")],
)


@pytest.mark.parametrize("device", [_CUDA], indirect=True)
def test_cuda_update_sync_free_and_equal_to_cpu(case: Case, device: torch.device) -> None:
    expected = _run(case.make(), case.batches)
    metric = case.make().to(device)
    batches = [_to(b, device) for b in case.batches]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in batches:
            metric.update(*batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert_same(_to(metric.compute(), "cpu"), expected)


@pytest.mark.parametrize("deterministic", [False, True], ids=["default", "deterministic"])
def test_device_update_reads_nothing_back(case: Case, deterministic: bool) -> None:
    """``update()`` on the off-CPU path never reads a value back, checked without a GPU.

    Tensors on the ``meta`` device have shapes and dtypes but no data, so every host read-back
    (``.item()``, ``bool()``, ``.tolist()``, ``.cpu()``, ``nonzero``, boolean-mask indexing,
    ``torch.unique``, ``torch.bincount``) raises there, and this package takes its non-CPU code
    path for them: the same path as on CUDA. The states keep the CPU run's shapes and dtypes.
    """
    cpu = case.make()
    for batch in case.batches:
        cpu.update(*batch)
    metric = case.make().to("meta")
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        for batch in case.batches:
            metric.update(*_to(batch, torch.device("meta")))
    finally:
        torch.use_deterministic_algorithms(before)
    for name in cpu._defaults:
        ours, ref = getattr(metric, name), getattr(cpu, name)
        if isinstance(ref, list):  # list states (instance records): one entry per update
            assert len(ours) == len(ref)
            assert all(a.dtype == b.dtype and a.device.type == "meta" for a, b in zip(ours, ref, strict=True))
        else:
            assert (ours.shape, ours.dtype, ours.device.type) == (ref.shape, ref.dtype, "meta"), name


def test_torch_kernels_give_the_same_result(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the native CPU kernels switched off (their torch-op twins run), results are identical."""
    expected = _run(case.make(), case.batches)
    monkeypatch.setenv("TORCHSEG_METRICS_NATIVE", "0")
    assert_same(_run(case.make(), case.batches), expected)
