"""Functional forms of every metric and the kernels beneath them."""

from torchseg_metrics.functional.boundary import boundary_dilation, mask_boundaries
from torchseg_metrics.functional.box_iou import box_convert_to_xyxy, box_iou
from torchseg_metrics.functional.coco_records import mean_average_precision
from torchseg_metrics.functional.counting import release_buffers
from torchseg_metrics.functional.mask_iou import mask_intersections, mask_iou, mask_iou_from_intersections
from torchseg_metrics.functional.panoptic import modified_panoptic_quality, panoptic_quality
from torchseg_metrics.functional.panoptic_scores import (
    panoptic_quality_from_stats,
    panoptic_summary_from_stats,
)
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
    "boundary_dilation",
    "box_convert_to_xyxy",
    "box_iou",
    "confusion_matrix",
    "dice_score",
    "frequency_weighted_iou",
    "mask_boundaries",
    "mask_intersections",
    "mask_iou",
    "mask_iou_from_intersections",
    "mean_accuracy",
    "mean_average_precision",
    "mean_iou",
    "modified_panoptic_quality",
    "panoptic_quality",
    "panoptic_quality_from_stats",
    "panoptic_summary_from_stats",
    "pixel_accuracy",
    "release_buffers",
    "semantic_metrics",
]
