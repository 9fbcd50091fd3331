"""The ``torchseg-metrics`` command line: evaluate COCO, panoptic and semantic files on disk.

Usage::

    torchseg-metrics coco GT.json RESULTS.json [--iou-type segm|bbox|boundary] [--per-class] [--dt-area ...]
    torchseg-metrics panoptic GT.json GT_DIR PRED.json PRED_DIR [--per-class] [--gt-area png|json]
    torchseg-metrics semantic GT_DIR PRED_DIR --num-classes N [--ignore-index 255] [--class-names FILE]

Common options: ``--device cpu|cuda``, ``--batch-size``, ``--json OUT`` (machine-readable result),
``--markdown`` (tables as Markdown), ``--plots DIR`` (PNG plots: precision-recall curves, per-class
bars, the confusion matrix; needs matplotlib), ``--progress auto|always|never`` (a progress bar on stderr;
``auto`` shows it on a terminal). A user error (bad path, malformed file, bad option) prints one
line ``torchseg-metrics: error: ...`` on stderr and exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import torch

from torchseg_metrics.cli_medical import add_medical_parser

__all__ = ["main"]

PROG = "torchseg-metrics"


class Progress:
    """A minimal progress bar on a stream (no dependency): ``label [#####.....] 5/10 images 1.2 s``.

    Example:
        >>> import io
        >>> stream = io.StringIO()
        >>> bar = Progress(4, "coco", enabled=True, stream=stream)
        >>> bar.update(2)
        >>> stream.getvalue().split(" images")[0]
        '\\rcoco [###############...............] 2/4'
    """

    def __init__(self, total: int, label: str, *, enabled: bool, stream: TextIO | None = None) -> None:
        self.total, self.label, self.enabled = max(int(total), 0), label, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.done, self.start = 0, time.perf_counter()

    def update(self, n: int) -> None:
        """Advance by ``n`` items and redraw."""
        self.done += n
        if not self.enabled:
            return
        width = 30
        filled = width * self.done // self.total if self.total else width
        elapsed = time.perf_counter() - self.start
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} images {elapsed:.1f} s")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _device(text: str) -> torch.device:
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise ValueError(f"`--device` must be 'cpu' or 'cuda[:index]', got {text!r}.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"`--device` must be an available device, got {text!r} (torch.cuda.is_available() is False)."
        )
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"`--device` must be 'cpu' or 'cuda[:index]', got {text!r}.")
    return dev


def _finite(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become null, tensors become numbers or lists."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json(path: str | None, result: dict[str, Any]) -> None:
    if path is None:
        return
    out = Path(path)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"`--json` must be a file in an existing folder, got {path!r}.")
    out.write_text(json.dumps(_finite(result), indent=2) + "\n")


def _plot_dir(args: argparse.Namespace) -> Path | None:
    """The ``--plots`` folder, checked before any work is done."""
    if args.plots is None:
        return None
    folder = Path(args.plots)
    if not folder.is_dir():
        raise FileNotFoundError(f"`--plots` must be an existing folder, got {args.plots!r} (not found).")
    return folder


def _save(fig: Any, folder: Path, name: str) -> None:
    path = folder / name
    fig.savefig(path, dpi=120, bbox_inches="tight")
    print(f"{PROG}: wrote {path}", file=sys.stderr)


def _progress(args: argparse.Namespace, total: int, label: str) -> Progress:
    enabled = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty() and total > 1)
    return Progress(total, label, enabled=enabled)


def _run_coco(args: argparse.Namespace) -> int:
    from torchseg_metrics.instance import MeanAveragePrecision
    from torchseg_metrics.io.coco import iter_coco_batches, load_coco_gt, load_coco_results
    from torchseg_metrics.reporting.tables import coco_summary, per_class_table

    dev = _device(args.device)
    gt = load_coco_gt(args.gt, name="GT.json")
    results = load_coco_results(args.results, gt, name="RESULTS.json")
    plots = _plot_dir(args)
    metric = MeanAveragePrecision(
        iou_type=args.iou_type,
        box_format="xywh",
        boundary_dilation_ratio=args.boundary_dilation_ratio,
        class_metrics=args.per_class,
        extended_summary=plots is not None,
    ).to(dev)
    metric.warn_on_many_detections = False  # a results file is evaluated as pycocotools does, silently
    bar = _progress(args, len(gt.images), "coco")
    for batch in iter_coco_batches(
        gt,
        results,
        iou_type="bbox" if args.iou_type == "bbox" else "segm",  # boundary AP reads the masks
        batch_size=args.batch_size,
        device=dev,
        dt_area=args.dt_area,
        transposed=True,
    ):
        metric.update(batch.preds, batch.target)
        bar.update(len(batch.image_ids))
    bar.close()
    result = metric.compute()
    stats = metric.coco_stats().tolist()
    print(f"iou_type={args.iou_type}  images={len(gt.images)}")
    print(coco_summary(stats, markdown=args.markdown))
    out: dict[str, Any] = {
        k: float(v.reshape(-1)[0]) for k, v in result.items() if k.startswith("ma") and v.numel() == 1
    }
    for key in ("map_per_class", "mar_100_per_class"):
        out.pop(key, None)
    out["stats"] = stats
    if args.per_class:
        classes = result["classes"].reshape(-1).tolist()
        names = gt.class_names
        ap = result["map_per_class"].reshape(-1).tolist()
        ar = result["mar_100_per_class"].reshape(-1).tolist()
        print()
        print(
            per_class_table(
                {"AP": ap, "AR@100": ar},
                [f"{c} {names.get(c, '')}".strip() for c in classes],
                markdown=args.markdown,
                digits=3,
            )
        )
        out.update(
            classes=classes,
            class_names=[names.get(c, str(c)) for c in classes],
            map_per_class=ap,
            mar_100_per_class=ar,
        )
    if plots is not None:
        from torchseg_metrics.reporting.plots import plot_per_class, plot_pr_curves

        fig, _ = plot_pr_curves(result["precision"], metric.rec_thresholds, metric.iou_thresholds)
        _save(fig, plots, f"coco_{args.iou_type}_pr_curves.png")
        if args.per_class:
            labels = [gt.class_names.get(c, str(c)) for c in out["classes"]]
            fig, _ = plot_per_class(out["map_per_class"], labels, "AP per class")
            _save(fig, plots, f"coco_{args.iou_type}_ap.png")
    _write_json(args.json, out)
    return 0


def _run_panoptic(args: argparse.Namespace) -> int:
    from torchseg_metrics.io.panoptic import iter_panoptic_batches, load_panoptic_files
    from torchseg_metrics.panoptic import PanopticQuality
    from torchseg_metrics.reporting.tables import panoptic_table, per_class_table

    dev = _device(args.device)
    files = load_panoptic_files(args.gt_json, args.gt_dir, args.pred_json, args.pred_dir)
    plots = _plot_dir(args)
    metric = PanopticQuality(
        things=files.things,
        stuffs=files.stuffs,
        allow_unknown_preds_category=True,
        boundary=args.boundary is not None,
        boundary_dilation_ratio=args.boundary if args.boundary is not None else 0.02,
    ).to(dev)
    bar = _progress(args, len(files.gt_annotations), "panoptic")
    for batch in iter_panoptic_batches(files, batch_size=args.batch_size, device=dev, gt_area=args.gt_area):
        metric.update(batch.preds, batch.target, batch.target_crowd)
        bar.update(len(batch.image_ids))
    bar.close()
    summary = metric.summary()
    print(panoptic_table(summary, markdown=args.markdown))
    if args.per_class:
        names = files.class_names
        rows = {c: v for c, v in summary["per_class"].items() if v["tp"] + v["fp"] + v["fn"] > 0}
        cols: dict[str, list[Any]] = {k.upper(): [float(v[k]) for v in rows.values()] for k in ("pq", "sq")}
        cols["RQ"] = [float(v["rq"]) for v in rows.values()]
        cols.update({k.upper(): [int(v[k]) for v in rows.values()] for k in ("tp", "fp", "fn")})
        print()
        print(
            per_class_table(
                cols, [f"{c} {names[c]}" for c in rows], markdown=args.markdown, percent=True, digits=1
            )
        )
    if plots is not None:
        from torchseg_metrics.reporting.plots import plot_per_class

        seen = {c: v for c, v in summary["per_class"].items() if v["tp"] + v["fp"] + v["fn"] > 0}
        labels = [files.class_names[c] for c in seen]
        _save(
            plot_per_class([v["pq"] for v in seen.values()], labels, "PQ per class")[0],
            plots,
            "panoptic_pq.png",
        )
    _write_json(args.json, summary)
    return 0


def _class_names(path: str | None, num_classes: int) -> list[str] | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"`--class-names` must be an existing file, got {path!r} (not found).")
    text = p.read_text()
    if p.suffix.lower() == ".json":
        try:
            names = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"`--class-names` must be a valid JSON list, got {path!r}: {err.msg}.") from None
    else:
        names = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not isinstance(names, list) or len(names) != num_classes or not all(isinstance(n, str) for n in names):
        found = f"{len(names)} names" if isinstance(names, list) else type(names).__name__
        raise ValueError(
            f"`--class-names` must hold {num_classes} names (one per line or a JSON list), got {found}."
        )
    return names


def _run_semantic(args: argparse.Namespace) -> int:
    from torchseg_metrics.io.semantic import iter_label_map_batches, match_label_maps
    from torchseg_metrics.reporting.tables import per_class_table, semantic_table
    from torchseg_metrics.semantic import ConfusionMatrix, SemanticMetrics

    dev = _device(args.device)
    names = _class_names(args.class_names, args.num_classes)
    total = len(match_label_maps(args.gt_dir, args.pred_dir))
    plots = _plot_dir(args)
    kwargs: dict[str, Any] = {"ignore_index": args.ignore_index, "class_names": names}
    metric = SemanticMetrics(args.num_classes, per_class=True, **kwargs).to(dev)
    confusion = ConfusionMatrix(args.num_classes, **kwargs).to(dev) if plots is not None else None
    boundary = None
    if args.boundary is not None:  # Boundary IoU at this fraction of the image diagonal
        from torchseg_metrics.semantic_boundary import BoundaryIoU

        boundary = BoundaryIoU(args.num_classes, per_class=True, dilation_ratio=args.boundary, **kwargs).to(
            dev
        )
    bar = _progress(args, total, "semantic")
    for batch in iter_label_map_batches(args.gt_dir, args.pred_dir, batch_size=args.batch_size, device=dev):
        metric.update(batch.preds, batch.target)
        for extra in (confusion, boundary):
            if extra is not None:
                extra.update(batch.preds, batch.target)
        bar.update(len(batch.names))
    bar.close()
    r = {k: v.double().cpu() for k, v in metric.compute().items()}
    out: dict[str, Any] = {
        "mIoU": float(r["miou"]),
        "mDice": float(r["mdice"]),
        "aAcc": float(r["pixel_accuracy"]),
        "mAcc": float(r["mean_accuracy"]),
        "fwIoU": float(r["fwiou"]),
    }
    boundary_iou = boundary.compute().double().cpu() if boundary is not None else None
    if boundary_iou is not None:
        out["mBoundaryIoU"] = float(boundary_iou.nanmean())
    print(semantic_table(out, markdown=args.markdown))
    labels = names if names is not None else [str(i) for i in range(args.num_classes)]
    per = {
        "IoU": r["iou_per_class"].tolist(),
        "Dice": r["dice_per_class"].tolist(),
        "Acc": r["accuracy_per_class"].tolist(),
    }
    if boundary_iou is not None:
        per["BoundaryIoU"] = boundary_iou.tolist()
    if args.per_class:
        print()
        print(per_class_table(per, labels, markdown=args.markdown, percent=True))
    out.update(per, class_names=labels)
    if plots is not None and confusion is not None:
        from torchseg_metrics.reporting.plots import plot_confusion_matrix, plot_per_class

        _save(plot_confusion_matrix(confusion.compute(), labels)[0], plots, "semantic_confusion.png")
        _save(plot_per_class(per["IoU"], labels, "IoU per class")[0], plots, "semantic_iou.png")
    _write_json(args.json, out)
    return 0


def _boundary_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--boundary [RATIO]``: the band width as a fraction of the image diagonal (default 0.02)."""
    parser.add_argument(
        "--boundary",
        type=float,
        nargs="?",
        const=0.02,
        default=None,
        metavar="RATIO",
        help=f"{what}, band width RATIO of the image diagonal (default 0.02)",
    )


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="cpu", help="cpu or cuda[:index] (default cpu)")
    common.add_argument("--batch-size", type=_positive_int, default=8, help="images per update (default 8)")
    common.add_argument("--json", metavar="OUT", help="write the machine-readable result to OUT")
    common.add_argument("--markdown", action="store_true", help="print tables as Markdown")
    common.add_argument("--per-class", action="store_true", help="also print per-class values")
    common.add_argument("--plots", metavar="DIR", help="write PNG plots into DIR (needs matplotlib)")
    common.add_argument(
        "--progress", choices=("auto", "always", "never"), default="auto", help="progress bar on stderr"
    )
    parser = argparse.ArgumentParser(prog=PROG, description="Evaluate segmentation results stored on disk.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{coco,panoptic,semantic,medical}")
    coco = sub.add_parser("coco", parents=[common], help="COCO instances: AP/AR like pycocotools COCOeval")
    coco.add_argument("gt", metavar="GT.json")
    coco.add_argument("results", metavar="RESULTS.json")
    coco.add_argument("--iou-type", choices=("segm", "bbox", "boundary"), default="segm")
    coco.add_argument(
        "--boundary-dilation-ratio",
        type=float,
        default=0.02,
        help="band width of --iou-type boundary as a fraction of the image diagonal (0.005: Cityscapes)",
    )
    coco.add_argument(
        "--dt-area",
        choices=("loadres", "mask", "bbox"),
        default="loadres",
        help="detection area: loadres = pycocotools' rule (the box area if the first result has a bbox)",
    )
    coco.set_defaults(func=_run_coco)
    pan = sub.add_parser("panoptic", parents=[common], help="COCO panoptic: PQ/SQ/RQ like panopticapi")
    for name in ("gt_json", "gt_dir", "pred_json", "pred_dir"):
        pan.add_argument(name, metavar=name.upper().replace("_JSON", ".json"))
    pan.add_argument("--gt-area", choices=("png", "json"), default="png", help="ground-truth area source")
    _boundary_option(pan, "boundary PQ (min of mask and boundary IoU)")
    pan.set_defaults(func=_run_panoptic)
    sem = sub.add_parser(
        "semantic", parents=[common], help="label-map PNG folders: mIoU, mDice, aAcc, mAcc, fwIoU"
    )
    sem.add_argument("gt_dir", metavar="GT_DIR")
    sem.add_argument("pred_dir", metavar="PRED_DIR")
    sem.add_argument("--num-classes", type=_positive_int, required=True)
    sem.add_argument("--ignore-index", type=int, default=None, help="label to ignore, e.g. 255")
    sem.add_argument("--class-names", metavar="FILE", help="one class name per line, or a JSON list")
    _boundary_option(sem, "also Boundary IoU")
    sem.set_defaults(func=_run_semantic)
    add_medical_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 2 user error).

    Args:
        argv: the arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status.

    Example:
        >>> main(["semantic", "/no/such/dir", "/no/such/dir", "--num-classes", "2"])
        2
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed its usage and error line
        return int(exit_.code) if isinstance(exit_.code, int) else 2
    try:
        return int(args.func(args))
    except (ValueError, TypeError, OSError, KeyError, ModuleNotFoundError) as err:  # user errors: one line
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
