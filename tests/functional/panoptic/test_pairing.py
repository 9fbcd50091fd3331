"""Panoptic kernels and functions against panopticapi (PNG + JSON in a temp dir) and torchmetrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _panoptic_reference import STUFFS, THINGS, panopticapi_pq, random_scene
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.detection import ModifiedPanopticQuality as TMModifiedPQ
from torchmetrics.detection import PanopticQuality as TMPanopticQuality

from torchseg_metrics.functional import panoptic_pairing
from torchseg_metrics.functional.panoptic.metrics import modified_panoptic_quality, panoptic_quality
from torchseg_metrics.functional.panoptic.pairing import _panoptic_stats_update
from torchseg_metrics.functional.panoptic.scores import panoptic_summary_from_stats

T_IDS, S_IDS = tuple(sorted(THINGS)), tuple(sorted(STUFFS))


def _summary(preds, target, crowd=None, things=T_IDS, stuffs=S_IDS, device="cpu", **kwargs):
    as_t = lambda a: None if a is None else torch.as_tensor(a).to(device)  # noqa: E731
    stats = _panoptic_stats_update(
        as_t(preds),
        as_t(target),
        as_t(crowd),
        things=things,
        stuffs=stuffs,
        allow_unknown_preds_category=kwargs.pop("allow_unknown_preds_category", True),
        **kwargs,
    )
    assert stats.bad.tolist() == [0, 0, 0, 0]
    return panoptic_summary_from_stats(*(s.cpu() for s in stats[:4]), things=things, stuffs=stuffs)


def _assert_matches_panopticapi(ours: dict, ref: dict) -> None:
    for cat, (tp, fp, fn, iou) in ref["stats"].items():
        row = ours["per_class"][cat]
        assert (row["tp"], row["fp"], row["fn"]) == (tp, fp, fn), cat
        assert row["iou_sum"] == pytest.approx(iou, abs=1e-12, rel=0)
    for group in ("All", "Things", "Stuff"):
        assert ours[group]["n"] == ref[group]["n"], group
        for key in ("pq", "sq", "rq"):
            a, b = ours[group][key], ref[group][key]
            assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-12, (group, key, a, b)


@pytest.mark.parametrize("seed", range(16))
def test_random_scenes_match_panopticapi(seed, tmp_path):
    preds, target, crowd = random_scene(np.random.default_rng(seed))
    ref = panopticapi_pq(preds, target, THINGS, STUFFS, tmp_path, crowd)
    # both record builders: run-length records (CPU default) and one record per pixel (CUDA default)
    for compress in (True, False):
        _assert_matches_panopticapi(_summary(preds, target, crowd, compress_runs=compress), ref)


def test_random_scenes_exercise_the_rules():
    """The scenes above really hold crowd, void, unknown preds, split stuff and empty images."""
    seen = np.zeros(5, int)
    for seed in range(16):
        preds, target, crowd = random_scene(np.random.default_rng(seed))
        split_stuff = any(
            len(np.unique(preds[b, ..., 1][preds[b, ..., 0] == s])) > 1 for b in range(3) for s in STUFFS
        )
        empty = (target[..., 0] == 0).all(axis=(1, 2)).any()
        seen += [crowd.any(), (target[..., 0] == 0).any(), (preds[..., 0] == 99).any(), split_stuff, empty]
    assert (seen >= [8, 8, 8, 8, 2]).all(), seen


def _image(rows: list[str], legend: dict[str, tuple[int, int]]) -> np.ndarray:
    return np.array([[legend[ch] for ch in row] for row in rows], dtype=np.int64)[None]


LEGEND = {".": (0, 0), "a": (1, 1), "b": (1, 2), "c": (2, 1), "s": (10, 0), "S": (10, 1), "u": (99, 0)}


@pytest.mark.parametrize(
    ("name", "target", "preds", "crowd", "expected"),
    [
        # IoU exactly 0.5 is not a match: 1 FN and 1 FP for class 1
        ("iou_exactly_half", ["aaaa", "ssss"], ["aabb", "ssss"], None, {1: (0, 2, 1)}),
        # IoU 3/5 > 0.5 matches
        ("iou_above_half", ["aaa.", "ssss"], ["aaaa", "ssss"], None, {1: (1, 0, 0)}),
        # unmatched pred 'c' with exactly 50% on void: still an FP
        ("fp_half_void", ["..ss", "ssss"], ["cccc", "ssss"], None, {2: (0, 1, 0)}),
        # unmatched pred with 3/5 on void: ignored
        ("fp_above_half_void", ["...s", "ssss"], ["cccc", "cSss"], None, {2: (0, 0, 0)}),
        # pred on a same-class crowd region: ignored; crowd is never an FN
        ("pred_on_own_crowd", ["aaaa", "ssss"], ["bbbb", "ssss"], ["xxxx", "...."], {1: (0, 0, 0)}),
        # pred on a crowd region of another class: an FP
        ("pred_on_other_crowd", ["aaaa", "ssss"], ["cccc", "ssss"], ["xxxx", "...."], {2: (0, 1, 0)}),
        # 2 of 4 on void + 1 of 4 on own crowd: 3/4 forgiven
        ("void_plus_crowd", ["..a.", "ssss"], ["bbbb", "ssss"], ["..x.", "...."], {1: (0, 0, 0)}),
        # two crowd segments of class 1: only the last (largest instance id, 'b') counts, so the pred
        # lying 3/4 on crowd 'a' is an FP
        ("only_last_crowd", ["aaab", "ssss"], ["aaac", "ssss"], ["xxxx", "...."], {1: (0, 1, 0)}),
        # a stuff class predicted as two segments: 1 TP + 1 FP (panopticapi's per-segment stuff)
        ("split_stuff", ["ssss", "ssss"], ["ssss", "sSSS"], None, {10: (1, 1, 0)}),
        # unknown prediction category is void: target 'a' is missed, IoU of s unaffected
        ("unknown_pred_is_void", ["aaaa", "ssss"], ["uuuu", "ssss"], None, {1: (0, 0, 1), 10: (1, 0, 0)}),
        # empty image: all void in target and prediction
        ("empty", ["....", "...."], ["uuuu", "uuuu"], None, {1: (0, 0, 0), 10: (0, 0, 0)}),
    ],
)
def test_hand_made_cases_match_panopticapi(name, target, preds, crowd, expected, tmp_path):
    t, p = _image(target, LEGEND), _image(preds, LEGEND)
    c = None if crowd is None else np.array([[ch == "x" for ch in row] for row in crowd])[None]
    ref = panopticapi_pq(p, t, THINGS, STUFFS, tmp_path, c)
    ours = _summary(p, t, c)
    _assert_matches_panopticapi(ours, ref)
    for cat, counts in expected.items():
        row = ours["per_class"][cat]
        assert (row["tp"], row["fp"], row["fn"]) == counts, (name, cat)


def test_iou_value_and_absent_classes():
    """Hand-computed: class 1 IoU 3/4 (pred 'a' has 4 pixels, 3 on target 'a'), stuff 10 IoU 4/5;
    classes absent from target and prediction are NaN and left out of the means."""
    t, p = _image(["aaas", "ssss"], LEGEND), _image(["aaaa", "ssss"], LEGEND)
    s = _summary(p, t)
    assert s["per_class"][1]["iou_sum"] == 3 / 4 and s["per_class"][10]["iou_sum"] == 4 / 5
    assert s["All"] == {"pq": (0.75 + 0.8) / 2, "sq": (0.75 + 0.8) / 2, "rq": 1.0, "n": 2}
    assert math.isnan(s["per_class"][2]["pq"]) and s["per_class"][2]["tp"] == 0
    per_class = panoptic_quality(
        torch.as_tensor(p), torch.as_tensor(t), THINGS, STUFFS, return_per_class=True, return_sq_and_rq=True
    )
    assert per_class.shape == (5, 3) and per_class.dtype == torch.float64
    assert per_class[0].tolist() == [0.75, 0.75, 1.0] and per_class[3].tolist() == [0.8, 0.8, 1.0]
    assert torch.isnan(per_class[1:3]).all() and torch.isnan(per_class[4]).all()


def test_empty_group_is_nan_not_an_error():
    t, p = _image(["aaaa"], LEGEND), _image(["aaaa"], LEGEND)
    s = _summary(p, t)
    assert s["Stuff"]["n"] == 0 and math.isnan(s["Stuff"]["pq"]) and s["Things"]["pq"] == 1.0
    empty = _image(["...."], LEGEND)
    pq = panoptic_quality(
        torch.as_tensor(empty), torch.as_tensor(empty), THINGS, STUFFS, allow_unknown_preds_category=True
    )
    assert math.isnan(pq.item())


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("modified", [False, True])
def test_compat_torchmetrics_equals_torchmetrics(seed, modified):
    preds, target, _ = random_scene(np.random.default_rng(100 + seed), batch=2, h=12, w=16, crowd=False)
    p, t = torch.as_tensor(preds), torch.as_tensor(target)
    if modified:
        ref = TMModifiedPQ(THINGS, STUFFS, allow_unknown_preds_category=True)(p, t)
        ours = modified_panoptic_quality(
            p, t, THINGS, STUFFS, allow_unknown_preds_category=True, compat="torchmetrics"
        )
        torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)
        return
    for flags in [(False, False), (True, False), (False, True), (True, True)]:
        kw = {
            "return_sq_and_rq": flags[0],
            "return_per_class": flags[1],
            "allow_unknown_preds_category": True,
        }
        ref = TMPanopticQuality(THINGS, STUFFS, **kw)(p, t)
        ours = panoptic_quality(p, t, THINGS, STUFFS, compat="torchmetrics", **kw)
        assert ours.shape == ref.shape and ours.dtype == torch.float64
        torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0, equal_nan=True)


def test_torchmetrics_quirk_unknown_pred_on_target():
    """Spec H.18: 4 of 10 target pixels predicted right, 6 as an unknown category: torchmetrics
    scores IoU 1.0 (pred void removed from the target area); panopticapi IoU 0.4, an FN."""
    t = _image(["aaaaaaaaaa"], LEGEND)
    p = _image(["aaaauuuuuu"], LEGEND)
    kw = {"allow_unknown_preds_category": True, "return_per_class": True}
    tm = panoptic_quality(torch.as_tensor(p), torch.as_tensor(t), {1}, {10}, compat="torchmetrics", **kw)
    assert tm[0, 0].item() == 1.0
    ours = panoptic_quality(torch.as_tensor(p), torch.as_tensor(t), {1}, {10}, **kw)
    assert ours[0, 0].item() == 0.0


def test_modified_pq_stuff_iou_without_threshold():
    """Spec H.18: PQ-dagger of stuff with IoU 0.3 is 0.3; a stuff class only predicted costs nothing."""
    t = _image(["ssssssssss"], LEGEND)
    p = _image(["sssaaaaaaa"], {**LEGEND, "a": (11, 0)})
    kw = {"return_per_class": True}
    ours = modified_panoptic_quality(torch.as_tensor(p), torch.as_tensor(t), {1}, {10, 11}, **kw)
    assert ours[0].tolist()[1] == pytest.approx(0.3, abs=1e-15)
    assert math.isnan(ours[0, 0].item()) and math.isnan(ours[0, 2].item())  # 1 absent, 11 only predicted
    assert modified_panoptic_quality(torch.as_tensor(p), torch.as_tensor(t), {1}, {10, 11}).item() == 0.3
    tm = TMModifiedPQ({1}, {10, 11})(torch.as_tensor(p), torch.as_tensor(t))
    compat = modified_panoptic_quality(
        torch.as_tensor(p), torch.as_tensor(t), {1}, {10, 11}, compat="torchmetrics"
    )
    assert compat.item() == tm.item() == np.float32(0.3)  # torchmetrics' IoU is float32


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8])
def test_device_dtype_and_deterministic_mode(device, dtype):
    preds, target, crowd = random_scene(np.random.default_rng(7))
    expected = _summary(preds, target, crowd)
    p, t = torch.as_tensor(preds).to(device, dtype), torch.as_tensor(target).to(device, dtype)
    c = torch.as_tensor(crowd).to(device)
    torch.use_deterministic_algorithms(True)
    try:
        stats = _panoptic_stats_update(p, t, c, things=T_IDS, stuffs=S_IDS, allow_unknown_preds_category=True)
        got = panoptic_summary_from_stats(*(s.cpu() for s in stats[:4]), things=T_IDS, stuffs=S_IDS)
        again = _panoptic_stats_update(p, t, c, things=T_IDS, stuffs=S_IDS, allow_unknown_preds_category=True)
        fixed = _panoptic_stats_update(  # the one-record-per-pixel (CUDA) path
            p, t, c, things=T_IDS, stuffs=S_IDS, allow_unknown_preds_category=True, compress_runs=False
        )
    finally:
        torch.use_deterministic_algorithms(False)
    for cat, row in expected["per_class"].items():
        assert got["per_class"][cat] == pytest.approx(row, abs=1e-12, nan_ok=True)
    assert torch.equal(stats.iou_sum, again.iou_sum) and torch.equal(stats.tp, again.tp)
    assert all(torch.equal(a, b) for a, b in zip(stats[1:], fixed[1:], strict=True))
    torch.testing.assert_close(stats.iou_sum, fixed.iou_sum, atol=1e-12, rtol=0)


def test_large_ids_use_binary_search_path(tmp_path):
    """Category ids above the lookup-table bound and instance ids near 2**31 give the same stats."""
    preds, target, crowd = random_scene(np.random.default_rng(3))
    shift = {c: c + 10**9 for c in [*THINGS, *STUFFS, 99]}
    big_p, big_t = preds.copy(), target.copy()
    for arr in (big_p, big_t):
        arr[..., 0] = np.vectorize(lambda c: shift.get(c, c))(arr[..., 0])
        arr[..., 1] += 2**31 - 10
    things, stuffs = tuple(shift[c] for c in T_IDS), tuple(shift[c] for c in S_IDS)
    ours = _summary(big_p, big_t, crowd, things=things, stuffs=stuffs)
    ref = _summary(preds, target, crowd)
    for a, b in zip(ours["per_class"].values(), ref["per_class"].values(), strict=True):
        assert a == pytest.approx(b, nan_ok=True)
    assert ours["All"] == pytest.approx(ref["All"])


def test_one_spatial_dim_and_3d_inputs():
    preds, target, crowd = random_scene(np.random.default_rng(5), batch=2, h=8, w=12)
    ref = panoptic_quality(
        torch.as_tensor(preds),
        torch.as_tensor(target),
        THINGS,
        STUFFS,
        target_crowd=torch.as_tensor(crowd),
        allow_unknown_preds_category=True,
    )
    flat = panoptic_quality(
        torch.as_tensor(preds.reshape(2, 96, 2)),
        torch.as_tensor(target.reshape(2, 96, 2)),
        THINGS,
        STUFFS,
        target_crowd=torch.as_tensor(crowd.reshape(2, 96)),
        allow_unknown_preds_category=True,
    )
    vol = panoptic_quality(
        torch.as_tensor(preds.reshape(2, 2, 4, 12, 2)),
        torch.as_tensor(target.reshape(2, 2, 4, 12, 2)),
        THINGS,
        STUFFS,
        target_crowd=torch.as_tensor(crowd.reshape(2, 2, 4, 12)),
        allow_unknown_preds_category=True,
    )
    assert flat.item() == ref.item() == vol.item()


GOOD_P = torch.zeros(1, 2, 2, 2, dtype=torch.int64)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"preds": GOOD_P.to(torch.complex64)}, TypeError, "`preds` must be an integer tensor"),
        ({"preds": GOOD_P.double() + 0.25}, ValueError, "`preds` must be integer ids"),
        ({"target": [[1]]}, TypeError, "`target` must be a torch.Tensor"),
        (
            {"preds": GOOD_P[..., :1], "target": GOOD_P[..., :1]},
            ValueError,
            r"2 channels in the last dimension.*`preds` must be of shape \(B, \*spatial, 2\)",
        ),
        (
            {"preds": GOOD_P[0, 0], "target": GOOD_P[0, 0]},
            ValueError,
            r"at least one spatial dimension.*`preds` must be of shape \(B, \*spatial, 2\)",
        ),
        ({"target": GOOD_P[:, :1]}, ValueError, "`target` must be of the same shape as `preds`"),
        ({"target_crowd": torch.zeros(1, 2, 2)}, TypeError, "`target_crowd` must be a bool tensor"),
        (
            {"target_crowd": torch.zeros(1, 2, 3, dtype=torch.bool)},
            ValueError,
            "`target_crowd` must be of shape",
        ),
        (
            {"things": {1}, "stuffs": {1, 2}},
            ValueError,
            r"`stuffs` must be disjoint from `things`, got shared ids \[1\]",
        ),
        ({"things": set(), "stuffs": []}, ValueError, "`things` must be non-empty"),
        ({"things": {1.5}}, TypeError, "`things` must be a collection of integer category ids"),
        ({"things": "12"}, TypeError, "`things` must be a collection of integer category ids"),
        ({"stuffs": {-3}}, ValueError, r"`stuffs` must be category ids in \[0, 2147483647\]"),
        ({"compat": "torchmetric"}, ValueError, "Did you mean 'torchmetrics'"),
        (
            {"preds": GOOD_P - 1},
            ValueError,
            r"`preds` must be integer ids .* in \[0, 2147483647\], got 4 pixels outside",
        ),
        (
            {"target": GOOD_P + 2**31},
            ValueError,
            r"`target` must be integer ids .*, got 4 pixels outside that range",
        ),
        (
            {"preds": GOOD_P + 5},
            ValueError,
            "`preds` must be categories in `things` or `stuffs` .*got 4 pixels of unknown",
        ),
    ],
)
def test_bad_input_messages(kwargs, error, match):
    args = {"preds": GOOD_P + 1, "target": GOOD_P + 1, "things": {1}, "stuffs": {2}, **kwargs}
    with pytest.raises(error, match=match):
        panoptic_quality(**args)


def test_crowd_rejected_in_torchmetrics_mode():
    crowd = torch.zeros(1, 2, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="`target_crowd` must be None with compat='torchmetrics'"):
        panoptic_quality(GOOD_P + 1, GOOD_P + 1, {1}, {2}, target_crowd=crowd, compat="torchmetrics")


def _stats(preds, target, crowd, things=T_IDS, stuffs=S_IDS):
    return _panoptic_stats_update(
        torch.as_tensor(preds),
        torch.as_tensor(target),
        None if crowd is None else torch.as_tensor(crowd),
        things=things,
        stuffs=stuffs,
        allow_unknown_preds_category=True,
    )


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), perm_seed=st.integers(0, 1000), empty=st.integers(0, 2))
def test_permuting_images_relabelling_and_empty_images_change_nothing(seed, perm_seed, empty):
    preds, target, crowd = random_scene(np.random.default_rng(seed), batch=3, h=10, w=12)
    base = _stats(preds, target, crowd)
    rng = np.random.default_rng(perm_seed)
    order = rng.permutation(3)
    void_t = np.zeros((empty, 10, 12, 2), np.int64)
    void_p = np.full((empty, 10, 12, 2), 99, np.int64)
    p2 = np.concatenate([preds[order], void_p])
    t2 = np.concatenate([target[order], void_t])
    c2 = np.concatenate([crowd[order], np.zeros((empty, 10, 12), bool)])
    # relabel categories: things 1, 2, 3 -> 30, 20, 40 (class order 20, 30, 40), stuffs 10, 11 -> 51, 50
    mapping = {1: 30, 2: 20, 3: 40, 10: 51, 11: 50}
    for arr in (p2, t2):
        arr[..., 0] = np.vectorize(lambda c: mapping.get(c, c))(arr[..., 0])
    got = _stats(p2, t2, c2, things=(20, 30, 40), stuffs=(50, 51))
    perm = [1, 0, 2, 4, 3]  # new class index of each old class
    for name in ("tp", "fp", "fn"):
        assert torch.equal(getattr(got, name)[perm], getattr(base, name)), name
    torch.testing.assert_close(got.iou_sum[perm], base.iou_sum, atol=1e-12, rtol=0)


def test_non_contiguous_inputs():
    preds, target, crowd = random_scene(np.random.default_rng(11))
    p, t, c = torch.as_tensor(preds), torch.as_tensor(target), torch.as_tensor(crowd)
    strided = lambda x: x.transpose(1, 2).contiguous().transpose(1, 2)  # noqa: E731
    wide = torch.cat([p, p], dim=-1)[..., 1:3]  # a (B, H, W, 2) view with row stride 4
    wide[..., 0], wide[..., 1] = p[..., 0], p[..., 1]
    for args in [(strided(p), strided(t), strided(c)), (wide, t, c)]:
        assert not args[0].is_contiguous()
        got, ref = _stats(*args), _stats(p, t, c)
        assert all(torch.equal(a, b) for a, b in zip(got, ref, strict=True))


@pytest.mark.parametrize("chunk", [1, 3, 4, 7, 50, 1 << 18])
@pytest.mark.parametrize("with_crowd", [True, False])
@pytest.mark.parametrize("variant", [{}, {"modified": True}])
def test_run_compaction_in_chunks(monkeypatch, chunk, with_crowd, variant):
    """CPU run compaction chunk by chunk: chunk edges anywhere (inside runs and images) change nothing."""
    preds, target, crowd = random_scene(np.random.default_rng(13), batch=3, h=9, w=13)
    for arr in (preds, target):  # runs that would continue across image boundaries
        arr[:, -2:, -3:], arr[:, :2, :3] = (1, 5), (1, 5)
    crowd[:, -2:, -3:], crowd[:, :2, :3] = False, False
    p, t = torch.as_tensor(preds), torch.as_tensor(target)
    c = torch.as_tensor(crowd) if with_crowd else None
    kwargs = {"things": T_IDS, "stuffs": S_IDS, "allow_unknown_preds_category": True, **variant}
    whole = _panoptic_stats_update(p, t, c, **kwargs)
    fixed = _panoptic_stats_update(p, t, c, compress_runs=False, **kwargs)  # one record per pixel
    monkeypatch.setattr(panoptic_pairing, "_CHUNK_PIXELS", chunk)
    img, t_cat, t_inst, rec_crowd, p_cat, p_inst, w = panoptic_pairing._records(p, t, c, True)
    n = p[..., 0].numel()
    assert bool((w > 0).all()) and int(w.sum()) == n  # records are runs that expand to the pixels
    assert torch.equal(img.repeat_interleave(w), torch.arange(n) // (n // 3))
    for cols, src in [((t_cat, t_inst), t), ((p_cat, p_inst), p)]:
        assert torch.equal(torch.stack(cols, 1).repeat_interleave(w, 0), src.reshape(n, 2))
    if with_crowd:
        assert torch.equal(rec_crowd.repeat_interleave(w), c.reshape(n))
    got = _panoptic_stats_update(p, t, c, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(got, whole, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(got[1:], fixed[1:], strict=True))
    torch.testing.assert_close(got.iou_sum, fixed.iou_sum, atol=1e-12, rtol=0)
