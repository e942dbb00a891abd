"""The photos the live view shows and serves: only photos djsmile wrote, from the photo folder only."""

from __future__ import annotations

import mimetypes
import os
import stat
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import cv2
import numpy as np

from ..storage import SIDECAR_EXT

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
THUMB_WIDTH = 200
THUMB_CACHE_MAX = 64
PHOTO_LIST_TTL_S = 2.0
PHOTO_LIST_MAX = 50


def plain_file(st) -> bool:
    """A regular file with one name: not a symlink, FIFO or device, not a hard link to a file elsewhere."""
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1


def is_our_photo(path: Path, st=None) -> bool:
    """True for a photo as djsmile writes it: ``<stem>.jpg`` (a plain file) with its plain ``<stem>.json`` sidecar.

    A hard link dropped into photos/ (to /etc/passwd, say) has ``st_nlink`` > 1,
    a stray file has no sidecar: neither is served.
    """
    if path.name.startswith(".") or not path.name.lower().endswith(PHOTO_SUFFIXES):
        return False
    try:
        return plain_file(st or os.lstat(path)) and plain_file(os.lstat(path.with_suffix(SIDECAR_EXT)))
    except OSError:
        return False


class PhotoShelf:
    """The newest photos of ``folder`` (for the page) and safe reads of one of them (for ``/photos/<name>``)."""

    def __init__(self, folder: Path, shown: int):
        self.folder = Path(folder)
        self.shown = int(shown)
        self._listed = (0.0, [])
        self._thumbs: dict = {}
        self._thumb_lock = threading.Lock()

    def recent(self) -> list[str]:
        """Names of the newest photos in the folder, newest first (listed at most every 2 s)."""
        now = time.monotonic()
        at, names = self._listed
        if now - at < PHOTO_LIST_TTL_S:
            return names[:self.shown]
        found = []
        try:
            with os.scandir(self.folder) as it:
                for e in it:
                    if e.name.startswith(".") or not e.name.lower().endswith(PHOTO_SUFFIXES):
                        continue
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if plain_file(st) and is_our_photo(Path(e.path), st):
                        found.append((st.st_mtime_ns, e.name))
        except OSError:
            pass
        names = [name for _, name in sorted(found, reverse=True)[:PHOTO_LIST_MAX]]
        self._listed = (now, names)
        return names[:self.shown]

    def resolve(self, raw_name: str) -> tuple[int, Path | None]:
        """Map the ``<name>`` of ``/photos/<name>`` (still %-encoded) to a photo djsmile wrote in the folder.

        Returns (200, path) or (403 | 404, None). Refused: ``..`` (plain or %-encoded),
        absolute paths, sub-folders, hidden names, and anything that is not a
        photo djsmile wrote (:func:`is_our_photo`): symlinks, hard links,
        FIFOs, files without their JSON sidecar, the sidecars themselves.
        """
        name = unquote(raw_name)
        if (not name or "/" in name or "\\" in name or "\x00" in name or ".." in name
                or ".." in raw_name or name.startswith(".") or os.path.isabs(name)):
            return 403, None
        try:
            base = self.folder.resolve(strict=True)
        except (OSError, RuntimeError):
            return 404, None
        target = base / name
        if not is_our_photo(target):
            return 404, None
        return 200, target

    def read(self, raw_name: str, thumb: bool) -> tuple[int, bytes, str, dict]:
        """(status, body, content type, extra headers) for ``/photos/<raw_name>`` (``thumb``: a small JPEG)."""
        code, target = self.resolve(raw_name)
        if code != 200:
            return code, b"", "", {}
        try:  # O_NOFOLLOW|O_NONBLOCK: no symlink swapped in since resolve(), no hanging on a FIFO
            fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return 404, b"", "", {}
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not plain_file(st):         # linked or swapped since the check
                return 404, b"", "", {}
            data = fh.read()
        if thumb:
            small = self.thumbnail(target, data, st)
            if small is not None:
                return 200, small, "image/jpeg", {"Cache-Control": "max-age=3600"}
        return 200, data, mimetypes.guess_type(target.name)[0] or "application/octet-stream", {}

    def thumbnail(self, path: Path, data: bytes, st) -> bytes | None:
        """A JPEG at most THUMB_WIDTH wide of the photo ``data`` (cached by path, mtime and size)."""
        key = (str(path), st.st_mtime_ns, st.st_size)
        with self._thumb_lock:
            hit = self._thumbs.get(key)
        if hit is not None:
            return hit
        arr = np.frombuffer(data, np.uint8)
        img = cv2.imdecode(arr, cv2.IMREAD_REDUCED_COLOR_4)   # libjpeg scales while decoding: cheap
        if img is None:
            return None
        h, w = img.shape[:2]
        if w > THUMB_WIDTH:
            img = cv2.resize(img, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), 75])
        if not ok:
            return None
        out = buf.tobytes()
        with self._thumb_lock:
            while len(self._thumbs) >= THUMB_CACHE_MAX:
                self._thumbs.pop(next(iter(self._thumbs)))
            self._thumbs[key] = out
        return out
