"""The checkout is self-contained: nothing in it reads or names a folder outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: A path that climbs out of the checkout to the data folder laid beside it on development machines.
_OUTSIDE = re.compile(r"\.\./shared|parents\[2\]\s*/\s*[\"']shared")


def _tracked_text_files() -> list[Path]:
    try:
        names = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (an installed copy): nothing to scan")
    return [ROOT / n for n in names if n.endswith((".py", ".md", ".sh", ".toml", ".yml", ".cfg", ".txt"))]


def test_no_file_names_a_folder_outside_the_repository() -> None:
    files = _tracked_text_files()
    assert any(f.name == "conftest.py" for f in files)  # the scan sees the test tree
    found = [
        f"{f.relative_to(ROOT)}:{n}"
        for f in files
        if f.name != "test_repository.py"
        for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if _OUTSIDE.search(line)
    ]
    assert found == []


def test_the_real_data_is_in_the_repository(real_data: Path) -> None:
    assert real_data == ROOT / "tests" / "data"
    for name in (
        "coco_val2014_100/instances_val2014_100.json",
        "coco_val2014_100/instances_val2014_fakesegm100_results.json",
        "coco_val2014_100/instances_val2014_fakebbox100_results.json",
        "faster_coco_eval_shapes/gt_dataset.json",
        "faster_coco_eval_shapes/dt_dataset.json",
        "panopticapi_sample/panoptic_examples.json",
        "panopticapi_sample/panoptic_coco_categories.json",
        "SOURCES.md",
    ):
        assert (real_data / name).is_file(), name
