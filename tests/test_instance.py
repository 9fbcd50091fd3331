"""MeanAveragePrecision against pycocotools COCOeval on tensors (random scenes and the spec's cases)."""

from __future__ import annotations

import contextlib
import io
import pickle

import numpy as np
import pytest
import torch
from _coco_reference import coco_eval, random_scene
from torchmetrics import MetricCollection

from torchseg_metrics.instance import MeanAveragePrecision

F64 = torch.float64
STATS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large"]


def _to(batch, device):
    return [{k: v.to(device) for k, v in d.items()} for d in batch]


def _check(metric: MeanAveragePrecision, ev, arrays: bool = True) -> dict:
    """Assert that the metric equals a pycocotools COCOeval to 1e-12; return the result dict."""
    result = metric.compute()
    torch.testing.assert_close(metric.coco_stats().cpu(), torch.from_numpy(ev.stats), rtol=0, atol=1e-12)
    if arrays:
        for key in ("precision", "recall", "scores"):
            torch.testing.assert_close(result[key].cpu(), torch.from_numpy(ev.eval[key]), rtol=0, atol=1e-12)
        # pycocotools' ious: image ids 1.. here, image indices 0.. in torchmetrics' output
        assert set(result["ious"]) == {(i - 1, c) for i, c in ev.ious}
        for (i, c), expected in ev.ious.items():
            got = result["ious"][(i - 1, c)]
            if isinstance(expected, list):
                assert got == []
            else:
                # torchmetrics' compute wrapper squeezes one-element tensors, also inside the dict
                assert torch.equal(got.cpu().reshape(expected.shape), torch.from_numpy(expected))
    return result


def _same(a: object, b: object) -> bool:
    """Exact equality of result dicts (tensors, and the ``ious`` dict of tensors or empty lists)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


def _mask(h: int, w: int, y0: int, x0: int, y1: int, x1: int) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_scenes_equal_pycocotools(iou_type, seed, device) -> None:
    gen = torch.Generator().manual_seed(seed)
    preds, target = random_scene(gen, num_images=9, with_boxes=True, copies=4, max_fp=6)
    metric = MeanAveragePrecision(iou_type=iou_type, class_metrics=True, extended_summary=True).to(device)
    for lo, hi in ((0, 1), (1, 5), (5, 9)):  # uneven batches
        metric.update(_to(preds[lo:hi], device), _to(target[lo:hi], device))
    ev = coco_eval(preds, target, iou_type=iou_type)
    result = _check(metric, ev)
    classes = result["classes"].tolist()
    assert classes == list(ev.params.catIds) and result["classes"].dtype == torch.int32
    for k, c in enumerate(classes):  # torchmetrics' per-class numbers: stats 0 and 8 of a one-class run
        one = coco_eval(preds, target, iou_type=iou_type, cat_ids=[c])
        assert result["map_per_class"][k].item() == one.stats[0]
        assert result["mar_100_per_class"][k].item() == one.stats[8]
    assert all(result[k].dtype == F64 for k in STATS)


def test_micro_average_equals_pooled_pycocotools() -> None:
    preds, target = random_scene(torch.Generator().manual_seed(5), num_images=6, num_classes=4)
    metric = MeanAveragePrecision(iou_type="segm", average="micro", class_metrics=True, extended_summary=True)
    metric.update(preds, target)
    result = _check(metric, coco_eval(preds, target, average="micro"))
    macro = MeanAveragePrecision(iou_type="segm", class_metrics=True)
    macro.update(preds, target)
    expected = macro.compute()
    assert torch.equal(result["map_per_class"], expected["map_per_class"])  # per class is per class
    assert torch.equal(result["classes"], expected["classes"])


def test_custom_thresholds_and_max_dets() -> None:
    preds, target = random_scene(torch.Generator().manual_seed(6), num_images=5, copies=6)
    thr, rec, md = [0.3, 0.55, 0.9], [0.0, 0.25, 0.57, 1.0], [2, 1, 300]
    metric = MeanAveragePrecision(
        iou_type="segm",
        iou_thresholds=thr,
        rec_thresholds=rec,
        max_detection_thresholds=md,
        extended_summary=True,
    )
    metric.update(preds, target)
    result = _check(
        metric, coco_eval(preds, target, iou_thresholds=thr, rec_thresholds=rec, max_dets=sorted(md))
    )
    # spec A.6: stat 0 needs maxDets == 100 and AP50 needs 0.5 among the thresholds
    assert result["map"] == -1 and result["map_50"] == -1 and result["map_75"] == -1
    assert set(result) >= {"mar_1", "mar_2", "mar_300", "mar_300_per_class"}


def test_ties_across_images_follow_image_order() -> None:
    # spec H.3: equal scores, FP on image 1 and TP on image 2 -> AP 0.5; swapped -> ~1
    h = w = 20
    fp = {"masks": _mask(h, w, 0, 0, 5, 5)[None], "scores": torch.tensor([0.5]), "labels": torch.tensor([0])}
    tp = {
        "masks": _mask(h, w, 10, 10, 20, 20)[None],
        "scores": torch.tensor([0.5]),
        "labels": torch.tensor([0]),
    }
    no_gt = {"masks": torch.zeros(0, h, w, dtype=torch.bool), "labels": torch.zeros(0, dtype=torch.long)}
    gt = {"masks": _mask(h, w, 10, 10, 20, 20)[None], "labels": torch.tensor([0])}
    for preds, target, ap50 in (([fp, tp], [no_gt, gt], 0.5), ([tp, fp], [gt, no_gt], 1.0)):
        metric = MeanAveragePrecision(iou_type="segm", extended_summary=True)
        for p, t in zip(preds, target, strict=True):
            metric.update([p], [t])
        result = _check(metric, coco_eval(preds, target))
        assert abs(result["map_50"].item() - ap50) < 1e-9


def test_ties_within_an_image_keep_given_order() -> None:
    # spec H.4: equal scores, the given order decides which detection takes the GT
    h = w = 30
    gt = [{"masks": _mask(h, w, 0, 0, 10, 15)[None], "labels": torch.tensor([0])}]
    exact, partial = _mask(h, w, 0, 0, 10, 15), _mask(h, w, 0, 0, 10, 10)  # IoU 1 and 0.667
    for masks, ap in (([exact, partial], 1.0), ([partial, exact], 0.7)):
        preds = [
            {"masks": torch.stack(masks), "scores": torch.tensor([0.9, 0.9]), "labels": torch.tensor([3, 3])}
        ]
        preds[0]["labels"], gt[0]["labels"] = torch.tensor([0, 0]), torch.tensor([0])
        metric = MeanAveragePrecision(iou_type="segm", extended_summary=True)
        metric.update(preds, gt)
        result = _check(metric, coco_eval(preds, gt))
        assert abs(result["map"].item() - ap) < 1e-9


def test_crowd_absorbs_detections() -> None:
    # spec H.5: two 10x10 detections inside a 50x50 crowd GT are ignored; the third matches a GT: AP ~1
    h = w = 100
    target = [{
        "masks": torch.stack([_mask(h, w, 0, 0, 50, 50), _mask(h, w, 60, 60, 90, 90)]),
        "labels": torch.tensor([1, 1]), "iscrowd": torch.tensor([1, 0]),
    }]  # fmt: skip
    preds = [{
        "masks": torch.stack([_mask(h, w, *c) for c in ((0, 0, 10, 10), (20, 20, 30, 30), (60, 60, 90, 90))]),
        "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([1, 1, 1]),
    }]  # fmt: skip
    metric = MeanAveragePrecision(iou_type="segm", extended_summary=True)
    metric.update(preds, target)
    result = _check(metric, coco_eval(preds, target))
    assert abs(result["map"].item() - 1.0) < 1e-9


def test_area_range_boundaries() -> None:
    # spec A.1 / H.7: an object of area exactly 1024 is small and medium; 9216 is medium and large
    h = w = 120
    sizes = [(32, 32), (96, 96), (31, 33), (97, 96), (40, 40)]
    masks = torch.stack([_mask(h, w, 0, 0, a, b) for a, b in sizes])
    shifted = torch.stack([_mask(h, w, 1, 0, a + 1, b) for a, b in sizes])
    target = [{"masks": masks, "labels": torch.zeros(5, dtype=torch.long)}]
    target_area = [{**target[0], "area": torch.tensor([1024.0, 9216.0, 1024.0, 9216.0, 1600.5])}]
    preds = [
        {"masks": shifted, "scores": torch.linspace(0.9, 0.5, 5), "labels": torch.zeros(5, dtype=torch.long)}
    ]
    for tgt in (target, target_area):
        metric = MeanAveragePrecision(iou_type="segm", extended_summary=True)
        metric.update(preds, tgt)
        _check(metric, coco_eval(preds, tgt))


def test_classes_without_gt_or_detections() -> None:
    # spec H.10: class 7 has detections but no GT anywhere (-1, mAP unchanged); class 2 has GTs only (0)
    preds, target = random_scene(torch.Generator().manual_seed(8), num_images=4, num_classes=2, empty_p=0.0)
    extra = [dict(p) for p in preds]
    extra[0] = {**preds[0], "labels": torch.cat([preds[0]["labels"][:-1], torch.tensor([7])])}
    target2 = [dict(t) for t in target]
    target2[1] = {**target[1], "labels": torch.cat([target[1]["labels"][:-1], torch.tensor([2])])}
    metric = MeanAveragePrecision(iou_type="segm", class_metrics=True, extended_summary=True)
    metric.update(extra, target2)
    result = _check(metric, coco_eval(extra, target2))
    per_class = dict(zip(result["classes"].tolist(), result["map_per_class"].tolist(), strict=True))
    assert per_class[7] == -1 and per_class[2] == 0


def test_more_than_max_dets_per_class() -> None:
    # spec H.11: 101 detections of one class where the 101st (lowest score) is the only TP: recall 0
    h = w = 40
    fps = torch.stack([_mask(h, w, 30, 30, 40, 40)] * 100)
    masks = torch.cat([fps, _mask(h, w, 0, 0, 20, 20)[None]])
    preds = [
        {
            "masks": masks,
            "scores": torch.linspace(1.0, 0.1, 101),
            "labels": torch.zeros(101, dtype=torch.long),
        }
    ]
    target = [{"masks": _mask(h, w, 0, 0, 20, 20)[None], "labels": torch.tensor([0])}]
    metric = MeanAveragePrecision(iou_type="segm", extended_summary=True)
    metric.update(preds, target)
    result = _check(metric, coco_eval(preds, target))
    assert result["mar_100"] == 0
    metric = MeanAveragePrecision(
        iou_type="segm", max_detection_thresholds=[1, 10, 300], extended_summary=True
    )
    metric.update(preds, target)
    result = _check(metric, coco_eval(preds, target, max_dets=[1, 10, 300]))
    assert result["map"] == -1 and result["mar_300"] > 0  # stat 0 looks for maxDets == 100


def test_empty_predictions_and_empty_images() -> None:
    # spec A.7: no detections at all gives AP 0 (pycocotools' loadRes([]) would raise)
    preds, target = random_scene(torch.Generator().manual_seed(9), num_images=3, empty_p=0.0)
    empty = [{"masks": p["masks"][:0], "scores": p["scores"][:0], "labels": p["labels"][:0]} for p in preds]
    metric = MeanAveragePrecision(iou_type="segm", extended_summary=True)
    metric.update(empty, target)
    result = _check(metric, coco_eval(empty, target))
    assert result["map"] == 0 and result["mar_100"] == 0
    nothing = MeanAveragePrecision(iou_type="bbox")
    none = torch.zeros(0, dtype=torch.long)
    nothing.update(
        [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": none}],
        [{"boxes": torch.zeros(0, 4), "labels": none}],
    )
    assert nothing.coco_stats().tolist() == [-1.0] * 12 and nothing.compute()["classes"].numel() == 0


def test_summary_matches_pycocotools_printout() -> None:
    preds, target = random_scene(torch.Generator().manual_seed(10), num_images=4)
    metric = MeanAveragePrecision(iou_type="segm")
    metric.update(preds, target)
    ev = coco_eval(preds, target)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        ev.summarize()
    assert metric.summary() == buffer.getvalue().rstrip("\n")


def test_deterministic_and_repeatable() -> None:
    preds, target = random_scene(torch.Generator().manual_seed(11), num_images=5, copies=5)
    results = []
    for deterministic in (False, False, True):
        torch.use_deterministic_algorithms(deterministic)
        try:
            metric = MeanAveragePrecision(iou_type="segm", class_metrics=True, extended_summary=True)
            metric.update(preds, target)
            results.append(metric.compute())
        finally:
            torch.use_deterministic_algorithms(False)
    for other in results[1:]:
        assert _same(results[0], other)


def test_split_invariance_state_roundtrip_and_bytes() -> None:
    preds, target = random_scene(torch.Generator().manual_seed(12), num_images=6)
    whole = MeanAveragePrecision(iou_type="segm", class_metrics=True)
    whole.update(preds, target)
    parts = MeanAveragePrecision(iou_type="segm", class_metrics=True)
    for i in range(6):
        parts.update(preds[i : i + 1], target[i : i + 1])
    expected = whole.compute()
    clone = pickle.loads(pickle.dumps(parts))
    for other in (parts, clone, parts.clone()):
        got = other.compute()
        assert all(torch.equal(expected[k], got[k]) for k in expected)
    restored = MeanAveragePrecision(iou_type="segm", class_metrics=True)
    restored.persistent(True)
    parts.persistent(True)
    restored.load_state_dict(parts.state_dict())
    assert all(torch.equal(expected[k], restored.compute()[k]) for k in expected)
    n = sum(v.numel() for v in whole.det_scores)
    per_det = sum(
        t.numel() * t.element_size()
        for name in whole._records
        if name.startswith("det")
        for t in getattr(whole, name)
    )
    assert per_det / n <= 64
    parts.reset()
    assert parts.det_scores == [] and int(parts.num_images) == 0


def test_metric_collection_and_forward() -> None:
    preds, target = random_scene(torch.Generator().manual_seed(13), num_images=4, with_boxes=True)
    collection = MetricCollection(
        {"segm": MeanAveragePrecision(iou_type="segm"), "bbox": MeanAveragePrecision(iou_type="bbox")}
    )
    batch_value = collection(preds[:2], target[:2])
    collection.update(preds[2:], target[2:])
    assert torch.equal(
        batch_value["segm_map"], torch.tensor(coco_eval(preds[:2], target[:2]).stats[0], dtype=F64)
    )
    total = collection.compute()
    assert total["bbox_map"].item() == coco_eval(preds, target, iou_type="bbox").stats[0]


def _state(metric):
    return {
        k: [t.clone() for t in v] if isinstance(v, list) else v.clone()
        for k, v in metric.metric_state.items()
    }


def _bad_inputs():
    m = torch.zeros(2, 8, 8, dtype=torch.bool)
    good_p = {"masks": m, "scores": torch.tensor([0.5, 0.4]), "labels": torch.tensor([0, 1])}
    good_t = {"masks": m[:1], "labels": torch.tensor([0])}
    yield [good_p], [good_t, good_t], ValueError, r"`target` must be a list as long as `preds` \(1 images\)"
    yield (
        [{k: v for k, v in good_p.items() if k != "scores"}],
        [good_t],
        ValueError,
        r"`preds\[0\]` must be a dict with keys",
    )
    yield (
        [good_p, good_p],
        [good_t, {"labels": torch.tensor([0])}],
        ValueError,
        r"`target\[1\]` must be a dict with keys",
    )
    yield (
        [{**good_p, "masks": m.to(torch.uint8) + 2}],
        [good_t],
        ValueError,
        r"`preds\[0\]\['masks'\]` must be masks of 0/1 values \(or bool\), got 128 invalid value\(s\), "
        r"the first 2",
    )
    yield (
        [good_p],
        [{**good_t, "masks": m[:1].to(torch.complex64)}],
        TypeError,
        r"`target\[0\]\['masks'\]` must be a tensor of masks \(bool or 0/1 numbers\)",
    )
    yield (
        [{**good_p, "masks": torch.zeros(2, 8, 9, dtype=torch.bool)}],
        [good_t],
        ValueError,
        r"image size \(8, 8\)",
    )
    yield (
        [{**good_p, "scores": torch.tensor([0.5, float("nan")])}],
        [good_t],
        ValueError,
        r"`preds\[0\]\['scores'\]` must be finite \(no NaN or inf\), got 1 invalid value\(s\), the first nan",
    )
    yield (
        [good_p],
        [{**good_t, "labels": torch.tensor([-1])}],
        ValueError,
        r"`target\[0\]\['labels'\]` must be non-negative class ids, got 1 invalid value\(s\), the first -1",
    )
    yield (
        [{**good_p, "labels": torch.tensor([0])}],
        [good_t],
        ValueError,
        r"`preds\[0\]\['labels'\]` must be a 1-d tensor of class ids of shape \(2,\)",
    )
    yield (
        [{**good_p, "labels": torch.tensor([0.0, 1.0])}],
        [good_t],
        TypeError,
        r"`preds\[0\]\['labels'\]` must be an integer tensor",
    )
    yield [good_p], [{**good_t, "iscrowd": torch.tensor([0, 1])}], ValueError, r"`target\[0\]\['iscrowd'\]`"
    yield "x", [good_t], TypeError, r"`preds` must be a list of dicts"


@pytest.mark.parametrize(("preds", "target", "error", "match"), list(_bad_inputs()))
def test_bad_input_leaves_state_unchanged(preds, target, error, match) -> None:
    metric = MeanAveragePrecision(iou_type="segm")
    seed_p, seed_t = random_scene(torch.Generator().manual_seed(14), num_images=2, size=(8, 8))
    metric.update(seed_p, seed_t)
    before = _state(metric)
    with pytest.raises(error, match=match):
        metric.update(preds, target)
    after = _state(metric)
    assert before.keys() == after.keys()
    for k in before:
        if isinstance(before[k], list):
            assert len(before[k]) == len(after[k]) and all(
                torch.equal(a, b) for a, b in zip(before[k], after[k], strict=True)
            )
        else:
            assert torch.equal(before[k], after[k])


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="Did you mean 'segm'"):
        MeanAveragePrecision(iou_type="seg")
    with pytest.raises(ValueError, match="`average` must be one of"):
        MeanAveragePrecision(average="weighted")
    with pytest.raises(ValueError, match="`box_format`"):
        MeanAveragePrecision(box_format="xyzw")
    with pytest.raises(TypeError, match="`class_metrics` must be a bool"):
        MeanAveragePrecision(class_metrics=1)
    with pytest.raises(ValueError, match="`max_detection_thresholds` must be a list of 3"):
        MeanAveragePrecision(max_detection_thresholds=[1, 10])
    assert MeanAveragePrecision(iou_type=("segm",)).iou_type == "segm"
    assert np.array_equal(MeanAveragePrecision().iou_thresholds, np.linspace(0.5, 0.95, 10))


def test_value_errors_deferred_to_compute() -> None:
    # off the CPU, NaN scores and negative labels are recorded without a sync and raised by compute()
    preds, target = random_scene(torch.Generator().manual_seed(15), num_images=3, empty_p=0.0)
    for field, index, match in (
        ("scores", 2, r"`preds\[3\]\['scores'\]` must be finite"),
        ("labels", 1, "non-negative"),
    ):
        metric = MeanAveragePrecision(iou_type="segm")
        metric._read_values_on_host = False  # what update() does for CUDA tensors
        metric.update(preds[:1], target[:1])
        bad = [dict(p) for p in preds]
        value = bad[index][field].clone()
        value[0] = float("nan") if field == "scores" else -3
        bad[index][field] = value
        metric.update(bad, target)  # images 1, 2, 3 of the metric; the bad one is image index + 1
        with pytest.raises(ValueError, match=match.replace("3", str(index + 1))):
            metric.compute()


_BBOX_VALUE_CASES = [
    # (side, key, value planted at [0], expected message); side 0 = preds, 1 = target
    (
        0,
        "boxes",
        float("inf"),
        r"`{side}\[{i}\]\['boxes'\]` must be finite box coordinates \(no NaN or inf\)",
    ),
    (
        1,
        "boxes",
        float("-inf"),
        r"`{side}\[{i}\]\['boxes'\]` must be finite box coordinates \(no NaN or inf\)",
    ),
    (
        1,
        "boxes",
        float("nan"),
        r"`{side}\[{i}\]\['boxes'\]` must be finite box coordinates \(no NaN or inf\)",
    ),
    (0, "scores", float("inf"), r"`{side}\[{i}\]\['scores'\]` must be finite \(no NaN or inf\)"),
    (0, "area", float("nan"), r"`{side}\[{i}\]\['area'\]` must be finite, non-negative areas"),
    (1, "area", -4.0, r"`{side}\[{i}\]\['area'\]` must be finite, non-negative areas"),
    (1, "area", float("inf"), r"`{side}\[{i}\]\['area'\]` must be finite, non-negative areas"),
]


def _plant(scene, index: int, key: str, value: float):
    """A copy of ``scene`` with ``value`` written into the first element of image ``index``'s ``key``."""
    out = [dict(d) for d in scene]
    if key == "area" and key not in out[index]:
        out[index][key] = torch.full((out[index]["labels"].shape[0],), 50.0)
    field = out[index][key].clone()
    field.view(-1)[0] = value
    out[index][key] = field
    return out


@pytest.mark.parametrize(("side", "key", "value", "match"), _BBOX_VALUE_CASES)
def test_non_finite_boxes_scores_and_bad_areas(side, key, value, match) -> None:
    # bbox inputs: NaN/inf coordinates, infinite scores and NaN/inf/negative areas are refused, on
    # the host at once with the state unchanged, off the CPU (no sync) by compute(), by image index
    preds, target = random_scene(
        torch.Generator().manual_seed(21), num_images=3, with_boxes=True, empty_p=0.0
    )
    preds = [{k: v for k, v in p.items() if k != "masks"} for p in preds]
    target = [{k: v for k, v in t.items() if k != "masks"} for t in target]
    scenes = [preds, target]
    scenes[side] = _plant(scenes[side], 2, key, value)
    name = ("preds", "target")[side]
    metric = MeanAveragePrecision(iou_type="bbox")
    metric.update(preds[:1], target[:1])
    before = _state(metric)
    with pytest.raises(ValueError, match=match.format(side=name, i=2) + ", got 1 invalid value"):
        metric.update(*scenes)
    after = _state(metric)
    assert all(
        [torch.equal(a, b) for a, b in zip(before[k], after[k], strict=True)]
        if isinstance(before[k], list)
        else torch.equal(before[k], after[k])
        for k in before
    )
    deferred = MeanAveragePrecision(iou_type="bbox")
    deferred._read_values_on_host = False  # what update() does for CUDA tensors
    deferred.update(preds[:1], target[:1])
    deferred.update(*scenes)  # images 1, 2, 3 of the metric: the bad one is image 3
    with pytest.raises(ValueError, match=match.format(side=name, i=3)):
        deferred.compute()


def test_value_checks_pass_valid_extremes() -> None:
    # zero areas, empty boxes, very large finite coordinates and equal scores are all valid inputs
    preds = [
        {"boxes": torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3e38, 3e38]]),
         "scores": torch.tensor([1.0, 1.0]), "labels": torch.tensor([0, 0]), "area": torch.tensor([0.0, 5.0])}
    ]  # fmt: skip
    target = [
        {
            "boxes": torch.tensor([[0.0, 0.0, 3e38, 3e38]]),
            "labels": torch.tensor([0]),
            "area": torch.tensor([5.0]),
        }
    ]
    metric = MeanAveragePrecision(iou_type="bbox")
    metric.update(preds, target)
    assert metric.compute()["map_50"].item() > 0


@pytest.mark.parametrize("seed", [16, 17])
def test_invariances_empty_images_and_relabelling(seed) -> None:
    preds, target = random_scene(torch.Generator().manual_seed(seed), num_images=5, num_classes=3)
    base = MeanAveragePrecision(iou_type="segm", class_metrics=True)
    base.update(preds, target)
    expected = base.compute()
    # empty images (no detections, no GT) anywhere change nothing, bit for bit
    h, w = preds[0]["masks"].shape[1:]
    empty_p = {
        "masks": torch.zeros(0, h, w, dtype=torch.bool),
        "scores": torch.zeros(0),
        "labels": torch.zeros(0, dtype=torch.long),
    }
    empty_t = {"masks": torch.zeros(0, h, w, dtype=torch.bool), "labels": torch.zeros(0, dtype=torch.long)}
    padded = MeanAveragePrecision(iou_type="segm", class_metrics=True)
    padded.update([empty_p, *preds[:2], empty_p], [empty_t, *target[:2], empty_t])
    padded.update([*preds[2:], empty_p], [*target[2:], empty_t])
    assert _same(expected, padded.compute())
    # relabelling classes permutes the per-class numbers (means change at most in the last bits)
    perm = {0: 11, 1: 4, 2: 7, 3: 2}
    relabel = MeanAveragePrecision(iou_type="segm", class_metrics=True)
    relabel.update(
        [
            {**p, "labels": p["labels"].apply_(perm.get)}
            for p in (dict(p, labels=p["labels"].clone()) for p in preds)
        ],
        [
            {**t, "labels": t["labels"].apply_(perm.get)}
            for t in (dict(t, labels=t["labels"].clone()) for t in target)
        ],
    )
    got = relabel.compute()
    new_index = {perm[c]: k for k, c in enumerate(expected["classes"].tolist())}
    mapped = torch.stack([expected["map_per_class"][new_index[c]] for c in got["classes"].tolist()])
    assert sorted(got["classes"].tolist()) == sorted(perm[c] for c in expected["classes"].tolist())
    assert torch.equal(got["map_per_class"], mapped)
    torch.testing.assert_close(relabel.coco_stats(), base.coco_stats(), rtol=0, atol=1e-12)


def test_empty_side_without_image_size() -> None:
    # an image without ground truth (or detections) may give its masks as zeros(0, 0, 0)
    preds, target = random_scene(torch.Generator().manual_seed(18), num_images=3, empty_p=0.0)
    ref = MeanAveragePrecision(iou_type="segm")
    ref.update(preds, target)
    none = torch.zeros(0, dtype=torch.long)
    preds[1] = {"masks": torch.zeros(0, 0, 0, dtype=torch.bool), "scores": torch.zeros(0), "labels": none}
    target[2] = {"masks": torch.zeros(0, 0, 0, dtype=torch.bool), "labels": none}
    metric = MeanAveragePrecision(iou_type="segm")
    metric.update(preds, target)
    h, w = target[0]["masks"].shape[1:]
    preds[1]["masks"], target[2]["masks"] = (
        torch.zeros(0, h, w, dtype=torch.bool),
        torch.zeros(0, h, w, dtype=torch.bool),
    )
    torch.testing.assert_close(
        metric.coco_stats(), torch.from_numpy(coco_eval(preds, target).stats), rtol=0, atol=1e-12
    )


def test_update_does_not_sync_on_cuda(device) -> None:
    # the default configuration reads nothing back to the host in update() (STYLE.md contract test)
    if device.type != "cuda":
        pytest.skip("the sync check needs a CUDA device")
    preds, target = random_scene(torch.Generator().manual_seed(19), num_images=4, with_boxes=True)
    for iou_type in ("segm", "bbox"):
        metric = MeanAveragePrecision(iou_type=iou_type).to(device)
        p, t = _to(preds, device), _to(target, device)
        torch.cuda.set_sync_debug_mode("error")
        try:
            metric.update(p, t)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        torch.testing.assert_close(
            metric.coco_stats().cpu(),
            torch.from_numpy(coco_eval(preds, target, iou_type=iou_type).stats),
            rtol=0,
            atol=1e-12,
        )
