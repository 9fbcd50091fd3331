"""Semantic segmentation kernels: one confusion-matrix statistic and its reductions.

``confusion`` counts, ``scores`` reduces, ``inputs`` / ``input_formats`` check and convert inputs,
``stats`` runs one update and every reduction, ``metrics`` holds the public functional forms;
``multilabel`` (overlapping masks) and ``boundary_iou`` (boundary bands) have statistics of their own.
"""

from torchseg_metrics.functional.semantic.metrics import (
    dice_score,
    frequency_weighted_iou,
    mean_accuracy,
    mean_iou,
    pixel_accuracy,
    semantic_metrics,
)
from torchseg_metrics.functional.semantic.stats import (
    AGGREGATIONS,
    DICE_AVERAGES,
    NORMALIZE,
    Aggregation,
    DiceAverage,
    Normalize,
    average_key,
    check_semantic_args,
    confusion_matrix,
    empty_semantic_stats,
    normalize_confusion,
    semantic_from_stats,
    semantic_stats_update,
)

__all__ = [
    "AGGREGATIONS",
    "DICE_AVERAGES",
    "NORMALIZE",
    "Aggregation",
    "DiceAverage",
    "Normalize",
    "average_key",
    "check_semantic_args",
    "confusion_matrix",
    "dice_score",
    "empty_semantic_stats",
    "frequency_weighted_iou",
    "mean_accuracy",
    "mean_iou",
    "normalize_confusion",
    "pixel_accuracy",
    "semantic_from_stats",
    "semantic_metrics",
    "semantic_stats_update",
]
