"""Plots are drawn without a display, saved to files, and return (fig, ax) like torchmetrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from torchseg_metrics.reporting.plots import plot_confusion_matrix, plot_per_class, plot_pr_curves


def _saved(fig, path: Path) -> int:
    fig.savefig(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return len(data)


def test_confusion_matrix_heat_map(tmp_path: Path) -> None:
    cm = torch.tensor([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    fig, ax = plot_confusion_matrix(cm, ["road", "car", "sky"])
    assert _saved(fig, tmp_path / "cm.png") > 1000
    image = ax.images[0].get_array()
    np.testing.assert_allclose(image[0], [0.8, 0.2, 0.0])  # row-normalised: rows are the target
    assert np.ma.getmaskarray(image)[2].all()  # a class without target pixels is blank (masked), not 0
    assert [t.get_text() for t in ax.get_xticklabels()] == ["road", "car", "sky"]
    fig2, ax2 = plot_confusion_matrix(cm.numpy(), normalize=False)
    assert ax2.images[0].get_array()[0, 0] == 8 and _saved(fig2, tmp_path / "cm2.png") > 1000
    with pytest.raises(ValueError, match=r"`confmat` must be a square \(C, C\) matrix, got \(2, 3\)"):
        plot_confusion_matrix(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"`class_names` must be 3 names, got 2"):
        plot_confusion_matrix(cm, ["a", "b"])


def test_per_class_bars_into_given_axes(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot(1, 1, 1)
    out_fig, out_ax = plot_per_class(
        torch.tensor([0.7, float("nan"), -1.0, 0.2]), ["a", "b", "c", "d"], "AP", ax=ax
    )
    assert out_fig is fig and out_ax is ax
    widths = [p.get_width() for p in ax.patches]
    assert widths == pytest.approx([0.7, 0.0, 0.0, 0.2])
    assert [t.get_text().strip() for t in ax.texts] == ["0.700", "n/a", "n/a", "0.200"]
    assert ax.get_title() == "AP" and _saved(fig, tmp_path / "bars.png") > 1000
    with pytest.raises(ValueError, match=r"`values` must be a 1-d sequence"):
        plot_per_class(torch.zeros(2, 2))


def test_pr_curves_from_coco_precision_array(tmp_path: Path) -> None:
    # (T, R, K, A, M): class 1 has no ground truth (-1) and is left out of the class mean
    t, r = 3, 11
    precision = -np.ones((t, r, 2, 4, 3))
    precision[:, :, 0, 0, 2] = np.linspace(1.0, 0.0, r)[None, :]
    fig, ax = plot_pr_curves(torch.from_numpy(precision), np.linspace(0, 1, r), [0.5, 0.75, 0.9])
    assert len(ax.lines) == 3
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.linspace(1.0, 0.0, r))
    assert ax.get_legend().get_texts()[1].get_text() == "IoU=0.75 (AP 0.500)"
    assert _saved(fig, tmp_path / "pr.png") > 1000
    with pytest.raises(ValueError, match=r"`iou_thresholds` must be 3 values"):
        plot_pr_curves(precision, iou_thresholds=[0.5])
    with pytest.raises(ValueError, match=r"`precision` must be a \(T, R, K, A, M\) or \(T, R\) array"):
        plot_pr_curves(np.zeros(4))
