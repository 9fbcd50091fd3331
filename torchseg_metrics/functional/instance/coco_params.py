"""COCO evaluation constants, bit-for-bit equal to pycocotools' ``Params.setDetParams``.

pycocotools builds its thresholds with ``np.linspace``; ``torch.linspace`` rounds differently
(for example numpy's ``recThrs[57]`` is ``0.5700000000000001``), and AP changes with it (spec H.1).
The values below are the float64 values numpy produces, written out so that no numpy call is
needed at import time; a test checks them against numpy bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from torchseg_metrics._checks import fail

#: ``np.linspace(0.5, 0.95, 10)`` (pycocotools ``iouThrs``).
COCO_IOU_THRESHOLDS: tuple[float, ...] = (
    0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.8999999999999999, 0.95,
)  # fmt: skip

#: ``np.linspace(0.0, 1.0, 101)`` (pycocotools ``recThrs``): ``i * 0.01`` with the last value set to 1.0.
COCO_REC_THRESHOLDS: tuple[float, ...] = (*(i * 0.01 for i in range(100)), 1.0)

#: pycocotools ``maxDets``.
COCO_MAX_DETECTIONS: tuple[int, ...] = (1, 10, 100)

#: pycocotools ``areaRng`` (inclusive at both ends) and ``areaRngLbl``.
COCO_AREA_RANGES: tuple[tuple[float, float], ...] = (
    (0.0, 1e10),
    (0.0, 1024.0),
    (1024.0, 9216.0),
    (9216.0, 1e10),
)
COCO_AREA_LABELS: tuple[str, ...] = ("all", "small", "medium", "large")


def thresholds_tensor(name: str, values: Sequence[float] | None, default: tuple[float, ...]) -> Tensor:
    """Float64 thresholds from a user list (or the COCO default), validated to lie in [0, 1].

    Args:
        name: argument name used in error messages.
        values: user values, or ``None`` for ``default``.
        default: the COCO constants.

    Returns:
        Tensor[K] float64, in the given order (pycocotools does not sort them).

    Raises:
        TypeError: if ``values`` is not a sequence of numbers.
        ValueError: if it is empty or a value lies outside [0, 1].

    Example:
        >>> thresholds_tensor("iou_thresholds", [0.5, 0.75], COCO_IOU_THRESHOLDS)
        tensor([0.5000, 0.7500], dtype=torch.float64)
    """
    if values is None:
        return torch.tensor(default, dtype=torch.float64)
    if isinstance(values, Tensor):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        fail(name, "a list of floats in [0, 1] or None", values, TypeError)
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        fail(name, "a list of floats in [0, 1] or None", values, TypeError)
    if len(values) == 0 or any(not 0.0 <= float(v) <= 1.0 for v in values):
        fail(name, "a non-empty list of floats in [0, 1]", values)
    return torch.tensor([float(v) for v in values], dtype=torch.float64)


def max_detections_tuple(values: Sequence[int] | None) -> tuple[int, ...]:
    """The sorted ``max_detection_thresholds`` (pycocotools sorts ``maxDets`` in ``evaluate()``).

    Args:
        values: three positive integers, or ``None`` for ``(1, 10, 100)``.

    Returns:
        The three values in ascending order.

    Raises:
        TypeError: if a value is not an integer.
        ValueError: if there are not exactly three values or one is below 1.

    Example:
        >>> max_detections_tuple([100, 1, 10])
        (1, 10, 100)
    """
    if values is None:
        return COCO_MAX_DETECTIONS
    if isinstance(values, Tensor):
        values = values.tolist()
    name, tm = (
        "max_detection_thresholds",
        "Expected argument `max_detection_thresholds` to either be `None` or a list of ints",
    )
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        fail(name, "a list of 3 positive integers or None", values, TypeError, tm=tm)
    integral = lambda v: isinstance(v, int) or (isinstance(v, float) and v.is_integer())  # noqa: E731
    if any(isinstance(v, bool) or not integral(v) for v in values):  # 100.0 too, as torchmetrics
        fail(name, "a list of 3 positive integers or None", values, TypeError, tm=tm)
    if len(values) != 3:
        tm = "When providing a list of max detection thresholds it should have length 3"
        fail(name, "a list of 3 positive integers", values, tm=tm)
    if any(v < 1 for v in values):
        fail(name, "a list of 3 positive integers", values)
    return tuple(sorted(int(v) for v in values))
