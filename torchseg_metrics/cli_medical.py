"""The ``medical`` command: surface distances and Dice of two folders of ``.npy`` label volumes.

    torchseg-metrics medical GT_DIR PRED_DIR --num-classes N [--spacing 1.5 1 1] [--percentile 95]
        [--tolerance 1.0] [--include-background] [--per-class] [--json OUT]

Files are matched by name; each holds a 2-D label map or a 3-D volume of class indices (NIfTI-free:
``numpy.save`` of the arrays). Prints HD (at ``--percentile``), ASSD, surface Dice and Dice per
class and their means (MONAI's definitions and aggregation, see :mod:`torchseg_metrics.surface`).
"""

from __future__ import annotations

import argparse
import math
from typing import Any


def add_medical_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the ``medical`` subcommand on the CLI's subparsers."""
    from torchseg_metrics.cli import _positive_int

    med = sub.add_parser(
        "medical", parents=[common], help=".npy label volumes: Hausdorff (HD95), ASSD, surface Dice, Dice"
    )
    med.add_argument("gt_dir", metavar="GT_DIR")
    med.add_argument("pred_dir", metavar="PRED_DIR")
    med.add_argument("--num-classes", type=_positive_int, required=True)
    med.add_argument("--spacing", type=float, nargs="+", default=None, help="voxel size per axis")
    med.add_argument("--percentile", type=float, default=95.0, help="Hausdorff percentile (default 95)")
    med.add_argument("--tolerance", type=float, default=1.0, help="surface Dice tolerance (spacing units)")
    med.add_argument("--include-background", action="store_true", help="score class 0 too")
    med.add_argument("--class-names", metavar="FILE", help="one class name per line, or a JSON list")
    med.set_defaults(func=_run_medical)


def _run_medical(args: argparse.Namespace) -> int:
    from torchseg_metrics.cli import _class_names, _device, _progress, _write_json
    from torchseg_metrics.io.semantic import iter_label_map_batches, match_label_maps
    from torchseg_metrics.reporting.tables import per_class_table, semantic_table
    from torchseg_metrics.semantic import DiceScore
    from torchseg_metrics.surface import AverageSurfaceDistance, HausdorffDistance, SurfaceDice

    dev = _device(args.device)
    names = _class_names(args.class_names, args.num_classes)
    total = len(match_label_maps(args.gt_dir, args.pred_dir, suffix=".npy"))
    shared = {"include_background": args.include_background, "per_class": True, "spacing": args.spacing}
    metrics = {
        "HD": HausdorffDistance(args.num_classes, percentile=args.percentile, **shared),
        "ASSD": AverageSurfaceDistance(args.num_classes, **shared),
        "NSD": SurfaceDice(args.num_classes, tolerance=args.tolerance, **shared),
    }
    dice = DiceScore(args.num_classes, average="none", aggregation="image").to(dev)
    bar = _progress(args, total, "medical")
    batches = iter_label_map_batches(args.gt_dir, args.pred_dir, batch_size=1, device=dev, suffix=".npy")
    for batch in batches:  # one volume per batch: volumes differ in size
        for m in metrics.values():
            m.to(dev).update(batch.preds, batch.target)
        dice.update(batch.preds, batch.target)
        bar.update(len(batch.names))
    bar.close()
    first = 0 if args.include_background or args.num_classes == 1 else 1
    per: dict[str, list[float]] = {k: m.compute().double().cpu().tolist() for k, m in metrics.items()}
    per["Dice"] = dice.compute().double().cpu()[first:].tolist()
    labels = (names if names is not None else [str(i) for i in range(args.num_classes)])[first:]

    def mean(values: list[float]) -> float:
        defined = [v for v in values if not math.isnan(v)]
        return sum(defined) / len(defined) if defined else math.nan

    pct = f"{args.percentile:g}"
    out: dict[str, Any] = {
        f"HD{pct}": mean(per["HD"]),
        "ASSD": mean(per["ASSD"]),
        f"NSD@{args.tolerance:g}": mean(per["NSD"]),
        "Dice": mean(per["Dice"]),
    }
    print(semantic_table(out, markdown=args.markdown, percent=False, keys=list(out)))
    if args.per_class:
        print()
        print(per_class_table(per, labels, markdown=args.markdown, percent=False))
    out.update(per_class=per, class_names=labels, volumes=total)
    _write_json(args.json, out)
    return 0
