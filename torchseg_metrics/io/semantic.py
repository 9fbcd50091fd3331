"""Two folders of label-map PNGs (ground truth and prediction), matched by file name.

Label maps are single-channel images holding a class index per pixel: 8-bit grey (``L``), 16-bit
grey (``I;16``), 32-bit (``I``) or palette (``P``, whose *indices* are the labels, as in Pascal VOC
and ADE20K). Colour images are rejected: a colour-coded label map has to be mapped to indices first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from torchseg_metrics._checks import Found, check_positive_int, fail

__all__ = [
    "SemanticBatch",
    "iter_label_map_batches",
    "match_label_maps",
    "read_label_array",
    "read_label_map",
]

_MODES = ("L", "P", "I;16", "I;16B", "I;16L", "I", "1")


@dataclass
class SemanticBatch:
    """File names and ``preds`` / ``target`` label maps (Tensor[B, H, W] int64) of one size.

    Example:
        >>> maps = torch.zeros(1, 2, 2, dtype=torch.long)
        >>> batch = SemanticBatch(["a.png"], maps, maps)
        >>> batch.target.shape
        torch.Size([1, 2, 2])
    """

    names: list[str]
    preds: Tensor
    target: Tensor


def read_label_map(path: str | Path, *, name: str = "label_map") -> np.ndarray:
    """Read a single-channel label-map PNG (8/16/32-bit grey or palette indices).

    Args:
        path: the PNG file.
        name: the argument name used in error messages.

    Returns:
        labels (ndarray[H, W] int64).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is not a readable image, or has several channels (RGB, RGBA, LA).

    Example:
        >>> import tempfile, os
        >>> from PIL import Image
        >>> tmp = os.path.join(tempfile.mkdtemp(), "a.png")
        >>> Image.fromarray(np.array([[0, 1], [255, 2]], dtype=np.uint8)).save(tmp)
        >>> read_label_map(tmp).tolist()
        [[0, 1], [255, 2]]
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"`{name}` must be an existing PNG file, got {str(p)!r} (not found).")
    try:
        with Image.open(p) as im:
            mode = im.mode
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"`{name}` must be a readable PNG image, got {str(p)!r} ({err}).") from None
    if mode not in _MODES or arr.ndim != 2:
        fail(
            name, "a single-channel label map (8/16-bit grey or palette)", Found(f"{str(p)!r} of mode {mode}")
        )
    return arr.astype(np.int64)


def read_label_array(path: str | Path, *, name: str = "label_map") -> np.ndarray:
    """Read a ``.npy`` label map or volume: an integer (or bool) array of 2 or 3 dimensions.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is no readable ``.npy`` array, or not 2-D / 3-D integers.

    Example:
        >>> import tempfile, os
        >>> tmp = os.path.join(tempfile.mkdtemp(), "v.npy")
        >>> np.save(tmp, np.zeros((2, 3, 4), dtype=np.uint8))
        >>> read_label_array(tmp).shape, read_label_array(tmp).dtype
        ((2, 3, 4), dtype('int64'))
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"`{name}` file {str(p)!r} not found.")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as err:
        fail(name, "a readable .npy array", Found(f"{p.name}: {err}"))
    if arr.dtype != np.bool_ and not np.issubdtype(arr.dtype, np.integer):
        fail(name, "an integer label array", Found(f"{p.name}: dtype {arr.dtype}"), TypeError)
    if arr.ndim not in (2, 3):
        fail(name, "a 2-D label map or a 3-D volume", Found(f"{p.name}: shape {arr.shape}"))
    return arr.astype(np.int64)


def match_label_maps(gt_dir: str | Path, pred_dir: str | Path, *, suffix: str = ".png") -> list[str]:
    """File names of the label maps in ``gt_dir``, checked to match ``pred_dir`` one to one.

    Args:
        gt_dir: folder of ground-truth PNGs (or ``.npy`` arrays with ``suffix=".npy"``).
        pred_dir: folder of prediction PNGs with the same file names.
        suffix: the files' suffix, ``".png"`` or ``".npy"``.

    Returns:
        The sorted file names.

    Raises:
        FileNotFoundError: if a folder does not exist.
        ValueError: if ``gt_dir`` holds no PNG, or a file is missing from, or extra in, ``pred_dir``.

    Example:
        >>> import tempfile
        >>> a, b = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
        >>> _ = (a / "x.png").write_bytes(b""), (b / "x.png").write_bytes(b"")
        >>> match_label_maps(a, b)
        ['x.png']
    """
    found = []
    for arg, folder in (("gt_dir", gt_dir), ("pred_dir", pred_dir)):
        p = Path(folder)
        if not p.is_dir():
            raise FileNotFoundError(f"`{arg}` must be an existing folder, got {str(p)!r} (not found).")
        found.append({f.name for f in p.iterdir() if f.suffix.lower() == suffix and f.is_file()})
    gt, pred = found
    kind = suffix.lstrip(".").upper()
    if not gt:
        fail("gt_dir", f"a folder with {kind} label maps", str(gt_dir))
    missing, extra = sorted(gt - pred), sorted(pred - gt)
    if missing:
        fail(
            "pred_dir",
            f"a {kind} for every ground-truth file",
            Found(f"{len(missing)} missing, e.g. {missing[:3]}"),
        )
    if extra:
        fail(
            "pred_dir", "only files that have a ground truth", Found(f"{len(extra)} extra, e.g. {extra[:3]}")
        )
    return sorted(gt)


def iter_label_map_batches(
    gt_dir: str | Path,
    pred_dir: str | Path,
    *,
    batch_size: int = 8,
    device: torch.device | str | None = None,
    suffix: str = ".png",
) -> Iterator[SemanticBatch]:
    """Stream pairs of label maps, matched by file name, as batches for a semantic metric's ``update()``.

    Files are read in sorted name order. A batch holds up to ``batch_size`` consecutive images of
    one size (a size change starts a new batch, since ``update()`` takes ``(N, H, W)`` tensors).

    Args:
        gt_dir: folder of ground-truth PNGs.
        pred_dir: folder of prediction PNGs with the same names.
        batch_size: images per batch.
        device: where tensors are created (default CPU).
        suffix: ``".png"`` label maps, or ``".npy"`` integer arrays (2-D maps or 3-D volumes, read
            by :func:`read_label_array`).

    Yields:
        :class:`SemanticBatch` objects with ``preds`` and ``target`` (Tensor[B, H, W] int64).

    Raises:
        FileNotFoundError: a folder does not exist.
        ValueError: missing or extra files, unreadable or multi-channel images, or a prediction
            whose size differs from its ground truth.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> a, b = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
        >>> Image.fromarray(np.array([[0, 1]], dtype=np.uint8)).save(a / "x.png")
        >>> Image.fromarray(np.array([[1, 1]], dtype=np.uint8)).save(b / "x.png")
        >>> batch = next(iter_label_map_batches(a, b))
        >>> batch.names, batch.target.tolist(), batch.preds.tolist()
        (['x.png'], [[[0, 1]]], [[[1, 1]]])
    """
    batch_size = check_positive_int("batch_size", batch_size)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    names = match_label_maps(gt_dir, pred_dir, suffix=suffix)
    read = read_label_array if suffix == ".npy" else read_label_map
    buf: list[tuple[str, np.ndarray, np.ndarray]] = []

    def flush() -> SemanticBatch:
        batch = SemanticBatch(
            names=[n for n, _, _ in buf],
            preds=torch.from_numpy(np.stack([p for _, _, p in buf])).to(dev),
            target=torch.from_numpy(np.stack([t for _, t, _ in buf])).to(dev),
        )
        buf.clear()
        return batch

    for name in names:  # one file pair per image
        target = read(Path(gt_dir) / name, name="gt_dir")
        preds = read(Path(pred_dir) / name, name="pred_dir")
        if preds.shape != target.shape:
            fail(f"pred_dir: {name}", f"a label map of the ground truth's size {target.shape}", preds.shape)
        if buf and (len(buf) == batch_size or buf[0][1].shape != target.shape):
            yield flush()
        buf.append((name, target, preds))
    if buf:
        yield flush()
