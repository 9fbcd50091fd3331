"""Shared fixtures: a ``device`` fixture (CPU, and CUDA when one is present) and seeded generators."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

_DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")],
    ),
]

#: The real annotation files the tests read, kept in the repository (origins in ``SOURCES.md`` there).
REAL_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(params=_DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Each device the tests run on: ``cpu`` always, ``cuda`` where one is present."""
    return torch.device(request.param)


@pytest.fixture
def real_data() -> Path:
    """The ``tests/data`` folder of real annotation files; the test fails if it is missing."""
    if not REAL_DATA.is_dir():
        pytest.fail(f"real data folder not found at {REAL_DATA}: the checkout is incomplete")
    return REAL_DATA
