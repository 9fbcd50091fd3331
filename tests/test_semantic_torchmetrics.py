"""MeanIoU / DiceScore with torchmetrics' arguments and input forms, against torchmetrics 1.9 itself.

``compat="torchmetrics"`` must give torchmetrics' numbers (float32, to float32 rounding) for every
``input_format``, ``include_background``, ``per_class`` / ``average`` and ``aggregation_level``;
the default rules take the same arguments and give the dataset-level numbers of the index form.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torchmetrics.functional.segmentation import dice_score as tm_dice_score
from torchmetrics.functional.segmentation import mean_iou as tm_mean_iou
from torchmetrics.segmentation import DiceScore as TMDiceScore
from torchmetrics.segmentation import MeanIoU as TMMeanIoU

from torchseg_metrics.functional import dice_score, mean_iou
from torchseg_metrics.semantic import DiceScore, MeanAccuracy, MeanIoU

C = 4


def _batches(seed: int, input_format: str, kind: str = "random", n: int = 3, size: tuple = (9, 11)):
    """Three batches of ``(preds, target)`` in ``input_format``: random binary masks (multi-hot and
    empty pixels included, as torchmetrics' own tests draw them) or one class per pixel, some
    classes absent."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for b in range(3):
        if kind == "random" and input_format == "one-hot":
            p = torch.randint(0, 2, (n + b % 2, C, *size), generator=gen)
            t = torch.randint(0, 2, (n + b % 2, C, *size), generator=gen)
        else:
            p = torch.randint(0, C, (n + b % 2, *size), generator=gen)
            t = torch.randint(0, C - 1, (n + b % 2, *size), generator=gen)  # class C - 1 never a target
            t[0] = 0  # an image of one class only
            if input_format == "one-hot":
                p, t = (torch.nn.functional.one_hot(x, C).movedim(-1, 1) for x in (p, t))
            elif input_format == "mixed":
                p = torch.nn.functional.one_hot(p, C).movedim(-1, 1)
        out.append((p, t))
    return out


def _run(metric, batches):
    for p, t in batches:
        metric.update(p, t)
    return metric.compute()


def _close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=2e-6, atol=1e-6, equal_nan=True)


CASES = list(itertools.product(["one-hot", "index", "mixed"], [True, False], ["random", "labels"]))


@pytest.mark.parametrize(("input_format", "include_background", "kind"), CASES)
@pytest.mark.parametrize("per_class", [False, True])
def test_mean_iou_compat_equals_torchmetrics(input_format, include_background, kind, per_class) -> None:
    batches = _batches(1, input_format, kind)
    kw = {"include_background": include_background, "per_class": per_class, "input_format": input_format}
    ours = _run(MeanIoU(C, **kw, compat="torchmetrics"), batches)
    _close(ours, _run(TMMeanIoU(num_classes=C, **kw), batches))


@pytest.mark.parametrize(("input_format", "include_background", "kind"), CASES)
@pytest.mark.parametrize("average", ["micro", "macro", "weighted", "none", None])
@pytest.mark.parametrize("level", ["samplewise", "global"])
@pytest.mark.filterwarnings("ignore:DiceScore metric currently defaults")
def test_dice_score_compat_equals_torchmetrics(
    input_format, include_background, kind, average, level
) -> None:
    batches = _batches(2, input_format, kind)
    args = (C, include_background, average, level, input_format)  # torchmetrics' positional order
    ours = _run(DiceScore(*args, compat="torchmetrics"), batches)
    _close(ours, _run(TMDiceScore(*args), batches))


def test_torchmetrics_docstring_inputs_and_defaults() -> None:
    # torchmetrics' MeanIoU docstring example: random binary (10, 3, 128, 128) masks
    preds = torch.randint(0, 2, (10, 3, 128, 128), generator=torch.Generator().manual_seed(42))
    target = torch.randint(0, 2, (10, 3, 128, 128), generator=torch.Generator().manual_seed(43))
    for kw in ({}, {"per_class": True}, {"per_class": True, "include_background": False}):
        ours = MeanIoU(3, input_format="one-hot", compat="torchmetrics", **kw)(preds, target)
        _close(ours, TMMeanIoU(num_classes=3, **kw)(preds, target))
    # DiceScore's defaults under compat: samplewise, macro
    dice = DiceScore(3, input_format="one-hot", compat="torchmetrics")
    assert dice.aggregation_level == "samplewise"
    _close(dice(preds, target), TMDiceScore(num_classes=3)(preds, target))


def test_default_rules_take_one_hot_and_mixed_inputs_as_labels() -> None:
    # one class per pixel: the one-hot and mixed forms give the index form's numbers, bit for bit
    index = _batches(3, "index", "labels")
    for input_format in ("one-hot", "mixed"):
        other = _batches(3, input_format, "labels")
        for cls, kw in ((MeanIoU, {"per_class": True}), (DiceScore, {"average": "none"})):
            expected = _run(cls(C, **kw), index)
            assert torch.equal(_run(cls(C, input_format=input_format, **kw), other), expected)
    # aggregation_level maps onto aggregation
    samplewise = _run(DiceScore(C, aggregation_level="samplewise"), index)
    assert torch.equal(samplewise, _run(DiceScore(C, aggregation="image"), index))
    with pytest.raises(ValueError, match="`aggregation` must be 'dataset' \\(or left out\\)"):
        DiceScore(C, aggregation_level="global", aggregation="image")


def test_one_hot_pixels_without_a_single_class() -> None:
    p, t = _batches(4, "one-hot", "labels")[0]
    metric = MeanIoU(C, per_class=True, input_format="one-hot")
    metric.update(p, t)
    before = metric.confmat.clone()
    multi = t.clone()
    multi[0, :, 0, 0] = 1  # a target pixel of every class
    with pytest.raises(
        ValueError, match=r"`target` must be one-hot: a single 1 \(others 0\) per pixel, got 1 pix"
    ):
        metric.update(p, multi)
    assert torch.equal(metric.confmat, before)
    # a prediction pixel with no class is a miss: the same as a label outside [0, C)
    empty = p.clone()
    empty[1, :, 2, 3] = 0
    labels = p.argmax(1)
    labels[1, 2, 3] = C
    got = MeanIoU(C, per_class=True, input_format="one-hot")(empty, t)
    assert torch.equal(got, MeanIoU(C, per_class=True)(labels, t.argmax(1)))


def test_ambiguous_integer_inputs_need_an_input_format() -> None:
    p, t = _batches(5, "one-hot", "labels")[0]
    with pytest.raises(ValueError, match=r"`input_format` must be 'index' or 'one-hot' for integer inputs"):
        MeanIoU(C).update(p, t)
    MeanIoU(C, input_format="index").update(p, t)  # said explicitly: label maps of a 3-D volume


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"compat": "torchmetric"}, ValueError, "Did you mean 'torchmetrics'"),
        ({"input_format": "onehot"}, ValueError, "Did you mean 'one-hot'"),
        ({"compat": "torchmetrics", "aggregation": "image"}, ValueError, "`aggregation` must be left at"),
        (
            {"compat": "torchmetrics", "input_format": "one-hot", "ignore_index": 0},
            ValueError,
            "`ignore_index`",
        ),
    ],
)
def test_argument_errors(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        MeanIoU(C, **kwargs)


def test_compat_state_is_small_and_values_checked_off_the_cpu() -> None:
    metric = DiceScore(C, average="none", input_format="one-hot", compat="torchmetrics")
    assert {k: tuple(v.shape) for k, v in metric.metric_state.items() if k.startswith("overlap")} == {
        "overlap_score": (C,),
        "overlap_count": (C,),
        "overlap_invalid": (2,),
    }
    p, t = _batches(6, "one-hot")[0]
    with pytest.raises(ValueError, match=r"`target` must be 0/1 one-hot masks"):
        metric.update(p, t * 3)
    assert int(metric.overlap_count.sum()) == 0


@pytest.mark.parametrize(("input_format", "include_background", "kind"), CASES)
@pytest.mark.filterwarnings("ignore:dice_score metric currently defaults")
def test_functional_forms_take_torchmetrics_arguments(input_format, include_background, kind) -> None:
    p, t = _batches(7, input_format, kind)[1]
    for per_class in (False, True):
        args = (C, include_background, per_class, input_format)  # torchmetrics' positional order
        _close(mean_iou(p, t, *args, compat="torchmetrics"), tm_mean_iou(p, t, *args))
    for average, level in itertools.product(["micro", "macro", "weighted", "none"], ["samplewise", "global"]):
        args = (C, include_background, average, input_format, level)
        _close(dice_score(p, t, *args, compat="torchmetrics"), tm_dice_score(p, t, *args))
    if kind == "labels":  # one class per pixel: the default rules read every form as label maps
        index = _batches(7, "index", kind)[1]
        assert torch.equal(
            mean_iou(p, t, C, include_background, True, input_format),
            mean_iou(*index, C, include_background, True),
        )


@pytest.mark.parametrize("average", ["macro", "micro", "weighted", "none"])
@pytest.mark.parametrize("ignore_index", [None, 255, 0])
def test_multiclass_averages_equal_torchmetrics_classification(average, ignore_index) -> None:
    # MulticlassJaccardIndex / MulticlassAccuracy / MulticlassConfusionMatrix map onto MeanIoU /
    # MeanAccuracy / ConfusionMatrix: dataset-level as ours. Every class is in the target here;
    # (for a class absent from the target, torchmetrics returns 0 where ours is NaN, and its macro
    # accuracy counts a predicted-but-absent class as 0 where mmseg's mAcc, ours, leaves it out:
    # the switches to its numbers are tested in test_classification_switches_give_torchmetrics_numbers)
    from torchmetrics.classification import MulticlassAccuracy as TMAccuracy
    from torchmetrics.classification import (
        MulticlassConfusionMatrix,
        MulticlassJaccardIndex,
    )

    from torchseg_metrics.semantic import ConfusionMatrix, MeanAccuracy

    gen = torch.Generator().manual_seed(8)
    target = torch.randint(0, C, (6, 10, 12), generator=gen)
    preds = torch.where(
        torch.rand(target.shape, generator=gen) < 0.6,
        target,
        torch.randint(0, C, target.shape, generator=gen),
    )
    if ignore_index == 255:
        target[:, :2] = 255
    kw = {"ignore_index": ignore_index, "average": average}
    for ours, ref in (
        (MeanIoU(C, **kw), MulticlassJaccardIndex(C, **kw)),
        (MeanAccuracy(C, **kw), TMAccuracy(C, **kw)),
    ):
        got, expected = ours(preds, target), ref(preds, target)
        if ignore_index == 0 and average == "none":  # the ignored class: NaN here, 0 there
            assert got[0].isnan() and expected[0] == 0
            got, expected = got[1:], expected[1:]
        if ignore_index == 0 and average == "macro" and isinstance(ours, MeanAccuracy):
            got = got * (C - 1) / C  # torchmetrics averages the ignored class in, as 0 (it is predicted)
        torch.testing.assert_close(got.float(), expected, rtol=1e-6, atol=1e-7)
    for normalize in (None, "true", "pred", "all"):
        got = ConfusionMatrix(C, ignore_index=ignore_index, normalize=normalize)(preds, target)
        expected = MulticlassConfusionMatrix(C, ignore_index=ignore_index, normalize=normalize)(preds, target)
        got = got.nan_to_num(0.0)  # an empty row (the ignored class) is NaN here, 0 there
        torch.testing.assert_close(got.to(expected.dtype), expected, rtol=1e-6, atol=1e-7)


def _classification_inputs(kind: str, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """torchmetrics' multiclass test forms: (N,) or (N, X) labels, (N, C) or (N, C, X) scores."""
    shape = (32,) if kind.endswith("1d") else (8, 3)
    target = torch.randint(0, C, shape, generator=gen)
    if kind.startswith("labels"):
        return torch.randint(0, C, shape, generator=gen), target
    logits = torch.randn(shape[0], C, *shape[1:], generator=gen)
    return (logits if kind.startswith("logits") else logits.softmax(1)), target


@pytest.mark.parametrize("kind", ["labels1d", "probs1d", "logits1d", "labelsmd", "probsmd"])
@pytest.mark.parametrize("ignore_index", [None, -1, 0])
def test_classification_switches_give_torchmetrics_numbers(kind, ignore_index) -> None:
    # MulticlassJaccardIndex -> MeanIoU(zero_division=...), MulticlassAccuracy and
    # MulticlassConfusionMatrix -> MeanAccuracy / ConfusionMatrix(compat="torchmetrics"), with
    # torchmetrics' own arguments (validate_args, top_k=1, multidim_average="global") and inputs
    from torchmetrics.classification import MulticlassAccuracy as TMAccuracy
    from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

    from torchseg_metrics.semantic import ConfusionMatrix, MeanAccuracy

    preds, target = _classification_inputs(kind, torch.Generator().manual_seed(9))
    if ignore_index == -1:
        target[::7] = -1
    for average in ("macro", "micro", "weighted", "none", None):
        kw = {"ignore_index": ignore_index, "average": average, "validate_args": True}
        for zero_division in (0, 1):
            ours = MeanIoU(C, zero_division=zero_division, **kw)(preds, target)
            ref = MulticlassJaccardIndex(C, zero_division=zero_division, **kw)(preds, target)
            torch.testing.assert_close(ours.float(), ref, rtol=1e-6, atol=1e-7)
        extra = {"top_k": 1, "multidim_average": "global"}
        ours = MeanAccuracy(C, compat="torchmetrics", **kw, **extra)(preds, target)
        torch.testing.assert_close(
            ours.float(), TMAccuracy(C, **kw, **extra)(preds, target), rtol=1e-6, atol=1e-7
        )
    for normalize in (None, "true", "pred", "all"):
        kw = {"ignore_index": ignore_index, "normalize": normalize, "validate_args": False}
        ours = ConfusionMatrix(C, compat="torchmetrics", **kw)(preds, target)
        ref = MulticlassConfusionMatrix(C, **kw)(preds, target)
        torch.testing.assert_close(ours.to(ref.dtype), ref, rtol=1e-6, atol=1e-7)


def test_torchmetrics_corner_case_class_absent_everywhere() -> None:
    # a class absent from target and prediction: NaN by default, zero_division with the switch
    from torchmetrics.classification import MulticlassJaccardIndex

    target, preds = torch.tensor([0, 1, 0, 0]), torch.tensor([0, 1, 0, 1])
    assert MeanIoU(3, average="none")(preds, target)[2].isnan()
    for average in ("none", "macro"):
        ours = MeanIoU(3, average=average, zero_division=0)(preds, target)
        torch.testing.assert_close(ours.float(), MulticlassJaccardIndex(3, average=average)(preds, target))
    with pytest.raises(ValueError, match=r"`top_k` must be at most num_classes \(3\)"):
        MeanAccuracy(3, top_k=4)
    with pytest.raises(TypeError, match=r"`preds` must be scores \(N, C, ...\) with top_k=2"):
        MeanAccuracy(3, top_k=2).update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="`multidim_average` must be one of"):
        MeanAccuracy(3, multidim_average="per-image")
    with pytest.raises(ValueError, match="`zero_division` must be None with compat='torchmetrics'"):
        MeanIoU(3, zero_division=0, compat="torchmetrics")


@pytest.mark.parametrize("kind", ["labels1d", "probs1d", "labelsmd", "probsmd"])
@pytest.mark.parametrize("multidim_average", ["global", "samplewise"])
@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_accuracy_top_k_and_samplewise_equal_torchmetrics(kind, multidim_average, top_k) -> None:
    # MulticlassAccuracy's top_k and multidim_average: forward per batch and compute over both
    from torchmetrics.classification import MulticlassAccuracy as TMAccuracy

    if (multidim_average == "samplewise" and kind.endswith("1d")) or (
        top_k > 1 and kind.startswith("labels")
    ):
        pytest.skip("torchmetrics takes neither (samplewise needs extra dims, top_k scores)")
    preds, labels = _classification_inputs(kind, torch.Generator().manual_seed(10 + top_k))
    marked = labels.clone()
    marked.view(-1)[::7] = -1  # ignored with ignore_index=-1
    for average in ("macro", "micro", "weighted", "none"):
        for ignore_index, target in ((-1, marked), (0, labels)):
            kw = {"average": average, "ignore_index": ignore_index, "top_k": top_k}
            kw["multidim_average"] = multidim_average
            ours, ref = MeanAccuracy(C, compat="torchmetrics", **kw), TMAccuracy(C, **kw)
            half = preds.shape[0] // 2
            got, expected = ours(preds[:half], target[:half]), ref(preds[:half], target[:half])
            torch.testing.assert_close(got.float(), expected, rtol=1e-6, atol=1e-7)
            ours.update(preds[half:], target[half:])
            ref.update(preds[half:], target[half:])
            torch.testing.assert_close(ours.compute().float(), ref.compute(), rtol=1e-6, atol=1e-7)
    # the default rules per sample: a class absent from a sample is NaN there and out of its mean
    own = MeanAccuracy(C, multidim_average="samplewise", top_k=top_k, average="none")
    if multidim_average == "samplewise":
        own.update(preds, labels)
        per_class = own.compute()
        assert per_class.shape == (preds.shape[0], C)
        # reference: a plain loop over samples, pixels and classes
        scores = preds if preds.dtype.is_floating_point else None
        expected = torch.full((preds.shape[0], C), float("nan"), dtype=torch.float64)
        for n in range(preds.shape[0]):
            for c in range(C):
                pixels = [x for x in range(labels.shape[1]) if labels[n, x] == c]
                if not pixels:
                    continue
                top = [
                    set(scores[n, :, x].topk(top_k).indices.tolist())
                    if scores is not None
                    else {int(preds[n, x])}
                    for x in pixels
                ]
                expected[n, c] = sum(c in t for t in top) / len(pixels)
        torch.testing.assert_close(per_class, expected, equal_nan=True)


def _samplewise_ranks(rank: int, world_size: int, payload: list) -> torch.Tensor:
    metric = MeanAccuracy(C, multidim_average="samplewise", average="none", compat="torchmetrics")
    for preds, target in payload[rank]:
        metric.update(preds, target)
    return metric.compute()


def test_samplewise_accuracy_gathers_over_ranks_one_without_samples() -> None:
    from _ddp import run_distributed

    gen = torch.Generator().manual_seed(12)
    batches = [
        (torch.randint(0, C, (3, 5), generator=gen), torch.randint(0, C, (3, 5), generator=gen))
        for _ in range(2)
    ]
    results = run_distributed(_samplewise_ranks, [batches, []], world_size=2)
    single = MeanAccuracy(C, multidim_average="samplewise", average="none", compat="torchmetrics")
    for preds, target in batches:
        single.update(preds, target)
    for result in results:
        torch.testing.assert_close(result, single.compute())


def test_mean_iou_without_num_classes_takes_them_from_the_first_one_hot_batch() -> None:
    # torchmetrics' MeanIoU() default: num_classes from the one-hot input's class axis
    preds = torch.randint(0, 2, (6, 3, 20, 24), generator=torch.Generator().manual_seed(42))
    target = torch.randint(0, 2, (6, 3, 20, 24), generator=torch.Generator().manual_seed(43))
    for kw in ({}, {"per_class": True}, {"per_class": True, "include_background": False}):
        ours, ref = MeanIoU(compat="torchmetrics", **kw), TMMeanIoU(**kw)
        _close(ours(preds[:2], target[:2]), ref(preds[:2], target[:2]))  # forward on the first batch
        ours.update(preds[2:], target[2:])
        ref.update(preds[2:], target[2:])
        _close(ours.compute(), ref.compute())
        assert ours.num_classes == 3
        ours.reset()
        ours.update(preds, target)
        _close(ours.compute(), TMMeanIoU(**kw)(preds, target))
    mixed = MeanIoU(compat="torchmetrics", input_format="mixed", per_class=True)
    mixed.update(preds, target.argmax(1))
    _close(
        mixed.compute(),
        TMMeanIoU(input_format="mixed", per_class=True, num_classes=3)(preds, target.argmax(1)),
    )
    with pytest.raises(TypeError, match=r"`num_classes` must be an integer >= 1 \(None only with compat"):
        MeanIoU()
    with pytest.raises(ValueError, match="`input_format` must be 'one-hot' or 'mixed' with num_classes=None"):
        MeanIoU(compat="torchmetrics", input_format="index")
    with pytest.raises(ValueError, match="`num_classes` must be known before compute"):
        MeanIoU(compat="torchmetrics").compute()


@pytest.mark.parametrize("compute_groups", [True, False])
@pytest.mark.filterwarnings("ignore:DiceScore metric currently defaults")
def test_dice_takes_the_class_axis_of_one_hot_batches_as_torchmetrics(compute_groups) -> None:
    # torchmetrics reads the class axis of one-hot inputs, never num_classes: a whole (batches,
    # batch, C, X) stack given as one batch is (N=batches, C=batch, ...) to it; an average per
    # image holds one value whatever the classes, so ours follows under compat="torchmetrics"
    from torchmetrics import MetricCollection

    gen = torch.Generator().manual_seed(13)
    preds, target = (torch.randint(0, 2, (2, 8, C, 16), generator=gen) for _ in range(2))
    results = []
    for make in (
        lambda a: DiceScore(C, average=a, compat="torchmetrics"),
        lambda a: TMDiceScore(C, average=a),
    ):
        collection = MetricCollection(
            {a: make(a) for a in ("micro", "macro", "weighted")}, compute_groups=compute_groups
        )
        for _ in range(3):
            collection.update(preds, target)
        results.append(collection.compute())
    assert results[0].keys() == results[1].keys()
    for key, value in results[1].items():
        _close(results[0][key], value)
    for include_background in (True, False):  # MeanIoU's flat mean: one value per image as well
        kw = {"include_background": include_background}
        ours, ref = MeanIoU(C, **kw, input_format="one-hot", compat="torchmetrics"), TMMeanIoU(C, **kw)
        _close(ours(preds, target), ref(preds, target))
        _close(ours.compute(), ref.compute())
    with pytest.raises(ValueError, match=r"`preds` must be one-hot masks of shape \(N, 4, \*spatial\)"):
        DiceScore(C, average="none", compat="torchmetrics").update(preds, target)  # per-class state


@pytest.mark.parametrize("kind", ["labels1d", "probs1d", "labelsmd", "probsmd"])
@pytest.mark.parametrize("ignore_index", [None, -1, 0])
def test_accuracy_without_num_classes_is_the_pooled_one_as_torchmetrics(kind, ignore_index) -> None:
    # MulticlassAccuracy(num_classes=None) exists for average="micro" only: the pooled accuracy
    from torchmetrics.classification import MulticlassAccuracy as TMAccuracy

    preds, target = _classification_inputs(kind, torch.Generator().manual_seed(14))
    if ignore_index == -1:
        target.view(-1)[::5] = -1
    kw = {"average": "micro", "ignore_index": ignore_index}
    ours, ref = MeanAccuracy(None, compat="torchmetrics", **kw), TMAccuracy(num_classes=None, **kw)
    half = preds.shape[0] // 2
    torch.testing.assert_close(ours(preds[:half], target[:half]).float(), ref(preds[:half], target[:half]))
    ours.update(preds[half:], target[half:])
    ref.update(preds[half:], target[half:])
    torch.testing.assert_close(ours.compute().float(), ref.compute())
    with pytest.raises(ValueError, match="Argument `num_classes` can only be `None` for `average='micro'`"):
        MeanAccuracy(None)
    with pytest.raises(ValueError, match=r"`preds` must be labels of shape"):
        MeanAccuracy(None, average="micro").update(preds[:1], target)
