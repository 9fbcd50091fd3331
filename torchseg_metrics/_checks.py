"""Argument and tensor-metadata checks, in one place.

Every message follows one template: ``"`{arg}` must be {expectation}, got {actual!r}."``.
``TypeError`` is raised for a wrong type or dtype, ``ValueError`` for a wrong value or shape.
None of these functions reads tensor values, so none of them synchronises host and device.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class Found(str):
    """A description of what was found (``"shape (2, 3)"``), printed as is; other values use repr."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def fail(name: str, expectation: str, actual: object, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` with the project's message template."""
    raise error(f"`{name}` must be {expectation}, got {actual!r}.")


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    """Reject a string option outside ``choices``, with a "did you mean" hint."""
    if value in choices:
        return
    hint = difflib.get_close_matches(str(value), list(choices), n=1)
    extra = f" Did you mean {hint[0]!r}?" if hint else ""
    raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.{extra}")


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` as an int if it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        fail(name, "an integer", value, TypeError)
    if value < 1:  # type: ignore[operator]
        fail(name, "an integer >= 1", value)
    return int(value)  # type: ignore[arg-type]


def check_optional_int(name: str, value: object) -> int | None:
    """Return ``value`` if it is None or an int (not a bool)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        fail(name, "an integer or None", value, TypeError)
    return int(value)  # type: ignore[arg-type]


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool."""
    if not isinstance(value, bool):
        fail(name, "a bool", value, TypeError)
    return bool(value)


def check_probability(name: str, value: object) -> float:
    """Return ``value`` as a float in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(name, "a float in [0, 1]", value, TypeError)
    if not 0.0 <= float(value) <= 1.0:  # type: ignore[arg-type]
        fail(name, "a float in [0, 1]", value)
    return float(value)  # type: ignore[arg-type]


def check_tensor(name: str, value: object) -> Tensor:
    """Return ``value`` if it is a tensor."""
    if not isinstance(value, Tensor):
        fail(name, "a torch.Tensor", Found(type(value).__name__), TypeError)
    return value  # type: ignore[return-value]


def is_integer_dtype(dtype: torch.dtype) -> bool:
    """Whether ``dtype`` is a signed or unsigned integer type (bool excluded)."""
    return dtype in _INT_DTYPES or (
        not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool
    )


def check_integer_tensor(name: str, value: Tensor) -> None:
    """Reject a tensor whose dtype is not an integer type."""
    if not is_integer_dtype(value.dtype):
        fail(name, "an integer tensor", Found(f"dtype {value.dtype}"), TypeError)


def check_same_device(names: Iterable[str], tensors: Iterable[Tensor]) -> None:
    """Reject tensors that live on different devices."""
    pairs = list(zip(names, tensors, strict=True))
    devices = {t.device for _, t in pairs}
    if len(devices) > 1:
        found = ", ".join(f"{n} on {t.device}" for n, t in pairs)
        fail("inputs", "on one device", Found(found))


def check_class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str] | None:
    """Return ``class_names`` as a list if it has ``num_classes`` strings."""
    if class_names is None:
        return None
    names = list(class_names)
    if len(names) != num_classes or not all(isinstance(n, str) for n in names):
        fail("class_names", f"a sequence of {num_classes} strings", class_names)
    return names
