"""Panoptic kernels: one ``(iou_sum, tp, fp, fn)`` statistic per class and its reductions.

``pairing`` pairs the segments of a batch (run records, void and crowd rules), ``scores`` checks
arguments and reduces the statistic to PQ / SQ / RQ, ``metrics`` holds the public functional forms.
"""

from torchseg_metrics.functional.panoptic.metrics import modified_panoptic_quality, panoptic_quality
from torchseg_metrics.functional.panoptic.scores import (
    panoptic_quality_from_stats,
    panoptic_summary_from_stats,
)

__all__ = [
    "modified_panoptic_quality",
    "panoptic_quality",
    "panoptic_quality_from_stats",
    "panoptic_summary_from_stats",
]
