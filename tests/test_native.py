"""The native CPU kernels against NumPy references and against their torch-op twins.

Their use inside the metrics is covered further by the method-parametrised kernel tests
(``tests/functional``) and by ``test_contract.py`` (every metric with the kernels switched off).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _semantic_reference import tie_scores

from torchseg_metrics import _native
from torchseg_metrics.functional.panoptic.pairing import _run_records_torch

pytestmark = pytest.mark.skipif(
    not _native.available(), reason="the native kernels are unavailable here (no C compiler)"
)

DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]


def test_built_where_a_compiler_exists() -> None:
    assert shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert _native.available()


def test_switched_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _native.status().startswith("in use: ")
    monkeypatch.setenv("TORCHSEG_METRICS_NATIVE", "0")
    assert not _native.available()
    assert _native.status().startswith("switched off")
    t = torch.zeros(2, 3, dtype=torch.uint8)
    assert _native.confusion_counts(t, t, 1, 2, None) is None
    assert (
        _native.mask_counts(torch.zeros(1, 2, 2, dtype=torch.bool), torch.zeros(1, 2, 2, dtype=torch.bool))
        is None
    )


def test_a_failed_build_falls_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No compiler (or any build error): the kernels report unavailable, the metrics use torch ops."""
    monkeypatch.setattr(_native, "_state", {})
    monkeypatch.setenv("TORCHSEG_METRICS_CACHE", str(tmp_path / "cache"))  # nothing built there yet
    monkeypatch.setattr(_native.cache, "compiler", lambda: None)
    assert not _native.available()
    assert _native.status() == (
        "unavailable (RuntimeError: no C compiler found (set CC)): the torch-op twins run"
    )
    from torchseg_metrics.functional.semantic.confusion import _confusion_matrix_update

    t = torch.tensor([[0, 1, 2, 255]], dtype=torch.uint8)
    confmat, invalid = _confusion_matrix_update(t, t, 3, 255)
    assert (
        torch.equal(confmat, torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])) and int(invalid) == 0
    )


def _np_confusion(t: np.ndarray, p: np.ndarray, c: int, ignore: int | None) -> np.ndarray:
    t, p = t.astype(np.int64).ravel(), p.astype(np.int64).ravel()
    rows = np.where((t >= 0) & (t < c), t, np.where(t == ignore, c + 1, c) if ignore is not None else c)
    cols = np.where((p >= 0) & (p < c), p, c)
    return np.bincount(rows * (c + 1) + cols, minlength=(c + 2) * (c + 1)).reshape(c + 2, c + 1)


@pytest.mark.parametrize("t_dtype", DTYPES)
@pytest.mark.parametrize("p_dtype", DTYPES)
def test_confusion_counts_every_dtype_pair(t_dtype: torch.dtype, p_dtype: torch.dtype) -> None:
    rng = np.random.default_rng(DTYPES.index(t_dtype) * 5 + DTYPES.index(p_dtype))
    low = lambda dt: 0 if dt == torch.uint8 else -3  # noqa: E731
    t = torch.from_numpy(rng.integers(low(t_dtype), 9, (3, 11, 13))).to(t_dtype)
    p = torch.from_numpy(rng.integers(low(p_dtype), 9, (3, 11, 13))).to(p_dtype)
    ignore = 7 if t_dtype != torch.uint8 else 8
    got = _native.confusion_counts(t.reshape(-1), p.reshape(-1), 3, 6, ignore)
    assert got is not None and got.shape == (3, 8, 7) and got.dtype == torch.int64
    for i in range(3):
        np.testing.assert_array_equal(got[i].numpy(), _np_confusion(t[i].numpy(), p[i].numpy(), 6, ignore))
    # no ignored value: every target outside [0, C) is an invalid row
    got = _native.confusion_counts(t.reshape(-1), p.reshape(-1), 1, 6, None)
    np.testing.assert_array_equal(got[0].numpy(), _np_confusion(t.numpy(), p.numpy(), 6, None))


@pytest.mark.parametrize("c", [3, 150, 300])  # 300: more counters than the interleaved copies take
def test_confusion_counts_by_number_of_classes(c: int) -> None:
    rng = np.random.default_rng(c)
    t = torch.from_numpy(rng.integers(0, c + 2, (2, 40, 50)).repeat(3, axis=2)).to(torch.int16)
    p = torch.from_numpy(rng.integers(-1, c + 1, (2, 40, 150)))
    got = _native.confusion_counts(t.reshape(-1), p.reshape(-1), 2, c, c + 1)
    for i in range(2):
        np.testing.assert_array_equal(got[i].numpy(), _np_confusion(t[i].numpy(), p[i].numpy(), c, c + 1))


def test_confusion_counts_extreme_ignore_and_layouts() -> None:
    t = torch.tensor([-(2**63), -1, 0, 2**63 - 1], dtype=torch.int64)
    got = _native.confusion_counts(t, t, 1, 2, -(2**63))
    assert got[0, 3].tolist() == [0, 0, 1] and got[0, 2].tolist() == [0, 0, 2]  # ignored, invalid rows
    assert got[0, 0].tolist() == [1, 0, 0]
    assert _native.confusion_counts(t[::2], t[::2], 1, 2, None) is None  # not contiguous: torch ops
    assert _native.confusion_counts(t.to(torch.float32), t, 1, 2, None) is None


def _np_runs(p: np.ndarray, t: np.ndarray, crowd: np.ndarray | None, per_image: int) -> np.ndarray:
    """First pixel of each run of equal (t, p, crowd) values, image starts included."""
    cols = [t[:, 0], t[:, 1], p[:, 0], p[:, 1]] + ([crowd] if crowd is not None else [])
    change = np.zeros(len(p), dtype=bool)
    change[0] = True
    for col in cols:
        change[1:] |= col[1:] != col[:-1]
    change[::per_image] = True
    return np.flatnonzero(change)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_crowd", [True, False])
def test_run_records_match_numpy_and_the_torch_twin(dtype: torch.dtype, with_crowd: bool) -> None:
    rng = np.random.default_rng(3)
    images, per_image = 3, 700
    p = rng.integers(0, 3, (images * per_image, 2)).repeat(1, axis=0)
    p = np.repeat(p[::5], 5, axis=0)  # runs of 5
    t = np.repeat(rng.integers(0, 2, (images * per_image // 7, 2)), 7, axis=0)
    crowd = np.repeat(rng.random(images * per_image // 10) < 0.3, 10) if with_crowd else None
    pt, tt = torch.from_numpy(p).to(dtype), torch.from_numpy(t).to(dtype)
    ct = torch.from_numpy(crowd) if crowd is not None else None
    got = _native.run_records(pt, tt, ct, per_image)
    assert got is not None
    idx, t_cat, t_inst, p_cat, p_inst, flags = got
    starts = _np_runs(p, t, crowd, per_image)
    np.testing.assert_array_equal(idx.numpy(), starts)
    np.testing.assert_array_equal(t_cat.numpy(), t[starts, 0])
    np.testing.assert_array_equal(t_inst.numpy(), t[starts, 1])
    np.testing.assert_array_equal(p_cat.numpy(), p[starts, 0])
    np.testing.assert_array_equal(p_inst.numpy(), p[starts, 1])
    if with_crowd:
        np.testing.assert_array_equal(flags.numpy(), crowd[starts])
    else:
        assert flags is None
    twin = _run_records_torch(pt, tt, ct, per_image)  # one chunk here: the same maximal runs
    for a, b in zip((idx, t_cat, t_inst, flags, p_cat, p_inst), twin, strict=True):
        assert (a is None and b is None) or torch.equal(a, b.long() if b.dtype != torch.bool else b)


def test_run_records_over_several_record_blocks() -> None:
    """Every pixel its own run: more records than the first block holds."""
    n = 20_000
    p = torch.stack([torch.arange(n), torch.zeros(n, dtype=torch.int64)], 1)
    t = torch.zeros(n, 2, dtype=torch.int64)
    idx, _, _, p_cat, _, _ = _native.run_records(p, t, None, n)
    assert torch.equal(idx, torch.arange(n)) and torch.equal(p_cat, torch.arange(n))


def _np_mask_counts(det: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, ...]:
    d, g = (
        det.reshape(len(det), det[0].size if len(det) else gt[0].size),
        gt.reshape(len(gt), gt[0].size if len(gt) else det[0].size),
    )
    d, g = d.astype(np.int64), g.astype(np.int64)
    return d @ g.T, d.sum(1), g.sum(1)


@pytest.mark.parametrize(
    ("d", "g", "h", "w"),
    [
        (6, 4, 17, 23),
        (0, 3, 5, 8),
        (4, 0, 5, 8),
        (3, 2, 1, 1),
        (5, 7, 9, 2100),
        (8, 5, 40, 64),
        (2, 2, 3, 4099),
    ],
)
def test_mask_counts_match_numpy(d: int, g: int, h: int, w: int) -> None:
    rng = np.random.default_rng(d * 100 + g * 10 + h)
    det = rng.random((d, h, w)) < 0.2
    gt = rng.random((g, h, w)) < 0.3
    for k in range(d):  # sparse and single-pixel detections, at the first and the last byte too
        det[k] &= rng.random() < 0.7
        if k % 3 == 1:
            det[k] = False
            det[k].flat[[0, -1][k % 2]] = True
    if g:
        gt[0] = False
        gt[0, h // 2 :, w // 3 :] = True  # a box
    got = _native.mask_counts(torch.from_numpy(det), torch.from_numpy(gt))
    assert got is not None
    for a, b in zip(got, _np_mask_counts(det, gt), strict=True):
        np.testing.assert_array_equal(a.numpy(), b)


def test_mask_counts_takes_contiguous_bool_masks_only() -> None:
    det = torch.zeros(2, 4, 6, dtype=torch.bool)
    assert _native.mask_counts(det.transpose(1, 2), det.transpose(1, 2)) is None
    assert _native.mask_counts(det.to(torch.uint8), det) is None
    assert _native.mask_counts(det, det[:, :3]) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("c", "shape"), [(2, (3, 5, 7)), (19, (2, 50, 90)), (256, (1, 4, 6)), (5, (2, 3, 4, 5))]
)
def test_channel_argmax_equals_torch_max(dtype: torch.dtype, c: int, shape: tuple[int, ...]) -> None:
    """The first maximal class on ties, as torch.max; 4500 pixels span several chunks."""
    x = tie_scores(c, shape, dtype, seed=c)
    labels, nans = _native.channel_argmax(x)
    assert labels.dtype == torch.uint8 and labels.shape == (shape[0], *shape[1:]) and int(nans) == 0
    assert torch.equal(labels.long(), x.max(dim=1).indices)


def test_channel_argmax_counts_nan_pixels() -> None:
    x = tie_scores(7, (2, 60, 70), torch.float32, seed=1)
    x[0, 3, 5, 6] = float("nan")
    x[1, :, 59, 69] = float("nan")
    x[1, 0, 0, 0] = float("nan")
    labels, nans = _native.channel_argmax(x)
    assert int(nans) == 3 == int(x.isnan().any(1).sum())
    keep = ~x.isnan().any(1)
    assert torch.equal(labels.long()[keep], x.max(dim=1).indices[keep])


def test_channel_argmax_layouts_it_does_not_take() -> None:
    x = torch.zeros(2, 3, 4, 5)
    assert _native.channel_argmax(x.transpose(2, 3)) is None  # not contiguous
    assert _native.channel_argmax(x.half()) is None  # float16: the torch twin
    assert _native.channel_argmax(torch.zeros(2, 1, 4, 5)) is None  # one class
    assert _native.channel_argmax(torch.zeros(1, 257, 2, 2)) is None  # labels beyond uint8


def test_mask_counts_leave_large_overlapping_objects_to_the_gemm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Full-image ground truths make the boxes useless: the kernel declines, the GEMM counts."""
    from torchseg_metrics.functional.instance.mask_iou import mask_intersections

    rng = np.random.default_rng(4)
    det = torch.from_numpy(rng.random((6, 20, 30)) < 0.5)
    gt = torch.from_numpy(rng.random((9, 20, 30)) < 0.5)
    assert _native.mask_counts(det, gt) is None  # 6 x 9 full boxes: 9x the detection bytes
    got = mask_intersections(det[None], gt[None], method="native")  # falls back to the GEMM
    for a, b in zip(got, _np_mask_counts(det.numpy(), gt.numpy()), strict=True):
        np.testing.assert_array_equal(a[0].numpy(), b)
    monkeypatch.setattr(_native, "MASK_WORK_PER_BYTE", 10)
    for a, b in zip(_native.mask_counts(det, gt), _np_mask_counts(det.numpy(), gt.numpy()), strict=True):
        np.testing.assert_array_equal(a.numpy(), b)


@pytest.fixture
def four_threads(monkeypatch: pytest.MonkeyPatch):
    """Four CPU threads and no minimum amount of work: every call splits into parallel parts."""
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    monkeypatch.setattr(_native, "MIN_PARALLEL_WORK", 1)
    yield
    torch.set_num_threads(before)


def test_parallel_parts_give_the_single_thread_results(four_threads: None) -> None:
    rng = np.random.default_rng(9)
    # confusion: one matrix over pixel ranges, and per-image matrices over groups of images
    t = torch.from_numpy(rng.integers(0, 8, (5, 17, 19))).to(torch.uint8)
    p = torch.from_numpy(rng.integers(0, 8, (5, 17, 19))).to(torch.uint8)
    for images in (1, 5):
        got = _native.confusion_counts(t.reshape(-1), p.reshape(-1), images, 6, 7)
        for i in range(images):
            part = slice(i * t.numel() // images, (i + 1) * t.numel() // images)
            ref = _np_confusion(t.reshape(-1)[part].numpy(), p.reshape(-1)[part].numpy(), 6, 7)
            np.testing.assert_array_equal(got[i].numpy(), ref)
    # run records over groups of images
    pp = torch.from_numpy(np.repeat(rng.integers(0, 3, (5 * 60, 2)), 3, axis=0))
    tt = torch.from_numpy(np.repeat(rng.integers(0, 2, (5 * 36, 2)), 5, axis=0))
    crowd = torch.from_numpy(np.repeat(rng.random(5 * 90) < 0.3, 2))
    idx, t_cat, t_inst, p_cat, p_inst, flags = _native.run_records(pp, tt, crowd, 180)
    starts = _np_runs(pp.numpy(), tt.numpy(), crowd.numpy(), 180)
    np.testing.assert_array_equal(idx.numpy(), starts)
    for col, ref in ((t_cat, tt[:, 0]), (t_inst, tt[:, 1]), (p_cat, pp[:, 0]), (p_inst, pp[:, 1])):
        np.testing.assert_array_equal(col.numpy(), ref.numpy()[starts])
    np.testing.assert_array_equal(flags.numpy(), crowd.numpy()[starts])
    # argmax over groups of images
    x = tie_scores(5, (7, 9, 11), torch.float32, seed=2)
    x[3, 1, 2, 3] = float("nan")
    labels, nans = _native.channel_argmax(x)
    keep = ~x.isnan().any(1)
    assert int(nans) == 1 and torch.equal(labels.long()[keep], x.max(dim=1).indices[keep])


def test_parallel_map_keeps_the_order(four_threads: None) -> None:
    assert _native.parallel_map(lambda k: k * k, range(20)) == [k * k for k in range(20)]


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")
def test_parallel_map_in_a_forked_child(four_threads: None) -> None:
    """The parallel parts also run in a child forked after the parent's pool started (DataLoader workers)."""
    import multiprocessing

    assert _native.parallel_map(lambda k: k + 1, range(8)) == list(range(1, 9))  # the parent's pool
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        assert pool.apply(_square_in_parallel, (6,)) == [k * k for k in range(6)]


def _square_in_parallel(n: int) -> list[int]:
    torch.set_num_threads(4)
    return _native.parallel_map(lambda k: k * k, range(n))


@pytest.mark.parametrize("dilation", [1, 2, 5])
@pytest.mark.parametrize(("d", "g", "h", "w"), [(0, 3, 9, 11), (4, 0, 9, 11), (7, 5, 23, 31), (3, 4, 2, 40)])
def test_boundary_counts_equal_the_full_masks_and_bands(
    dilation: int, d: int, g: int, h: int, w: int, four_threads: None
) -> None:
    # masks counted over their boxes and bands kept inside them: the counts of the full-image
    # masks (numpy) and bands (torch twin)
    from torchseg_metrics.functional.boundary import mask_boundaries

    rng = np.random.default_rng(d * 1000 + g * 100 + h + dilation)
    det = torch.from_numpy(rng.random((d, h, w)) < 0.6)
    gt = torch.from_numpy(rng.random((g, h, w)) < 0.5)
    if d > 2:
        det[0] = False  # empty
        det[1] = False
        det[1, 0, -1] = True  # one pixel in a corner
        det[2] = True  # the whole image, touching every border
    if g:
        gt[0] = False
        gt[0, h // 3 :, : w // 2] = True  # a box on the left and bottom borders
    got = _native.boundary_counts(det, gt, dilation)
    assert got is not None
    for a, b in zip(got[0], _np_mask_counts(det.numpy(), gt.numpy()), strict=True):
        np.testing.assert_array_equal(a.numpy(), b)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_native, "mask_boundaries", lambda *args: None)  # torch's bands
        bands_det, bands_gt = mask_boundaries(det, dilation), mask_boundaries(gt, dilation)
    inter = (bands_det[:, None].long() * bands_gt[None].long()).sum((-2, -1))
    want = (inter, bands_det.sum((-2, -1)), bands_gt.sum((-2, -1)))
    for a, b in zip(got[1], want, strict=True):
        assert torch.equal(a, b)
