"""Micro-benchmark of the pairwise mask-IoU kernels (``torchseg_metrics.functional.instance.mask_iou``).

Times ``mask_intersections`` with each ``method`` on COCO-like images (the issue-3 workload of
``workloads.InstanceWorkload``: 480x640, ~7 ground truths, 100 detections) and, for scale, the floor
(reading every detection byte once: a max over them), a plain ``.sum()`` over the masks, and
pycocotools (RLE-encoding the tensors, then ``mask.iou``). One thread unless ``--threads`` says
otherwise. Prints a Markdown table of median milliseconds per image::

    python benchmarks/bench_mask_iou_kernels.py            # 5 images, the table
    python benchmarks/bench_mask_iou_kernels.py --quick    # 2 images of 240x320, a smoke run
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))

from _harness import machine_line, markdown_table, median_seconds
from workloads import InstanceWorkload

from torchseg_metrics.functional.instance.mask_iou import mask_intersections, mask_iou


def _pycocotools(det: torch.Tensor, gt: torch.Tensor, crowd: torch.Tensor) -> object:
    import pycocotools.mask as mask_utils

    dt = mask_utils.encode(np.asfortranarray(det.permute(1, 2, 0).numpy().astype(np.uint8)))
    gt_rle = mask_utils.encode(np.asfortranarray(gt.permute(1, 2, 0).numpy().astype(np.uint8)))
    return mask_utils.iou(dt, gt_rle, crowd.numpy().astype(np.uint8).tolist())


def _candidates(det: torch.Tensor, gt: torch.Tensor, crowd: torch.Tensor) -> dict[str, Callable[[], object]]:
    d4, g4, c2 = det[None], gt[None], crowd[None].bool()
    return {
        "floor: max over the detection bytes": lambda: det.view(torch.uint8).amax(),
        "plain `det.sum((1, 2))` (areas only)": lambda: det.sum((1, 2)),
        "int8 (CPU default)": lambda: mask_intersections(d4, g4, method="int8"),
        "int8 + IoU (`mask_iou`)": lambda: mask_iou(d4, g4, c2, method="int8"),
        "matmul (CUDA default)": lambda: mask_intersections(d4, g4, method="matmul"),
        "bytes (bit planes + bincount)": lambda: mask_intersections(d4, g4, method="bytes"),
        "pycocotools encode + iou": lambda: _pycocotools(det, gt, crowd),
    }


def _best_and_median(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(fastest, median) seconds of ``repeat`` runs after one warm-up; the minimum resists a busy machine."""
    median_seconds(fn, repeat=1, warmup=0)
    times = [median_seconds(fn, repeat=1, warmup=0) for _ in range(repeat)]
    return min(times), float(np.median(times))


def run(quick: bool = False, num_images: int = 5, repeat: int = 7) -> str:
    """Markdown section: best and median ms per image of each kernel, and the ratio to the int8 path."""
    if quick:
        workload, num_images, repeat = InstanceWorkload(height=240, width=320), 2, 2
    else:
        workload = InstanceWorkload()
    best: dict[str, list[float]] = {}
    med: dict[str, list[float]] = {}
    sizes = []
    for index in range(num_images):
        pred, target = workload.image(index)
        det, gt, crowd = pred["masks"].contiguous(), target["masks"].contiguous(), target["iscrowd"]
        sizes.append(gt.shape[0])
        ref = mask_iou(det[None], gt[None], crowd[None].bool(), method="int8")
        for method in ("matmul", "bytes"):  # every path must give the same bits
            if not torch.equal(mask_iou(det[None], gt[None], crowd[None].bool(), method=method), ref):
                raise AssertionError(f"method {method!r} differs from 'int8' on image {index}")
        for name, fn in _candidates(det, gt, crowd).items():
            lo, mid = _best_and_median(fn, repeat)
            best.setdefault(name, []).append(lo)
            med.setdefault(name, []).append(mid)
    base = float(np.mean(best["int8 (CPU default)"]))
    rows = [
        [
            name,
            f"{np.mean(best[name]) * 1e3:.2f}",
            f"{np.mean(med[name]) * 1e3:.2f}",
            f"{np.mean(b) / base:.2f}x",
        ]
        for name, b in best.items()
    ]
    header = ["kernel (one image)", "best ms / image", "median ms / image", "best vs int8"]
    return "\n".join(
        [
            "### Mask-IoU kernels",
            "",
            f"Workload: the first {num_images} images of the issue-3 instance workload "
            f"({workload.height}x{workload.width}, {workload.dets_per_image} detections, "
            f"{min(sizes)}-{max(sizes)} ground truths), one image per call; mean over images of the best "
            f"and the median of {repeat} runs.",
            machine_line(),
            "",
            markdown_table(header, rows),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="two small images, a smoke run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(run(quick=args.quick, num_images=args.images), flush=True)


if __name__ == "__main__":
    main()
