"""Plots of computed results: precision-recall curves, per-class bars, confusion-matrix heat maps.

matplotlib is an optional dependency (``pip install "torchseg-metrics[plot]"``), imported only when a
plot is drawn. New figures are ``matplotlib.figure.Figure`` objects on the non-interactive ``Agg``
canvas: they need no display and leave pyplot's global backend alone; save them with
``fig.savefig(path)``. Every function returns ``(fig, ax)`` like torchmetrics' ``plot()``, and
draws into ``ax`` when one is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from torchseg_metrics._checks import check_choice, fail

__all__ = [
    "plot_confusion_matrix",
    "plot_detection_result",
    "plot_metric_value",
    "plot_panoptic_value",
    "plot_per_class",
    "plot_pr_curves",
]

_HINT = 'plotting needs matplotlib: pip install "torchseg-metrics[plot]" (or pip install matplotlib)'


def _new_axes(ax: Any, figsize: tuple[float, float]) -> tuple[Any, Any]:
    """(fig, ax): ``ax``'s figure, or a new Agg-backed figure with one axes."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - exercised only without matplotlib
        raise ModuleNotFoundError(_HINT) from err
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _to_numpy(name: str, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        fail(name, "a tensor or array of numbers", type(value).__name__, TypeError)
        raise  # unreachable


def plot_confusion_matrix(
    confmat: Any, class_names: Sequence[str] | None = None, normalize: bool = True, ax: Any = None
) -> tuple[Any, Any]:
    """Heat map of a confusion matrix (rows = target, columns = prediction), row-normalised by default.

    Args:
        confmat (Tensor[C, C] | ndarray): counts, rows = target class.
        class_names: ``C`` tick labels (default the class indices).
        normalize: divide each row by its sum (rows without pixels are left blank, NaN).
        ax: matplotlib axes to draw into (default a new figure).

    Returns:
        (fig, ax).

    Raises:
        ValueError: if ``confmat`` is not square or ``class_names`` has the wrong length.
        ModuleNotFoundError: if matplotlib is not installed (with an install hint).

    Example:
        >>> fig, ax = plot_confusion_matrix(torch.tensor([[3, 1], [0, 2]]), ["road", "car"])
        >>> ax.get_title()
        'Confusion matrix (row-normalised)'
    """
    cm = _to_numpy("confmat", confmat)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        fail("confmat", "a square (C, C) matrix", tuple(cm.shape))
    c = cm.shape[0]
    names = [str(i) for i in range(c)] if class_names is None else [str(n) for n in class_names]
    if len(names) != c:
        fail("class_names", f"{c} names", len(names))
    if normalize:
        rows = cm.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            cm = np.where(rows > 0, cm / rows, np.nan)
    size = min(4.0 + 0.35 * c, 20.0)
    fig, ax = _new_axes(ax, (size + 1.0, size))
    im = ax.imshow(cm, cmap="viridis", vmin=0.0, vmax=1.0 if normalize else None, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(c), names, rotation=90 if c > 6 else 0)
    ax.set_yticks(range(c), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("target class")
    ax.set_title("Confusion matrix (row-normalised)" if normalize else "Confusion matrix")
    if c <= 20:  # readable cell labels only for small matrices
        for (i, j), v in np.ndenumerate(cm):
            if not np.isnan(v):
                text = f"{v:.2f}" if normalize else f"{int(v)}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="w" if v < 0.5 * np.nanmax(cm) else "k",
                )
    return fig, ax


def plot_per_class(
    values: Any, class_names: Sequence[str] | None = None, title: str = "", ax: Any = None
) -> tuple[Any, Any]:
    """Horizontal bars of a per-class score (AP, IoU, PQ, ...); undefined classes (NaN, -1) are marked.

    Args:
        values (Tensor[C] | Sequence[float]): one value per class.
        class_names: ``C`` labels (default the indices).
        title: axes title, e.g. ``"IoU per class"``.
        ax: matplotlib axes to draw into (default a new figure).

    Returns:
        (fig, ax).

    Raises:
        ValueError: if ``values`` is not 1-d or ``class_names`` has the wrong length.
        ModuleNotFoundError: if matplotlib is not installed (with an install hint).

    Example:
        >>> fig, ax = plot_per_class([0.5, float("nan"), 0.25], ["a", "b", "c"], "IoU")
        >>> len(ax.patches)
        3
    """
    vals = _to_numpy("values", values)
    if vals.ndim != 1:
        fail("values", "a 1-d sequence of per-class values", tuple(vals.shape))
    c = len(vals)
    names = [str(i) for i in range(c)] if class_names is None else [str(n) for n in class_names]
    if len(names) != c:
        fail("class_names", f"{c} names", len(names))
    undefined = np.isnan(vals) | (vals == -1)
    shown = np.where(undefined, 0.0, vals)
    fig, ax = _new_axes(ax, (6.0, max(2.0, 0.25 * c + 1.0)))
    pos = np.arange(c)
    bars = ax.barh(pos, shown, color=np.where(undefined, "lightgrey", "tab:blue").tolist())
    for bar, v, u in zip(bars, vals, undefined, strict=True):
        label = "n/a" if u else f"{v:.3f}"
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {label}", va="center", fontsize=7)
    ax.set_yticks(pos, names)
    ax.invert_yaxis()
    ax.set_xlim(0.0, max(1.0, float(np.nanmax(shown)) if c else 1.0) * 1.1)
    ax.set_title(title)
    return fig, ax


def plot_pr_curves(
    precision: Any,
    rec_thresholds: Sequence[float] | None = None,
    iou_thresholds: Sequence[float] | None = None,
    ax: Any = None,
    *,
    area_index: int = 0,
    max_det_index: int = -1,
) -> tuple[Any, Any]:
    """Precision-recall curves, one per IoU threshold, averaged over classes as COCO does.

    Args:
        precision: COCO's precision array, ``(T, R, K, A, M)`` as ``MeanAveragePrecision(
            extended_summary=True).compute()["precision"]`` (entries of -1 are classes without
            ground truth and are left out of the class mean), or ``(T, R)`` curves.
        rec_thresholds: the ``R`` recall thresholds (default ``np.linspace(0, 1, R)``).
        iou_thresholds: the ``T`` IoU thresholds, for the legend (default ``np.linspace(.5, .95, T)``).
        ax: matplotlib axes to draw into (default a new figure).
        area_index: the area range of a 5-d array (0 = all).
        max_det_index: the maxDets entry of a 5-d array (-1 = the largest).

    Returns:
        (fig, ax).

    Raises:
        ValueError: if ``precision`` is not 2-d or 5-d, or the thresholds' lengths differ from it.
        ModuleNotFoundError: if matplotlib is not installed (with an install hint).

    Example:
        >>> fig, ax = plot_pr_curves(torch.tensor([[1.0, 0.8, 0.0], [1.0, 0.5, 0.0]]))
        >>> len(ax.lines)
        2
    """
    p = _to_numpy("precision", precision)
    if p.ndim == 5:
        p = p[:, :, :, area_index, max_det_index]
        valid = p > -1
        with np.errstate(invalid="ignore"):
            p = np.where(valid.any(axis=2), np.where(valid, p, 0).sum(axis=2) / valid.sum(axis=2), np.nan)
    elif p.ndim != 2:
        fail("precision", "a (T, R, K, A, M) or (T, R) array", tuple(p.shape))
    t, r = p.shape
    rec = np.linspace(0.0, 1.0, r) if rec_thresholds is None else _to_numpy("rec_thresholds", rec_thresholds)
    ious = (
        np.linspace(0.5, 0.95, t) if iou_thresholds is None else _to_numpy("iou_thresholds", iou_thresholds)
    )
    if len(rec) != r:
        fail("rec_thresholds", f"{r} values (the precision array's R)", len(rec))
    if len(ious) != t:
        fail("iou_thresholds", f"{t} values (the precision array's T)", len(ious))
    fig, ax = _new_axes(ax, (6.0, 4.5))
    for i in range(t):  # one curve per IoU threshold
        ap = float(np.nanmean(p[i])) if not np.isnan(p[i]).all() else float("nan")
        ax.plot(rec, p[i], label=f"IoU={ious[i]:.2f} (AP {ap:.3f})")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall per IoU threshold")
    ax.legend(fontsize=7, loc="lower left")
    return fig, ax


def _scalars(result: Mapping[str, Any]) -> dict[str, Tensor]:
    """The entries of a result dict that are one number (``*_per_class`` entries and ids left out)."""
    return {
        k: v.reshape(())
        for k, v in result.items()
        if isinstance(v, Tensor) and v.numel() == 1 and v.is_floating_point() and not k.endswith("_per_class")
    }


def plot_metric_value(
    metric: Any, val: Any = None, ax: Any = None, *, class_names: Sequence[str] | None = None
) -> tuple[Any, Any]:
    """A metric's ``plot()``: per-class bars for a 1-d value, else torchmetrics' ``Metric._plot``.

    Args:
        metric: the ``torchmetrics.Metric`` whose value is drawn (``metric.compute()`` if ``val`` is None).
        val: a value of ``metric`` (scalar, ``(C,)`` per-class tensor or dict of tensors) or a list of
            scalar values or dicts, drawn as lines over steps by ``Metric._plot``. Non-scalar entries of
            dicts (per-class vectors) are left out there.
        ax: matplotlib axes to draw into (default a new figure).
        class_names: labels of the bars of a per-class value (default the class indices).

    Returns:
        (fig, ax).

    Raises:
        ValueError: if ``class_names`` does not fit a per-class value.
        ModuleNotFoundError: if matplotlib is not installed (with an install hint).

    Example:
        >>> from torchseg_metrics.semantic import MeanIoU
        >>> metric = MeanIoU(num_classes=2, per_class=True, class_names=["bg", "car"])
        >>> metric.update(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 1, 0]]))
        >>> fig, ax = plot_metric_value(metric, class_names=metric.class_names)
        >>> [t.get_text() for t in ax.get_yticklabels()]
        ['bg', 'car']
    """
    val = metric.compute() if val is None else val
    name = type(metric).__name__
    if isinstance(val, Tensor) and val.ndim == 1 and val.numel() > 1:
        names = class_names if class_names is not None and len(class_names) == val.numel() else None
        return plot_per_class(val, names, f"{name} per class", ax)
    if isinstance(val, Mapping):
        val = _scalars(val)
    elif isinstance(val, Sequence) and val and isinstance(val[0], Mapping):
        val = [_scalars(v) for v in val]
    return metric._plot(val, ax)


def plot_detection_result(
    metric: Any, val: Any = None, ax: Any = None, kind: Literal["bars", "pr", "per_class"] = "bars"
) -> tuple[Any, Any]:
    """``MeanAveragePrecision.plot()``: bars of the summary numbers, PR curves or per-class AP.

    Args:
        metric: a ``MeanAveragePrecision`` (``metric.compute()`` is drawn if ``val`` is None).
        val: its result dict, or a list of result dicts (``kind="bars"`` only: lines over steps).
        ax: matplotlib axes to draw into (default a new figure).
        kind: ``"bars"`` (``map``, ``map_50``, ..., ``mar_large``; -1 = undefined, shown as n/a),
            ``"pr"`` (precision-recall curves per IoU threshold; needs ``extended_summary=True``) or
            ``"per_class"`` (AP per class, labelled by class id; needs ``class_metrics=True``).

    Returns:
        (fig, ax).

    Raises:
        ValueError: for an unknown ``kind``, or a ``kind`` whose arrays the result does not hold.
        ModuleNotFoundError: if matplotlib is not installed (with an install hint).

    Example:
        >>> from torchseg_metrics.instance import MeanAveragePrecision
        >>> metric = MeanAveragePrecision(iou_type="bbox", extended_summary=True)
        >>> box = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
        >>> metric.update([{"boxes": box, "scores": torch.tensor([0.5]), "labels": torch.tensor([0])}],
        ...               [{"boxes": box, "labels": torch.tensor([0])}])
        >>> fig, ax = plot_detection_result(metric, kind="pr")
        >>> len(ax.lines)
        10
    """
    check_choice("kind", kind, ["bars", "pr", "per_class"])
    val = metric.compute() if val is None else val
    if not isinstance(val, Mapping):
        if kind != "bars" or not isinstance(val, Sequence) or not val:
            fail("val", "a result dict of MeanAveragePrecision (or, for kind='bars', a list of them)", val)
        return metric._plot([_scalars(v) for v in val], ax)
    if kind == "pr":
        if "precision" not in val:
            fail("kind", "'bars' or 'per_class' unless the metric has extended_summary=True", kind)
        return plot_pr_curves(
            val["precision"], metric.rec_thresholds, metric.iou_thresholds, ax, area_index=0, max_det_index=-1
        )
    if kind == "per_class":
        ap = val["map_per_class"].reshape(-1)
        if ap.numel() != val["classes"].numel():
            fail("kind", "'bars' or 'pr' unless the metric has class_metrics=True", kind)
        return plot_per_class(ap, [str(c) for c in val["classes"].tolist()], "AP per class", ax)
    scalars = _scalars(val)
    return plot_per_class(torch.stack(list(scalars.values())), list(scalars), type(metric).__name__, ax)


def plot_panoptic_value(metric: Any, val: Any = None, ax: Any = None) -> tuple[Any, Any]:
    """``PanopticQuality.plot()``: per-class PQ bars, or PQ (and SQ, RQ) via ``Metric._plot``.

    Args:
        metric: a ``PanopticQuality`` (``metric.compute()`` is drawn if ``val`` is None).
        val: a value of ``metric``: scalar PQ, ``(3,)`` [PQ, SQ, RQ], per-class ``(1, C)`` or ``(C, 3)``
            (drawn as PQ bars labelled by category id), or a list of scalar / ``(3,)`` values (lines).
        ax: matplotlib axes to draw into (default a new figure).

    Returns:
        (fig, ax).

    Raises:
        ModuleNotFoundError: if matplotlib is not installed (with an install hint).

    Example:
        >>> from torchseg_metrics.panoptic import PanopticQuality
        >>> metric = PanopticQuality(things={1}, stuffs={7}, return_per_class=True)
        >>> metric.update(torch.tensor([[[[1, 1], [7, 0]]]]), torch.tensor([[[[1, 1], [1, 1]]]]))
        >>> fig, ax = plot_panoptic_value(metric)
        >>> [t.get_text() for t in ax.get_yticklabels()]
        ['1', '7']
    """
    val = metric.compute() if val is None else val
    if isinstance(val, Tensor) and val.ndim == 2:  # per class: (1, C) PQ, or (C, 3) [PQ, SQ, RQ]
        pq = val[0] if val.shape[0] == 1 and not metric.return_sq_and_rq else val[:, 0]
        names = [str(c) for c in (*metric.things, *metric.stuffs)]
        return plot_per_class(pq, names if len(names) == pq.numel() else None, "PQ per class", ax)
    if isinstance(val, Tensor) and val.shape == (3,):
        val = dict(zip(("pq", "sq", "rq"), val, strict=True))
    return metric._plot(val, ax)
