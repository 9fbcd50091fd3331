"""Per-class accuracy counts beyond the confusion matrix: top-k hits and per-sample counts.

torchmetrics' ``MulticlassAccuracy`` takes ``top_k`` (a pixel is a hit for its target class when
that class is among its ``k`` highest scores) and ``multidim_average="samplewise"`` (one value per
sample over its other dimensions). A confusion matrix of top-1 labels holds neither, so these
counts are kept beside it: ``(..., 3, C)`` int64 rows of hits (true positives), target pixels
(support) and predicted pixels per class, summed over the pixels of a batch or of each sample.
They are computed with ``scatter_add`` on the device (no host sync) and reduced by
:func:`accuracy_from_counts` under either rule set.

Example:
    >>> target = torch.tensor([[0, 1, 1]])
    >>> scores = torch.tensor([[[0.6, 0.1, 0.5], [0.3, 0.5, 0.4], [0.1, 0.4, 0.1]]])  # (N, C, X)
    >>> accuracy_counts(scores, target, 3, None, top_k=2, per_sample=False)
    tensor([[1, 2, 0],
            [1, 2, 0],
            [2, 3, 1]])
"""

from __future__ import annotations

import torch
from torch import Tensor

from torchseg_metrics._checks import Found, check_same_device, check_tensor, fail, is_integer_dtype
from torchseg_metrics.functional.semantic.inputs import labels_from_preds


def accuracy_counts(
    preds: Tensor, target: Tensor, num_classes: int, ignore_index: int | None, top_k: int, per_sample: bool
) -> Tensor:
    """int64 ``(3, C)`` (or ``(N, 3, C)`` with ``per_sample``) hits, support and predicted counts.

    Args:
        preds: labels ``(N, ...)`` (``top_k`` 1) or scores ``(N, C, ...)``, checked by the caller.
        target: labels ``(N, ...)``; values outside ``[0, C)`` or equal to ``ignore_index`` count
            nowhere.
        num_classes: ``C``.
        ignore_index: the target value left out, or None.
        top_k: a pixel is a hit when its target class is among its ``top_k`` highest scores (ties as
            ``torch.topk``); its predicted count goes to every one of those classes, as torchmetrics'
            multi-hot top-k predictions.
        per_sample: counts per sample instead of for the batch.
    """
    c, n = num_classes, target.shape[0]
    valid = (target >= 0) & (target < c)
    if ignore_index is not None:
        valid &= target != ignore_index
    t = torch.where(valid, target, 0).long()
    sample = torch.arange(n, device=target.device).view(n, *([1] * (target.ndim - 1))).expand_as(t)
    offset = sample * c if per_sample else torch.zeros_like(t)
    if preds.dtype.is_floating_point:
        top = preds.topk(top_k, dim=1).indices  # (N, k, ...)
        hit = (top == t.unsqueeze(1)).any(1) & valid
        predicted = top
    else:
        hit = (preds == t) & valid
        predicted = preds.long().unsqueeze(1)
    size = (n if per_sample else 1) * c
    hits = torch.zeros(size, dtype=torch.int64, device=target.device)
    hits.scatter_add_(0, (offset + t).flatten(), hit.flatten().long())
    support = torch.zeros_like(hits).scatter_add_(0, (offset + t).flatten(), valid.flatten().long())
    in_range = (predicted >= 0) & (predicted < c) & valid.unsqueeze(1)
    where = (offset.unsqueeze(1) + predicted.clamp(0, c - 1)).flatten()
    pred_count = torch.zeros_like(hits).scatter_add_(0, where, in_range.flatten().long())
    out = torch.stack([hits, support, pred_count]).view(3, -1, c).transpose(0, 1)  # (S, 3, C)
    return out if per_sample else out[0]


def pooled_accuracy_counts(preds: Tensor, target: Tensor, ignore_index: int | None) -> Tensor:
    """int64 ``[hits, pixels]`` of labels ``(N, ...)`` or scores ``(N, C, ...)`` against target labels,
    pixels equal to ``ignore_index`` left out: the pooled accuracy without a number of classes
    (torchmetrics' ``MulticlassAccuracy(num_classes=None, average="micro")``).

    Example:
        >>> pooled_accuracy_counts(torch.tensor([0, 1, 1, 5]), torch.tensor([0, 1, 2, 5]), None)
        tensor([3, 4])
    """
    preds, target = check_tensor("preds", preds), check_tensor("target", target)
    if not is_integer_dtype(target.dtype):
        fail("target", "an integer tensor of class indices", Found(f"dtype {target.dtype}"), TypeError)
    if preds.dtype.is_floating_point:
        shape_ok = preds.ndim == target.ndim + 1 and preds.shape[:1] + preds.shape[2:] == target.shape
    else:
        shape_ok = preds.shape == target.shape
    if not shape_ok:
        fail(
            "preds",
            f"labels of shape {tuple(target.shape)} or scores (N, C, ...)",
            Found(f"shape {tuple(preds.shape)}"),
        )
    check_same_device(("preds", "target"), (preds, target))
    labels = labels_from_preds(preds)[0]
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    return torch.stack([((labels == target) & valid).sum(), valid.sum()])


def accuracy_from_counts(counts: Tensor, average: str, torchmetrics_rules: bool, top_k: int = 1) -> Tensor:
    """Accuracy (float64) from ``(..., 3, C)`` counts: per class (``average="none"``), ``"macro"``,
    ``"micro"`` or ``"weighted"``, over the last axis.

    Rules: this package's (mmseg's mAcc): a class without target pixels is NaN and left out of the
    macro mean. torchmetrics' (``torchmetrics_rules``): such a class scores 0, and the macro mean
    is over the classes with a hit, a miss or a prediction (with ``top_k`` > 1: with a target pixel).

    Example:
        >>> counts = torch.tensor([[2, 1, 0], [3, 1, 0], [2, 3, 1]])  # class 2: predicted, absent
        >>> accuracy_from_counts(counts, "macro", False), accuracy_from_counts(counts, "macro", True)
        (tensor(0.8333, dtype=torch.float64), tensor(0.5556, dtype=torch.float64))
    """
    hits, support, predicted = counts.double().unbind(-2)
    if average == "micro":
        total = support.sum(-1)
        return torch.where(
            total > 0, hits.sum(-1) / total.clamp(min=1), 0.0 if torchmetrics_rules else torch.nan
        )
    per_class = torch.where(
        support > 0, hits / support.clamp(min=1), 0.0 if torchmetrics_rules else torch.nan
    )
    if average == "none":
        return per_class
    if average == "weighted":
        weights = support
    elif torchmetrics_rules:  # hits + misses + false positives > 0, or with top-k the support
        misses, false = support - hits, predicted - hits
        weights = ((support > 0) if top_k > 1 else (hits + misses + false > 0)).double()
    else:
        weights = (support > 0).double()
    total = weights.sum(-1)
    value = (weights * per_class.nan_to_num(0.0)).sum(-1) / total.clamp(min=1e-300)
    return torch.where(total > 0, value, 0.0 if torchmetrics_rules else torch.nan)
