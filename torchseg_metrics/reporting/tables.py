"""Result tables as plain text or Markdown: the COCO summary, the panoptic PQ table, semantic scores.

These functions format numbers the metrics computed; they compute nothing themselves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["coco_summary", "panoptic_table", "per_class_table", "render_table", "semantic_table"]

_COCO_LINE = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
SEMANTIC_KEYS = ("mIoU", "mDice", "aAcc", "mAcc", "fwIoU", "mBoundaryIoU")


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], *, markdown: bool = False, digits: int = 2
) -> str:
    """Render rows as an aligned plain-text table or a Markdown table.

    Floats are printed with ``digits`` decimals, NaN and None as ``nan``; the first column is
    left-aligned, the others right-aligned.

    Args:
        header: column titles.
        rows: table rows, each as long as ``header``.
        markdown: a Markdown (GitHub) table instead of plain text.
        digits: decimals for floats.

    Returns:
        The table, lines joined by ``"\\n"``.

    Raises:
        ValueError: if a row's length differs from the header's.

    Example:
        >>> print(render_table(["class", "IoU"], [["cat", 0.5], ["dog", float("nan")]]))
        class   IoU
        -----  ----
        cat    0.50
        dog     nan
    """
    cells = [[_fmt(v, digits) for v in r] for r in rows]
    for i, r in enumerate(cells):
        if len(r) != len(header):
            raise ValueError(f"`rows[{i}]` must have {len(header)} cells like the header, got {len(r)}.")
    if markdown:
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|",
        ]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines)
    widths = [max(len(str(h)), *(len(r[j]) for r in cells)) for j, h in enumerate(header)]

    def line(vals: Sequence[str]) -> str:
        parts = [v.ljust(widths[0]) if j == 0 else v.rjust(widths[j]) for j, v in enumerate(vals)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(header)), line(["-" * w for w in widths])] + [line(r) for r in cells])


def coco_summary(
    stats: Sequence[float],
    *,
    iou_thresholds: Sequence[float] = (0.5, 0.95),
    max_dets: Sequence[int] = (1, 10, 100),
    markdown: bool = False,
) -> str:
    """The 12 COCO numbers laid out as pycocotools ``COCOeval.summarize()`` prints them.

    Args:
        stats: the 12 values of ``COCOeval.stats`` (``MeanAveragePrecision.coco_stats()``).
        iou_thresholds: the IoU thresholds used (the first and last are printed).
        max_dets: the three ``maxDets`` values (stat 0 always prints 100, as pycocotools does).
        markdown: a Markdown table (metric, IoU, area, maxDets, value) instead of the 12 lines.

    Returns:
        The summary, lines joined by ``"\\n"``.

    Raises:
        ValueError: if ``stats`` does not hold 12 values or ``max_dets`` not 3.

    Example:
        >>> print(coco_summary([0.5] * 12).splitlines()[0])
         Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.500
    """
    values = [float(v) for v in stats]
    if len(values) != 12:
        raise ValueError(f"`stats` must hold the 12 COCOeval numbers, got {len(values)} values.")
    if len(max_dets) != 3:
        raise ValueError(f"`max_dets` must hold 3 values, got {list(max_dets)!r}.")
    span = f"{iou_thresholds[0]:0.2f}:{iou_thresholds[-1]:0.2f}"
    md = list(max_dets)
    rows = [
        (1, span, "all", 100), (1, "0.50", "all", md[2]), (1, "0.75", "all", md[2]),
        (1, span, "small", md[2]), (1, span, "medium", md[2]), (1, span, "large", md[2]),
        (0, span, "all", md[0]), (0, span, "all", md[1]), (0, span, "all", md[2]),
        (0, span, "small", md[2]), (0, span, "medium", md[2]), (0, span, "large", md[2]),
    ]  # fmt: skip
    if markdown:
        body = [
            ["AP" if ap else "AR", iou, area, str(m), v]
            for (ap, iou, area, m), v in zip(rows, values, strict=True)
        ]
        return render_table(["metric", "IoU", "area", "maxDets", "value"], body, markdown=True, digits=3)
    out = []
    for (ap, iou, area, m), value in zip(rows, values, strict=True):
        title, kind = ("Average Precision", "(AP)") if ap else ("Average Recall", "(AR)")
        out.append(_COCO_LINE.format(title, kind, iou, area, m, value))
    return "\n".join(out)


def panoptic_table(summary: Mapping[str, Any], *, markdown: bool = False) -> str:
    """The All / Things / Stuff PQ table, laid out as panopticapi ``pq_compute`` prints it (x100).

    Args:
        summary: ``{"All" | "Things" | "Stuff": {"pq", "sq", "rq", "n"}, ...}``
            (``PanopticQuality.summary()``).
        markdown: a Markdown table instead.

    Returns:
        The table, lines joined by ``"\\n"``.

    Raises:
        KeyError: if a group is missing from ``summary``.

    Example:
        >>> group = {"pq": 0.5, "sq": 0.75, "rq": 2 / 3, "n": 3}
        >>> print(panoptic_table({"All": group, "Things": group, "Stuff": group}).splitlines()[2])
        All       |  50.0   75.0   66.7     3
    """
    groups = ("All", "Things", "Stuff")
    if markdown:
        rows = [
            [g, 100 * summary[g]["pq"], 100 * summary[g]["sq"], 100 * summary[g]["rq"], summary[g]["n"]]
            for g in groups
        ]
        return render_table(["", "PQ", "SQ", "RQ", "N"], rows, markdown=True, digits=1)
    lines = ["{:10s}| {:>5s}  {:>5s}  {:>5s} {:>5s}".format("", "PQ", "SQ", "RQ", "N"), "-" * (10 + 7 * 4)]
    for g in groups:
        s = summary[g]
        lines.append(
            f"{g:10s}| {100 * s['pq']:5.1f}  {100 * s['sq']:5.1f}  {100 * s['rq']:5.1f} {int(s['n']):5d}"
        )
    return "\n".join(lines)


def semantic_table(
    results: Mapping[str, Any],
    *,
    markdown: bool = False,
    percent: bool = True,
    keys: Sequence[str] | None = None,
) -> str:
    """One row of semantic scores: mIoU, mDice, aAcc, mAcc, fwIoU (in percent by default).

    Args:
        results: a mapping with the keys ``mIoU``, ``mDice``, ``aAcc``, ``mAcc``, ``fwIoU`` (floats
            in [0, 1] or NaN), e.g. the command line's JSON; keys missing are left out.
        markdown: a Markdown table instead of plain text.
        percent: print values x100 with 2 decimals (mmsegmentation's style) instead of 4 decimals.
        keys: the columns, in order (default :data:`SEMANTIC_KEYS`); those missing are left out.

    Returns:
        The table, lines joined by ``"\\n"``.

    Example:
        >>> print(semantic_table({"mIoU": 0.5, "mDice": 0.6, "aAcc": 0.9, "mAcc": 0.7, "fwIoU": 0.8}))
         mIoU  mDice   aAcc   mAcc  fwIoU
        -----  -----  -----  -----  -----
        50.00  60.00  90.00  70.00  80.00
    """
    keys = [k for k in (SEMANTIC_KEYS if keys is None else keys) if k in results]
    scale, digits = (100.0, 2) if percent else (1.0, 4)
    row = [scale * float(results[k]) for k in keys]
    table = render_table(["", *keys], [["", *row]], markdown=markdown, digits=digits)
    if markdown:
        return table
    return "\n".join(ln[2:] for ln in table.splitlines())  # drop the empty first column


def per_class_table(
    columns: Mapping[str, Sequence[Any]],
    class_names: Sequence[Any],
    *,
    markdown: bool = False,
    percent: bool = False,
    digits: int | None = None,
) -> str:
    """A table with one row per class and one column per metric.

    Args:
        columns: metric name to per-class values (floats; NaN or -1 print as given).
        class_names: one name (or id) per class, in the order of the values.
        markdown: a Markdown table instead of plain text.
        percent: multiply floats by 100.
        digits: decimals (default 2 with ``percent``, else 4).

    Returns:
        The table, lines joined by ``"\\n"``.

    Raises:
        ValueError: if a column's length differs from ``len(class_names)``.

    Example:
        >>> print(per_class_table({"IoU": [0.5, float("nan")]}, ["cat", "dog"]))
        class     IoU
        -----  ------
        cat    0.5000
        dog       nan
    """
    names = [str(n) for n in class_names]
    for key, vals in columns.items():
        if len(vals) != len(names):
            raise ValueError(
                f"`columns[{key!r}]` must have {len(names)} values (one per class), got {len(vals)}."
            )
    scale = 100.0 if percent else 1.0
    rows = []
    for i, name in enumerate(names):
        row: list[Any] = [name]
        for vals in columns.values():
            v = vals[i]
            row.append(scale * float(v) if isinstance(v, float) else v)
        rows.append(row)
    return render_table(
        ["class", *columns],
        rows,
        markdown=markdown,
        digits=digits if digits is not None else (2 if percent else 4),
    )
