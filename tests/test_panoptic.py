"""``PanopticQuality`` / ``ModifiedPanopticQuality`` classes: accumulation, outputs, state, bad input."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from _panoptic_reference import STUFFS, THINGS, panopticapi_pq, random_scene
from torchmetrics import MetricCollection
from torchmetrics.detection import ModifiedPanopticQuality as TMModifiedPQ
from torchmetrics.detection import PanopticQuality as TMPanopticQuality
from torchmetrics.utilities.data import dim_zero_sum

from torchseg_metrics.functional.panoptic.metrics import panoptic_quality
from torchseg_metrics.panoptic import ModifiedPanopticQuality, PanopticQuality


def _scene(seed: int, **kwargs):
    preds, target, crowd = random_scene(np.random.default_rng(seed), **kwargs)
    as_t = lambda a: None if a is None else torch.as_tensor(a)  # noqa: E731
    return as_t(preds), as_t(target), as_t(crowd)


def _states(metric):
    return {k: v.clone() for k, v in metric.metric_state.items()}


def test_batches_accumulate_like_panopticapi_on_all_images(tmp_path):
    """Uneven batches into one metric equal panopticapi on all the images at once."""
    scenes = [_scene(seed, batch=b) for seed, b in zip(range(20, 24), (1, 3, 2, 4), strict=True)]
    metric = PanopticQuality(THINGS, STUFFS, allow_unknown_preds_category=True, return_sq_and_rq=True)
    for p, t, c in scenes:
        metric.update(p, t, c)
    cat = lambda i: np.concatenate([s[i].numpy() for s in scenes])  # noqa: E731
    ref = panopticapi_pq(cat(0), cat(1), THINGS, STUFFS, tmp_path, cat(2))
    got = metric.compute()
    expected = [ref["All"][k] for k in ("pq", "sq", "rq")]
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx(expected, abs=1e-12, rel=0)
    summary = metric.summary()
    for group in ("All", "Things", "Stuff"):
        assert summary[group] == pytest.approx(ref[group], abs=1e-12, rel=0)
    for c, (tp, fp, fn, iou) in ref["stats"].items():
        row = summary["per_class"][c]
        assert (row["tp"], row["fp"], row["fn"]) == (tp, fp, fn)
        assert row["iou_sum"] == pytest.approx(iou, abs=1e-12, rel=0)


def test_output_shapes_match_torchmetrics():
    p, t, _ = _scene(30, batch=2, h=12, w=16, crowd=False)
    for sq_rq in (False, True):
        for per_class in (False, True):
            kw = {
                "allow_unknown_preds_category": True,
                "return_sq_and_rq": sq_rq,
                "return_per_class": per_class,
            }
            ours = PanopticQuality(THINGS, STUFFS, **kw)(p, t)
            ref = TMPanopticQuality(THINGS, STUFFS, **kw)(p, t)
            assert ours.shape == ref.shape and ours.dtype == ref.dtype == torch.float64


@pytest.mark.parametrize("cls", [PanopticQuality, ModifiedPanopticQuality])
def test_compat_torchmetrics_class_over_several_updates(cls):
    reference = {PanopticQuality: TMPanopticQuality, ModifiedPanopticQuality: TMModifiedPQ}[cls]
    ours = cls(THINGS, STUFFS, allow_unknown_preds_category=True, compat="torchmetrics")
    ref = reference(THINGS, STUFFS, allow_unknown_preds_category=True)
    for seed in range(3):
        p, t, _ = _scene(40 + seed, batch=2, h=10, w=12, crowd=False)
        ours.update(p, t)
        ref.update(p, t)
    torch.testing.assert_close(ours.compute(), ref.compute(), atol=1e-12, rtol=0)


def test_torchmetrics_docstring_example():
    """torchmetrics' own docstring example: 0.5463 in compat mode; panopticapi's rules differ here."""
    preds = torch.tensor(
        [
            [
                [[6, 0], [0, 0], [6, 0], [6, 0]],
                [[0, 0], [0, 0], [6, 0], [0, 1]],
                [[0, 0], [0, 0], [6, 0], [0, 1]],
                [[0, 0], [7, 0], [6, 0], [1, 0]],
                [[0, 0], [7, 0], [7, 0], [7, 0]],
            ]
        ]
    )
    target = torch.tensor(
        [
            [
                [[6, 0], [0, 1], [6, 0], [0, 1]],
                [[0, 1], [0, 1], [6, 0], [0, 1]],
                [[0, 1], [0, 1], [6, 0], [1, 0]],
                [[0, 1], [7, 0], [1, 0], [1, 0]],
                [[0, 1], [7, 0], [7, 0], [7, 0]],
            ]
        ]
    )
    compat = PanopticQuality(things={0, 1}, stuffs={6, 7}, compat="torchmetrics")(preds, target)
    assert compat.item() == pytest.approx(0.5463, abs=5e-5)
    assert compat.item() == TMPanopticQuality(things={0, 1}, stuffs={6, 7})(preds, target).item()


def test_summary_layout_and_empty_group():
    metric = PanopticQuality(things={1}, stuffs={7})
    metric.update(torch.tensor([[[1, 1], [1, 1]]]), torch.tensor([[[1, 1], [1, 1]]]))
    s = metric.summary()
    assert set(s) == {"All", "Things", "Stuff", "per_class"}
    assert s["All"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 1} == s["Things"]
    assert s["Stuff"]["n"] == 0 and all(math.isnan(s["Stuff"][k]) for k in ("pq", "sq", "rq"))
    assert list(s["per_class"]) == [1, 7]
    assert s["per_class"][1] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "tp": 1, "fp": 0, "fn": 0, "iou_sum": 1.0}
    assert math.isnan(s["per_class"][7]["pq"]) and s["per_class"][7]["tp"] == 0


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_state_is_fixed_size_and_survives_pickle_clone_reset():
    metric = PanopticQuality(THINGS, STUFFS, allow_unknown_preds_category=True)
    p, t, c = _scene(50)
    metric.update(p, t, c)
    states = metric.metric_state
    assert states["iou_sum"].dtype == torch.float64 and states["iou_sum"].shape == (5,)
    assert all(states[k].dtype == torch.int64 and states[k].shape == (5,) for k in ("tp", "fp", "fn"))
    # statistics sum across processes; the constant settings state is equal on every rank
    assert all(metric._reductions[k] is dim_zero_sum for k in states if k != "config")
    expected = metric.compute()
    assert pickle.loads(pickle.dumps(metric)).compute().item() == expected.item()
    assert metric.clone().compute().item() == expected.item()
    restored = PanopticQuality(THINGS, STUFFS, allow_unknown_preds_category=True)
    metric.persistent(True)
    restored.persistent(True)
    restored.load_state_dict(metric.state_dict())
    assert restored.compute().item() == expected.item()
    metric.reset()
    assert all(not v.any() for k, v in metric.metric_state.items() if k != "config")


def test_metric_collection_shares_state():
    collection = MetricCollection(
        {
            "pq": PanopticQuality(THINGS, STUFFS, allow_unknown_preds_category=True),
            "pq_per_class": PanopticQuality(
                THINGS, STUFFS, allow_unknown_preds_category=True, return_per_class=True
            ),
        }
    )
    p, t, c = _scene(51)
    collection.update(p, t, target_crowd=c)
    out = collection.compute()
    assert collection.compute_groups == {0: ["pq", "pq_per_class"]}
    assert out["pq"].item() == pytest.approx(torch.nanmean(out["pq_per_class"]).item(), abs=1e-15)


P = torch.ones(1, 3, 4, 2, dtype=torch.int64)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((P.to(torch.complex64), P), TypeError),
        ((P.float() + 0.5, P), ValueError),  # float ids are taken (as torchmetrics does) if whole
        ((P, P[:, :2]), ValueError),
        ((P[..., :1], P[..., :1]), ValueError),
        ((P, P, torch.zeros(1, 3, 4)), TypeError),
        ((P, P, torch.zeros(1, 3, 5, dtype=torch.bool)), ValueError),
        ((P * -1, P), ValueError),  # negative ids, checked on the host for CPU tensors
        ((P, P + 2**31), ValueError),  # ids above 2**31 - 1
        ((P * 5, P), ValueError),  # unknown prediction category
        ((P, P * 5), ValueError),  # unknown target category (neither void 0 nor void 3)
    ],
)
def test_failed_update_leaves_state_unchanged(args, error):
    metric = PanopticQuality(things={1}, stuffs={2})
    t = torch.tensor([[1, 1], [1, 1], [2, 0], [2, 0]]).expand(1, 3, 4, 2)
    metric.update(t.roll(1, dims=2), t)  # thing IoU 1/2 -> FN + FP; stuff IoU 2/3 -> TP
    before = _states(metric)
    with pytest.raises(error):
        metric.update(*args)
    after = _states(metric)
    assert all(torch.equal(before[k], after[k]) for k in before)
    metric.compute()  # still usable


def test_deferred_value_checks_raise_at_compute():
    """The CUDA path counts offending pixels without a sync; compute() and summary() raise."""
    metric = PanopticQuality(things={1}, stuffs={2})
    metric._validate_on_host = False
    metric.update(P * 5, P)  # unknown prediction category: no error yet
    metric.update(P * -1, P)
    assert metric.bad_values.tolist() == [12, 0, 12, 0]
    with pytest.raises(ValueError, match=r"`preds` must be integer ids .*, got 12 pixels outside that range"):
        metric.compute()
    with pytest.raises(ValueError, match="`preds` must be integer ids"):
        metric.summary()
    metric.reset()
    metric.update(P, P)
    assert metric.compute().item() == 1.0


def test_float_ids_are_taken_as_torchmetrics_takes_them():
    """torchmetrics accepts float (category, instance) maps; whole values give the integer result."""
    p, t, _ = _scene(62, batch=2, crowd=False)
    kw = {"allow_unknown_preds_category": True, "return_per_class": True}
    expected = PanopticQuality(THINGS, STUFFS, **kw)(p, t)
    assert torch.equal(PanopticQuality(THINGS, STUFFS, **kw)(p.double(), t.float()), expected)
    tm = TMPanopticQuality(THINGS, STUFFS, allow_unknown_preds_category=True, return_per_class=True)
    ours = PanopticQuality(THINGS, STUFFS, compat="torchmetrics", **kw)(p.float(), t.float())
    torch.testing.assert_close(ours, tm(p.float(), t.float()), atol=1e-12, rtol=0)
    nan = p.double()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"`preds` must be integer ids .*, got 1 pixels outside"):
        PanopticQuality(THINGS, STUFFS, **kw).update(nan, t)


def test_unknown_target_category_is_an_error_unless_allowed(tmp_path):
    """Target void is category 0 (when 0 is no category) or 1 + max id; any other unknown target
    category raises (a typo in ``stuffs`` would silently void a class), as torchmetrics does not:
    ``compat="torchmetrics"`` and ``allow_unknown_target_category=True`` make it void instead."""
    p, t, c = _scene(61, batch=3)
    assert PanopticQuality(THINGS, STUFFS).void_categories == (0, max(THINGS | STUFFS) + 1)
    kw = {"allow_unknown_preds_category": True}
    strange = t.clone()
    strange[0, :3, :5, 0] = 55  # neither a category nor a void id
    metric = PanopticQuality(THINGS, STUFFS, **kw)
    metric.update(p, t, c)
    before = _states(metric)
    message = (
        r"`target` must be categories in `things`, `stuffs` or the void category \(0 or \d+\) "
        r"\(or pass allow_unknown_target_category=True.*got 15 pixels of unknown"
    )
    with pytest.raises(ValueError, match=message):
        metric.update(p, strange, c)
    assert all(torch.equal(before[k], after) for k, after in _states(metric).items())
    with pytest.raises(ValueError, match="allow_unknown_target_category"):
        panoptic_quality(p, strange, THINGS, STUFFS, target_crowd=c, **kw)
    # allowed: the unknown category is void, exactly as the void ids 0 and 1 + max (panopticapi's VOID)
    as_zero, as_top = t.clone(), t.clone()
    as_zero[0, :3, :5] = 0
    as_top[0, :3, :5] = torch.tensor([max(THINGS | STUFFS) + 1, 0])
    allowed = PanopticQuality(THINGS, STUFFS, allow_unknown_target_category=True, return_sq_and_rq=True, **kw)
    got = allowed(p, strange, c)
    ref = panopticapi_pq(p.numpy(), as_zero.numpy(), THINGS, STUFFS, tmp_path, c.numpy())
    torch.testing.assert_close(
        got, torch.tensor([ref["All"][k] for k in ("pq", "sq", "rq")]), atol=1e-12, rtol=0
    )
    for void in (as_zero, as_top):
        assert torch.equal(PanopticQuality(THINGS, STUFFS, return_sq_and_rq=True, **kw)(p, void, c), got)
    # torchmetrics maps unknown target categories to void: so does compat="torchmetrics" by default
    for cls, ref_cls in ((PanopticQuality, TMPanopticQuality), (ModifiedPanopticQuality, TMModifiedPQ)):
        ours = cls(THINGS, STUFFS, compat="torchmetrics", **kw)(p, strange)
        torch.testing.assert_close(ours, ref_cls(THINGS, STUFFS, **kw)(p, strange), atol=1e-12, rtol=0)
    # with 0 a category, only 1 + max is void; category 0 pixels are a real class
    assert PanopticQuality(things={0, 1}, stuffs={6}).void_categories == (7,)
    with pytest.raises(ValueError, match=r"void category \(7\)"):
        PanopticQuality(things={0, 1}, stuffs={6}).update(P, P * 5)
    # off the CPU: counted without a sync, raised by compute()
    deferred = PanopticQuality(things={1}, stuffs={2})
    deferred._validate_on_host = False
    deferred.update(P, P * 5)
    assert deferred.bad_values.tolist() == [0, 0, 0, 12]
    with pytest.raises(
        ValueError, match=r"`target` must be categories .* got 12 pixels of unknown categories"
    ):
        deferred.compute()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"things": {1}, "stuffs": {1}}, ValueError, "`stuffs` must be disjoint from `things`"),
        ({"things": [], "stuffs": ()}, ValueError, "`things` must be non-empty"),
        ({"things": {True}, "stuffs": {2}}, TypeError, "`things` must be a collection of integer"),
        ({"compat": "panoptic"}, ValueError, "Did you mean 'panopticapi'"),
        ({"return_per_class": 1}, TypeError, "`return_per_class` must be a bool"),
        ({"allow_unknown_target_category": 1}, TypeError, "`allow_unknown_target_category` must be a bool"),
    ],
)
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        PanopticQuality(**{"things": {1}, "stuffs": {2}, **kwargs})


def test_device_and_deterministic_mode(device):
    p, t, c = _scene(53)
    cpu = PanopticQuality(THINGS, STUFFS, allow_unknown_preds_category=True, return_per_class=True)
    cpu.update(p, t, c)
    metric = PanopticQuality(THINGS, STUFFS, allow_unknown_preds_category=True, return_per_class=True).to(
        device
    )
    torch.use_deterministic_algorithms(True)
    try:
        metric.update(p.to(device), t.to(device), c.to(device))
        got = metric.compute()
    finally:
        torch.use_deterministic_algorithms(False)
    assert got.device.type == torch.device(device).type
    torch.testing.assert_close(got.cpu(), cpu.compute(), atol=1e-12, rtol=0, equal_nan=True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_update_does_not_sync():
    p, t, c = (x.cuda() for x in _scene(54))
    metric = PanopticQuality(THINGS, STUFFS, allow_unknown_preds_category=True).cuda()
    metric.update(p, t, c)  # warm-up: caches the category table on the device
    torch.cuda.set_sync_debug_mode("error")
    try:
        metric.update(p, t, c)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert metric.tp.sum().item() > 0


def test_modified_pq_class_matches_functional_and_panopticapi_things(tmp_path):
    """PQ-dagger things equal panopticapi's things; stuff is ΣIoU / number of target segments."""
    p, t, c = _scene(55, batch=4)
    metric = ModifiedPanopticQuality(THINGS, STUFFS, allow_unknown_preds_category=True)
    metric.update(p, t, c)
    ref = panopticapi_pq(p.numpy(), t.numpy(), THINGS, STUFFS, tmp_path, c.numpy())
    s = metric.summary()
    for cat in THINGS:
        tp, fp, fn, iou = ref["stats"][cat]
        row = s["per_class"][cat]
        assert (row["tp"], row["fp"], row["fn"]) == (tp, fp, fn) and row["iou_sum"] == pytest.approx(
            iou, abs=1e-12
        )
    for cat in STUFFS:
        row = s["per_class"][cat]
        present = [(t[b, ..., 0] == cat).any().item() for b in range(4)]
        assert (row["tp"], row["fp"], row["fn"]) == (sum(present), 0, 0)


def test_modified_pq_default_rules_equal_torchmetrics_without_void():
    """Without void, crowd or unknown predictions panopticapi's and torchmetrics' rules coincide, so the
    default PQ-dagger equals torchmetrics' up to its float32 IoU."""
    ours = ModifiedPanopticQuality(THINGS, STUFFS, return_per_class=True)
    ref = TMModifiedPQ(THINGS, STUFFS)
    for seed in range(3):
        p, t, _ = _scene(60 + seed, batch=2, h=12, w=16, crowd=False, unknown=False)
        t[t[..., 0] == 0] = torch.tensor([11, 0])
        ours.update(p, t)
        ref.update(p, t)
    per_class = ours.compute()[0]
    present = ~torch.isnan(per_class)
    assert present.sum() >= 4
    assert per_class[present].mean().item() == pytest.approx(ref.compute().item(), abs=1e-6)
