"""Every metric class's ``plot()``: (fig, ax) like torchmetrics, saved to a PNG without a display."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

import matplotlib

matplotlib.use("Agg")  # torchmetrics' Metric._plot uses pyplot: never open a window
import matplotlib.pyplot as plt
from _coco_reference import random_scene as coco_scene
from _panoptic_reference import STUFFS, THINGS
from _panoptic_reference import random_scene as panoptic_scene
from _semantic_reference import blob_labels, perturb

from torchseg_metrics.instance import MeanAveragePrecision
from torchseg_metrics.multilabel import MultilabelDiceScore, MultilabelMeanIoU
from torchseg_metrics.panoptic import ModifiedPanopticQuality, PanopticQuality
from torchseg_metrics.semantic import (
    ConfusionMatrix,
    DiceScore,
    FrequencyWeightedIoU,
    MeanAccuracy,
    MeanIoU,
    PixelAccuracy,
    SemanticMetrics,
)

NAMES = ["road", "car", "sky", "tree"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _saved(fig, path: Path) -> None:
    fig.savefig(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def _semantic_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    target = blob_labels(rng, (2, 12, 16), 4)
    return torch.from_numpy(perturb(rng, target, 4)), torch.from_numpy(target)


def _bar_values(ax) -> list[float]:
    return [p.get_width() for p in ax.patches]


@pytest.mark.parametrize("cls", [MeanIoU, DiceScore, PixelAccuracy, MeanAccuracy, FrequencyWeightedIoU])
def test_semantic_scalar_and_steps(cls, tmp_path: Path) -> None:
    metric = cls(num_classes=4)
    values = []
    for seed in range(3):
        values.append(metric(*_semantic_batch(seed)))
    fig, ax = metric.plot()
    _saved(fig, tmp_path / "scalar.png")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [metric.compute().item()])
    fig, ax = metric.plot(values)  # a line over steps, as torchmetrics
    _saved(fig, tmp_path / "steps.png")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [v.item() for v in values])


@pytest.mark.parametrize(
    ("cls", "kwargs"), [(MeanIoU, {"per_class": True}), (DiceScore, {"average": "none"})]
)
def test_semantic_per_class_bars_with_class_names(cls, kwargs, tmp_path: Path) -> None:
    metric = cls(num_classes=4, class_names=NAMES, ignore_index=2, **kwargs)
    metric.update(*_semantic_batch())
    value = metric.compute()
    fig, ax = metric.plot()
    _saved(fig, tmp_path / "bars.png")
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES
    assert torch.isnan(value[2])  # the ignored class: a grey n/a bar of width 0
    np.testing.assert_allclose(_bar_values(ax), torch.nan_to_num(value, nan=0.0).numpy())
    assert cls.__name__ in ax.get_title()


def test_semantic_metrics_dict_and_given_axes(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    metric = SemanticMetrics(num_classes=4, per_class=True)
    metric.update(*_semantic_batch())
    fig = Figure()
    given = fig.add_subplot(1, 1, 1)
    _fig_out, ax = metric.plot(ax=given)
    assert ax is given
    labels = [line.get_label() for line in ax.lines]
    assert labels == [
        "miou",
        "mdice",
        "pixel_accuracy",
        "mean_accuracy",
        "fwiou",
    ]  # per-class vectors left out
    _saved(fig, tmp_path / "dict.png")


def test_confusion_matrix_heat_map(tmp_path: Path) -> None:
    metric = ConfusionMatrix(num_classes=4, class_names=NAMES)
    metric.update(*_semantic_batch())
    fig, ax = metric.plot()
    _saved(fig, tmp_path / "cm.png")
    cm = metric.compute().double()
    np.testing.assert_allclose(ax.images[0].get_array()[0], (cm[0] / cm[0].sum()).numpy())
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES


@pytest.mark.parametrize("cls", [MultilabelMeanIoU, MultilabelDiceScore])
def test_multilabel_per_class_and_scalar(cls, tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 8, 8, generator=gen) > 0.5
    preds = torch.rand(2, 3, 8, 8, generator=gen)
    per_class = cls(num_classes=3, per_class=True)
    per_class.update(preds, target)
    fig, ax = per_class.plot()
    _saved(fig, tmp_path / "bars.png")
    np.testing.assert_allclose(_bar_values(ax), per_class.compute().numpy())
    mean = cls(num_classes=3)
    mean.update(preds, target)
    fig, ax = mean.plot()
    _saved(fig, tmp_path / "scalar.png")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [mean.compute().item()])


def _map_metric(**kwargs) -> MeanAveragePrecision:
    preds, target = coco_scene(torch.Generator().manual_seed(3), num_images=4, size=(20, 24))
    metric = MeanAveragePrecision(iou_type="segm", **kwargs)
    metric.update(preds, target)
    return metric


def test_map_bars_steps_pr_and_per_class(tmp_path: Path) -> None:
    metric = _map_metric(extended_summary=True, class_metrics=True)
    result = metric.compute()
    fig, ax = metric.plot()
    _saved(fig, tmp_path / "bars.png")
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names[:3] == ["map", "map_50", "map_75"] and names[-1] == "mar_large" and len(names) == 12
    np.testing.assert_allclose(_bar_values(ax)[0], result["map"].item())
    fig, ax = metric.plot([result, result])  # lines over steps
    _saved(fig, tmp_path / "steps.png")
    assert len([line for line in ax.lines if line.get_label() == "map"]) == 1
    fig, ax = metric.plot(kind="pr")
    _saved(fig, tmp_path / "pr.png")
    assert len(ax.lines) == 10 and ax.get_xlabel() == "recall"
    fig, ax = metric.plot(kind="per_class")
    _saved(fig, tmp_path / "per_class.png")
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(c) for c in result["classes"].tolist()]
    np.testing.assert_allclose(_bar_values(ax), result["map_per_class"].clamp(min=0).numpy())


def test_map_plot_kind_errors() -> None:
    metric = _map_metric()
    _, ax = metric.plot()  # the 12 summary numbers only: no per-class placeholder (-1) bars
    assert len(ax.patches) == 12
    with pytest.raises(ValueError, match=r"`kind` must be .*extended_summary=True, got 'pr'"):
        metric.plot(kind="pr")
    with pytest.raises(ValueError, match=r"`kind` must be .*class_metrics=True, got 'per_class'"):
        metric.plot(kind="per_class")
    with pytest.raises(ValueError, match=r"Did you mean 'pr'"):
        metric.plot(kind="prr")


@pytest.mark.parametrize("cls", [PanopticQuality, ModifiedPanopticQuality])
def test_panoptic_scalar_steps_and_per_class(cls, tmp_path: Path) -> None:
    preds, target, _ = panoptic_scene(np.random.default_rng(0), batch=2, h=12, w=16, crowd=False)
    preds, target = torch.from_numpy(preds), torch.from_numpy(target)
    metric = cls(THINGS, STUFFS, allow_unknown_preds_category=True)
    values = [metric(preds[i : i + 1], target[i : i + 1]) for i in range(2)]
    fig, ax = metric.plot()
    _saved(fig, tmp_path / "pq.png")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [metric.compute().item()])
    fig, ax = metric.plot(values)
    _saved(fig, tmp_path / "steps.png")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [v.item() for v in values])
    for sq_rq in (False, True):
        per_class = cls(THINGS, STUFFS, True, return_sq_and_rq=sq_rq, return_per_class=True)
        per_class.update(preds, target)
        value = per_class.compute()
        fig, ax = per_class.plot()
        _saved(fig, tmp_path / f"per_class{sq_rq}.png")
        assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "2", "3", "10", "11"]
        pq = value[:, 0] if sq_rq else value[0]
        np.testing.assert_allclose(_bar_values(ax), torch.nan_to_num(pq, nan=0.0).numpy())
    three = cls(THINGS, STUFFS, True, return_sq_and_rq=True)
    three.update(preds, target)
    fig, ax = three.plot()
    assert [line.get_label() for line in ax.lines] == ["pq", "sq", "rq"]
