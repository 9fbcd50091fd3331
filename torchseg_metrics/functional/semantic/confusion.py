"""Confusion-matrix statistic: the one update kernel behind every semantic metric.

The statistic is a ``(C, C + 1)`` int64 matrix, rows = target class, columns = predicted class,
and a last column counting valid pixels whose prediction lies outside ``[0, C)`` (a miss of the
target class: it lowers that class's IoU and the pixel accuracy but is no class of its own).
Pixels whose target equals ``ignore_index`` are dropped. Non-ignored target values outside
``[0, C)`` are counted separately, so that the caller can raise instead of returning a wrong number.

The kernel never reads a value back to the host and its shapes never depend on the data. On the
CPU, ``method="auto"`` counts in one native pass over both maps (:mod:`torchseg_metrics._native`)
when the C kernels are available, else with torch ops (per-pixel codes, then ``bincount``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from torchseg_metrics import _native
from torchseg_metrics.functional.counting import CountMethod, count_codes, exact_integer_gemm, reusable_buffer

# float32 sums of 0/1 products are exact below 2**24; the matmul path chunks pixels to stay below.
_MATMUL_MAX_PIXELS = 1 << 24
_MATMUL_MAX_ELEMENTS = 1 << 26


def _row_col_codes(
    preds: Tensor, target: Tensor, num_classes: int, ignore_index: int | None
) -> tuple[Tensor, Tensor, int, int]:
    """Per-pixel row code in ``[0, C + 1]``, column code in ``[0, C]``, the number of row codes, and
    the row code of class 0.

    Row codes (class 0 at code 0): ``0..C-1`` a valid target, ``C`` a non-ignored target outside
    ``[0, C)``, ``C + 1`` an ignored pixel (when ``ignore_index`` lies outside ``[0, C)``; an in-range
    ``ignore_index`` keeps its own row, which the caller zeroes). For uint8 targets with
    ``ignore_index=255`` the rows are shifted by one instead (class 0 at code 1): ``0`` ignored,
    ``1..C`` valid, ``C + 1`` outside. Column codes: ``0..C-1`` or ``C`` for out-of-range. Codes stay
    uint8 when both inputs are uint8 (the caller widens once), else int16/int32.
    """
    c = num_classes
    code_dtype = torch.int16 if (c + 2) * (c + 1) < 2**15 else torch.int32
    t, p = target.reshape(-1), preds.reshape(-1)
    outside = ignore_index is not None and not 0 <= ignore_index < c and _representable(ignore_index, t.dtype)
    keep_bytes = t.dtype == p.dtype == torch.uint8 and c <= 253
    first = 0
    if t.dtype == torch.uint8 and c <= 253:
        # Byte arithmetic only: CPU comparisons producing bool run several times slower than
        # vectorised uint8 minimum/add, and the codes fit a byte until they are widened.
        if outside and ignore_index == 255:
            # t + 1 wraps 255 to 0: min(t + 1, C + 1) is 0 ignored, 1..C valid, C + 1 outside
            shifted = torch.add(t, _scalar(1, t), out=reusable_buffer("rows", t.numel(), t.dtype, t.device))
            rows, first = _minimum(shifted, c + 1, "rows"), 1
        else:
            rows = _minimum(t, c, "rows")
        if outside and ignore_index != 255:
            # t - ignore_index wraps to 0 exactly for ignored pixels: 1 - min(t - ignore, 1) marks them
            wrapped = torch.sub(t, ignore_index, out=reusable_buffer("ignored", t.numel(), t.dtype, t.device))
            rows = rows.add_(_minimum(wrapped, 1, "ignored").neg_().add_(1))
        if not keep_bytes:
            rows = rows.to(code_dtype)
    else:
        rows = _clamp_code(t, c, code_dtype)
        if outside:
            rows = rows.add_(t == ignore_index)  # ignored pixels sit at C after the clamp; move them to C + 1
    cols = _minimum(p, c, "cols") if keep_bytes else _clamp_code(p, c, code_dtype)
    return rows, cols, c + 2, first


def _scalar(value: int, like: Tensor) -> Tensor | int:
    """A 0-d tensor on CPU (torch's vectorised kernels; a Python scalar of bytes runs ~20x slower
    there), the Python scalar elsewhere (no host-to-device copy)."""
    return torch.tensor(value, dtype=like.dtype) if like.device.type == "cpu" else value


def _minimum(x: Tensor, value: int, slot: str | None = None) -> Tensor:
    """``min(x, value)`` in ``x``'s dtype, into the reusable buffer ``slot`` when one is named
    (``x`` may be that buffer)."""
    out = reusable_buffer(slot, x.numel(), x.dtype, x.device).view(x.shape) if slot is not None else None
    if x.device.type == "cpu":
        return torch.minimum(x, _scalar(value, x), out=out)
    return torch.clamp(x, max=value, out=out)


def _representable(value: int, dtype: torch.dtype) -> bool:
    info = torch.iinfo(dtype)
    return info.min <= value <= info.max


def _clamp_code(x: Tensor, c: int, code_dtype: torch.dtype) -> Tensor:
    """Map values in ``[0, c)`` to themselves and every other value to ``c``, as ``code_dtype``."""
    info = torch.iinfo(x.dtype)
    if not x.dtype.is_signed:
        return (_minimum(x, c) if c <= info.max else x).to(code_dtype)
    # -1 and c both mean "outside"; the remainder then folds -1 onto c
    x = _minimum(x, min(c, info.max))
    x = torch.maximum(x, _scalar(-1, x)) if x.device.type == "cpu" else x.clamp(min=-1)
    return x.to(code_dtype).remainder_(c + 1)


def _matmul_confusion(rows: Tensor, cols: Tensor, nrows: int, ncols: int) -> Tensor:
    """``(nrows, ncols)`` int64 counts as one-hot(rows)^T @ one-hot(cols), chunked for exactness."""
    out = torch.zeros(nrows, ncols, dtype=torch.int64, device=rows.device)
    chunk = max(1, min(_MATMUL_MAX_PIXELS, _MATMUL_MAX_ELEMENTS // max(nrows, ncols)))
    row_ids = torch.arange(nrows, device=rows.device, dtype=rows.dtype)
    col_ids = torch.arange(ncols, device=cols.device, dtype=cols.dtype)
    for start in range(0, rows.numel(), chunk):  # a loop over fixed-size pixel chunks, not pixels
        r = (rows[start : start + chunk, None] == row_ids).float()
        c = (cols[start : start + chunk, None] == col_ids).float()
        # 0/1 float32 (also TF32) inputs with float32 accumulation count exactly below 2**24.
        with exact_integer_gemm(rows.device):
            out += (r.T @ c).round_().long()
    return out


def _confusion_matrix_update(
    preds: Tensor,
    target: Tensor,
    num_classes: int,
    ignore_index: int | None = None,
    *,
    num_images: int | None = None,
    method: CountMethod = "auto",
) -> tuple[Tensor, Tensor]:
    """Confusion increments of already validated integer label maps.

    Args:
        preds: integer predicted labels, same shape as ``target``.
        target: integer target labels ``(N, ...)``.
        num_classes: the number of classes ``C``.
        ignore_index: target value whose pixels are dropped, or None.
        num_images: None for one matrix; else ``target.shape[0]``, and one matrix per image is returned.
        method: the counting kernel: ``"native"`` (CPU default where the C kernels are available;
            an error elsewhere), ``"bincount"`` (CPU default without them), ``"scatter"`` (CUDA
            default), ``"matmul"`` (CUDA under deterministic algorithms), or ``"auto"``.

    Returns:
        ``confmat`` int64 ``(C, C + 1)`` (or ``(num_images, C, C + 1)``) and ``invalid`` int64
        ``()`` (or ``(num_images,)``): non-ignored target pixels outside ``[0, C)``.
    """
    c = num_classes
    if method == "native" or (method == "auto" and preds.device.type == "cpu"):
        # one native pass over both maps (CPU): a code per pixel and its interleaved histograms
        outside = ignore_index is not None and not 0 <= ignore_index < c
        groups = 1 if num_images is None else num_images
        full = _native.confusion_counts(
            target.reshape(-1), preds.reshape(-1), groups, c, ignore_index if outside else None
        )  # None off the CPU or without the kernels
        if full is not None:
            return _split_full(full if num_images is not None else full[0], c, 0, ignore_index)
        if method == "native":
            raise ValueError(
                "`method`='native' needs the native kernels (a C compiler, TORCHSEG_METRICS_NATIVE "
                "not 0) and contiguous CPU inputs of int8/uint8/int16/int32/int64; use 'auto'."
            )
    rows, cols, nrows, first = _row_col_codes(preds, target, c, ignore_index)
    ncols = c + 1
    if method == "matmul":
        if num_images is not None:
            per_image = rows.numel() // num_images
            full = torch.stack(
                [
                    _matmul_confusion(r, k, nrows, ncols)
                    for r, k in zip(rows.split(per_image), cols.split(per_image), strict=True)
                ]
            )
        else:
            full = _matmul_confusion(rows, cols, nrows, ncols)
    else:
        # uint8 codes widen once here, both sides: an in-place add of mixed dtypes takes a slow
        # casting path on CPU (about 10x slower than widening first)
        groups = 1 if num_images is None else num_images
        code_dtype = torch.int32 if groups > 1 or (nrows * ncols) >= 2**15 else torch.int16
        n = rows.numel()
        widened = reusable_buffer("widened", n, code_dtype, rows.device).copy_(rows.view(-1))
        codes = reusable_buffer("codes", n, code_dtype, rows.device).copy_(cols.view(-1))
        if rows.device.type == "cpu":  # one fused pass; integer add with alpha is several times slower
            codes = torch.addcmul(codes, widened, _scalar(ncols, codes), out=codes)
        else:
            codes = codes.add_(widened, alpha=ncols)
        nbins = nrows * ncols
        if groups > 1:
            offsets = torch.arange(groups, device=codes.device, dtype=torch.int32) * nbins
            codes = (codes.view(groups, -1) + offsets[:, None]).view(-1)
        full = count_codes(codes, nbins * groups, method).view(groups, nrows, ncols)
        if num_images is None:
            full = full[0]
    return _split_full(full, c, first, ignore_index)


def _split_full(full: Tensor, c: int, first: int, ignore_index: int | None) -> tuple[Tensor, Tensor]:
    """``(confmat, invalid)`` from the ``(..., rows, C + 1)`` counts whose class 0 is row ``first``:
    the C class rows (an in-range ``ignore_index`` row zeroed) and the outside-row total."""
    confmat = full[..., first : first + c, :].clone()
    if ignore_index is not None and 0 <= ignore_index < c:
        confmat[..., ignore_index, :] = 0
    return confmat, full[..., first + c, :].sum(-1)
