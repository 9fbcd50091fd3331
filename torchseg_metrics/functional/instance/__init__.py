"""Instance segmentation / detection kernels: COCO AP from per-detection records.

``box_iou`` and ``mask_iou`` (and the shared ``..boundary`` bands) give the pairwise IoUs, ``inputs``
and ``values`` check and assemble batches, ``coco_params`` / ``coco_matching`` /
``coco_accumulate`` are pycocotools' parameters, greedy matching and accumulation, and
``coco_records`` ties them into records and results (:func:`mean_average_precision`).
"""

from torchseg_metrics.functional.instance.box_iou import box_convert_to_xyxy, box_iou
from torchseg_metrics.functional.instance.coco_records import mean_average_precision
from torchseg_metrics.functional.instance.mask_iou import (
    mask_intersections,
    mask_iou,
    mask_iou_from_intersections,
)

__all__ = [
    "box_convert_to_xyxy",
    "box_iou",
    "mask_intersections",
    "mask_iou",
    "mask_iou_from_intersections",
    "mean_average_precision",
]
