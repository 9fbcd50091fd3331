"""torchseg-metrics: exact, fast, device-first segmentation metrics for PyTorch.

Semantic (confusion-matrix) metrics, COCO-exact instance mask/box AP and panopticapi-exact
panoptic quality, as ``torchmetrics.Metric`` classes with functional forms in
:mod:`torchseg_metrics.functional`.
"""

from torchseg_metrics.flatten import flatten_for_logging
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
from torchseg_metrics.semantic_boundary import BoundaryIoU
from torchseg_metrics.surface import AverageSurfaceDistance, HausdorffDistance, SurfaceDice

__version__ = "0.1.0"

__all__ = [
    "AverageSurfaceDistance",
    "BoundaryIoU",
    "ConfusionMatrix",
    "DiceScore",
    "FrequencyWeightedIoU",
    "HausdorffDistance",
    "MeanAccuracy",
    "MeanAveragePrecision",
    "MeanIoU",
    "ModifiedPanopticQuality",
    "MultilabelDiceScore",
    "MultilabelMeanIoU",
    "PanopticQuality",
    "PixelAccuracy",
    "SemanticMetrics",
    "SurfaceDice",
    "flatten_for_logging",
]
