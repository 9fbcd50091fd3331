"""The input forms torchmetrics' ``MeanAveragePrecision`` accepts, against pycocotools and our bool form.

Integer boxes, 0/1 masks of any number type, empty boxes or masks given as shape ``(0,)``, both
IoU types at once (``iou_type=("bbox", "segm")`` with prefixed keys) and the many-detections warning.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from _coco_reference import coco_eval, random_scene

from torchseg_metrics.instance import MeanAveragePrecision


def _scene(seed: int, **kwargs):
    preds, target = random_scene(torch.Generator().manual_seed(seed), with_boxes=True, **kwargs)
    for d in (*preds, *target):  # whole-pixel boxes, so that integer boxes say the same
        d["boxes"] = d["boxes"].round()
    return preds, target


def _result(preds, target, **kwargs):
    metric = MeanAveragePrecision(**kwargs)
    metric.update(preds, target)
    return metric.compute()


def _same(a: object, b: object) -> None:
    """Equal results, bit for bit (dicts and lists of tensors too)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            _same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    else:
        assert torch.equal(a, b)


def _only(scene, key: str):
    """The dicts without the other geometry (boxes or masks)."""
    drop = "masks" if key == "boxes" else "boxes"
    return [{k: v for k, v in d.items() if k != drop} for d in scene]


@pytest.mark.parametrize(
    ("iou_type", "dtype"),
    [("bbox", d) for d in (torch.int64, torch.int32, torch.int16)]
    + [("segm", d) for d in (torch.uint8, torch.int64, torch.float32, torch.float16)],
)
def test_integer_boxes_and_number_masks_equal_the_float_and_bool_forms(iou_type, dtype) -> None:
    # integer boxes (whole pixels) and 0/1 masks of any number type give the same numbers, bit for bit
    key = "boxes" if iou_type == "bbox" else "masks"
    preds, target = _scene(30)
    converted = [[{**d, key: d[key].to(dtype)} for d in scene] for scene in (preds, target)]
    got = _result(*converted, iou_type=iou_type, class_metrics=True)
    _same(got, _result(preds, target, iou_type=iou_type, class_metrics=True))
    ref = coco_eval(preds, target, iou_type=iou_type).stats
    assert got["map"].item() == pytest.approx(ref[0], abs=1e-12)


def test_masks_with_other_values_raise_also_off_the_cpu() -> None:
    preds, target = _scene(32, num_images=3, empty_p=0.0)
    bad = [dict(t) for t in target]
    bad[1]["masks"] = bad[1]["masks"].to(torch.float32) * 0.5  # probabilities, not masks
    with pytest.raises(ValueError, match=r"`target\[1\]\['masks'\]` must be masks of 0/1 values \(or bool\)"):
        _result(preds, bad, iou_type="segm")
    deferred = MeanAveragePrecision(iou_type="segm")
    deferred._read_values_on_host = False  # what update() does for CUDA tensors
    deferred.update(preds, bad)
    with pytest.raises(ValueError, match=r"`target\[1\]\['masks'\]` must be masks of 0/1 values"):
        deferred.compute()


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_empty_boxes_and_masks_of_shape_zero(iou_type) -> None:
    # torchmetrics' users write an image without detections or ground truths as torch.tensor([])
    key = "boxes" if iou_type == "bbox" else "masks"
    preds, target = (_only(s, key) for s in _scene(33, num_images=4, empty_p=0.0))
    h, w = target[0]["masks"].shape[1:] if iou_type == "segm" else (0, 0)
    empty_full = torch.zeros(0, 4) if iou_type == "bbox" else torch.zeros(0, h, w, dtype=torch.bool)
    none = torch.zeros(0, dtype=torch.long)
    for flat in (torch.tensor([]), torch.zeros(0, dtype=torch.long if iou_type == "bbox" else torch.bool)):
        full_p = [{key: empty_full, "scores": torch.tensor([]), "labels": none}, *preds[1:]]
        full_t = [*target[:2], {key: empty_full, "labels": none}, *target[3:]]
        flat_p = [{key: flat, "scores": torch.tensor([]), "labels": none}, *preds[1:]]
        flat_t = [*target[:2], {key: flat, "labels": none}, *target[3:]]
        _same(_result(flat_p, flat_t, iou_type=iou_type), _result(full_p, full_t, iou_type=iou_type))
    # both sides of one image empty, and a whole batch without detections
    both = _result([flat_p[0]], [{key: torch.tensor([]), "labels": none}], iou_type=iou_type)
    assert both["map"].item() == -1.0
    nothing = [{key: torch.tensor([]), "scores": torch.tensor([]), "labels": none}] * len(target)
    got = _result(nothing, target, iou_type=iou_type)
    assert got["map"].item() == 0.0 and got["mar_100"].item() == 0.0


def test_both_iou_types_at_once_give_prefixed_keys_of_each_single_type() -> None:
    preds, target = _scene(34, num_images=5)
    kwargs = {"class_metrics": True, "extended_summary": True}
    both = MeanAveragePrecision(iou_type=("bbox", "segm"), **kwargs)
    half = len(preds) // 2
    both.update(preds[:half], target[:half])
    both.update(preds[half:], target[half:])
    got = both.compute()
    assert both.iou_type == ("bbox", "segm")
    for iou_type in ("bbox", "segm"):
        single = _result(preds, target, iou_type=iou_type, **kwargs)
        classes = single.pop("classes")
        assert torch.equal(got["classes"], classes)
        _same({k: got[f"{iou_type}_{k}"] for k in single}, single)
        ref = coco_eval(preds, target, iou_type=iou_type).stats
        torch.testing.assert_close(both.coco_stats(iou_type), torch.from_numpy(ref), rtol=0, atol=1e-12)
    assert set(got) == {f"{t}_{k}" for t in ("bbox", "segm") for k in single} | {"classes"}
    assert both.summary().splitlines()[0] == "iou_type=bbox" and "iou_type=segm" in both.summary()
    with pytest.raises(
        ValueError, match=r"`iou_type` must be one of \['bbox', 'segm'\] for a metric of several"
    ):
        both.coco_stats()
    # a list works as the tuple; repeats count once; an unknown member is named
    assert MeanAveragePrecision(iou_type=["segm", "bbox", "segm"]).iou_type == ("segm", "bbox")
    with pytest.raises(ValueError, match="Did you mean 'segm'"):
        MeanAveragePrecision(iou_type=("bbox", "seg"))


def test_both_iou_types_under_forward_and_reset() -> None:
    preds, target = _scene(35, num_images=4)
    metric = MeanAveragePrecision(iou_type=("segm", "bbox"))
    step = metric(preds[:2], target[:2])  # forward: the batch's numbers, accumulated as well
    assert torch.equal(step["segm_map"], _result(preds[:2], target[:2], iou_type="segm")["map"])
    metric.update(preds[2:], target[2:])
    assert torch.equal(metric.compute()["bbox_map"], _result(preds, target, iou_type="bbox")["map"])
    metric.reset()
    metric.update(preds[2:], target[2:])
    assert torch.equal(metric.compute()["bbox_map"], _result(preds[2:], target[2:], iou_type="bbox")["map"])


def test_warning_on_many_detections() -> None:
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0]]).repeat(4, 1)
    preds = [{"boxes": boxes, "scores": torch.rand(4), "labels": torch.zeros(4, dtype=torch.long)}]
    target = [{"boxes": boxes[:1], "labels": torch.zeros(1, dtype=torch.long)}]
    metric = MeanAveragePrecision(max_detection_thresholds=[1, 2, 3])
    with pytest.warns(UserWarning, match="more than 3 detections in a single image"):
        metric.update(preds, target)
    quiet = MeanAveragePrecision(max_detection_thresholds=[1, 2, 4])
    also_quiet = MeanAveragePrecision(max_detection_thresholds=[1, 2, 3])
    also_quiet.warn_on_many_detections = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet.update(preds, target)  # exactly the limit: no warning
        also_quiet.update(preds, target)
