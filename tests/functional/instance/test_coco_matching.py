"""COCO greedy matching kernel against pycocotools ``COCOeval.evaluateImg`` and the spec's A.4 rules."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from _coco_reference import build_coco, coco_iou_matrix, random_scene
from pycocotools.cocoeval import COCOeval

from torchseg_metrics.functional.instance.coco_matching import (
    CocoMatches,
    _coco_match_update,
    _pack_match_flags,
    _unpack_match_flags,
)
from torchseg_metrics.functional.instance.coco_params import COCO_AREA_RANGES, COCO_IOU_THRESHOLDS

METHODS = ["parallel", "sequential"]
F64 = torch.float64


def _run(
    preds, target, thresholds=COCO_IOU_THRESHOLDS, max_det=100, method="parallel", device="cpu"
) -> CocoMatches:
    """Pad one scene and match it; IoUs come from pycocotools so that only matching is under test."""
    b = len(preds)
    d = max(len(p["labels"]) for p in preds)
    g = max(len(t["labels"]) for t in target)
    ious = torch.zeros(b, d, g, dtype=F64)
    f = {k: torch.zeros(b, d, dtype=t) for k, t in (("s", torch.float32), ("l", torch.long), ("a", F64))}
    dv = torch.zeros(b, d, dtype=torch.bool)
    gl, ga = torch.zeros(b, g, dtype=torch.long), torch.zeros(b, g, dtype=F64)
    gv, gc = torch.zeros(b, g, dtype=torch.bool), torch.zeros(b, g, dtype=torch.bool)
    for i, (p, t) in enumerate(zip(preds, target, strict=True)):
        n, k = len(p["labels"]), len(t["labels"])
        ious[i, :n, :k] = torch.from_numpy(coco_iou_matrix(p, t))
        f["s"][i, :n], f["l"][i, :n], dv[i, :n] = p["scores"], p["labels"], True
        f["a"][i, :n] = p["masks"].sum((1, 2)).double()
        gl[i, :k], gv[i, :k], gc[i, :k] = t["labels"], True, t["iscrowd"].bool()
        ga[i, :k] = t["area"].double() if "area" in t else t["masks"].sum((1, 2)).double()
    args = [ious, f["s"], f["l"], dv, f["a"], gl, gv, gc, ga]
    args += [torch.tensor(thresholds, dtype=F64), torch.tensor(COCO_AREA_RANGES, dtype=F64)]
    return _coco_match_update(*[x.to(device) for x in args], max_det, method=method)


def _reference(preds, target, thresholds, max_det) -> COCOeval:
    gt, dt = build_coco(preds, target)
    ev = COCOeval(gt, dt, iouType="segm")
    ev.params.iouThrs = torch.tensor(thresholds, dtype=F64).numpy()
    ev.params.maxDets = [1, max_det, max_det]  # evaluate() sorts them and matches with the last
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
    return ev


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("seed", "thresholds", "max_det", "copies"),
    [
        (0, COCO_IOU_THRESHOLDS, 100, 3),
        (1, (0.0, 0.3, 0.5, 0.77, 1.0), 100, 4),
        (2, COCO_IOU_THRESHOLDS, 3, 6),
    ],
)
def test_flags_equal_pycocotools_evaluate_img(method, seed, thresholds, max_det, copies, device) -> None:
    preds, target = random_scene(torch.Generator().manual_seed(seed), num_images=6, copies=copies)
    out = _run(preds, target, thresholds, max_det, method, device)
    ev = _reference(preds, target, thresholds, max_det)
    # detection ids of loadRes are 1.. in (image, given order); GT ids are 1.. in (image, given order)
    det_base, gt_base, offset_d, offset_g = {}, {}, 0, 0
    for i, (p, t) in enumerate(zip(preds, target, strict=True)):
        det_base[i + 1], gt_base[i + 1] = offset_d, offset_g
        offset_d, offset_g = offset_d + len(p["labels"]), offset_g + len(t["labels"])
    order, rank = out.order.cpu(), out.rank.cpu()
    matched, ignored, counted = out.matched.cpu(), out.ignored.cpu(), out.gt_counted.cpu()
    checked = 0
    for e in ev.evalImgs:
        if e is None:
            continue
        i, a = e["image_id"] - 1, [list(r) for r in ev.params.areaRng].index(list(e["aRng"]))
        pos = {int(order[i, j]) + det_base[i + 1] + 1: j for j in range(len(preds[i]["labels"]))}
        for j, det_id in enumerate(e["dtIds"]):
            s = pos[det_id]
            assert int(rank[i, s]) == j  # rank within the (image, class) cell
            assert matched[i, s, :, a].tolist() == (e["dtMatches"][:, j] > 0).tolist()
            assert ignored[i, s, :, a].tolist() == e["dtIgnore"][:, j].astype(bool).tolist()
            checked += 1
        for gt_id, gt_ign in zip(e["gtIds"], e["gtIgnore"], strict=True):
            assert bool(counted[i, gt_id - gt_base[i + 1] - 1, a]) == (not gt_ign)
    assert checked > 50
    # detections cut by max_det never match
    assert not matched[rank >= max_det].any()


def _one_image(
    ious, gt_crowd=None, gt_area=None, det_area=None, scores=None, thresholds=(0.5,), method="parallel"
):
    """Match one image of one class from a hand-made IoU table (rows in score order)."""
    ious = torch.tensor(ious, dtype=F64)[None]
    _, d, g = ious.shape
    scores = torch.tensor(scores if scores is not None else [1.0 - 0.01 * i for i in range(d)])[None]
    crowd = torch.tensor(gt_crowd or [False] * g)[None]
    ga = torch.tensor(gt_area or [100.0] * g, dtype=F64)[None]
    da = torch.tensor(det_area or [100.0] * d, dtype=F64)[None]
    zeros_d, zeros_g = torch.zeros(1, d, dtype=torch.long), torch.zeros(1, g, dtype=torch.long)
    return _coco_match_update(
        ious, scores, zeros_d, torch.ones(1, d, dtype=torch.bool), da, zeros_g,
        torch.ones(1, g, dtype=torch.bool), crowd, ga, torch.tensor(thresholds, dtype=F64),
        torch.tensor(COCO_AREA_RANGES, dtype=F64), 100, method=method,
    )  # fmt: skip


@pytest.mark.parametrize("method", METHODS)
def test_crowd_absorbs_many_and_regular_beats_ignored(method) -> None:
    # spec A.4 / H.5: two detections inside a crowd region (IoU 1.0 = inter / det area) are both matched
    # and ignored; a regular GT with a lower IoU is preferred over the crowd one
    out = _one_image([[0.0, 1.0], [0.0, 1.0], [0.9, 1.0]], gt_crowd=[False, True], method=method)
    assert out.matched[0, :, 0, 0].tolist() == [True, True, True]
    assert out.ignored[0, :, 0, 0].tolist() == [True, True, False]
    assert out.gt_counted[0, :, 0].tolist() == [True, False]


@pytest.mark.parametrize("method", METHODS)
def test_ties_go_to_the_later_gt_and_equal_threshold_matches(method) -> None:
    # spec A.4: IoU >= t matches (0.5 at t = 0.5); equal IoUs go to the later GT, so the second
    # detection can still take the first GT. Taking the earlier GT would leave detection 2 unmatched.
    out = _one_image([[0.5, 0.5], [0.6, 0.0]], method=method)
    assert out.matched[0, :, 0, 0].tolist() == [True, True]
    # best = min(t, 1 - 1e-10): at t = 1.0 an IoU of 1 - 1e-10 still matches, 1 - 2e-10 does not
    out = _one_image([[1 - 1e-10], [1 - 2e-10]], thresholds=(1.0,), method=method)
    assert out.matched[0, :, 0, 0].tolist() == [True, False]


@pytest.mark.parametrize("method", METHODS)
def test_area_rules(method) -> None:
    # H.9: a matched detection whose own area is out of range stays a TP ("small": area <= 1024);
    # an unmatched out-of-range detection is ignored, an unmatched in-range one is an FP.
    out = _one_image([[0.9], [0.1], [0.1]], gt_area=[500.0], det_area=[5000.0, 5000.0, 50.0], method=method)
    small = 1
    assert out.matched[0, :, 0, small].tolist() == [True, False, False]
    assert out.ignored[0, :, 0, small].tolist() == [False, True, False]
    # H.13: a GT outside the range is ignored; the detection matching it is ignored; it is taken only once
    out = _one_image([[0.9], [0.8]], gt_area=[5000.0], det_area=[500.0, 500.0], method=method)
    assert out.matched[0, :, 0, small].tolist() == [True, False]
    assert out.ignored[0, :, 0, small].tolist() == [True, False]
    # H.7: area exactly 1024 counts in both small and medium (inclusive bounds)
    out = _one_image([[0.9]], gt_area=[1024.0], method=method)
    assert out.gt_counted[0, 0].tolist() == [True, True, True, False]


def test_order_is_stable_and_padding_last() -> None:
    ious = torch.zeros(1, 4, 1, dtype=F64)
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.7]])
    valid = torch.tensor([[True, True, True, False]])
    args = (torch.zeros(1, 4), torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.bool))
    out = _coco_match_update(
        ious, scores, torch.tensor([[1, 0, 1, 0]]), valid, args[0].double(), args[1], args[2],
        torch.zeros(1, 1, dtype=torch.bool), torch.ones(1, 1, dtype=F64), torch.tensor([0.5], dtype=F64),
        torch.tensor(COCO_AREA_RANGES, dtype=F64), 100,
    )  # fmt: skip
    assert out.order.tolist() == [[1, 0, 2, 3]]  # equal scores keep input order, padding last
    assert out.rank.tolist() == [[0, 0, 1, 1]]  # ranks within class 0 and class 1


def test_methods_agree_and_deterministic(device) -> None:
    preds, target = random_scene(torch.Generator().manual_seed(7), num_images=5, copies=5)
    a = _run(preds, target, method="parallel", device=device)
    with torch.inference_mode():
        torch.use_deterministic_algorithms(True)
        try:
            b = _run(preds, target, method="sequential", device=device)
            c = _run(preds, target, method="parallel", device=device)
        finally:
            torch.use_deterministic_algorithms(False)
    for x, y, z in zip(a, b, c, strict=True):
        assert torch.equal(x, y) and torch.equal(x, z)


@pytest.mark.parametrize("seed", range(4))
def test_parallel_skips_detections_without_candidates(seed) -> None:
    """ "parallel" drops detections that overlap no same-class ground truth (interleaved with the others,
    or all of them) before its rounds; the result must equal "sequential", which keeps every one."""
    gen = torch.Generator().manual_seed(seed)
    b, d, g = 3, 40, 7
    ious = torch.randint(0, 11, (b, d, g), generator=gen).to(F64) / 10
    ious[:, torch.randperm(d, generator=gen)[: d // 2]] = 0.0  # half of the detections overlap nothing
    ious[1, 5:] = 0.0  # one image has fewer candidates than the others
    scores = torch.randint(0, 6, (b, d), generator=gen).float()  # ties: the stable order matters
    labels, gt_labels = torch.randint(0, 2, (b, d), generator=gen), torch.randint(0, 2, (b, g), generator=gen)
    det_valid, gt_valid = torch.rand(b, d, generator=gen) > 0.1, torch.rand(b, g, generator=gen) > 0.1
    crowd = torch.rand(b, g, generator=gen) > 0.8
    det_area, gt_area = (
        torch.rand(b, d, generator=gen).double() * 2e4,
        torch.rand(b, g, generator=gen).double() * 2e4,
    )
    thr, rng = torch.tensor(COCO_IOU_THRESHOLDS, dtype=F64), torch.tensor(COCO_AREA_RANGES, dtype=F64)
    for scale in (1.0, 0.0):  # 0: no detection has a candidate
        args = (ious * scale, scores, labels, det_valid, det_area, gt_labels, gt_valid, crowd, gt_area)
        fast = _coco_match_update(*args, thr, rng, 100, method="parallel")
        slow = _coco_match_update(*args, thr, rng, 100, method="sequential")
        for x, y in zip(fast, slow, strict=True):
            assert torch.equal(x, y)
        assert bool(fast.matched.any()) == (scale > 0)


def test_pack_roundtrip() -> None:
    gen = torch.Generator().manual_seed(0)
    m, i = torch.rand(7, 10, 4, generator=gen) > 0.5, torch.rand(7, 10, 4, generator=gen) > 0.5
    packed = _pack_match_flags(m, i)
    assert packed.dtype == torch.uint8 and packed.shape == (7, 10)
    um, ui = _unpack_match_flags(packed, 10, 4)
    assert torch.equal(um, m) and torch.equal(ui, i)
    assert _pack_match_flags(m[:0], i[:0]).shape == (0, 10)


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match="Did you mean 'parallel'"):
        _one_image([[0.9]], method="paralel")
