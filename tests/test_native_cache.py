"""The native kernels' cache: private folders and files, the compiler in the key, one build across
processes, damaged and stale files, ``$CC`` with arguments, compiler errors kept; and the kernel
wrappers' shape preconditions."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from torchseg_metrics import _native
from torchseg_metrics._native import cache

pytestmark = pytest.mark.skipif(
    not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler to build the kernels with"
)
REAL_CC = shutil.which("cc") or shutil.which("gcc")

#: A compiler wrapper: logs each compilation (not ``--version``) to $1, waits $DELAY, runs the rest.
_LOGGING_CC = """#!/bin/sh
log=$1; shift
case " $* " in *" --version "*) ;; *) echo "$$" >> "$log"; sleep "${DELAY:-0}";; esac
exec "$@"
"""


@pytest.fixture
def cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    folder = tmp_path / "user-cache" / "torchseg_metrics"
    monkeypatch.setenv("TORCHSEG_METRICS_CACHE", str(folder))
    monkeypatch.setenv(
        "TORCHSEG_METRICS_NATIVE", "1"
    )  # these tests are about the build, even when a run switches it off
    monkeypatch.delenv("CC", raising=False)
    return folder


def _script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def logged_cc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """``$CC`` set to ``sh wrapper LOG cc`` (a compiler command with arguments); returns LOG."""
    wrapper = _script(tmp_path, "logging-cc.sh", _LOGGING_CC)
    log = tmp_path / "compilations.log"
    monkeypatch.setenv("CC", f"sh {wrapper} {log} {REAL_CC}")
    return log


def _compilations(log: Path) -> int:
    return len(log.read_text().split()) if log.exists() else 0


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_folder_created_private_and_cc_with_arguments(cache_folder: Path, logged_cc: Path) -> None:
    lib = cache.load_library()
    assert _mode(cache_folder) == 0o700
    built = Path(lib._name)
    assert built.parent == cache_folder and built.name.startswith("kernels-")
    assert _mode(built) & 0o022 == 0 and built.stat().st_uid == os.getuid()
    assert _compilations(logged_cc) == 1
    cache.load_library()  # cached: loaded, not compiled again
    assert _compilations(logged_cc) == 1
    assert [p.name for p in cache_folder.glob("*.tmp")] == []


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_a_folder_others_can_write_is_refused(cache_folder: Path, logged_cc: Path, mode: int) -> None:
    cache_folder.mkdir(parents=True)
    cache_folder.chmod(mode)
    with pytest.raises(PermissionError, match=r"cache folder .* writable by its group or others \(mode 0o7"):
        cache.load_library()
    assert _compilations(logged_cc) == 0 and list(cache_folder.iterdir()) == []


def test_a_folder_of_another_user_is_refused(
    cache_folder: Path, logged_cc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_folder.mkdir(parents=True, mode=0o700)
    monkeypatch.setattr(cache, "_uid", lambda: os.getuid() + 1)
    with pytest.raises(PermissionError, match=rf"owned by uid {os.getuid()}, not by this user"):
        cache.load_library()
    assert _compilations(logged_cc) == 0


def test_a_cached_file_others_can_write_is_refused(cache_folder: Path, logged_cc: Path) -> None:
    built = Path(cache.load_library()._name)
    built.chmod(0o777)
    with pytest.raises(PermissionError, match=r"cache file .*kernels-.* writable"):
        cache.load_library()
    assert _compilations(logged_cc) == 1  # refused, not silently replaced


def test_status_says_why_the_cache_was_refused(cache_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache_folder.mkdir(parents=True)
    cache_folder.chmod(0o777)
    monkeypatch.setattr(_native, "_state", {})
    assert not _native.available()
    assert _native.status().startswith(f"unavailable (PermissionError: cache folder {cache_folder} is")
    t = torch.tensor([0, 1, 1], dtype=torch.uint8)  # the metrics still count, with torch ops
    assert _native.confusion_counts(t, t, 1, 2, None) is None


def test_the_compiler_identity_is_in_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = {}
    for version in ("1.0", "2.0"):
        fake = _script(tmp_path, f"fake-{version}.sh", f'#!/bin/sh\necho "fake cc {version}"\n')
        names[version] = cache.library_name(["sh", str(fake)])
    assert names["1.0"] != names["2.0"]
    assert cache.library_name(["sh", str(tmp_path / "fake-1.0.sh")]) == names["1.0"]  # deterministic
    assert cache.library_name([REAL_CC]) != cache.library_name([REAL_CC, "-m64"])


def test_a_damaged_cached_file_is_rebuilt_once(cache_folder: Path, logged_cc: Path) -> None:
    # seeded before any load of that path: a loaded library must never be overwritten in place
    cache_folder.mkdir(parents=True, mode=0o700)
    damaged = cache_folder / cache.library_name(cache.compiler())
    damaged.write_bytes(b"not a shared library")
    damaged.chmod(0o700)
    lib = cache.load_library()
    assert Path(lib._name) == damaged and lib.confusion_u8_u8 is not None
    assert _compilations(logged_cc) == 1


def test_a_compiler_making_unloadable_files_fails_after_one_rebuild(
    cache_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "bad.log"
    bad = _script(
        tmp_path,
        "bad-cc.sh",
        f'#!/bin/sh\ncase " $* " in *" --version "*) echo bad 1; exit 0;; esac\necho x >> {log}\n'
        'while [ $# -gt 0 ]; do [ "$1" = "-o" ] && echo garbage > "$2"; shift; done\n',
    )
    monkeypatch.setenv("CC", f"sh {bad}")
    cache_folder.mkdir(parents=True, mode=0o700)
    (cache_folder / cache.library_name(["sh", str(bad)])).write_bytes(b"damaged")
    (cache_folder / cache.library_name(["sh", str(bad)])).chmod(0o700)
    with pytest.raises(OSError):
        cache.load_library()
    assert _compilations(log) == 1


def test_stale_builds_and_leftovers_are_removed(cache_folder: Path, logged_cc: Path) -> None:
    cache_folder.mkdir(parents=True, mode=0o700)
    old = time.time() - 2 * cache.STALE_AFTER_S
    for name in ("kernels-0123456789abcdef.so", "build-abc.tmp", "tmpxyz.so", "kernels-recent.so"):
        (cache_folder / name).write_bytes(b"x")
        if name != "kernels-recent.so":
            os.utime(cache_folder / name, (old, old))
    built = Path(cache.load_library()._name)
    assert sorted(p.name for p in cache_folder.iterdir()) == sorted(
        ["build.lock", built.name, "kernels-recent.so"]
    )


def test_compiler_errors_are_kept_in_status(
    cache_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = _script(
        tmp_path,
        "failing-cc.sh",
        '#!/bin/sh\ncase " $* " in *" --version "*) echo failing 1; exit 0;; esac\n'
        'echo "kernels.c:1:1: error: the compiler says no" >&2\nexit 3\n',
    )
    monkeypatch.setenv("CC", f"sh {failing}")
    monkeypatch.setattr(_native, "_state", {})
    assert not _native.available()
    text = _native.status()
    assert "exit status 3" in text and "kernels.c:1:1: error: the compiler says no" in text
    assert [p.name for p in cache_folder.iterdir()] == ["build.lock"]  # no partial file left


def test_a_compiler_that_cannot_run_is_reported(cache_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "/nonexistent/ccache gcc")
    with pytest.raises(RuntimeError, match=r"the C compiler `/nonexistent/ccache gcc` cannot be run"):
        cache.load_library()


def test_processes_starting_cold_together_build_once(cache_folder: Path, logged_cc: Path) -> None:
    """Two processes (DDP ranks, test workers) on an empty cache: one compiles, the other waits for
    its lock and loads the same file; the compiler is slowed so that both certainly overlap."""
    env = {**os.environ, "DELAY": "2"}
    code = "from torchseg_metrics import _native; print(_native.status())"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1] and outs[0].startswith(f"in use: {cache_folder}/kernels-")
    assert _compilations(logged_cc) == 1


# -- the wrappers' preconditions: the C loops would read past a tensor that breaks one ----------------


def test_confusion_counts_preconditions() -> None:
    t = torch.zeros(12, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"`target` and `preds` must hold as many pixels, got 12 and 11"):
        _native.confusion_counts(t, t[:11], 1, 3, None)
    with pytest.raises(ValueError, match=r"`images` must divide the 12 pixels into equal parts, got 5"):
        _native.confusion_counts(t, t, 5, 3, None)
    with pytest.raises(ValueError, match=r"`num_classes` must be at least 1, got 0"):
        _native.confusion_counts(t, t, 1, 0, None)


def test_run_records_preconditions() -> None:
    p = torch.zeros(12, 2, dtype=torch.int32)
    with pytest.raises(ValueError, match=r"must both be \(P, 2\), got \(12, 2\) and \(11, 2\)"):
        _native.run_records(p, p[:11], None, 6)
    with pytest.raises(ValueError, match=r"must both be \(P, 2\), got \(12, 1\)"):
        _native.run_records(p[:, :1], p[:, :1], None, 6)
    with pytest.raises(ValueError, match=r"`crowd` must be \(12,\), got \(10,\)"):
        _native.run_records(p, p, torch.zeros(10, dtype=torch.bool), 6)
    with pytest.raises(ValueError, match=r"`per_image` must divide the 12 pixels into whole images, got 5"):
        _native.run_records(p, p, None, 5)
