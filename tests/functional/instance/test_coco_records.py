"""``mean_average_precision`` (the functional form) against pycocotools and the metric class."""

from __future__ import annotations

import pytest
import torch
from _coco_reference import coco_eval, random_scene

from torchseg_metrics.functional import mean_average_precision
from torchseg_metrics.instance import MeanAveragePrecision


@pytest.mark.parametrize(
    "kwargs",
    [
        {"iou_type": "segm", "class_metrics": True},
        {"iou_type": "bbox", "average": "micro", "class_metrics": True, "extended_summary": True},
        {"iou_type": ("bbox", "segm"), "max_detection_thresholds": [1, 3, 5]},
    ],
)
def test_functional_equals_the_class_and_pycocotools(kwargs) -> None:
    preds, target = random_scene(torch.Generator().manual_seed(40), num_images=5, with_boxes=True)
    got = mean_average_precision(preds, target, **kwargs)
    metric = MeanAveragePrecision(**kwargs)
    metric.update(preds[:2], target[:2])
    metric.update(preds[2:], target[2:])
    expected = metric.compute()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(got[key], value), key
    iou_type = kwargs["iou_type"] if isinstance(kwargs["iou_type"], str) else "segm"
    prefix = "" if isinstance(kwargs["iou_type"], str) else "segm_"
    ref = coco_eval(
        preds, target, iou_type=iou_type, max_dets=kwargs.get("max_detection_thresholds"),
        average=kwargs.get("average", "macro"),
    )  # fmt: skip
    assert got[prefix + "map"].item() == pytest.approx(ref.stats[0], abs=1e-12)


def test_functional_checks_arguments_and_values() -> None:
    preds, target = random_scene(
        torch.Generator().manual_seed(41), num_images=2, with_boxes=True, empty_p=0.0
    )
    with pytest.raises(ValueError, match="Did you mean 'segm'"):
        mean_average_precision(preds, target, iou_type="seg")
    bad = [dict(p) for p in preds]
    bad[1]["boxes"] = bad[1]["boxes"].clone()
    bad[1]["boxes"][0, 2] = float("inf")
    with pytest.raises(ValueError, match=r"`preds\[1\]\['boxes'\]` must be finite box coordinates"):
        mean_average_precision(bad, target, iou_type="bbox")
