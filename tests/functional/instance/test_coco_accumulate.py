"""Accumulation and summary kernels against pycocotools ``accumulate``/``summarize`` and faster-coco-eval."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from _coco_reference import build_coco, coco_eval, random_scene
from test_coco_matching import _run

from torchseg_metrics.functional.instance.coco_accumulate import (
    _coco_accumulate,
    coco_summary_from_arrays,
    per_class_from_arrays,
)
from torchseg_metrics.functional.instance.coco_params import (
    COCO_IOU_THRESHOLDS,
    COCO_REC_THRESHOLDS,
    max_detections_tuple,
    thresholds_tensor,
)

F64 = torch.float64


def _accumulate(preds, target, thresholds, rec, max_dets, eps=True, device="cpu"):
    out = _run(preds, target, thresholds, max_dets[-1], device=device)
    keep = [torch.arange(len(p["labels"])) for p in preds]
    rows = [(i, keep[i]) for i in range(len(preds))]

    def flat(x):
        return torch.cat([x[i].cpu()[k] for i, k in rows])

    scores = torch.cat(
        [
            p["scores"][out.order[i].cpu()[k]].double()
            for i, (p, (_, k)) in enumerate(zip(preds, rows, strict=True))
        ]
    )
    labels = torch.cat(
        [p["labels"][out.order[i].cpu()[k]] for i, (p, (_, k)) in enumerate(zip(preds, rows, strict=True))]
    )
    gl = torch.cat([t["labels"] for t in target])
    gc = torch.cat([out.gt_counted[i].cpu()[: len(t["labels"])] for i, t in enumerate(target)])
    args = [
        scores,
        labels,
        flat(out.rank),
        flat(out.matched),
        flat(out.ignored),
        gl,
        gc,
        torch.tensor(rec, dtype=F64),
    ]
    return _coco_accumulate(*[a.to(device) for a in args], max_dets, precision_eps=eps)


def test_thresholds_equal_numpy_bit_for_bit() -> None:
    # spec H.1: numpy linspace values, not torch.linspace
    assert torch.equal(
        thresholds_tensor("x", None, COCO_IOU_THRESHOLDS), torch.from_numpy(np.linspace(0.5, 0.95, 10))
    )
    assert torch.equal(
        thresholds_tensor("x", None, COCO_REC_THRESHOLDS), torch.from_numpy(np.linspace(0.0, 1.0, 101))
    )
    assert not torch.equal(torch.tensor(COCO_REC_THRESHOLDS, dtype=F64), torch.linspace(0, 1, 101, dtype=F64))


@pytest.mark.parametrize(
    ("seed", "thresholds", "rec", "max_dets"),
    [
        (0, COCO_IOU_THRESHOLDS, COCO_REC_THRESHOLDS, (1, 10, 100)),
        (1, (0.0, 0.3, 0.5, 0.77, 1.0), (0.0, 0.2, 0.57, 0.5700000000000001, 1.0), (1, 3, 5)),
        (2, COCO_IOU_THRESHOLDS, COCO_REC_THRESHOLDS, (2, 4, 300)),
    ],
)
def test_arrays_and_stats_equal_pycocotools(seed, thresholds, rec, max_dets, device) -> None:
    preds, target = random_scene(torch.Generator().manual_seed(seed), num_images=6, copies=5, max_fp=8)
    arrays = _accumulate(preds, target, thresholds, rec, max_dets, device=device)
    ev = coco_eval(preds, target, iou_thresholds=thresholds, rec_thresholds=rec, max_dets=max_dets)
    assert arrays.classes.tolist() == list(ev.params.catIds)
    for name in ("precision", "recall", "scores"):
        torch.testing.assert_close(
            getattr(arrays, name).cpu(), torch.from_numpy(ev.eval[name]), rtol=0, atol=1e-12
        )
    stats = coco_summary_from_arrays(
        arrays.precision, arrays.recall, torch.tensor(thresholds, dtype=F64, device=device), max_dets
    )
    torch.testing.assert_close(stats.cpu(), torch.from_numpy(ev.stats), rtol=0, atol=1e-12)
    if 100 not in max_dets:  # spec A.6: stat 0 looks up maxDets == 100 literally
        assert stats[0] == -1
    # per-class AP/AR: a one-category COCOeval per class (what torchmetrics' class_metrics runs)
    ap, ar = per_class_from_arrays(arrays.precision, arrays.recall, max_dets)
    for k, c in enumerate(arrays.classes.tolist()):
        one = coco_eval(
            preds, target, iou_thresholds=thresholds, rec_thresholds=rec, max_dets=max_dets, cat_ids=[c]
        )
        assert abs(ap[k].item() - one.stats[0]) <= 1e-12 and abs(ar[k].item() - one.stats[8]) <= 1e-12


def test_faster_coco_eval_mode() -> None:
    # spec B: faster-coco-eval has no eps in the precision; precision_eps=False matches it
    faster = pytest.importorskip("faster_coco_eval")
    preds, target = random_scene(torch.Generator().manual_seed(3), num_images=6)
    arrays = _accumulate(preds, target, COCO_IOU_THRESHOLDS, COCO_REC_THRESHOLDS, (1, 10, 100), eps=False)
    gt, dt = build_coco(preds, target)
    fgt = faster.COCO(gt.dataset)
    keys = ("image_id", "category_id", "score", "segmentation")
    fdt = fgt.loadRes([{k: a[k] for k in keys} for a in dt.dataset["annotations"]])
    ev = faster.COCOeval_faster(fgt, fdt, iouType="segm")
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    torch.testing.assert_close(arrays.precision, torch.from_numpy(ev.eval["precision"]), rtol=0, atol=1e-12)
    stats = coco_summary_from_arrays(
        arrays.precision, arrays.recall, torch.tensor(COCO_IOU_THRESHOLDS), (1, 10, 100)
    )
    torch.testing.assert_close(stats, torch.from_numpy(np.asarray(ev.stats[:12])), rtol=0, atol=1e-12)


def _single(tp_flags, n_gt, eps=True, rec=COCO_REC_THRESHOLDS):
    """One class, the same TP flags at all 10 IoU thresholds, detections in score order."""
    n = len(tp_flags)
    matched = torch.tensor(tp_flags).reshape(n, 1, 1).expand(n, 10, 4)
    arrays = _coco_accumulate(
        torch.tensor([1.0 - 0.001 * i for i in range(n)], dtype=F64), torch.zeros(n, dtype=torch.long),
        torch.zeros(n, dtype=torch.long), matched, torch.zeros(n, 10, 4, dtype=torch.bool),
        torch.zeros(n_gt, dtype=torch.long), torch.ones(n_gt, 4, dtype=torch.bool),
        torch.tensor(rec, dtype=F64), [1, 10, 100], precision_eps=eps,
    )  # fmt: skip
    stats = coco_summary_from_arrays(
        arrays.precision, arrays.recall, torch.tensor(COCO_IOU_THRESHOLDS), [1, 10, 100]
    )
    return arrays, stats


def test_single_perfect_detection() -> None:
    # spec H.2: AP 0.9999999999999998 with pycocotools' eps (bit for bit: numpy's pairwise mean of
    # 1010 values; pycocotools gives 0.9999999999999999 for AP50, a mean of 101), 1.0 without eps
    stats = _single([True], 1)[1]
    assert stats[0].item() == 0.9999999999999998 and stats[1].item() == 0.9999999999999999
    assert _single([True], 1, eps=False)[1][0].item() == 1.0


def test_recall_exactly_057_uses_numpy_grid() -> None:
    # spec H.1: when recall reaches exactly 57/100, numpy's recThrs[57] = 0.5700000000000001 is not
    # reached there, torch.linspace's 0.57 is; the precision arrays must follow numpy's grid
    flags = [True] * 57 + [False] * 43 + [True] * 43
    tp = np.cumsum(flags).astype(float)
    pr = tp / (np.arange(1, len(flags) + 1) + np.spacing(1))
    pr = np.maximum.accumulate(pr[::-1])[::-1]
    idx = np.searchsorted(tp / 100, np.linspace(0, 1, 101), side="left")
    expected = np.where(idx < len(pr), pr[np.minimum(idx, len(pr) - 1)], 0.0)
    arrays, stats = _single(flags, 100)
    assert arrays.precision[0, :, 0, 0, 2].tolist() == expected.tolist()
    assert stats[1].item() == np.mean(expected)
    torch_grid, _ = _single(flags, 100, rec=torch.linspace(0, 1, 101, dtype=F64).tolist())
    assert torch_grid.precision[0, 57, 0, 0, 2] != arrays.precision[0, 57, 0, 0, 2]


def test_classes_without_gt_are_minus_one_and_empty() -> None:
    # spec A.7 / H.10: a class with detections but no GT gives -1; a class with GTs but no detections 0
    out = _coco_accumulate(
        torch.tensor([0.9], dtype=F64), torch.tensor([5]), torch.tensor([0]),
        torch.ones(1, 1, 1, dtype=torch.bool), torch.zeros(1, 1, 1, dtype=torch.bool), torch.tensor([2]),
        torch.ones(1, 1, dtype=torch.bool), torch.tensor(COCO_REC_THRESHOLDS, dtype=F64), [100],
    )  # fmt: skip
    assert out.classes.tolist() == [2, 5]
    assert (out.precision[:, :, 1] == -1).all() and (out.recall[:, 1] == -1).all()
    assert (out.precision[:, :, 0] == 0).all() and (out.recall[:, 0] == 0).all()
    empty = _coco_accumulate(
        torch.zeros(0, dtype=F64), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
        torch.zeros(0, 10, 4, dtype=torch.bool), torch.zeros(0, 10, 4, dtype=torch.bool),
        torch.zeros(0, dtype=torch.long), torch.zeros(0, 4, dtype=torch.bool),
        torch.tensor(COCO_REC_THRESHOLDS, dtype=F64), [1, 10, 100],
    )  # fmt: skip
    assert empty.precision.shape == (10, 101, 0, 4, 3)
    stats = coco_summary_from_arrays(
        empty.precision, empty.recall, torch.tensor(COCO_IOU_THRESHOLDS), [1, 10, 100]
    )
    assert stats.tolist() == [-1.0] * 12


def test_parameter_checks() -> None:
    assert max_detections_tuple([300, 1, 10]) == (1, 10, 300)
    with pytest.raises(ValueError, match="`max_detection_thresholds` must be a list of 3 positive integers"):
        max_detections_tuple([1, 10])
    with pytest.raises(TypeError, match="`max_detection_thresholds`"):
        max_detections_tuple([1.5, 10, 100])
    with pytest.raises(ValueError, match=r"`iou_thresholds` must be a non-empty list of floats in \[0, 1\]"):
        thresholds_tensor("iou_thresholds", [0.5, 1.5], COCO_IOU_THRESHOLDS)
    with pytest.raises(TypeError, match="`rec_thresholds`"):
        thresholds_tensor("rec_thresholds", "0.5", COCO_REC_THRESHOLDS)
