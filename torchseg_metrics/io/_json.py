"""Reading a JSON annotation file with errors that name the argument, the file and the problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torchseg_metrics._checks import fail

__all__ = ["read_json"]


def read_json(source: str | Path | Any, name: str) -> Any:
    """Return the parsed JSON of a file path, or ``source`` itself if it is already a dict or list.

    Args:
        source: a path, or already parsed JSON (returned as is).
        name: the argument name used in error messages.

    Returns:
        The parsed JSON.

    Raises:
        FileNotFoundError: if the path does not exist or is not a file.
        ValueError: if the file is not valid JSON (truncated, not UTF-8, ...), naming line and column.
        TypeError: if ``source`` is neither a path nor parsed JSON.

    Example:
        >>> read_json({"images": []}, "gt")
        {'images': []}
    """
    if isinstance(source, (dict, list)):
        return source
    if not isinstance(source, (str, Path)):
        fail(
            name, "a path to a JSON file or the parsed JSON (dict or list)", type(source).__name__, TypeError
        )
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"`{name}` must be an existing JSON file, got {str(path)!r} (not found).")
    try:
        with path.open("rb") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"`{name}` must be a valid JSON file, got {str(path)!r}: {err.msg} at line {err.lineno} "
            f"column {err.colno} (truncated or corrupt file?)."
        ) from None
    except UnicodeDecodeError:
        raise ValueError(f"`{name}` must be a UTF-8 JSON file, got {str(path)!r} (not text).") from None
