"""MeanAveragePrecision under DDP (2 gloo processes, uneven shards) equals one process exactly.

Tie order across ranks is (rank, image order within the rank): the single-process run sees rank 0's
images first, then rank 1's. Equal scores across images are common in these scenes, so a wrong
order would change the numbers.
"""

from __future__ import annotations

import pytest
import torch
from _coco_reference import coco_eval, random_scene
from _ddp import run_distributed

from torchseg_metrics.instance import MeanAveragePrecision

KW = {"iou_type": "segm", "class_metrics": True, "extended_summary": True}


def _work(rank: int, world_size: int, scenarios: list) -> list[dict]:
    out = []
    for shards, kwargs in scenarios:
        metric = MeanAveragePrecision(**kwargs)
        for preds, target in shards[rank]:
            metric.update(preds, target)
        out.append(metric.compute())
    return out


def _single(shards: list, kwargs: dict) -> dict:
    metric = MeanAveragePrecision(**kwargs)
    for rank_batches in shards:
        for preds, target in rank_batches:
            metric.update(preds, target)
    return metric.compute()


@pytest.mark.slow
def test_ddp_equals_single_process() -> None:
    preds, target = random_scene(torch.Generator().manual_seed(21), num_images=7, empty_p=0.0, score_levels=3)
    # rank 1: no detections at all, and one image without ground truth
    no_dets = [
        {"masks": p["masks"][:0], "scores": p["scores"][:0], "labels": p["labels"][:0]} for p in preds[5:]
    ]
    target[6] = {
        "masks": target[6]["masks"][:0],
        "labels": target[6]["labels"][:0],
        "iscrowd": target[6]["iscrowd"][:0],
    }
    uneven = [[(preds[0:1], target[0:1]), (preds[1:5], target[1:5])], [(no_dets, target[5:7])]]
    # rank 1 never calls update(); micro average with per-class numbers
    idle = [[(preds[0:3], target[0:3]), (preds[3:5], target[3:5])], []]
    micro = {**KW, "average": "micro"}
    # both IoU types at once (prefixed records); rank 1 has no detections
    bp, bt = random_scene(torch.Generator().manual_seed(22), num_images=5, with_boxes=True, score_levels=3)
    empty = [{k: v[:0] for k, v in p.items()} for p in bp[3:]]
    two_types = [[(bp[:2], bt[:2]), (bp[2:3], bt[2:3])], [(empty, bt[3:])]]
    both = {**KW, "iou_type": ("bbox", "segm")}
    scenarios = [(uneven, KW), (idle, micro), (two_types, both)]
    results = run_distributed(_work, scenarios, world_size=2)
    for i, (shards, kwargs) in enumerate(scenarios):
        expected = _single(shards, kwargs)
        for rank in range(2):
            got = results[rank][i]
            assert got.keys() == expected.keys()
            for key in expected:
                if key.endswith("ious"):  # dict of per-(image, class) tensors, [] for empty cells
                    assert got[key].keys() == expected[key].keys()
                    for cell, value in expected[key].items():
                        mine = got[key][cell]
                        same = mine == [] if isinstance(value, list) else torch.equal(mine, value)
                        assert same, (i, rank, cell)
                else:
                    assert torch.equal(got[key], expected[key]), (i, rank, key)
    # and the single-process numbers are pycocotools' on the concatenated images
    all_preds = preds[:5] + no_dets
    ev = coco_eval(all_preds, target)
    torch.testing.assert_close(
        results[1][0]["precision"], torch.from_numpy(ev.eval["precision"]), rtol=0, atol=1e-12
    )
    assert abs(results[0][0]["map"].item() - ev.stats[0]) <= 1e-12
