"""Argument and tensor-metadata checks, in one place.

Every message follows one template: ``"`{arg}` must be {expectation}, got {actual!r}."``.
``TypeError`` is raised for a wrong type or dtype, ``ValueError`` for a wrong value or shape.
None of these functions reads tensor values, so none of them synchronises host and device.

Drop-in for torchmetrics: where torchmetrics checks the same thing, its sentence leads the message
(``tm=...`` or :func:`tm_message`), so that ``pytest.raises(..., match=...)`` and log searches
written against torchmetrics still find it; and a type error is an :class:`InputTypeError`, which is
also a ``ValueError``, because torchmetrics raises ``ValueError`` for several type checks.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Iterator, Mapping, Sequence

import torch
from torch import Tensor

_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class Found(str):
    """A description of what was found (``"shape (2, 3)"``), printed as is; other values use repr."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


class InputTypeError(TypeError, ValueError):
    """A wrong type or dtype: a ``TypeError``, and a ``ValueError`` as torchmetrics raises for these."""


class ShapeMismatchError(ValueError, RuntimeError):
    """Inputs of different shapes: a ``ValueError``, and the ``RuntimeError`` torchmetrics'
    segmentation metrics raise for it."""


def fail(
    name: str,
    expectation: str,
    actual: object,
    error: type[Exception] = ValueError,
    *,
    tm: str | None = None,
) -> None:
    """Raise ``error`` (a ``TypeError`` as :class:`InputTypeError`) with the project's message
    template, led by torchmetrics' sentence ``tm`` for the same check when there is one.

    Example:
        >>> fail("things", "a collection of integer category ids", {"sky"}, TypeError,
        ...      tm="Expected argument `things` to contain `int` categories")
        Traceback (most recent call last):
        ...
        torchseg_metrics._checks.InputTypeError: Expected argument `things` to contain `int` categories: \
`things` must be a collection of integer category ids, got {'sky'}.
    """
    if error is TypeError:
        error = InputTypeError
    lead = f"{tm}: " if tm else ""
    raise error(f"{lead}`{name}` must be {expectation}, got {actual!r}.")


@contextlib.contextmanager
def tm_message(sentences: str | Mapping[str, str]) -> Iterator[None]:
    """Lead the message of a ``TypeError``/``ValueError`` raised inside with torchmetrics' sentence
    for the same check: ``sentences`` itself, or ``sentences[name]`` for an error about argument
    ``name`` (a message of this module's template starts with the name in backticks).

    Example:
        >>> with tm_message({"per_class": "Expected argument `per_class` must be a boolean"}):
        ...     check_bool("per_class", 1)
        Traceback (most recent call last):
        ...
        torchseg_metrics._checks.InputTypeError: Expected argument `per_class` must be a boolean: \
`per_class` must be a bool, got 1.
    """
    try:
        yield
    except (TypeError, ValueError) as err:
        message = str(err.args[0]) if err.args else ""
        if isinstance(sentences, str):
            sentence: str | None = sentences
        else:
            name = message[1:].split("`", 1)[0] if message.startswith("`") else ""
            sentence = sentences.get(name)
        if sentence is not None:
            err.args = (f"{sentence}: {message}" if message else sentence, *err.args[1:])
        raise


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


def check_tensor(name: str, value: object, tm: str | None = None) -> Tensor:
    """Return ``value`` if it is a tensor (``tm``: torchmetrics' sentence for the check)."""
    if not isinstance(value, Tensor):
        fail(name, "a torch.Tensor", Found(type(value).__name__), TypeError, tm=tm)
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
