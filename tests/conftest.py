"""Shared fixtures: a ``device`` fixture (CPU, and CUDA when one is present) and seeded generators."""

from __future__ import annotations

import os
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

#: The real data folder laid beside the checkout (``../shared/data``).
SHARED_DATA = Path(
    os.environ.get("TORCHSEG_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@pytest.fixture(params=_DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Each device the tests run on: ``cpu`` always, ``cuda`` where one is present."""
    return torch.device(request.param)


@pytest.fixture
def shared_data() -> Path:
    """The ``shared/data`` folder of real annotation files; the test fails if it is missing."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real data folder not found at {SHARED_DATA}; set TORCHSEG_SHARED_DATA")
    return SHARED_DATA
