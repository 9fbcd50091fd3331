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
