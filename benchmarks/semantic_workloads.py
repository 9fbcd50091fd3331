"""Deterministic semantic-segmentation workloads: Cityscapes-like and ADE20K-like label maps.

Real label maps are made of large connected regions, ignore pixels come in regions too (ego car,
borders, unlabelled objects), and a network's mistakes are blobs (a whole object given the wrong
class), not salt-and-pepper noise. These generators reproduce that shape so that kernels whose speed
depends on value locality (sorting, histogramming, caches) are timed on realistic data:

- the target is the argmax of smooth random fields (bilinear upsampling of coarse Gaussian noise),
  with a per-class bias so that class frequencies are unequal, as in real datasets;
- ``ignore_fraction`` of the pixels of each image, chosen as the top quantile of another smooth
  field (so: blobs), are set to ``ignore_index``;
- the prediction equals the underlying target except on the top ``1 - accuracy`` quantile of a third
  smooth field, where it takes the class of a fourth smooth label field, moved to a different
  class where the two coincide, so exactly those pixels are wrong.

Everything is generated on the CPU from a seeded ``torch.Generator``, one image at a time, and
returned as ``uint8`` label maps (the common on-disk format). ``SemanticWorkload.to(device)`` moves
them; ``logits(...)`` builds float scores ``(N, C, H, W)`` whose argmax is the prediction.

Example:
    >>> w = cityscapes_like(quick=True)
    >>> w.preds.shape, w.preds.dtype, w.num_classes, w.ignore_index
    (torch.Size([2, 64, 128]), torch.uint8, 19, 255)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class SemanticWorkload:
    """A batch of label maps: ``preds`` and ``target`` ``(N, H, W)`` uint8; ``ignore_index`` in target."""

    name: str
    num_classes: int
    ignore_index: int
    preds: Tensor
    target: Tensor

    @property
    def num_images(self) -> int:
        """Number of images ``N`` in the batch."""
        return int(self.target.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of both label maps (what an index-input kernel must read at least once)."""
        return (
            self.preds.numel() * self.preds.element_size() + self.target.numel() * self.target.element_size()
        )

    def to(self, device: torch.device | str) -> SemanticWorkload:
        """The same workload with both label maps on ``device``."""
        return SemanticWorkload(
            self.name, self.num_classes, self.ignore_index, self.preds.to(device), self.target.to(device)
        )

    def logits(self, seed: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
        """Float scores ``(N, C, H, W)`` on the workload's device whose argmax over ``C`` is ``preds``.

        Uniform noise in [0, 1) plus 2 at the predicted class, so the argmax is never tied.
        """
        n, h, w = self.preds.shape
        gen = torch.Generator().manual_seed(seed)
        scores = torch.rand((n, self.num_classes, h, w), generator=gen, dtype=dtype)
        scores = scores.to(self.preds.device)
        scores.scatter_add_(1, self.preds.long().unsqueeze(1), torch.full_like(scores[:, :1], 2.0))
        return scores


def _smooth_field(channels: int, height: int, width: int, cell: int, gen: torch.Generator) -> Tensor:
    """Float ``(channels, height, width)``: Gaussian noise on a ``cell``-pixel grid, bilinearly upsampled."""
    coarse = torch.randn(
        (1, channels, max(2, -(-height // cell) + 1), max(2, -(-width // cell) + 1)), generator=gen
    )
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]


def _top_fraction(field: Tensor, fraction: float) -> Tensor:
    """Boolean mask of the ``fraction`` largest values of a 2-D ``field`` (blob-shaped for a smooth field)."""
    k = round(fraction * field.numel())
    if k <= 0:
        return torch.zeros_like(field, dtype=torch.bool)
    threshold = field.reshape(-1).kthvalue(field.numel() - k + 1).values
    return field >= threshold


def make_workload(
    name: str,
    *,
    num_classes: int,
    batch: int,
    height: int,
    width: int,
    ignore_fraction: float = 0.05,
    accuracy: float = 0.8,
    ignore_index: int = 255,
    cell: int = 64,
    class_bias: float = 1.0,
    seed: int = 0,
) -> SemanticWorkload:
    """Build a deterministic workload (see the module docstring for how it is made).

    Args:
        name: label used in benchmark tables.
        num_classes: number of classes ``C`` (at most 255 so that labels fit in uint8 beside 255).
        batch, height, width: shape ``(N, H, W)`` of the label maps.
        ignore_fraction: fraction of each target image set to ``ignore_index``, in blobs.
        accuracy: fraction of each image's pixels where the prediction equals the (underlying) target.
        ignore_index: value written at ignored target pixels.
        cell: grid spacing of the coarse noise, in pixels (region size).
        class_bias: spread of the per-class bias; larger makes frequencies more unequal.
        seed: seed of the ``torch.Generator``.

    Returns:
        A ``SemanticWorkload`` with uint8 ``preds`` and ``target`` of shape ``(N, H, W)``.
    """
    if not 1 <= num_classes <= 255:
        raise ValueError(f"`num_classes` must be an integer in [1, 255], got {num_classes!r}.")
    gen = torch.Generator().manual_seed(seed)
    bias = -class_bias * torch.linspace(0.0, 1.0, num_classes).sqrt().view(-1, 1, 1)
    preds = torch.empty((batch, height, width), dtype=torch.uint8)
    target = torch.empty((batch, height, width), dtype=torch.uint8)
    for i in range(batch):  # generator only, not a kernel: one image at a time bounds the memory
        labels = (_smooth_field(num_classes, height, width, cell, gen) + bias).argmax(0)
        wrong = _top_fraction(_smooth_field(1, height, width, cell // 2, gen)[0], 1.0 - accuracy)
        other = _smooth_field(num_classes, height, width, cell // 2, gen).argmax(0)
        other = torch.where(other == labels, (other + 1) % num_classes, other)
        ignored = _top_fraction(_smooth_field(1, height, width, cell, gen)[0], ignore_fraction)
        preds[i] = torch.where(wrong, other, labels).to(torch.uint8)
        target[i] = torch.where(ignored, torch.full_like(labels, ignore_index), labels).to(torch.uint8)
    return SemanticWorkload(name, num_classes, ignore_index, preds, target)


def cityscapes_like(quick: bool = False, seed: int = 0) -> SemanticWorkload:
    """19 classes, 4 x 512 x 1024 (``quick``: 2 x 64 x 128), 5% ignore (255), 80% correct, in blobs."""
    batch, height, width = (2, 64, 128) if quick else (4, 512, 1024)
    return make_workload(
        "Cityscapes-like",
        num_classes=19,
        batch=batch,
        height=height,
        width=width,
        cell=16 if quick else 64,
        seed=seed,
    )


def ade20k_like(quick: bool = False, seed: int = 1) -> SemanticWorkload:
    """150 classes, 8 x 512 x 512 (``quick``: 2 x 64 x 64), 5% ignore (255), 80% correct, in blobs."""
    batch, height, width = (2, 64, 64) if quick else (8, 512, 512)
    return make_workload(
        "ADE20K-like",
        num_classes=150,
        batch=batch,
        height=height,
        width=width,
        cell=16 if quick else 48,
        class_bias=1.5,
        seed=seed,
    )


WORKLOADS = {"cityscapes": cityscapes_like, "ade20k": ade20k_like}
