"""Readers of annotation and result files on disk, producing the metrics' ``update()`` inputs.

- :mod:`~torchseg_metrics.io.rle`: COCO run-length encoding, decode (on the device) and encode.
- :mod:`~torchseg_metrics.io.polygons`: pycocotools-exact polygon rasterisation (a vectorised port).
- :mod:`~torchseg_metrics.io.coco`: COCO instances ground truth + results, streamed in batches.
- :mod:`~torchseg_metrics.io.panoptic`: COCO panoptic JSON + RGB-id PNG folders.
- :mod:`~torchseg_metrics.io.semantic`: two folders of label-map PNGs matched by file name.

PNG reading needs Pillow (``pip install "torchseg-metrics[io]"``); it is imported when a PNG is read.
"""

from torchseg_metrics.io.coco import (
    CocoBatch,
    CocoGroundTruth,
    iter_coco_batches,
    load_coco_gt,
    load_coco_results,
)
from torchseg_metrics.io.panoptic import (
    PanopticBatch,
    PanopticFiles,
    iter_panoptic_batches,
    load_panoptic_files,
    read_panoptic_png,
)
from torchseg_metrics.io.polygons import rasterize_polygons
from torchseg_metrics.io.rle import decode_rle, encode_rle, rle_counts_from_string, rle_string_from_counts
from torchseg_metrics.io.semantic import (
    SemanticBatch,
    iter_label_map_batches,
    match_label_maps,
    read_label_map,
)

__all__ = [
    "CocoBatch",
    "CocoGroundTruth",
    "PanopticBatch",
    "PanopticFiles",
    "SemanticBatch",
    "decode_rle",
    "encode_rle",
    "iter_coco_batches",
    "iter_label_map_batches",
    "iter_panoptic_batches",
    "load_coco_gt",
    "load_coco_results",
    "load_panoptic_files",
    "match_label_maps",
    "rasterize_polygons",
    "read_label_map",
    "read_panoptic_png",
    "rle_counts_from_string",
    "rle_string_from_counts",
]
