"""A real ``lightning.Trainer`` logs the semantic metrics; the epoch values equal a direct computation.

A 1x1-convolution segmentation "network" is trained for two steps, then validated; its
``validation_step`` updates ``MeanIoU``, ``PixelAccuracy`` (through ``forward``), ``SemanticMetrics``
and ``ConfusionMatrix`` and logs them with ``self.log`` (Metric objects, reduced by Lightning at
epoch end) and ``self.log_dict`` (scalar entries of a computed dict). After ``fit`` the test runs the
final weights over the same validation data and compares the logged values with

- the functional API (``torchseg_metrics.functional``) on all the logits at once, and
- a NumPy reference: ``np.bincount`` confusion matrix of the logits' argmax, and the scores from it.

The distributed case uses ``strategy="ddp_spawn"`` on 2 CPU processes (gloo) with an uneven split of
the validation set (5 and 2 images). Lightning's ``DistributedSampler`` would pad the shorter shard
by repeating samples (changing the numbers), so ``use_distributed_sampler=False`` and each rank
reads its own disjoint shard. ``ddp_spawn`` pickles the module into the ranks with CPU tensors in
shared memory, so metric states updated in place would be one storage for both ranks and count every
pixel twice (torchmetrics' own ``MulticlassConfusionMatrix`` does, in torchmetrics 1.9.0); the
logged confusion matrix catches that. Nothing here skips: a missing ``lightning`` or a process group
that cannot start fails the test.
"""

from __future__ import annotations

import itertools
import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from torchseg_metrics.functional import confusion_matrix, mean_iou, pixel_accuracy, semantic_metrics
from torchseg_metrics.semantic import ConfusionMatrix, MeanIoU, PixelAccuracy, SemanticMetrics

NUM_CLASSES = 4
IGNORE = 255
HEIGHT, WIDTH = 12, 16
BATCH = 2
NUM_VAL = 7
#: validation shards per world size: 2 ranks get 5 and 2 images (uneven, disjoint, no padding)
VAL_SPLITS = {1: [0, NUM_VAL], 2: [0, 5, NUM_VAL]}
SCALAR_KEYS = ("miou", "mdice", "pixel_accuracy", "mean_accuracy", "fwiou")


def _validation_data() -> tuple[Tensor, Tensor]:
    """Images ``(7, 3, 12, 16)`` float and uint8 targets ``(7, 12, 16)``: classes 0..2 (3 never
    occurs in the target), 10% of the pixels ignored (255)."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(NUM_VAL, 3, HEIGHT, WIDTH, generator=gen)
    target = torch.randint(0, NUM_CLASSES - 1, (NUM_VAL, HEIGHT, WIDTH), generator=gen)
    # make the target learnable from the image, so that trained predictions are not constant
    target = torch.where(images[:, 0] > 0.5, 0, torch.where(images[:, 1] > 0.5, 1, target))
    target[torch.rand(NUM_VAL, HEIGHT, WIDTH, generator=gen) < 0.1] = IGNORE
    return images, target.to(torch.uint8)


def _train_data() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(8, 3, HEIGHT, WIDTH, generator=gen)
    target = torch.where(images[:, 0] > 0.5, 0, torch.where(images[:, 1] > 0.5, 1, 2))
    return images, target.to(torch.uint8)


def _shard(data: tuple[Tensor, Tensor], rank: int, world_size: int, bounds: list[int]) -> TensorDataset:
    lo, hi = bounds[rank], bounds[rank + 1]
    return TensorDataset(*(t[lo:hi] for t in data))


class SegmentationModule(L.LightningModule):
    """A 1x1 convolution producing ``NUM_CLASSES`` logits per pixel, with the metrics as attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, NUM_CLASSES, kernel_size=1)
        kwargs = {"num_classes": NUM_CLASSES, "ignore_index": IGNORE}
        self.miou = MeanIoU(**kwargs)
        self.pixel_accuracy = PixelAccuracy(**kwargs)
        self.semantic = SemanticMetrics(per_class=True, **kwargs)
        self.confmat = ConfusionMatrix(**kwargs)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(images)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, target = batch
        return F.cross_entropy(self(images), target.long(), ignore_index=IGNORE)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, target = batch
        logits = self(images)
        self.miou.update(logits, target)  # float scores (N, C, H, W)
        self.log("val/miou", self.miou, on_step=False, on_epoch=True)
        self.pixel_accuracy(logits.argmax(1), target)  # integer labels, through Metric.forward
        self.log("val/pixel_accuracy_metric", self.pixel_accuracy, on_step=False, on_epoch=True)
        self.semantic.update(logits, target)
        self.confmat.update(logits.argmax(1), target)

    def on_validation_epoch_end(self) -> None:
        scores = self.semantic.compute()  # synchronised across ranks by torchmetrics
        self.log_dict({f"val/{k}": v for k, v in scores.items() if v.ndim == 0})
        self.log_dict({f"val/iou_per_class/{i}": v for i, v in enumerate(scores["iou_per_class"])})
        counts = self.confmat.compute()
        self.log_dict(
            {
                f"val/confmat/{i}_{j}": counts[i, j].double()
                for i in range(NUM_CLASSES)
                for j in range(NUM_CLASSES)
            }
        )
        self.semantic.reset()
        self.confmat.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5)

    def train_dataloader(self) -> DataLoader:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        return DataLoader(_shard(_train_data(), rank, world, [0, 4, 8] if world == 2 else [0, 8]), BATCH)

    def val_dataloader(self) -> DataLoader:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        return DataLoader(_shard(_validation_data(), rank, world, VAL_SPLITS[world]), BATCH)


def _trainer(**kwargs: object) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        **kwargs,
    )


def _numpy_reference(logits: Tensor, target: Tensor) -> dict[str, np.ndarray | float]:
    """Confusion matrix by ``np.bincount`` of the argmax, and the dataset-level scores from it."""
    preds = logits.numpy().argmax(1).ravel()
    labels = target.numpy().astype(np.int64).ravel()
    keep = labels != IGNORE
    c = NUM_CLASSES
    cm = np.bincount(labels[keep] * c + preds[keep], minlength=c * c).reshape(c, c)
    tp, gt, pr = np.diag(cm).astype(float), cm.sum(1).astype(float), cm.sum(0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, dice, acc = tp / (gt + pr - tp), 2 * tp / (gt + pr), tp / gt
    return {
        "confmat": cm,
        "iou": iou,
        "miou": float(np.nanmean(iou)),
        "mdice": float(np.nanmean(dice)),
        "mean_accuracy": float(np.nanmean(acc)),
        "pixel_accuracy": float(tp.sum() / gt.sum()),
        "fwiou": float(np.nansum(gt * iou) / gt.sum()),
    }


def _check_logged(logged: dict[str, float], model: SegmentationModule, world_size: int) -> None:
    """Compare the logged epoch values with the functional API and with NumPy on the final weights."""
    images, target = _validation_data()
    model.eval()
    with torch.no_grad():  # the same batches as the ranks saw
        bounds = VAL_SPLITS[world_size]
        logits = torch.cat(
            [
                model(images[i : min(i + BATCH, hi)])
                for lo, hi in itertools.pairwise(bounds)
                for i in range(lo, hi, BATCH)
            ]
        )
    functional = semantic_metrics(logits, target, NUM_CLASSES, ignore_index=IGNORE)
    ref = _numpy_reference(logits, target)
    assert (ref["confmat"].sum(0) > 0).sum() >= 2, "degenerate test: fewer than 2 classes predicted"
    assert ref["confmat"].sum() == int((target != IGNORE).sum())  # every pixel once: no padded duplicates

    np.testing.assert_array_equal(
        confusion_matrix(logits, target, NUM_CLASSES, ignore_index=IGNORE).numpy(), ref["confmat"]
    )
    logged_cm = np.array(
        [[logged[f"val/confmat/{i}_{j}"] for j in range(NUM_CLASSES)] for i in range(NUM_CLASSES)]
    )
    # ddp_spawn pickles the module into the ranks with its state tensors in shared memory: an in-place
    # state update (``state.add_(...)``, ``state += ...``) then adds every rank into the same storage
    assert logged_cm.sum() == ref["confmat"].sum(), (
        f"{logged_cm.sum():.0f} pixels counted for {ref['confmat'].sum()}: ranks share metric state storage?"
    )
    np.testing.assert_array_equal(logged_cm, ref["confmat"])
    for key in SCALAR_KEYS:  # Lightning keeps the float64 values: exact against the functional API
        assert logged[f"val/{key}"] == functional[key].item(), key
        assert logged[f"val/{key}"] == pytest.approx(ref[key], rel=1e-12, abs=1e-15), key
    assert logged["val/miou"] == mean_iou(logits, target, NUM_CLASSES, ignore_index=IGNORE).item()
    assert (
        logged["val/pixel_accuracy_metric"]
        == pixel_accuracy(logits, target, NUM_CLASSES, ignore_index=IGNORE).item()
    )
    for i in range(NUM_CLASSES):
        value, expected = logged[f"val/iou_per_class/{i}"], float(ref["iou"][i])
        assert (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(expected, rel=1e-12), i


def _logged(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def test_trainer_single_process_logs_exact_values() -> None:
    torch.manual_seed(0)
    model = SegmentationModule()
    trainer = _trainer(devices=1)
    trainer.fit(model)
    _check_logged(_logged(trainer), model, world_size=1)
    # trainer.validate returns the same epoch values (a second, validation-only loop)
    (validated,) = trainer.validate(model, verbose=False)
    assert set(validated) >= {f"val/{k}" for k in SCALAR_KEYS}
    _check_logged(validated, model, world_size=1)


def test_trainer_ddp_spawn_two_processes_uneven_split() -> None:
    torch.manual_seed(0)
    model = SegmentationModule()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    try:  # deterministic=True also switches this (parent) process: restore it for the other tests
        trainer = _trainer(devices=2, strategy="ddp_spawn", deterministic=True)
        trainer.fit(model)
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
    assert trainer.world_size == 2
    # ddp_spawn sends rank 0's callback_metrics and final weights back to this process
    _check_logged(_logged(trainer), model, world_size=2)
