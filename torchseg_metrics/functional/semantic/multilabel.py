"""Multi-label (overlapping-mask) segmentation: per-class tp/fp/fn counts, IoU and Dice.

For regions that overlap, such as BraTS' whole tumour / tumour core / enhancing tumour, each class
is its own binary mask: ``preds`` and ``target`` are ``(N, C, ...)``, booleans, 0/1 integers, or (for
``preds``) probabilities binarised with ``preds > threshold`` as torchmetrics does.

The statistic is an int64 ``(C, 4)`` matrix of pixel counts ``[tn, fp, fn, tp]`` per class, counted
with one histogram of ``3 * target + pred`` offset by class (no boolean indexing, no sync).

Aggregation:
    ``"dataset"`` (default): scores of the counts of every pixel seen. ``"image"``: per-class scores
    per image, then each class's mean over the images where it is defined. A class with an empty
    target and an empty prediction is NaN (skipped in means).
"""

from __future__ import annotations

import torch
from torch import Tensor

from torchseg_metrics._checks import Found, check_same_device, check_tensor, fail, is_integer_dtype
from torchseg_metrics.functional.counting import CountMethod, count_codes

#: Per-class scores of the image-aggregation state, in row order.
MULTILABEL_SCORES = ("iou", "dice")


def check_multilabel_inputs(preds: object, target: object, num_classes: int) -> tuple[Tensor, Tensor]:
    """Check metadata of ``(N, C, ...)`` inputs; return them as tensors.

    Raises:
        TypeError: non-tensors, or dtypes other than bool/integer (target) or bool/integer/float (preds).
        ValueError: shapes that differ or whose dim 1 is not ``num_classes``; different devices.
    """
    preds, target = check_tensor("preds", preds), check_tensor("target", target)
    if target.dtype != torch.bool and not is_integer_dtype(target.dtype):
        fail("target", "a bool or 0/1 integer tensor", Found(f"dtype {target.dtype}"), TypeError)
    if preds.dtype != torch.bool and not is_integer_dtype(preds.dtype) and not preds.dtype.is_floating_point:
        fail("preds", "a bool, 0/1 integer or probability tensor", Found(f"dtype {preds.dtype}"), TypeError)
    if target.ndim < 3 or target.shape[1] != num_classes:
        fail("target", f"of shape (N, {num_classes}, *spatial)", Found(f"shape {tuple(target.shape)}"))
    if preds.shape != target.shape:
        fail("preds", f"of the target's shape {tuple(target.shape)}", Found(f"shape {tuple(preds.shape)}"))
    check_same_device(("preds", "target"), (preds, target))
    return preds, target


def _binary_u8(x: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """uint8 codes: 0/1 for valid values, 2 for invalid integers (outside {0, 1}, negatives included),
    and the number of invalid probabilities (NaN or outside [0, 1], such as logits)."""
    if x.dtype == torch.bool:
        return x.view(torch.uint8), torch.zeros((), dtype=torch.int64, device=x.device)
    if x.dtype.is_floating_point:
        return (x > threshold).view(torch.uint8), (~((x >= 0) & (x <= 1))).sum()
    # -1 and 2 stand for every value below 0 and above 1; remainder(3) folds -1 onto 2
    codes = x.clamp(-1, 2) if x.dtype != torch.uint8 else x.clamp(max=2)
    return codes.remainder(3).to(torch.uint8), torch.zeros((), dtype=torch.int64, device=x.device)


def multilabel_stats_update(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    *,
    threshold: float = 0.5,
    per_image: bool = False,
    method: CountMethod = "auto",
) -> tuple[Tensor, Tensor]:
    """Counts ``[tn, fp, fn, tp]`` per class ``(C, 4)`` (or per image ``(N, C, 4)``) and the number of
    invalid values ``(2,)``: target values outside {0, 1}, and predictions outside {0, 1} (integers)
    or outside [0, 1] (probabilities; NaN included)."""
    preds, target = check_multilabel_inputs(preds, target, num_classes)
    p, p_nan = _binary_u8(preds, threshold)
    t, _ = _binary_u8(target, threshold)
    n, c = target.shape[:2]
    groups = n * c if per_image else c
    # code per pixel: 3 * t + p in [0, 9); t or p == 2 marks an invalid value
    code = (t.to(torch.int32) * 3 + p).reshape(n, c, -1)
    offsets = (
        torch.arange(groups, device=code.device, dtype=torch.int32).view(n if per_image else 1, c, 1) * 9
    )
    hist = count_codes((code + offsets).reshape(-1), groups * 9, method)
    hist = hist.view(-1, c, 3, 3)  # [group, class, t, p]
    counts = torch.stack([hist[..., 0, 0], hist[..., 0, 1], hist[..., 1, 0], hist[..., 1, 1]], dim=-1)
    bad_target = hist[..., 2, :].sum()
    bad_preds = hist[..., :2, 2].sum() + p_nan
    counts = counts if per_image else counts[0]
    return counts, torch.stack([bad_target, bad_preds])


def multilabel_scores(counts: Tensor) -> dict[str, Tensor]:
    """Per-class ``iou`` = tp / (tp + fp + fn) and ``dice`` = 2 tp / (2 tp + fp + fn), float64.

    0 / 0 (empty target and prediction) is NaN."""
    c = counts.to(torch.float64)
    fp, fn, tp = c[..., 1], c[..., 2], c[..., 3]
    return {"iou": tp / (tp + fp + fn), "dice": 2 * tp / (2 * tp + fp + fn)}


def raise_for_invalid_multilabel(num_invalid: Tensor) -> None:
    """Raise if the update counted invalid values (reads two numbers to the host)."""
    bad_target, bad_preds = (int(v) for v in num_invalid.tolist())
    if bad_target:
        fail("target", "binary (bool or 0/1)", Found(f"{bad_target} values outside {{0, 1}}"))
    if bad_preds:
        fail(
            "preds",
            "binary (bool or 0/1) or probabilities in [0, 1] (apply a sigmoid to logits)",
            Found(f"{bad_preds} invalid values (NaN, outside [0, 1], or integers outside {{0, 1}})"),
        )
