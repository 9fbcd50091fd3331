"""Hausdorff / HD95, ASSD and surface Dice against SciPy (MONAI's definitions), 2-D and 3-D."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from _semantic_reference import blob_labels
from _surface_reference import reference_scores

from torchseg_metrics import AverageSurfaceDistance, HausdorffDistance, SurfaceDice
from torchseg_metrics.functional.semantic.surface_distance import distance_transform, surface_scores


def _pairs(seed: int, shape: tuple, n: int = 5):
    rng = np.random.default_rng(seed)
    p = rng.random((n, *shape)) < rng.uniform(0.05, 0.6)
    t = rng.random((n, *shape)) < rng.uniform(0.05, 0.6)
    p[0], t[1] = False, False  # one empty side
    p[2], t[2] = False, False  # both empty
    p[3] = np.zeros(shape, bool)
    p[3][(0,) * len(shape)] = True  # a single pixel in a corner
    return p, t


@pytest.mark.parametrize("shape", [(17, 23), (9, 11, 13)])
@pytest.mark.parametrize("method", ["points", "dense"])
def test_scores_equal_scipy(shape, method, device) -> None:
    p, t = _pairs(1, shape)
    spacing = (0.8, 1.5) if len(shape) == 2 else (2.0, 0.7, 1.1)
    for percentile, tolerance, one_way in ((None, 1.0, False), (95, 1.6, False), (50, 0.5, True)):
        got = surface_scores(
            torch.from_numpy(p).to(device), torch.from_numpy(t).to(device), spacing,
            percentile=percentile, tolerance=tolerance, directed=one_way, method=method,
        ).cpu().numpy()  # fmt: skip
        args = (spacing, percentile, tolerance, one_way)
        ref = np.array([reference_scores(a, b, *args) for a, b in zip(p, t, strict=True)])
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0, equal_nan=True)


def test_distance_transform_equals_scipy() -> None:
    from scipy import ndimage

    rng = np.random.default_rng(2)
    for shape, spacing in (((13, 21), (1.0, 1.0)), ((7, 9, 11), (0.5, 2.0, 1.25))):
        t = rng.random((2, *shape)) < 0.05
        got = distance_transform(torch.from_numpy(t), spacing).numpy()
        for k in range(2):
            np.testing.assert_allclose(
                got[k], ndimage.distance_transform_edt(~t[k], sampling=spacing), rtol=1e-12
            )
    assert torch.isinf(distance_transform(torch.zeros(1, 3, 3, dtype=torch.bool), (1.0, 1.0))).all()


def _label_batches(seed: int, shape: tuple, c: int):
    rng = np.random.default_rng(seed)
    out = []
    for n in (2, 3):
        t = blob_labels(rng, (n, *shape), c)
        p = np.roll(t, 1, axis=-1)
        p[rng.random(p.shape) < 0.01] = rng.integers(0, c)
        t[0][t[0] == c - 1] = 0  # a class absent from one target
        out.append((torch.from_numpy(p), torch.from_numpy(t)))
    return out


def _reference_values(batches, c, spacing, include_background, **kw):
    rows = []
    for p, t in batches:
        for a, b in zip(p.numpy(), t.numpy(), strict=True):
            classes = range(0 if include_background else 1, c)
            rows.append([reference_scores(a == k, b == k, spacing, **kw) for k in classes])
    return np.array(rows)  # (images, classes, 3)


def _mean(values: np.ndarray, per_class: bool):
    """MONAI's do_metric_reduction: "mean_batch" per class; "mean" per image over classes, then over
    the images with a defined value."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of an all-NaN row
        if per_class:
            return np.nanmean(values, axis=0)
        return np.nanmean(np.nanmean(values, axis=1))


@pytest.mark.parametrize("per_class", [False, True])
def test_classes_aggregate_like_monai(per_class) -> None:
    c, spacing = 4, (1.0, 0.5)
    batches = _label_batches(3, (20, 24), c)
    ref = _reference_values(batches, c, spacing, False, percentile=95, tolerance=1.0)
    cases = [
        (HausdorffDistance(c, percentile=95, spacing=spacing, per_class=per_class), ref[..., 0]),
        (AverageSurfaceDistance(c, spacing=spacing, per_class=per_class), ref[..., 1]),
        (SurfaceDice(c, tolerance=1.0, spacing=spacing, per_class=per_class), ref[..., 2]),
    ]
    for metric, values in cases:
        for p, t in batches:
            metric.update(p, t)
        np.testing.assert_allclose(metric.per_image().numpy(), values, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(
            metric.compute().numpy(), _mean(values, per_class), rtol=1e-12, equal_nan=True
        )


def test_one_hot_inputs_equal_label_maps_and_3d() -> None:
    c = 3
    batches = _label_batches(4, (6, 10, 12), c)
    index = HausdorffDistance(c, include_background=True, spacing=(2.0, 1.0, 1.0))
    one_hot = HausdorffDistance(c, include_background=True, spacing=(2.0, 1.0, 1.0), input_format="one-hot")
    for p, t in batches:
        index.update(p, t)
        one_hot.update(*(torch.nn.functional.one_hot(x, c).movedim(-1, 1).bool() for x in (p, t)))
    assert torch.equal(index.per_image(), one_hot.per_image())
    ref = _reference_values(batches, c, (2.0, 1.0, 1.0), True)[..., 0]
    np.testing.assert_allclose(index.per_image().numpy(), ref, rtol=1e-12, equal_nan=True)


def test_empty_masks_and_errors() -> None:
    p = torch.zeros(1, 6, 6, dtype=torch.long)
    p[0, 1:3, 1:3] = 1
    t = torch.zeros_like(p)
    metric = HausdorffDistance(3)  # class 1 predicted only (inf), class 2 nowhere (NaN)
    metric.update(p, t)
    values = metric.per_image()
    assert math.isinf(values[0, 0]) and math.isnan(values[0, 1]) and math.isinf(metric.compute())
    nsd = SurfaceDice(3)
    nsd.update(p, t)
    assert nsd.per_image()[0, 0] == 0 and nsd.per_image()[0, 1].isnan()
    with pytest.raises(ValueError, match=r"`target` must be class indices in \[0, num_classes\)"):
        metric.update(p, t + 5)
    assert len(metric.values) == 1
    with pytest.raises(ValueError, match="`spacing` must be 2 voxel sizes for 2-D inputs"):
        HausdorffDistance(3, spacing=(1.0, 1.0, 1.0)).update(p, t)
    with pytest.raises(ValueError, match="`spacing` must be None or a sequence of positive"):
        HausdorffDistance(3, spacing=(1.0, -1.0))
    with pytest.raises(ValueError, match=r"`percentile` must be None or a number in \[0, 100\]"):
        HausdorffDistance(3, percentile=101)
    with pytest.raises(ValueError, match=r"`preds` must be label maps of shape \(N, H, W\)"):
        HausdorffDistance(3).update(p[0], t[0])


def _ddp_work(rank: int, world_size: int, shards: list) -> list:
    metrics = [HausdorffDistance(4, percentile=95), SurfaceDice(4, per_class=True)]
    for p, t in shards[rank]:
        for m in metrics:
            m.update(p, t)
    return [(m.compute(), m.per_image()) for m in metrics]


@pytest.mark.slow
def test_ddp_equals_single_process() -> None:
    from _ddp import run_distributed

    batches = _label_batches(5, (14, 18), 4) + _label_batches(6, (14, 18), 4)
    shards = [batches[:3], []]  # rank 1 sees no image at all
    results = run_distributed(_ddp_work, shards, world_size=2)
    single = [HausdorffDistance(4, percentile=95), SurfaceDice(4, per_class=True)]
    for p, t in batches[:3]:
        for m in single:
            m.update(p, t)
    for rank_result in results:
        for (value, rows), m in zip(rank_result, single, strict=True):
            torch.testing.assert_close(value, m.compute(), rtol=0, atol=0, equal_nan=True)
            torch.testing.assert_close(rows, m.per_image(), rtol=0, atol=0, equal_nan=True)


@pytest.mark.filterwarnings("ignore::UserWarning")  # MONAI warns of every empty class
@pytest.mark.parametrize(("shape", "spacing"), [((20, 24), (1.0, 0.5)), ((8, 12, 10), (2.5, 1.0, 0.75))])
def test_equal_to_monai(shape, spacing) -> None:
    # MONAI's own metrics on one-hot masks: equal per (image, class) values (MONAI rounds distances
    # to float32) and aggregates; its percentile Hausdorff is NaN where one surface is empty (a
    # torch.quantile of infinities), ours +inf as its maximum Hausdorff
    import monai.metrics as monai

    c = 4
    batches = _label_batches(7, shape, c)

    def one_hot(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(x, c).movedim(-1, 1)

    off, tol = {"include_background": False}, [1.0] * (c - 1)
    pairs = [
        (
            monai.HausdorffDistanceMetric(**off, percentile=95),
            HausdorffDistance(c, percentile=95, spacing=spacing),
        ),
        (
            monai.HausdorffDistanceMetric(**off, directed=True),
            HausdorffDistance(c, directed=True, spacing=spacing),
        ),
        (monai.SurfaceDistanceMetric(**off, symmetric=True), AverageSurfaceDistance(c, spacing=spacing)),
        (monai.SurfaceDiceMetric(tol, **off), SurfaceDice(c, tolerance=1.0, spacing=spacing)),
        (
            monai.SurfaceDiceMetric(tol, **off, reduction="mean_batch"),
            SurfaceDice(c, per_class=True, spacing=spacing),
        ),
    ]
    for reference, ours in pairs:
        for p, t in batches:
            reference(one_hot(p), one_hot(t), spacing=spacing)
            ours.update(p, t)
        expected, got = reference.get_buffer().double(), ours.per_image()
        if getattr(reference, "percentile", None) is not None:
            quirk = expected.isnan() & got.isinf()
            expected = torch.where(quirk, got, expected)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6, equal_nan=True)
        if getattr(reference, "percentile", None) is None:
            torch.testing.assert_close(
                ours.compute(),
                reference.aggregate().double().reshape(ours.compute().shape),
                rtol=1e-6,
                atol=1e-6,
            )


def test_native_and_torch_distance_transforms_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    # the CPU's O(n) lower envelope (native) and the brute-force twin give the same transform
    from torchseg_metrics import _native

    rng = np.random.default_rng(9)
    calls = []
    real = _native.squared_edt_axis
    monkeypatch.setattr(_native, "squared_edt_axis", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    # strided axes wider than the kernel's blocks of lines, and lines split over threads
    shapes = (((3, 19, 31), (1.0, 0.3)), ((2, 7, 9, 12), (2.0, 1.0, 0.5)), ((2, 40, 23, 37), (1.5, 1.0, 1.0)))
    for shape, spacing in shapes:
        sites = torch.from_numpy(rng.random(shape) < 0.03)
        sites[0] = False  # no site at all: +inf everywhere
        native = distance_transform(sites, spacing)
        assert distance_transform(sites, spacing, squared=True).sqrt().equal(native)
        with monkeypatch.context() as patch:
            patch.setattr(_native, "squared_edt_axis", lambda *args, **kwargs: False)
            twin = distance_transform(sites, spacing)
        torch.testing.assert_close(native, twin, rtol=1e-13, atol=0)
        assert torch.isinf(native[0]).all()
    assert sorted(set(calls)) == [1, 2, 3]  # the native kernel ran along every axis


def test_metric_collection_keeps_surface_metrics_apart() -> None:
    # a first batch where Hausdorff and ASSD agree (every distance is 1): their states are equal,
    # but the config state keeps them out of one compute group, so later batches stay apart
    from torchmetrics import MetricCollection

    first = torch.zeros(1, 8, 8, dtype=torch.long)
    first[0, 2:5, 3] = 1
    p1, t1 = torch.roll(first, 1, dims=2), first
    t2 = torch.zeros(1, 8, 8, dtype=torch.long)
    t2[0, 2:5, 2:5] = 1
    p2 = torch.roll(t2, 2, dims=2)  # Hausdorff 2, ASSD below
    metrics = {"hd": HausdorffDistance(2), "assd": AverageSurfaceDistance(2)}
    collection = MetricCollection(metrics, compute_groups=True)
    collection.update(p1, t1)
    collection.update(p2, t2)
    got = collection.compute()
    for name, cls in (("hd", HausdorffDistance), ("assd", AverageSurfaceDistance)):
        alone = cls(2)
        alone.update(p1, t1)
        alone.update(p2, t2)
        assert torch.equal(got[name], alone.compute()), name
    assert not torch.equal(got["hd"], got["assd"])
