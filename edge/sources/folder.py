"""An image folder (or a single image) as a source: ``FolderSource``, and ``image_folders``, the one
rule for what counts as an image folder."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Iterator

from ..errors import DataError, SourceError, SourceNotFoundError
from ..preprocess import to_gray
from .base import Source
from .frame import Frame
from .images import IMAGE_EXTS, MAX_IMAGE_PIXELS, ImageRefused, file_kind, read_image

log = logging.getLogger(__name__)


def _natural_key(name: str):
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", name)]


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")


def image_folders(path) -> list[Path]:
    """What ``run``, ``bench`` and ``crosscheck`` count as an image folder, in one rule:
    ``path`` itself if it holds images, else its sub-folders that do (one level, sorted;
    e.g. ``photos/`` with ``smile/`` and ``no_smile/``). Empty if neither."""
    path = Path(path)
    if any(_is_image(p) for p in path.iterdir()):
        return [path]
    subs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    return [d for d in subs if any(_is_image(p) for p in d.iterdir())]


class FolderSource(Source):
    """The images of an image folder (see :func:`image_folders`), sorted by name; frame ``i`` is at
    ``i / fps`` seconds. A single image file is a folder of one.

    Each image is a new scene (``Frame.new_scene``): ``djsmile run`` resets face
    tracking and the trigger's faces there, so nothing carries over from one
    photo to the next. Images above ``MAX_IMAGE_PIXELS`` are read reduced or
    skipped (:func:`read_image`). Unreadable images are skipped with a
    warning each; when none could be read, iterating raises
    :class:`DataError` (exit 65) with a summary.
    """

    finite = True
    still_images = True   # every frame is a new scene

    def __init__(self, path, cfg):
        self.path = Path(path)
        if self.path.is_file():
            if not _is_image(self.path) and file_kind(self.path) != "image":
                raise DataError(f"source {str(path)!r} is not an image ({', '.join(sorted(IMAGE_EXTS))})")
            folders, self.files = [], [self.path]
        elif self.path.is_dir():
            folders = image_folders(self.path)
            self.files = [p for d in folders
                          for p in sorted((q for q in d.iterdir() if _is_image(q)), key=lambda q: _natural_key(q.name))]
        else:
            raise SourceNotFoundError(f"source {str(path)!r} not found: no such folder")
        if not self.files:
            raise SourceError(f"source folder {str(path)!r} has no images, nor has any of its sub-folders "
                            f"({', '.join(sorted(IMAGE_EXTS))})")
        self.fps = float(cfg.camera.fps)
        subs = f" in {', '.join(d.name for d in folders)}" if folders and folders != [self.path] else ""
        self.name = (f"{self.path} ({len(self.files)} image{'' if len(self.files) == 1 else 's'}{subs} "
                     f"at {self.fps:g} fps)")
        self.unreadable: list[Path] = []
        self.total_frames = len(self.files)
        self._closed = False

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        self.unreadable = []
        for p in self.files:
            if self._closed:
                break
            try:
                img = read_image(p, MAX_IMAGE_PIXELS)
                if img is None:
                    log.warning("%s: not a readable image; skipped", p)
            except ImageRefused as e:
                log.warning("%s: skipped", e)
                img = None
            if img is None:
                self.unreadable.append(p)
                continue
            yield Frame(to_gray(img), index, index / self.fps, (lambda c=img: c), color_fn=(lambda c=img: c),
                        new_scene=True)
            index += 1
        if self._closed:
            return
        if index == 0:
            shown = ", ".join(p.name for p in self.unreadable[:3]) + (", ..." if len(self.unreadable) > 3 else "")
            raise DataError(f"source {str(self.path)!r}: none of its {len(self.files)} image"
                            f"{'' if len(self.files) == 1 else 's'} could be read ({shown}); "
                            "check the files are whole images")
        if self.unreadable:
            log.warning("%s: %d of %d images could not be read and were skipped", self.path,
                        len(self.unreadable), len(self.files))

    def close(self) -> None:
        self._closed = True
