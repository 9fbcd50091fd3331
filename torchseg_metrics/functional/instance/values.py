"""Value checks of instance inputs: finite scores, boxes and areas, non-negative labels, 0/1 masks.

Each rule (:data:`VALUE_CHECKS`) marks offending elements; :func:`_invalid_flags` turns padded
per-image fields into one ``(images, checks)`` flag tensor on the device (never read there), and
:func:`_raise_for_invalid` reads it for host data and names the first offending image and key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from torchseg_metrics._checks import Found, fail


def _item(kind: str, i: int, key: str) -> str:
    return f"{kind}[{i}][{key!r}]"


def _non_finite(x: Tensor) -> Tensor:
    return ~torch.isfinite(x)


def _negative(x: Tensor) -> Tensor:
    return x < 0


def _not_an_area(x: Tensor) -> Tensor:
    return ~torch.isfinite(x) | (x < 0)


def _not_binary(x: Tensor) -> Tensor:
    return (x != 0) & (x != 1)


class ValueCheck(NamedTuple):
    """A rule on the values of one input field; ``bad`` marks the offending elements."""

    kind: str  # "preds" or "target"
    key: str
    expectation: str
    bad: Callable[[Tensor], Tensor]


#: The value rules, in the order their failures are reported (image first, then this order).
VALUE_CHECKS = (
    ValueCheck("preds", "scores", "finite (no NaN or inf)", _non_finite),
    ValueCheck("preds", "labels", "non-negative class ids", _negative),
    ValueCheck("target", "labels", "non-negative class ids", _negative),
    ValueCheck("preds", "boxes", "finite box coordinates (no NaN or inf)", _non_finite),
    ValueCheck("target", "boxes", "finite box coordinates (no NaN or inf)", _non_finite),
    ValueCheck("preds", "area", "finite, non-negative areas", _not_an_area),
    ValueCheck("target", "area", "finite, non-negative areas", _not_an_area),
    ValueCheck("preds", "masks", "masks of 0/1 values (or bool)", _not_binary),
    ValueCheck("target", "masks", "masks of 0/1 values (or bool)", _not_binary),
)


def _raise_for_invalid(
    invalid: Tensor, preds: Sequence[Mapping[str, Tensor]], target: Sequence[Mapping[str, Tensor]]
) -> None:
    """Raise for the first (image, check) flagged in ``invalid``, describing the offending values.

    Reads ``invalid`` (and on failure the offending tensor) to the host: callers use it for CPU
    tensors only, where that costs no synchronisation.
    """
    if not bool(invalid.any()):  # host data only (see above): no device sync
        return
    first = int(invalid.flatten().to(torch.uint8).argmax())  # image-major, as VALUE_CHECKS orders
    image, check = divmod(first, len(VALUE_CHECKS))
    rule = VALUE_CHECKS[check]
    values = (preds if rule.kind == "preds" else target)[image][rule.key]
    bad = values[rule.bad(values)]
    found = f"{bad.numel()} invalid value(s), the first {bad[0].item()!r}"
    fail(_item(rule.kind, image, rule.key), rule.expectation, Found(found))


def _invalid_flags(
    fields: Mapping[tuple[str, str], Tensor],
    flags: Mapping[tuple[str, str], Tensor],
    b: int,
    device: torch.device,
) -> Tensor:
    """``(b, len(VALUE_CHECKS))`` flags from padded per-image ``fields`` (padding is always valid)
    or per-image ``flags`` ``(b,)`` computed by the caller."""
    columns = []
    for rule in VALUE_CHECKS:
        key = (rule.kind, rule.key)
        if key in flags:
            columns.append(flags[key])
        elif key in fields:
            columns.append(rule.bad(fields[key]).reshape(b, -1).any(1))
        else:
            columns.append(torch.zeros(b, dtype=torch.bool, device=device))
    return torch.stack(columns, 1)


def _mask_flags(masks: list[Tensor]) -> Tensor | None:
    """Per image, whether a non-bool mask holds a value other than 0 and 1 (None: all bool)."""
    if all(m.dtype == torch.bool for m in masks):
        return None
    return torch.stack(
        [_not_binary(m).any() if m.dtype != torch.bool else m.new_zeros((), dtype=torch.bool) for m in masks]
    )
