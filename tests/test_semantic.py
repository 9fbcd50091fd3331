"""Semantic metric classes and functional forms against NumPy, torchmetrics and hand-made cases."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from _semantic_reference import blob_labels, np_confusion, np_scores, perturb
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassJaccardIndex

from torchseg_metrics import (
    ConfusionMatrix,
    DiceScore,
    FrequencyWeightedIoU,
    MeanAccuracy,
    MeanIoU,
    PixelAccuracy,
    SemanticMetrics,
    flatten_for_logging,
)
from torchseg_metrics.functional import confusion_matrix, dice_score, mean_iou, semantic_metrics

C = 6


def _batches(seed: int, n_batches: int = 3, ignore: int | None = 255, c: int = C, batch: int = 2):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        t = blob_labels(rng, (batch, 19, 23), c)
        p = perturb(rng, t, c)
        if ignore is not None:
            t[blob_labels(rng, t.shape, 6) == 0] = ignore
        out.append((torch.from_numpy(p).to(torch.uint8), torch.from_numpy(t).to(torch.uint8)))
    return out


def _reference(batches, c=C, ignore=255, include_background=True) -> dict:
    p = np.concatenate([b[0].numpy() for b in batches])
    t = np.concatenate([b[1].numpy() for b in batches])
    return np_scores(
        np_confusion(p, t, c, ignore),
        ignore if ignore is not None and ignore < c else None,
        include_background,
    )


@pytest.mark.parametrize("ignore", [255, None, 0])
def test_classes_match_numpy(ignore: int | None, device) -> None:
    batches = _batches(0, ignore=ignore)
    ref = _reference(batches, ignore=ignore)
    metrics = {
        "miou": MeanIoU(C, ignore_index=ignore),
        "iou": MeanIoU(C, ignore_index=ignore, per_class=True),
        "mdice": DiceScore(C, ignore_index=ignore),
        "dice": DiceScore(C, ignore_index=ignore, average="none"),
        "dice_micro": DiceScore(C, ignore_index=ignore, average="micro"),
        "dice_weighted": DiceScore(C, ignore_index=ignore, average="weighted"),
        "pixel_accuracy": PixelAccuracy(C, ignore_index=ignore),
        "mean_accuracy": MeanAccuracy(C, ignore_index=ignore),
        "accuracy": MeanAccuracy(C, ignore_index=ignore, per_class=True),
        "fwiou": FrequencyWeightedIoU(C, ignore_index=ignore),
    }
    for key, metric in metrics.items():
        metric = metric.to(device)
        for p, t in batches:
            metric.update(p.to(device), t.to(device))
        got = metric.compute()
        assert got.dtype == torch.float64 and got.device.type == device.type
        np.testing.assert_allclose(
            got.cpu().numpy(), ref[key], rtol=0, atol=1e-14, equal_nan=True, err_msg=key
        )


def test_confusion_matrix_and_normalize() -> None:
    batches = _batches(1)
    p = np.concatenate([b[0].numpy() for b in batches])
    t = np.concatenate([b[1].numpy() for b in batches])
    expected = np_confusion(p, t, C, 255)[:, :C]
    metric = ConfusionMatrix(C, ignore_index=255)
    for b in batches:
        metric.update(*b)
    assert torch.equal(metric.compute(), torch.from_numpy(expected))
    rows = ConfusionMatrix(C, ignore_index=255, normalize="true")
    for b in batches:
        rows.update(*b)
    np.testing.assert_allclose(
        rows.compute().numpy(), expected / expected.sum(1, keepdims=True), rtol=0, atol=1e-15
    )


def test_against_torchmetrics_jaccard() -> None:
    """torchmetrics' MulticlassJaccardIndex agrees where its conventions coincide: valid predictions,
    every class present (it reports absent classes as 0, we as NaN)."""
    batches = _batches(2, c=4)
    tm = MulticlassJaccardIndex(num_classes=4, average="none", ignore_index=255)
    ours = MeanIoU(4, ignore_index=255, per_class=True)
    for p, t in batches:
        tm.update(p.long(), t.long())
        ours.update(p, t)
    np.testing.assert_allclose(ours.compute().numpy(), tm.compute().double().numpy(), rtol=1e-6)


def test_scores_input_is_argmax(device) -> None:
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.normal(size=(2, C, 8, 9))).float().to(device)
    target = torch.from_numpy(blob_labels(rng, (2, 8, 9), C)).to(device)
    by_scores = mean_iou(logits, target, C, per_class=True)
    by_labels = mean_iou(logits.argmax(1), target, C, per_class=True)
    torch.testing.assert_close(by_scores, by_labels, rtol=0, atol=0, equal_nan=True)


def test_image_aggregation_matches_numpy_per_image_mean() -> None:
    batches = _batches(4, ignore=255)
    per_image = []
    for p, t in batches:
        for i in range(p.shape[0]):
            per_image.append(np_scores(np_confusion(p[i].numpy(), t[i].numpy(), C, 255)))
    metric = SemanticMetrics(C, ignore_index=255, aggregation="image", per_class=True)
    for b in batches:
        metric.update(*b)
    got = metric.compute()
    for key in ("miou", "mdice", "pixel_accuracy", "mean_accuracy", "fwiou"):
        np.testing.assert_allclose(
            got[key].item(), np.nanmean([s[key] for s in per_image]), rtol=0, atol=1e-14
        )
    stacked = np.stack([s["iou"] for s in per_image])
    with (
        np.errstate(invalid="ignore"),
        pytest.warns(RuntimeWarning) if np.isnan(stacked).all(0).any() else _noop(),
    ):
        expected = np.nanmean(stacked, 0)
    np.testing.assert_allclose(got["iou_per_class"].numpy(), expected, rtol=0, atol=1e-14, equal_nan=True)


class _noop:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


def test_include_background_false_drops_class_zero() -> None:
    batches = _batches(5)
    ref = _reference(batches, include_background=False)
    metric = MeanIoU(C, ignore_index=255, include_background=False, per_class=True)
    for b in batches:
        metric.update(*b)
    got = metric.compute()
    assert got.shape == (C - 1,)
    np.testing.assert_allclose(got.numpy(), ref["iou"][1:], rtol=0, atol=1e-15, equal_nan=True)
    assert mean_iou(*batches[0], C, ignore_index=255, include_background=False).item() == pytest.approx(
        _reference(batches[:1], include_background=False)["miou"], abs=1e-14
    )


def test_hand_made_values() -> None:
    """Values by hand: 2x3 images, predictions 0 1 1 / 2 2 0 against 0 1 2 / 2 2 1."""
    preds = torch.tensor([[[0, 1, 1], [2, 2, 0]]])
    target = torch.tensor([[[0, 1, 2], [2, 2, 1]]])
    assert mean_iou(preds, target, 3, per_class=True).tolist() == [0.5, 1 / 3, 2 / 3]
    assert dice_score(preds, target, 3, average="none").tolist() == [2 / 3, 0.5, 0.8]
    assert confusion_matrix(preds, target, 3).tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 2]]


def test_out_of_range_prediction_is_a_miss() -> None:
    """A prediction of 255 on a valid pixel lowers that class's IoU (spec H.19)."""
    target = torch.tensor([[[0, 0, 1, 1]]])
    preds = torch.tensor([[[0, 255, 1, 1]]])
    assert mean_iou(preds, target, 2, per_class=True).tolist() == [0.5, 1.0]
    assert semantic_metrics(preds, target, 2)["pixel_accuracy"].item() == 0.75


def test_split_invariance() -> None:
    batches = _batches(6, n_batches=4)
    whole = SemanticMetrics(C, ignore_index=255, per_class=True)
    whole.update(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    parts = SemanticMetrics(C, ignore_index=255, per_class=True)
    for b in batches:
        parts.update(*b)
    for k, v in whole.compute().items():
        torch.testing.assert_close(parts.compute()[k], v, rtol=0, atol=0, equal_nan=True)


def test_volumes_and_dtypes() -> None:
    rng = np.random.default_rng(7)
    t = blob_labels(rng, (2, 5, 7, 9), C)
    p = perturb(rng, t, C)
    ref = np_scores(np_confusion(p, t, C, None))
    for dtype in (torch.uint8, torch.int16, torch.int32, torch.int64):
        got = mean_iou(torch.from_numpy(p).to(dtype), torch.from_numpy(t).to(dtype), C)
        assert got.item() == pytest.approx(ref["miou"], abs=1e-14)


def test_metric_collection_shares_state() -> None:
    coll = MetricCollection({"miou": MeanIoU(C, ignore_index=255), "acc": PixelAccuracy(C, ignore_index=255)})
    batches = _batches(8)
    for b in batches:
        coll.update(*b)
    ref = _reference(batches)
    out = coll.compute()
    assert out["miou"].item() == pytest.approx(ref["miou"], abs=1e-14)
    assert out["acc"].item() == pytest.approx(ref["pixel_accuracy"], abs=1e-14)
    assert len(coll.compute_groups) == 1


def test_pickle_clone_state_dict_reset() -> None:
    batches = _batches(9)
    metric = SemanticMetrics(C, ignore_index=255)
    metric.update(*batches[0])
    metric.persistent(True)
    restored = SemanticMetrics(C, ignore_index=255)
    restored.persistent(True)
    restored.load_state_dict(metric.state_dict())
    for m in (restored, pickle.loads(pickle.dumps(metric)), metric.clone(), copy.deepcopy(metric)):
        m.update(*batches[1])
        assert m.compute()["miou"].item() == pytest.approx(_reference(batches[:2])["miou"], abs=1e-14)
    metric.reset()
    assert int(metric.confmat.sum()) == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_classes": 0}, ValueError, "`num_classes` must be an integer >= 1, got 0"),
        ({"num_classes": 2.0}, TypeError, "`num_classes` must be an integer"),
        ({"num_classes": 3, "aggregation": "images"}, ValueError, "Did you mean 'image'"),
        ({"num_classes": 3, "ignore_index": "255"}, TypeError, "`ignore_index`"),
        (
            {"num_classes": 3, "class_names": ["a"]},
            ValueError,
            "`class_names` must be a sequence of 3 strings",
        ),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        MeanIoU(**kwargs)


@pytest.mark.parametrize(
    ("preds", "target", "error", "match"),
    [
        (
            torch.zeros(2, 4, 4, dtype=torch.long),
            torch.zeros(2, 4, 5, dtype=torch.long),
            ValueError,
            r"shape \(2, 4, 4\)",
        ),
        (
            torch.zeros(2, 2, 4, 4),
            torch.zeros(2, 4, 4, dtype=torch.long),
            ValueError,
            r"scores of shape \(2, 3, 4, 4\)",
        ),
        (
            torch.zeros(2, 4, 4, dtype=torch.long),
            torch.zeros(2, 4, 4),
            TypeError,
            "`target` must be an integer",
        ),
        ([[0]], torch.zeros(2, 4, 4, dtype=torch.long), TypeError, "`preds` must be a torch.Tensor"),
        (  # (N,) labels are samples without spatial axes (torchmetrics' multiclass form); 0-d is not
            torch.zeros((), dtype=torch.long),
            torch.zeros((), dtype=torch.long),
            ValueError,
            "`target` must be a batch",
        ),
    ],
)
def test_bad_inputs_leave_state_unchanged(preds, target, error: type, match: str) -> None:
    metric = MeanIoU(3)
    good = _batches(10, c=3, n_batches=1)[0]
    metric.update(*good)
    before = metric.confmat.clone()
    with pytest.raises(error, match=match):
        metric.update(preds, target)
    assert torch.equal(metric.confmat, before)


def test_invalid_target_and_nan_scores_raise() -> None:
    metric = MeanIoU(3, ignore_index=255)
    metric.update(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))
    before = metric.confmat.clone()
    with pytest.raises(
        ValueError, match=r"`target` must be class indices in \[0, 3\) or ignore_index=255, got 1 pixels"
    ):
        metric.update(torch.tensor([[0, 1]]), torch.tensor([[0, 7]]))
    scores = torch.zeros(1, 3, 2)
    scores[0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="`preds` must be scores without NaN, got 1 pixels"):
        metric.update(scores, torch.tensor([[0, 1]]))
    assert torch.equal(metric.confmat, before)


def test_deferred_value_check_raises_in_compute() -> None:
    """On non-CPU devices bad values are counted in the state and raised by compute()."""
    metric = MeanIoU(3)
    metric.update(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))
    metric.num_invalid += torch.tensor([4, 0])  # what an update on CUDA records for 4 bad pixels
    with pytest.raises(ValueError, match="got 4 pixels with other values"):
        metric.compute()


def test_deterministic_mode_same_numbers() -> None:
    batches = _batches(11)
    metric = SemanticMetrics(C, ignore_index=255, per_class=True)
    torch.use_deterministic_algorithms(True)
    try:
        for b in batches:
            metric.update(*b)
        got = metric.compute()
    finally:
        torch.use_deterministic_algorithms(False)
    np.testing.assert_allclose(
        got["iou_per_class"].numpy(), _reference(batches)["iou"], rtol=0, atol=1e-15, equal_nan=True
    )


def test_flatten_for_logging() -> None:
    metric = SemanticMetrics(3, per_class=True, class_names=["a", "b", "c"])
    metric.update(torch.tensor([[[0, 1, 1], [2, 2, 0]]]), torch.tensor([[[0, 1, 2], [2, 2, 1]]]))
    flat = flatten_for_logging(metric.compute(), metric.class_names)
    assert flat["iou_per_class/b"].item() == pytest.approx(1 / 3)
    assert all(v.ndim == 0 for v in flat.values())


def test_image_aggregation_matches_torchmetrics_segmentation_mean_iou() -> None:
    """aggregation="image" gives torchmetrics' per-image IoU: per class as its ``MeanIoU(per_class=True)``
    (mean over images where the class is defined), and as a mean the average over images of its
    functional ``mean_iou`` (its class pools defined (image, class) pairs flat instead)."""
    from torchmetrics.functional.segmentation import mean_iou as tm_mean_iou
    from torchmetrics.segmentation import MeanIoU as TMMeanIoU

    rng = np.random.default_rng(12)
    target = torch.from_numpy(blob_labels(rng, (4, 20, 20), 4, n_blobs=12))
    preds = torch.from_numpy(perturb(rng, target.numpy(), 4))
    tm = TMMeanIoU(num_classes=4, per_class=True, input_format="index")
    tm.update(preds, target)
    ours = MeanIoU(4, per_class=True, aggregation="image")
    ours.update(preds, target)
    np.testing.assert_allclose(ours.compute().numpy(), tm.compute().double().numpy(), rtol=1e-6)
    per_image = tm_mean_iou(preds, target, num_classes=4, input_format="index")
    got = mean_iou(preds, target, 4, aggregation="image")
    assert got.item() == pytest.approx(per_image.double().mean().item(), rel=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_invariances(seed: int) -> None:
    """Permuting images, adding images with only ignored pixels, and relabelling classes consistently
    leave the scores unchanged (relabelled per-class output permuted accordingly)."""
    batches = _batches(30 + seed, n_batches=2)
    preds = torch.cat([b[0] for b in batches])
    target = torch.cat([b[1] for b in batches])
    base = mean_iou(preds, target, C, ignore_index=255, per_class=True)
    perm = torch.randperm(preds.shape[0], generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(
        mean_iou(preds[perm], target[perm], C, ignore_index=255, per_class=True), base, equal_nan=True
    )
    empty_t = torch.full_like(target[:1], 255)
    padded = mean_iou(
        torch.cat([preds, preds[:1]]), torch.cat([target, empty_t]), C, ignore_index=255, per_class=True
    )
    torch.testing.assert_close(padded, base, rtol=0, atol=0, equal_nan=True)
    relabel = torch.randperm(C, generator=torch.Generator().manual_seed(seed + 100))
    lut = torch.arange(256, dtype=torch.uint8)
    lut[:C] = relabel.to(torch.uint8)
    got = mean_iou(lut[preds.long()], lut[target.long()], C, ignore_index=255, per_class=True)
    torch.testing.assert_close(got[relabel], base, rtol=0, atol=0, equal_nan=True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_update_does_not_synchronise() -> None:
    batches = _batches(40)
    metrics = [
        SemanticMetrics(C, ignore_index=255).cuda(),
        SemanticMetrics(C, ignore_index=255, aggregation="image").cuda(),
    ]
    for b in batches:
        p, t = b[0].cuda(), b[1].cuda()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for m in metrics:
                m.update(p, t)
                m.update(p.float().unsqueeze(1).expand(-1, C, -1, -1).contiguous(), t)  # scores input
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert metrics[0].compute()["miou"].isfinite()
