"""A first run: semantic metrics on a small made-up batch (no downloads).

Run with ``python examples/quickstart.py``.
"""

from __future__ import annotations

import torch

from torchseg_metrics import ConfusionMatrix, MeanIoU, SemanticMetrics

# Two 4x6 label maps, 3 classes, 255 = ignore.
target = torch.tensor(
    [
        [[0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], [2, 2, 2, 2, 255, 255], [2, 2, 2, 2, 255, 255]],
        [[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 1, 1], [1, 1, 0, 0, 1, 1], [2, 2, 2, 2, 2, 2]],
    ],
    dtype=torch.uint8,
)
preds = target.clone()
preds[0, 0, 2] = 1  # a boundary error
preds[0, 2, :2] = 0  # two wrong pixels
preds[1, 1:3, 2] = 1  # a thin object partly missed
preds[0, 3, 4:] = 2  # predictions on ignored pixels do not count

miou = MeanIoU(num_classes=3, ignore_index=255)
miou.update(preds, target)
print(f"mIoU: {miou.compute().item():.4f}")

everything = SemanticMetrics(num_classes=3, ignore_index=255, per_class=True)
everything.update(preds, target)
for name, value in everything.compute().items():
    print(f"{name:>18}: {[round(v, 4) for v in value.tolist()] if value.ndim else round(value.item(), 4)}")

confmat = ConfusionMatrix(num_classes=3, ignore_index=255)
confmat.update(preds, target)
print("confusion matrix (rows = target):")
print(confmat.compute())

# Instance masks: COCO AP of two detections against two objects in one 8x8 image.
from torchseg_metrics import MeanAveragePrecision, PanopticQuality  # noqa: E402

gt = torch.zeros(2, 8, 8, dtype=torch.bool)
gt[0, :4, :4] = True  # a 4x4 object of class 1
gt[1, 4:, 2:8] = True  # a 4x6 object of class 2
det = torch.zeros(3, 8, 8, dtype=torch.bool)
det[0, :4, :3] = True  # class 1, IoU 0.75 with the first object
det[1, 4:, 4:8] = True  # class 2, IoU 0.667 with the second
det[2, 6:, :2] = True  # class 1, a false positive
ap = MeanAveragePrecision(iou_type="segm")
ap.update(
    [{"masks": det, "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([1, 2, 1])}],
    [{"masks": gt, "labels": torch.tensor([1, 2])}],
)
print(ap.summary())

# Panoptic: (category, instance) maps; category 1 is a thing, 5 is stuff, any other id is void.
target = torch.zeros(1, 4, 6, 2, dtype=torch.long)
target[0, :, :3] = torch.tensor([5, 0])  # stuff on the left
target[0, 1:3, 3:5] = torch.tensor([1, 1])  # a thing
pred = target.clone()
pred[0, 0, 3] = torch.tensor([1, 1])  # a thing pixel on void: left out of the union (panopticapi)
pred[0, 2, 4] = torch.tensor([5, 0])  # a thing pixel predicted as stuff
pq = PanopticQuality(things={1}, stuffs={5}, return_sq_and_rq=True, allow_unknown_preds_category=True)
pq.update(pred, target)
print("PQ, SQ, RQ:", [round(v, 4) for v in pq.compute().tolist()])
