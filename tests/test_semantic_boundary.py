"""BoundaryIoU against a NumPy / SciPy reference (boundary-iou-api's band per class mask, summed counts)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _boundary_reference import reference_boundaries
from _semantic_reference import blob_labels

from torchseg_metrics import BoundaryIoU
from torchseg_metrics.functional.boundary import boundary_dilation


def numpy_boundary_iou(batches, c: int, ignore: int | None, d: int | None, ratio: float = 0.02) -> np.ndarray:
    """Per-class IoU of the bands, counts summed over all images (NaN without band pixels)."""
    counts = np.zeros((c, 3))
    for preds, target in batches:
        p, t = preds.numpy(), target.numpy()
        dd = d if d is not None else boundary_dilation(t.shape[1:], ratio)
        valid = (t >= 0) & (t < c) & (t != ignore if ignore is not None else True)
        for k in range(c):
            bp = reference_boundaries(p == k, dd) & valid
            bt = reference_boundaries(t == k, dd) & valid
            counts[k] += [(bp & bt).sum(), bp.sum(), bt.sum()]
    with np.errstate(invalid="ignore"):
        return counts[:, 0] / (counts[:, 1] + counts[:, 2] - counts[:, 0])


def _batches(seed: int, shape: tuple, c: int, ignore: int | None):
    rng = np.random.default_rng(seed)
    out = []
    for n in (2, 1, 3):
        t = blob_labels(rng, (n, *shape), c)
        p = t.copy()
        shift = rng.integers(-2, 3, size=len(shape))
        p = np.roll(p, tuple(int(s) for s in shift), axis=tuple(range(1, len(shape) + 1)))  # sloppy edges
        p[rng.random(p.shape) < 0.02] = rng.integers(0, c)
        if ignore is not None:
            t[blob_labels(rng, t.shape, 5) == 0] = ignore
        out.append((torch.from_numpy(p), torch.from_numpy(t)))
    return out


@pytest.mark.parametrize(
    ("shape", "ignore", "d"),
    [((30, 40), None, None), ((30, 40), 255, 2), ((25, 33), 0, None), ((10, 12, 14), 255, 1)],
)
def test_boundary_iou_equals_numpy(shape, ignore, d, device) -> None:
    c = 5
    batches = _batches(3, shape, c, ignore)
    ref = numpy_boundary_iou(batches, c, ignore, d)
    metric = BoundaryIoU(c, ignore_index=ignore, per_class=True, dilation=d).to(device)
    mean = BoundaryIoU(c, ignore_index=ignore, dilation=d, include_background=False).to(device)
    for p, t in batches:
        metric.update(p.to(device), t.to(device))
        mean.update(p.to(device), t.to(device))
    got = metric.compute().cpu().numpy()
    if ignore == 0:  # the ignored class is no class to score
        ref[0] = np.nan
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-14, equal_nan=True)
    assert mean.compute().item() == pytest.approx(np.nanmean(ref[1:]), abs=1e-14)


def test_scores_and_errors() -> None:
    t = torch.zeros(1, 8, 8, dtype=torch.long)
    t[0, 2:6, 2:6] = 1
    scores = torch.nn.functional.one_hot(t, 2).permute(0, 3, 1, 2).float()
    labels = BoundaryIoU(2, per_class=True)
    labels.update(t, t)
    from_scores = BoundaryIoU(2, per_class=True)
    from_scores.update(scores, t)
    assert torch.equal(labels.compute(), from_scores.compute()) and labels.compute().tolist() == [1.0, 1.0]
    metric = BoundaryIoU(2)
    with pytest.raises(ValueError, match=r"`target` must be class indices in \[0, 2\)"):
        metric.update(t, t + 1)
    assert int(metric.counts.sum()) == 0
    with pytest.raises(ValueError, match="`dilation` must be None or an integer >= 1"):
        BoundaryIoU(2, dilation=0)
    with pytest.raises(ValueError, match="Did you mean 'faster-coco-eval'"):
        BoundaryIoU(2, rounding="faster_coco_eval")
