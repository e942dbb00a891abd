"""Write files the user cares about whole or not at all.

Temp file in the same folder, ``flush`` + ``fsync``, ``os.replace``, then
``fsync`` of the folder; on any failure the temp file is removed and the
exception propagates, so the target is either absent or its old content.
Leftover temp files (after a power cut) are named ``.<name>.<pid>.tmp``.
"""

from __future__ import annotations

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
