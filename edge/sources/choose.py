"""Which source a ``--source`` string names: ``open_source`` / ``open_one``."""

from __future__ import annotations

import threading
from pathlib import Path

from ..errors import NoCameraError, SourceNotFoundError
from .base import Source
from .folder import FolderSource
from .images import IMAGE_EXTS, file_kind
from .loop import LoopSource
from .opencv import OpenCVSource, webcam_present
from .picamera import PI_SPECS, PiCamera2Source, pi_camera_present


def open_source(spec, cfg, *, picamera2_cls=None, cancel: threading.Event | None = None) -> Source:
    """:func:`open_one` (see there); a file source is wrapped in a :class:`LoopSource` when ``camera.loop``."""
    src = open_one(spec, cfg, picamera2_cls=picamera2_cls, cancel=cancel)
    if cfg.camera.loop and src.finite:
        return LoopSource(src, lambda: open_one(spec, cfg, picamera2_cls=picamera2_cls, cancel=cancel))
    return src


def open_one(spec, cfg, *, picamera2_cls=None, cancel: threading.Event | None = None) -> Source:
    """Open a frame source from a ``--source`` string.

    ``''`` = the Pi camera if present, else webcam 0, else :class:`NoCameraError`;
    ``'camera'`` or ``'pi'`` = the Pi camera; a number = that webcam; a folder = its images;
    a file or URL = a video. ``cancel``: a stop asked while a stream or
    webcam opens raises :class:`OpenCancelled` at once.
    """
    spec = "" if spec is None else str(spec).strip()
    if spec == "":
        if pi_camera_present(picamera2_cls):
            return PiCamera2Source(cfg, picamera2_cls)
        if webcam_present(0):
            return OpenCVSource(0, cfg, cancel)
        raise NoCameraError("no camera found (no Pi camera, no webcam 0); try --source FILE "
                            "(a video or an image folder)")
    if spec.lower() in PI_SPECS:
        return PiCamera2Source(cfg, picamera2_cls)
    if spec.isdigit():
        return OpenCVSource(int(spec), cfg, cancel)
    if "://" in spec:
        return OpenCVSource(spec, cfg, cancel)
    p = Path(spec).expanduser()
    if p.is_dir() or (p.is_file() and (p.suffix.lower() in IMAGE_EXTS or file_kind(p) == "image")):
        return FolderSource(p, cfg)
    if p.is_file():
        return OpenCVSource(str(p), cfg, cancel)
    raise SourceNotFoundError(f"source {spec!r} not found: no such file or folder")
