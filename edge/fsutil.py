"""Write files the user cares about whole or not at all.

Temp file in the same folder, ``flush`` + ``fsync``, ``os.replace``, then
``fsync`` of the folder; on any failure the temp file is removed and the
exception propagates, so the target is either absent or its old content.
Leftover temp files (after a power cut) are named ``.<name>.<pid>.tmp``.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

TEMP_EXT = ".tmp"


def fsync_dir(folder) -> None:
    """Make a rename durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path, mkdir: bool = True):
    """``with atomic_open(path) as f: f.write(...)``: a binary file that appears at ``path`` only whole."""
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TEMP_EXT}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write(path, data: bytes, mkdir: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_open(path, mkdir=mkdir) as f:
        f.write(data)


def pid_lock(path) -> tuple[int | None, int | None]:
    """Take an exclusive ``fcntl`` lock on ``path`` and write our PID in it.

    Returns ``(fd, None)``: keep ``fd`` open for as long as the lock is held
    (the kernel drops it when the process ends, however it ends, so a stale
    file never blocks); or ``(None, pid)`` when another process holds it
    (``pid`` as written in the file, or None if unreadable). Raises OSError
    when the file cannot be created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            other = int(text) if text.isdigit() else None
        finally:
            os.close(fd)
        return None, other
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd, None
