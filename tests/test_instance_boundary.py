"""``MeanAveragePrecision(iou_type="boundary")`` (Boundary IoU AP) against faster-coco-eval's boundary AP.

faster-coco-eval's ``COCOeval_faster(iouType="boundary")`` takes min(mask IoU, boundary IoU) for
non-crowd ground truths, with its C++ rounding of the band width (``boundary_rounding="faster-coco-eval"``).
Real COCO masks: ``tests/test_instance_real_data.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _coco_reference import coco_eval, faster_coco_eval, random_scene

from torchseg_metrics.instance import MeanAveragePrecision


def _boundary_ap(batches, **kwargs):
    metric = MeanAveragePrecision(iou_type="boundary", boundary_rounding="faster-coco-eval", **kwargs)
    for preds, target in batches:
        metric.update(preds, target)
    return metric


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ratio", [0.02, 0.05])
def test_random_scenes_equal_faster_coco_eval(seed, ratio) -> None:
    size = [(60, 80), (37, 45), (64, 64), (90, 50)][seed]
    preds, target = random_scene(
        torch.Generator().manual_seed(60 + seed), num_images=6, size=size, crowd_p=0.2
    )
    metric = _boundary_ap([(preds[:4], target[:4]), (preds[4:], target[4:])], boundary_dilation_ratio=ratio)
    ref = faster_coco_eval(preds, target, "boundary", dilation_ratio=ratio)
    np.testing.assert_allclose(metric.coco_stats().numpy(), ref.stats[:12], rtol=0, atol=1e-12)


def test_boundary_is_the_minimum_of_mask_and_band_iou() -> None:
    # a detection with the right interior but a ragged edge: mask IoU high, boundary IoU lower
    gt = torch.zeros(1, 40, 40, dtype=torch.bool)
    gt[0, 5:35, 5:35] = True
    det = gt.clone()
    det[0, 5:35:2, 5] = False  # every other pixel of one edge missing
    preds = [{"masks": det, "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}]
    target = [{"masks": gt, "labels": torch.tensor([0])}]
    segm = MeanAveragePrecision(iou_type="segm", extended_summary=True)
    segm.update(preds, target)
    both = MeanAveragePrecision(iou_type=("segm", "boundary"), extended_summary=True)
    both.update(preds, target)
    result = both.compute()
    mask_iou = result["segm_ious"][(0, 0)].item()
    band_iou = result["boundary_ious"][(0, 0)].item()
    assert mask_iou == segm.compute()["ious"][(0, 0)].item() > band_iou > 0.5
    ref = faster_coco_eval(preds, target, "boundary")
    assert both.coco_stats("boundary")[0].item() == pytest.approx(ref.stats[0], abs=1e-12)
    assert both.coco_stats("segm")[0].item() == pytest.approx(coco_eval(preds, target).stats[0], abs=1e-12)


def test_crowd_ground_truths_keep_the_mask_iou() -> None:
    preds, target = random_scene(torch.Generator().manual_seed(70), num_images=4, size=(50, 60), crowd_p=0.6)
    assert any(t["iscrowd"].any() for t in target)
    metric = _boundary_ap([(preds, target)])
    ref = faster_coco_eval(preds, target, "boundary")
    np.testing.assert_allclose(metric.coco_stats().numpy(), ref.stats[:12], rtol=0, atol=1e-12)
