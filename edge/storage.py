"""The state folder's files: photos with their JSON sidecars, and ``events.jsonl``.

* :data:`PHOTOS_NAME`, :data:`EVENTS_NAME`, :data:`PHOTO_EXT`, :data:`SIDECAR_EXT` - the names
  ``djsmile run`` writes under the state folder (the live view and MQTT read the same ones).
* :func:`photo_stem` - a photo's name: wall-clock time to the millisecond, then the frame index.
* :class:`PhotoStore` - writes a JSON sidecar, then its JPEG, each atomically (temp
  file in the same folder, flush + fsync, ``os.replace``), keeps the folder
  within a count and a size bound (oldest first) and skips photos, with one
  warning, while free disk space is below a floor.
* :class:`EventLog` - appends one JSON line per shot to ``events.jsonl``, whole or not at all.

Both are called from one thread (the photo writer's); nothing here reads the
wall clock for logic.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from .fsutil import TEMP_EXT, atomic_write, fsync_dir, is_regular_or_absent

log = logging.getLogger(__name__)

MB = 1024 * 1024
PHOTO_EXT = ".jpg"
SIDECAR_EXT = ".json"
EVENTS_NAME = "events.jsonl"
PHOTOS_NAME = "photos"


def photo_stem(when: datetime, frame: int) -> str:
    """``20261125-221530-123_f000042``: wall-clock time to the millisecond, then the frame index."""
    return f"{when:%Y%m%d-%H%M%S}-{when.microsecond // 1000:03d}_f{int(frame):06d}"


class PhotoStore:
    """A folder of JPEG photos with JSON sidecars, written atomically and kept within bounds.

    ``max_photos`` (0 = no limit) and ``max_mb`` (0 = no limit; sidecars
    count too) bound the folder: after each photo the oldest ones (by name,
    which starts with the time) are deleted with their sidecars; the newest
    photo is always kept. Below ``min_free_mb`` of free disk space photos are
    skipped; one warning says so, and one info line says when space is back.
    """

    def __init__(self, folder: Path, *, jpeg_quality: int = 90, max_photos: int = 0,
                 max_mb: float = 0.0, min_free_mb: float = 0.0):
        self.folder = Path(folder).absolute()  # events.jsonl names photos by absolute path
        self.jpeg_quality = int(jpeg_quality)
        self.max_photos = int(max_photos)
        self.max_mb = float(max_mb)
        self.min_free_mb = float(min_free_mb)
        self.low_space = False   # True while photos are being skipped for lack of space
        self.skipped = 0         # photos skipped for lack of space
        self.folder.mkdir(parents=True, exist_ok=True)
        self.clean_temp()

    def clean_temp(self) -> int:
        """Remove what a crash or power cut left behind: temp files, sidecars without their photo."""
        n = 0
        leftovers = list(self.folder.glob("*" + TEMP_EXT))
        leftovers += [p for p in self.folder.glob("*" + SIDECAR_EXT)
                      if not p.name.startswith(".") and not p.with_suffix(PHOTO_EXT).exists()]
        for p in leftovers:
            try:
                p.unlink()
                n += 1
            except OSError as e:
                log.warning("cannot remove leftover file %s: %s", p, e)
        if n:
            log.info("removed %d leftover file(s) (unfinished photos) from %s", n, self.folder)
        return n

    def has_space(self) -> bool:
        """Free space at or above the floor (one warning when it first drops below)."""
        if self.min_free_mb <= 0:
            return True
        try:
            free_mb = shutil.disk_usage(self.folder).free / MB
        except OSError as e:
            log.debug("cannot read free space of %s: %s", self.folder, e)
            return True
        if free_mb < self.min_free_mb:
            if not self.low_space:
                log.warning("only %.0f MB free on %s (floor storage.min_free_mb = %g): skipping photos "
                            "until space is freed", free_mb, self.folder, self.min_free_mb)
                self.low_space = True
            return False
        if self.low_space:
            log.info("%.0f MB free on %s again: saving photos", free_mb, self.folder)
            self.low_space = False
        return True

    def _free_name(self, stem: str) -> str:
        name, n = stem, 1
        while (self.folder / (name + PHOTO_EXT)).exists():
            name = f"{stem}-{n}"
            n += 1
        return name

    def save(self, image: np.ndarray, stem: str, meta: dict | None = None) -> Path | None:
        """Encode ``image`` (BGR or gray uint8) as JPEG, write it and its sidecar; prune.

        Returns the photo's path, or None when skipped for lack of space.
        Raises on an encoding or write failure (no partial file is left).
        """
        if not self.has_space():
            self.skipped += 1
            return None
        ok, buf = cv2.imencode(PHOTO_EXT, image, [int(cv2.IMWRITE_JPEG_QUALITY), self.jpeg_quality])
        if not ok:
            raise ValueError(f"JPEG encoding failed for an image of shape {getattr(image, 'shape', '?')}")
        name = self._free_name(stem)
        photo = self.folder / (name + PHOTO_EXT)
        side_path = photo.with_suffix(SIDECAR_EXT)
        # The sidecar lands first: a kill between the two leaves a sidecar without its photo (removed at
        # the next start), never a photo without its sidecar.
        if meta is not None:
            side = dict(meta)
            side["photo"] = os.path.abspath(photo)   # as in events.jsonl: the JPEG's absolute path
            side["width"], side["height"] = int(image.shape[1]), int(image.shape[0])
            atomic_write(side_path, (json.dumps(side, indent=1) + "\n").encode("utf-8"))
        try:
            atomic_write(photo, buf.tobytes())
        except BaseException:
            if meta is not None:
                with contextlib.suppress(OSError):
                    side_path.unlink()
            raise
        self.prune(keep=photo)
        return photo

    def photos(self) -> list[Path]:
        """Photos in the folder, oldest first (by name, which starts with the time)."""
        return sorted(p for p in self.folder.glob("*" + PHOTO_EXT) if not p.name.startswith("."))

    def prune(self, keep: Path | None = None) -> list[Path]:
        """Delete the oldest photos (and sidecars) beyond the count and size bounds."""
        if self.max_photos <= 0 and self.max_mb <= 0:
            return []
        entries = []
        total = 0
        for p in self.photos():
            size = 0
            for q in (p, p.with_suffix(SIDECAR_EXT)):
                try:
                    size += q.stat().st_size
                except OSError:
                    pass
            entries.append((p, size))
            total += size
        limit = self.max_mb * MB
        deleted = []
        while len(entries) > 1 and ((self.max_photos > 0 and len(entries) > self.max_photos)
                                    or (self.max_mb > 0 and total > limit)):
            p, size = entries.pop(0)
            if keep is not None and p == keep:  # never delete the photo just written
                entries.append((p, size))
                continue
            for q in (p, p.with_suffix(SIDECAR_EXT)):
                try:
                    q.unlink()
                except FileNotFoundError:
                    pass
                except OSError as e:
                    log.warning("cannot delete old photo file %s: %s", q, e)
            total -= size
            deleted.append(p)
        if deleted:
            log.info("deleted %d old photo(s) to stay within storage.max_photos = %d / "
                     "storage.max_photos_mb = %g", len(deleted), self.max_photos, self.max_mb)
        return deleted


class EventLog:
    """``events.jsonl``: one JSON line per shot, written whole or not at all, fsynced, size-bounded.

    A write that does not fit (a full disk: a short write or ENOSPC) is cut
    back to the last whole line and raised. A torn tail found at start (a
    power cut or an older version on a full disk) is moved to
    ``events.jsonl.torn-<time>`` with one warning, so the next line does not
    glue onto it. Past ``max_bytes`` (0 = no bound) the file is renamed to
    ``events.jsonl.1`` (replacing the older one) and a new one is started.
    """

    def __init__(self, path: Path, max_bytes: int = 0):
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._set_aside_torn_tail()

    def _set_aside_odd_file(self) -> None:
        """An events.jsonl that is not a regular file (a folder, a pipe, a link to a device) is moved aside."""
        ok, what = is_regular_or_absent(self.path)
        if ok:
            return
        aside = self.path.with_name(f"{self.path.name}.not-a-file-{datetime.now():%Y%m%d-%H%M%S}")
        os.replace(self.path, aside)
        log.warning("%s is not a regular file (%s): moved to %s, a new one is started", self.path, what, aside.name)

    def _set_aside_torn_tail(self) -> None:
        self._set_aside_odd_file()
        try:
            with open(self.path, "rb+") as f:
                size = f.seek(0, os.SEEK_END)
                if size == 0:
                    return
                f.seek(size - 1)
                if f.read(1) == b"\n":
                    return
                keep = 0
                pos = size
                while pos > 0:  # find the last newline, reading backwards in blocks
                    start = max(0, pos - 65536)
                    f.seek(start)
                    block = f.read(pos - start)
                    i = block.rfind(b"\n")
                    if i >= 0:
                        keep = start + i + 1
                        break
                    pos = start
                f.seek(keep)
                torn = f.read()
                aside = self.path.with_name(f"{self.path.name}.torn-{datetime.now():%Y%m%d-%H%M%S}")
                try:
                    atomic_write(aside, torn)
                    where = f"set aside as {aside.name}"
                except OSError as e:
                    where = f"dropped (cannot write {aside.name}: {e.strerror or e})"
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())
        except FileNotFoundError:
            return
        log.warning("%s ended in half a line (%d bytes, left by a crash or a full disk): %s",
                    self.path, len(torn), where)

    def _rotate(self) -> None:
        old = self.path.with_name(self.path.name + ".1")
        os.replace(self.path, old)
        fsync_dir(self.path.parent)
        log.info("%s reached storage.max_events_mb: moved to %s", self.path.name, old.name)

    def append(self, event: dict) -> None:
        data = (json.dumps(event, separators=(", ", ": ")) + "\n").encode("utf-8")
        if self.max_bytes > 0:
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(data) > self.max_bytes:
                self._rotate()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            before = os.fstat(fd).st_size
            try:
                n = os.write(fd, data)
                if n != len(data):
                    raise OSError(errno.ENOSPC, f"short write ({n} of {len(data)} bytes): disk full?")
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):  # back to the last whole line
                    os.ftruncate(fd, before)
                raise
        finally:
            os.close(fd)

