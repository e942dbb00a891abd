"""Write files the user cares about whole or not at all.

Temp file in the same folder, ``flush`` + ``fsync``, ``os.replace``, then
``fsync`` of the folder; on any failure the temp file is removed and the
exception propagates, so the target is either absent or its old content.
Leftover temp files (after a power cut) are named ``.<name>.<pid>.tmp``.
"""

from __future__ import annotations

import fcntl
import hashlib
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


def file_digest(path, algorithm: str = "sha256") -> str:
    """The hex digest of a file (``hashlib`` algorithm name), read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path) -> str:
    """SHA-256 of a file (the model: calibration.json and the bench record it)."""
    return file_digest(path, "sha256")


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


class NotARegularFile(ValueError):
    """A state file that is a folder, a device, a pipe or a socket (or a link to one)."""


def read_regular_file(path, max_bytes: int) -> bytes:
    """The bytes of ``path`` when it is a regular file of at most ``max_bytes``.

    Opened without blocking (a named pipe never hangs the caller) and checked on the open
    file, so a link to ``/dev/zero`` or a folder is refused before a byte is read. Raises
    FileNotFoundError when absent, :class:`NotARegularFile` or ValueError (too big) otherwise.
    """
    import stat
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(f"not a regular file ({_kind(st.st_mode)})")
        if st.st_size > max_bytes:
            raise ValueError(f"{st.st_size} bytes is more than the {max_bytes} allowed")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise ValueError(f"more than the {max_bytes} bytes allowed")
        return data
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    import stat
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a file"


def is_regular_or_absent(path) -> tuple[bool, str]:
    """(True, "") when ``path`` does not exist or is a regular file (links followed); else (False, what it is)."""
    import stat
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (False, "a dangling link") if os.path.islink(path) else (True, "")
    except OSError as e:
        return False, e.strerror or str(e)
    return (True, "") if stat.S_ISREG(st.st_mode) else (False, _kind(st.st_mode))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:       # EPERM: it exists
        return True
    return True


def clean_stale_temps(path) -> list[Path]:
    """Remove ``.<name>.<pid>.tmp`` files next to ``path`` left by a kill or power cut (not a live process's)."""
    path = Path(path)
    prefix = f".{path.name}."
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix) and n.endswith(TEMP_EXT)]
    except OSError:
        return []
    removed = []
    for name in names:
        pid = name[len(prefix):-len(TEMP_EXT)]
        if not pid.isdigit() or (int(pid) != os.getpid() and _pid_alive(int(pid))):
            continue
        try:
            os.unlink(path.parent / name)
            removed.append(path.parent / name)
        except OSError:
            pass
    return removed
