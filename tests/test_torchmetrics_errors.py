"""Bad arguments and inputs fail as torchmetrics 1.9 fails on them, checked against torchmetrics itself.

For each case the same call goes to torchmetrics' class (or functional) and to ours with
``compat="torchmetrics"``: ours must raise an instance of torchmetrics' exception type whose message
holds torchmetrics' sentence (its message up to the value it prints), so that code and tests
written against torchmetrics (``except ValueError``, ``pytest.raises(..., match=...)``) keep
working; our own message (argument, value found, expectation) follows the sentence. Calls that
torchmetrics accepts must be accepted too (empty lists in ``MeanAveragePrecision.update``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

import pytest
import torch
import torchmetrics.detection as tm_detection
import torchmetrics.segmentation as tm_segmentation
from _torchmetrics_map import _torchvision
from torch import IntTensor, Tensor
from torchmetrics.functional.detection import panoptic_quality as tm_panoptic_quality
from torchmetrics.functional.segmentation import dice_score as tm_dice_score
from torchmetrics.functional.segmentation import mean_iou as tm_mean_iou

from torchseg_metrics import (
    DiceScore,
    MeanAveragePrecision,
    MeanIoU,
    ModifiedPanopticQuality,
    PanopticQuality,
)
from torchseg_metrics._checks import InputTypeError, ShapeMismatchError
from torchseg_metrics.functional import dice_score, mean_iou, panoptic_quality

TM = "torchmetrics"


def _sentence(message: str) -> str:
    """torchmetrics' sentence: its message without the value it prints after it."""
    for cut in (", but got", " but got", ", got", " (expected", ": ", ". Got"):
        message = message.split(cut)[0]
    return message.rstrip(".")


def _same_failure(ours: Callable[[], object], theirs: Callable[[], object]) -> None:
    with pytest.raises(Exception) as tm_error:  # whatever torchmetrics raises
        theirs()
    expected = type(tm_error.value)
    with pytest.raises(expected, match=re.escape(_sentence(str(tm_error.value)))):
        ours()


# --- MeanAveragePrecision ----------------------------------------------------------------------

E = Tensor()


def _map_update_cases() -> list[tuple[str, list, list]]:
    ok_p = {"boxes": E, "scores": E, "labels": IntTensor()}
    ok_t = {"boxes": E, "labels": IntTensor()}
    return [
        ("preds not a sequence", E, []),
        ("target not a sequence", [], E),
        ("unequal lengths", [{}], [{}, {}]),
        ("preds without boxes", [{"scores": E, "labels": IntTensor()}], [ok_t]),
        ("preds without scores", [{"boxes": E, "labels": IntTensor()}], [ok_t]),
        ("preds without labels", [{"boxes": E, "scores": E}], [ok_t]),
        ("target without boxes", [ok_p], [{"labels": IntTensor()}]),
        ("target without labels", [ok_p], [{"boxes": E}]),
        ("second image first", [ok_p, {"scores": E}], [ok_t, ok_t]),
        ("boxes not a tensor", [{**ok_p, "boxes": []}], [ok_t]),
        ("scores not a tensor", [{**ok_p, "scores": []}], [ok_t]),
        ("labels not a tensor", [{**ok_p, "labels": []}], [ok_t]),
        ("target boxes not a tensor", [ok_p], [{**ok_t, "boxes": []}]),
        ("target labels not a tensor", [ok_p], [{**ok_t, "labels": []}]),
        (
            "target boxes and labels of different lengths",
            [ok_p],
            [{"boxes": torch.zeros(2, 4), "labels": IntTensor([1])}],
        ),
        (
            "preds boxes and labels of different lengths",
            [{"boxes": torch.zeros(2, 4), "scores": torch.ones(1), "labels": IntTensor([1])}],
            [ok_t],
        ),
    ]


@pytest.mark.parametrize(("case", "preds", "target"), _map_update_cases(), ids=lambda c: str(c)[:30])
def test_map_update_errors_are_torchmetrics(case, preds, target) -> None:
    with _torchvision() as mean_ap:
        theirs = mean_ap.MeanAveragePrecision()
        _same_failure(
            lambda: MeanAveragePrecision(compat=TM).update(preds, target),
            lambda: theirs.update(preds, target),
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"class_metrics": 0},
        {"class_metrics": 1},
        {"extended_summary": "yes"},
        {"box_format": "xyzw"},
        {"iou_type": "mask"},
        {"iou_thresholds": 0.5},
        {"rec_thresholds": "all"},
        {"max_detection_thresholds": [1, 10]},
        {"average": "weighted"},
        {"backend": "detectron2"},
    ],
    ids=str,
)
def test_map_argument_errors_are_torchmetrics(kwargs) -> None:
    with _torchvision() as mean_ap:
        _same_failure(
            lambda: MeanAveragePrecision(compat=TM, **kwargs),
            lambda: mean_ap.MeanAveragePrecision(**kwargs),
        )


def test_map_takes_integral_float_max_detections_as_torchmetrics() -> None:
    with _torchvision() as mean_ap:
        mean_ap.MeanAveragePrecision(max_detection_thresholds=[1.0, 10, 100])  # accepted there
    assert MeanAveragePrecision(max_detection_thresholds=[1.0, 10, 100.0]).max_detection_thresholds == [
        1,
        10,
        100,
    ]
    # torchmetrics truncates 1.5 to 1 without a word; ours refuses it (nothing silently changed)
    with pytest.raises(TypeError, match=r"`max_detection_thresholds` must be a list of 3 positive integers"):
        MeanAveragePrecision(max_detection_thresholds=[1.5, 10, 100])


def test_empty_lists_are_no_images_and_change_nothing() -> None:
    metric = MeanAveragePrecision(compat=TM)
    metric.update([], [])  # torchmetrics accepts this too
    assert int(metric.num_images) == 0 and all(not getattr(metric, n) for n in metric._records)
    with _torchvision() as mean_ap:
        theirs = mean_ap.MeanAveragePrecision()
        theirs.update([], [])
        expected = theirs.compute()
    result = metric.compute()
    assert set(result) == set(expected)
    for key, value in expected.items():
        assert torch.equal(result[key], value), key


# --- PanopticQuality / ModifiedPanopticQuality -------------------------------------------------

VALID = torch.randint(0, 9, (2, 8, 8, 2), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("modified", [False, True])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"things": [], "stuffs": []},
        {"things": {0}, "stuffs": {"sky"}},
        {"things": {"person"}, "stuffs": {1}},
        {"things": {0}, "stuffs": {0}},
    ],
    ids=str,
)
def test_panoptic_argument_errors_are_torchmetrics(kwargs, modified) -> None:
    ours, theirs = (
        (ModifiedPanopticQuality, tm_detection.ModifiedPanopticQuality)
        if modified
        else (PanopticQuality, tm_detection.PanopticQuality)
    )
    _same_failure(lambda: ours(**kwargs, compat=TM), lambda: theirs(**kwargs))


@pytest.mark.parametrize(
    ("preds", "target"),
    [
        ([], VALID),
        (VALID, []),
        (torch.randint(0, 9, (2, 40, 30, 2)), torch.randint(0, 9, (2, 3, 4, 2))),
        (torch.randint(0, 9, (1, 2)), torch.randint(0, 9, (1, 2))),
        (torch.randint(0, 9, (1, 6, 6, 8)), torch.randint(0, 9, (1, 6, 6, 8))),
        (torch.randint(0, 9, (1, 6, 6, 8)), torch.randint(0, 9, (1, 6, 6, 2))),
    ],
    ids=["preds-list", "target-list", "shapes", "no-spatial", "channels", "channels-and-shape"],
)
def test_panoptic_update_errors_are_torchmetrics(preds, target) -> None:
    kwargs = {"things": {0, 1, 3}, "stuffs": {2, 8}, "allow_unknown_preds_category": True}
    theirs = tm_detection.PanopticQuality(**kwargs)
    _same_failure(
        lambda: PanopticQuality(**kwargs, compat=TM).update(preds, target),
        lambda: theirs.update(preds, target),
    )
    _same_failure(
        lambda: panoptic_quality(preds, target, **kwargs, compat=TM),
        lambda: tm_panoptic_quality(preds, target, **kwargs),
    )


def test_unknown_prediction_categories_are_torchmetrics() -> None:
    preds = torch.zeros(1, 10, 2, dtype=torch.long)
    preds[0, 0, 0] = 2
    kwargs = {"things": [0], "stuffs": [1], "allow_unknown_preds_category": False}
    theirs = tm_detection.PanopticQuality(**kwargs)
    _same_failure(
        lambda: PanopticQuality(**kwargs, compat=TM).update(preds, preds), lambda: theirs.update(preds, preds)
    )


# --- MeanIoU / DiceScore -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 0},
        {"num_classes": -1},
        {"num_classes": 3, "include_background": 1},
        {"num_classes": 3, "per_class": 1},
        {"num_classes": 3, "input_format": "labels"},
        {"num_classes": None, "input_format": "index"},
    ],
    ids=str,
)
def test_mean_iou_argument_errors_are_torchmetrics(kwargs) -> None:
    _same_failure(lambda: MeanIoU(**kwargs, compat=TM), lambda: tm_segmentation.MeanIoU(**kwargs))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 0},
        {"num_classes": 3, "include_background": 1},
        {"num_classes": 3, "average": "samples"},
        {"num_classes": 3, "input_format": "labels"},
        {"num_classes": 3, "aggregation_level": "image"},
    ],
    ids=str,
)
@pytest.mark.filterwarnings("ignore:DiceScore metric currently defaults")
def test_dice_argument_errors_are_torchmetrics(kwargs) -> None:
    _same_failure(lambda: DiceScore(**kwargs, compat=TM), lambda: tm_segmentation.DiceScore(**kwargs))


def _shape_cases() -> list[tuple[str, Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(1)
    hot = lambda *s: torch.randint(0, 2, s, generator=gen)  # noqa: E731
    idx = lambda *s: torch.randint(0, 3, s, generator=gen)  # noqa: E731
    return [
        ("one-hot", hot(2, 3, 8, 8), hot(2, 3, 8, 9)),
        ("one-hot", hot(2, 3, 8, 8), hot(2, 4, 8, 8)),
        ("one-hot", hot(4, 3), hot(4, 3)),
        ("index", idx(2, 8, 8), idx(2, 8, 9)),
        ("mixed", hot(2, 3, 8, 8), idx(2, 8, 9)),
        ("mixed", idx(2, 8, 8), hot(2, 3, 8, 9)),
        ("mixed", hot(2, 3, 8, 8), hot(2, 3, 8, 9)),
        ("mixed", hot(2, 3, 8, 8), idx(3, 8, 8)),
    ]


@pytest.mark.parametrize(("input_format", "preds", "target"), _shape_cases())
@pytest.mark.filterwarnings("ignore:(DiceScore|dice_score) metric currently defaults")
def test_semantic_shape_errors_are_torchmetrics(input_format, preds, target) -> None:
    kw = {"num_classes": 3, "input_format": input_format}
    pairs = [
        (lambda: MeanIoU(**kw, compat=TM).update(preds, target), tm_segmentation.MeanIoU(**kw).update),
        (lambda: DiceScore(**kw, compat=TM).update(preds, target), tm_segmentation.DiceScore(**kw).update),
        (lambda: mean_iou(preds, target, **kw, compat=TM), partial(tm_mean_iou, **kw)),
        (lambda: dice_score(preds, target, **kw, compat=TM), partial(tm_dice_score, **kw)),
    ]
    for ours, theirs in pairs:
        _same_failure(ours, partial(theirs, preds, target))


def test_num_classes_from_an_empty_class_axis_is_torchmetrics() -> None:
    empty = torch.zeros(2, 0, 4, 4, dtype=torch.long)
    metric = tm_segmentation.MeanIoU()
    _same_failure(lambda: MeanIoU(compat=TM).update(empty, empty), lambda: metric.update(empty, empty))


def test_error_types_serve_both_conventions() -> None:
    # a type error is also a ValueError (torchmetrics' type), a shape mismatch also a RuntimeError
    assert issubclass(InputTypeError, TypeError) and issubclass(InputTypeError, ValueError)
    assert issubclass(ShapeMismatchError, ValueError) and issubclass(ShapeMismatchError, RuntimeError)
    with pytest.raises(TypeError, match="`class_metrics` must be a bool, got 0"):
        MeanAveragePrecision(class_metrics=0)
    with pytest.raises(ValueError, match="`preds` must be labels of the target's shape"):
        MeanIoU(3).update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 3, dtype=torch.long))
