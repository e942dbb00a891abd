"""The frames a bench times: an image folder played as a drifting camera stream, a video file, a camera,
and :class:`PacedFeed` (frames made ready at a camera's pace, for ``--pace``)."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..errors import DataError, SourceError
from ..detectors import make_detector
from ..sources import PI_SPECS, FolderSource, Frame, OpenCVSource, Source, image_folders, open_source, pi_camera_present

log = logging.getLogger(__name__)

#: folder stream: the largest drift (pixels) of an image around its place, and the step per frame
SHIFT_MAX = 16
SHIFT_STEP = (3, 2)
BACKGROUND = 110
#: most distinct images held in memory for a folder stream (more frames repeat them)
MAX_IMAGES = 60


def _tri(v: int, amp: int) -> int:
    """A triangle wave in [-amp, amp] (v = 0 -> 0)."""
    if amp <= 0:
        return 0
    period = 4 * amp
    v = (v + amp) % period
    return (v if v < 2 * amp else period - v) - amp


def fit_image(gray: np.ndarray, width: int, height: int, margin: int = SHIFT_MAX) -> np.ndarray:
    """``gray`` (or a BGR image) scaled (aspect kept) to fit ``width`` x ``height`` less ``margin`` on each side."""
    h, w = gray.shape[:2]
    s = min((width - 2 * margin) / w, (height - 2 * margin) / h)
    size = (max(1, int(round(w * s))), max(1, int(round(h * s))))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.resize(gray, size, interpolation=interp)


class PhotoStream:
    """Still images played as a camera stream of ``width`` x ``height`` frames.

    Image ``k`` is shown for ``hold`` frames, placed on a plain canvas and
    moved by a few pixels every frame (a triangle wave of ``SHIFT_MAX`` px), so
    a face moves between frames like a person in front of a camera, and the
    next image is a scene cut (a new face for the tracker to find).
    """

    live = False

    def __init__(self, images: list[np.ndarray], width: int, height: int, hold: int, fps: float,
                 name: str = "images"):
        if not images:
            raise SourceError("no images to play")
        self.images = [fit_image(g, width, height) for g in images]
        self.width, self.height, self.hold, self.fps = int(width), int(height), int(hold), float(fps)
        self.name = name
        self.nbytes = sum(int(g.nbytes) for g in self.images)

    def frame_at(self, i: int) -> Frame:
        """Frame ``i``: gray, and in colour (``Frame.color``) when the images are BGR."""
        img = self.images[(i // self.hold) % len(self.images)]
        h, w = img.shape[:2]
        x0 = (self.width - w) // 2 + _tri(i * SHIFT_STEP[0], SHIFT_MAX)
        y0 = (self.height - h) // 2 + _tri(i * SHIFT_STEP[1], SHIFT_MAX)
        canvas = np.full((self.height, self.width) + img.shape[2:], BACKGROUND, np.uint8)
        canvas[y0:y0 + h, x0:x0 + w] = img
        if canvas.ndim == 2:
            return Frame(canvas, i, i / self.fps, None)
        return Frame(cv2.cvtColor(canvas, cv2.COLOR_BGR2GRAY), i, i / self.fps, None, color_fn=lambda: canvas)

    def iterator(self) -> Iterator[Frame]:
        i = 0
        while True:
            yield self.frame_at(i)
            i += 1

    def close(self) -> None:
        pass


class VideoStream:
    """A video file; each variant reads its own copy; restarts (stream time going on) at the end."""

    live = False

    def __init__(self, path: str, cfg):
        self.path, self.cfg = path, cfg
        probe = OpenCVSource(path, cfg)  # raises SourceError with a clear line
        self.name = f"video {path}"
        self._open: list = []
        try:
            first = next(iter(probe), None)
        finally:
            probe.close()
        if first is None:
            raise SourceError(f"source {path!r}: the video has no frames OpenCV can read")
        self.height, self.width = first.gray.shape[:2]

    def iterator(self) -> Iterator[Frame]:
        index, t_base, last_t = 0, 0.0, 0.0
        while True:
            src = OpenCVSource(self.path, self.cfg)
            self._open.append(src)
            got = 0
            try:
                for fr in src:
                    last_t = t_base + fr.t
                    yield Frame(fr.gray, index, last_t, fr.still_fn)
                    index += 1
                    got += 1
            finally:
                src.close()
            if not got:
                return
            t_base = last_t + 1.0 / max(1e-3, src.fps)

    def close(self) -> None:
        for s in self._open:
            s.close()


class LiveStream:
    """A camera: one device shared by all variants (each turn takes the next frames)."""

    live = True

    def __init__(self, source):
        self.source = source
        self.name = source.name
        self._it = iter(source)
        self.width = self.height = None

    def iterator(self) -> Iterator[Frame]:
        return self._it

    def close(self) -> None:
        self.source.close()


def load_folder_images(path: Path, cfg, count: int, one_face: bool = False) -> tuple[list, str]:
    """Up to ``count`` BGR images from ``path`` (sub-folders interleaved) through ``FolderSource``;
    ``one_face``: only those in which the configured detector back-end finds one face."""
    folders = image_folders(path)  # the same rule as djsmile run
    if not folders:
        FolderSource(path, cfg)  # raises its own "has no images" SourceError
        raise SourceError(f"source folder {str(path)!r} has no images")
    sources = [FolderSource(d, cfg) for d in folders]
    iters = [iter(s) for s in sources]
    detector = make_detector(cfg.detector) if one_face else None
    W, H = int(cfg.camera.width), int(cfg.camera.height)
    images, scanned = [], 0
    limit = max(count * 40, 200)
    try:
        while len(images) < count and iters and scanned < limit:
            for it in list(iters):
                try:
                    fr = next(it, None)
                except DataError:  # a sub-folder none of whose images reads: the others may
                    fr = None
                if fr is None:
                    iters.remove(it)
                    continue
                scanned += 1
                if detector is not None:
                    canvas = PhotoStream([fr.color()], W, H, 1, 1.0).frame_at(0)
                    if len(detector.detect(canvas.gray, canvas.color())) != 1:
                        continue
                images.append(fr.color())
                if len(images) >= count:
                    break
    finally:
        for s in sources:
            s.close()
    if not images:
        raise SourceError(f"source folder {str(path)!r}: no image with exactly one face among the "
                          f"{scanned} tried" if one_face else f"source folder {str(path)!r} has no readable images")
    names = ", ".join(d.name for d in folders) if len(folders) > 1 else str(path)
    desc = (f"{len(images)} images from {path}" + (f" ({names} interleaved)" if len(folders) > 1 else "")
            + (f", exactly one face each ({scanned} scanned)" if one_face else ""))
    if len(images) < count:
        log.info("only %d usable images for %d needed: the stream repeats them", len(images), count)
    return images, desc


def open_feed(spec, cfg, *, frames_needed: int, hold: int, one_face: bool = False):
    """The frames to time, from a ``--source`` value."""
    if spec is None or str(spec).strip() == "":
        if pi_camera_present():
            spec = "camera"
        else:
            raise SourceError("no --source given and no Pi camera here: pass --source DIR (an image folder, "
                              "e.g. ../shared/datasets/djsmile/photos), --source VIDEO or --source camera")
    spec = str(spec).strip()
    if spec.lower() in PI_SPECS or spec.isdigit() or "://" in spec:  # a camera: opened as 'djsmile run' opens it
        try:
            return LiveStream(open_source(spec, cfg))
        except SourceError as e:
            if spec.lower() in PI_SPECS:
                raise type(e)(f"--source {spec}: {e}") from None
            raise
    p = Path(spec).expanduser()
    if p.is_dir():
        n = max(1, math.ceil(frames_needed / hold))
        images, desc = load_folder_images(p, cfg, min(n, MAX_IMAGES), one_face=one_face)
        return PhotoStream(images, cfg.camera.width, cfg.camera.height, hold, cfg.camera.fps,
                           name=f"{desc}, each held {hold} frames, {cfg.camera.width}x{cfg.camera.height}")
    if p.is_file():
        return VideoStream(str(p), cfg)
    raise SourceError(f"source {spec!r} not found: no such file or folder (use camera, an image folder or a video)")


class PacedFeed(Source):
    """``n`` frames from a feed iterator, frame ``i`` ready at ``start + i / fps``, like a camera.

    Each frame is stamped ``captured`` = the time it was due, so a feeder
    thread running late counts against the loop, as a camera's timestamp would.
    """

    finite = False
    name = "paced feed"

    def __init__(self, frames: Iterator[Frame], fps: float, n: int):
        self.frames, self.fps, self.n = frames, float(fps), int(n)
        self._stop = threading.Event()

    def __iter__(self) -> Iterator[Frame]:
        start = time.perf_counter()
        for i in range(self.n):
            fr = next(self.frames)
            due = start + i / self.fps
            delay = due - time.perf_counter()
            if delay > 0 and self._stop.wait(delay):
                return
            yield dataclasses.replace(fr, captured=due)

    def close(self) -> None:
        self._stop.set()
