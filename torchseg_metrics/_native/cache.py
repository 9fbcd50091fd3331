"""Compiling and caching the native kernels: a private per-user cache, one build across processes.

The shared library is built from ``kernels.c`` with the system C compiler into a cache folder
(``$TORCHSEG_METRICS_CACHE``, else ``$XDG_CACHE_HOME/torchseg_metrics`` or
``~/.cache/torchseg_metrics``) and loaded with ``ctypes``. Loading a shared library runs its code,
so the cache must be one that nobody else can write into:

- the folder is created with mode 0700; a folder or a cached file that is not owned by this user,
  or that the group or others can write, is refused (the torch-op twins run, and ``status()``
  says why); there is no fallback to a shared temporary folder;
- the cache key hashes the source, the flags, the platform and the compiler's identity (its
  resolved path and its ``--version`` text), so a new compiler never reuses an old build;
- processes that start together (DDP ranks, test workers) build once: the builder holds an
  exclusive lock on ``build.lock`` in the folder, the others wait for it and load its file; a
  file is only ever published by an atomic rename, so nobody loads half a file;
- a cached file that fails to load is rebuilt once; after a build, other builds and abandoned
  temporary files older than :data:`STALE_AFTER_S` are removed;
- ``$CC`` may carry arguments (``ccache gcc``); a failed compilation's stderr is kept in the error.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["STALE_AFTER_S", "cache_dir", "check_private", "compiler", "library_name", "load_library"]

SOURCE = Path(__file__).with_name("kernels.c")
FLAGS = ("-O3", "-shared", "-fPIC")
#: Age (seconds since the last write) past which another build or a leftover temporary file is removed.
STALE_AFTER_S = 3600.0
#: Characters of a failed compiler's stderr kept in the error message.
STDERR_KEPT = 4000

try:  # POSIX; elsewhere there is no advisory lock and concurrent builders each publish atomically
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def cache_dir() -> Path:
    """The cache folder: ``$TORCHSEG_METRICS_CACHE``, else the user's cache folder."""
    explicit = os.environ.get("TORCHSEG_METRICS_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "torchseg_metrics"


def compiler() -> list[str] | None:
    """The compiler command as argv: ``$CC`` split like a shell would (``ccache gcc``), else the first
    of ``cc``, ``gcc``, ``clang`` on the PATH; None when there is none."""
    explicit = os.environ.get("CC", "").strip()
    if explicit:
        return shlex.split(explicit)
    found = next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    return [found] if found else None


def _uid() -> int | None:
    """This process's user id, or None where the platform has no POSIX ownership."""
    return os.getuid() if hasattr(os, "getuid") else None


def check_private(path: Path, what: str) -> None:
    """Raise PermissionError unless ``path`` is owned by this user and not writable by group or others."""
    uid = _uid()
    if uid is None:  # pragma: no cover - Windows
        return
    st = os.stat(path)
    if st.st_uid != uid:
        owner = f"uid {st.st_uid}, not by this user (uid {uid})"
        raise PermissionError(f"cache {what} {path} is owned by {owner}")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = oct(stat.S_IMODE(st.st_mode))
        raise PermissionError(f"cache {what} {path} is writable by its group or others (mode {mode})")


def _identity(cmd: list[str]) -> bytes:
    """The compiler's resolved path and ``--version`` output: a new compiler means a new cache key."""
    resolved = shutil.which(cmd[0]) or cmd[0]
    try:
        out = subprocess.run(
            [*cmd, "--version"], capture_output=True, timeout=60, stdin=subprocess.DEVNULL
        )  # fmt: skip
        version = out.stdout + out.stderr + str(out.returncode).encode()
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"the C compiler `{shlex.join(cmd)}` cannot be run: {exc}") from exc
    return "\0".join([os.path.realpath(resolved), *cmd[1:]]).encode() + b"\0" + version


def library_name(cmd: list[str]) -> str:
    """The cached file's name for this source, these flags, this platform and this compiler."""
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(FLAGS).encode(), platform.machine().encode(),
                 sys.platform.encode(), _identity(cmd)):  # fmt: skip
        key.update(hashlib.sha256(part).digest())
    return f"kernels-{key.hexdigest()[:20]}.so"


@contextlib.contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """Hold the folder's build lock: a second process blocks here until the first is done."""
    fd = os.open(folder / "build.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _compile(cmd: list[str], folder: Path, target: Path) -> None:
    """Compile into a private temporary name in ``folder``, then publish it by an atomic rename."""
    fd, tmp = tempfile.mkstemp(prefix="build-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        try:
            done = subprocess.run(
                [*cmd, *FLAGS, "-o", tmp, str(SOURCE)],
                capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            raise RuntimeError(f"the C compiler `{shlex.join(cmd)}` cannot be run: {exc}") from exc
        if done.returncode != 0:
            err = (done.stderr or done.stdout).strip()[-STDERR_KEPT:]
            raise RuntimeError(f"`{shlex.join(cmd)}` failed with exit status {done.returncode}: {err}")
        os.chmod(tmp, 0o700)  # the linker may have re-created the file under a looser umask
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _remove_stale(folder: Path, keep: str) -> None:
    """Remove other builds and abandoned temporary files not written for :data:`STALE_AFTER_S`."""
    now = time.time()
    for path in [*folder.glob("kernels-*.so"), *folder.glob("build-*.tmp"), *folder.glob("tmp*.so")]:
        with contextlib.suppress(OSError):
            if path.name != keep and now - path.stat().st_mtime > STALE_AFTER_S:
                path.unlink()


def load_library() -> ctypes.CDLL:
    """Compile (unless a usable build is cached) and load the kernels; raises on any failure."""
    cmd = compiler()
    if cmd is None:
        raise RuntimeError("no C compiler found (set CC)")
    folder = cache_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private(folder, "folder")
    target = folder / library_name(cmd)
    with _exclusive(folder):
        if target.exists():
            check_private(target, "file")
            try:
                return ctypes.CDLL(str(target))
            except OSError:  # a damaged or foreign file under our name: rebuilt once, below
                target.unlink()
        _compile(cmd, folder, target)
        _remove_stale(folder, keep=target.name)
        check_private(target, "file")
        return ctypes.CDLL(str(target))
