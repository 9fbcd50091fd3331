"""Functional forms of every metric and the kernels beneath them, by task.

``semantic/`` (confusion matrix, overlapping masks, boundary bands), ``instance/`` (COCO AP
records) and ``panoptic/`` (segment pairing), over the shared ``counting`` (histograms) and
``boundary`` (mask boundary bands). The modules' earlier flat paths (``functional.mask_iou``,
``functional.confusion``, ...) stay importable as aliases of the moved modules.
"""

import importlib as _importlib
import sys as _sys

from torchseg_metrics.functional.boundary import boundary_dilation, mask_boundaries
from torchseg_metrics.functional.counting import release_buffers
from torchseg_metrics.functional.instance import (
    box_convert_to_xyxy,
    box_iou,
    mask_intersections,
    mask_iou,
    mask_iou_from_intersections,
    mean_average_precision,
)
from torchseg_metrics.functional.panoptic import (
    modified_panoptic_quality,
    panoptic_quality,
    panoptic_quality_from_stats,
    panoptic_summary_from_stats,
)
from torchseg_metrics.functional.semantic import (
    confusion_matrix,
    dice_score,
    frequency_weighted_iou,
    mean_accuracy,
    mean_iou,
    pixel_accuracy,
    semantic_metrics,
)

#: The flat module paths of earlier releases, kept importable (``from ...functional.mask_iou import``).
_MOVED = {
    "box_iou": "instance.box_iou",
    "mask_iou": "instance.mask_iou",
    "coco_accumulate": "instance.coco_accumulate",
    "coco_matching": "instance.coco_matching",
    "coco_params": "instance.coco_params",
    "coco_records": "instance.coco_records",
    "instance_inputs": "instance.inputs",
    "instance_values": "instance.values",
    "panoptic_pairing": "panoptic.pairing",
    "panoptic_scores": "panoptic.scores",
    "boundary_iou": "semantic.boundary_iou",
    "confusion": "semantic.confusion",
    "input_formats": "semantic.input_formats",
    "multilabel": "semantic.multilabel",
    "scores": "semantic.scores",
    "semantic_inputs": "semantic.inputs",
    "semantic_metrics": "semantic.metrics",
}
for _old, _new in _MOVED.items():
    _sys.modules.setdefault(f"{__name__}.{_old}", _importlib.import_module(f"{__name__}.{_new}"))

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
