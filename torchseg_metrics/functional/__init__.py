"""Functional forms of every metric and the kernels beneath them."""

from torchseg_metrics.functional.semantic import confusion_matrix
from torchseg_metrics.functional.semantic_metrics import (
    dice_score,
    frequency_weighted_iou,
    mean_accuracy,
    mean_iou,
    pixel_accuracy,
    semantic_metrics,
)

__all__ = [
    "confusion_matrix",
    "dice_score",
    "frequency_weighted_iou",
    "mean_accuracy",
    "mean_iou",
    "pixel_accuracy",
    "semantic_metrics",
]
