"""OpenCV's ``VideoCapture``: a webcam, a video file or a stream URL (``OpenCVSource``); opening on a
thread a stop does not wait for; ``redact_url`` for what is logged or shown."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from typing import Iterator

import cv2

from ..errors import DataError, SourceError, SourceNotFoundError
from ..preprocess import to_gray
from .base import Source
from .frame import Frame
from .images import file_kind

log = logging.getLogger(__name__)


def redact_url(text):
    """A source as it may be logged or shown: ``rtsp://user:pass@cam/x`` -> ``rtsp://***@cam/x``."""
    return re.sub(r"(?<=://)[^/@\s]*@", "***@", text) if isinstance(text, str) else text


class OpenCancelled(Exception):
    """A stop was asked (``cancel`` set) while a source was still opening."""


NOT_A_VIDEO_HINT = "give a video file (e.g. .mp4, .avi, .mkv), an image, an image folder or a webcam index"


def _ffmpeg_quiet() -> None:
    """FFmpeg's own messages (e.g. 'moov atom not found' for a file that is no video) are not
    ours to print: OpenCV passes them on only at DEBUG (our one line says what went wrong)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "24" if log.isEnabledFor(logging.DEBUG) else "-8")


def _open_capture(target, cancel: threading.Event | None, poll_s: float = 0.05, timeout_s: float | None = None):
    """``cv2.VideoCapture(target)`` on a daemon thread, so a stop is not held up by a stream that
    hangs while opening (OpenCV waits 30 s). Raises :class:`OpenCancelled` when ``cancel`` is set
    first; the abandoned capture is released by its thread when it finally opens."""
    box: dict = {}
    lock = threading.Lock()
    _ffmpeg_quiet()

    def opener():
        if timeout_s is None:
            cap = cv2.VideoCapture(target)
        else:  # a network stream: OpenCV's open and read time-outs (FFmpeg back-end), not its 30 s default
            ms = int(timeout_s * 1000)
            cap = cv2.VideoCapture(target, cv2.CAP_ANY,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        with lock:
            if box.get("abandoned"):
                cap.release()
            else:
                box["cap"] = cap

    t = threading.Thread(target=opener, name="djsmile-open", daemon=True)
    t.start()
    while True:
        t.join(poll_s)
        with lock:
            if "cap" in box:
                return box["cap"]
            if cancel is not None and cancel.is_set():
                box["abandoned"] = True
                raise OpenCancelled(f"stopped while {redact_url(target)!r} was opening")
        if not t.is_alive():  # pragma: no cover - VideoCapture() itself raised
            raise SourceError(f"source {redact_url(target)!r} cannot be opened by OpenCV")


class OpenCVSource(Source):
    """A webcam (integer index) or a video file / stream URL through ``cv2.VideoCapture``.

    Opening honours ``cancel`` (see :func:`_open_capture`). ``close()`` never
    waits for a read in progress (a stalled stream blocks in OpenCV for up
    to 30 s): the capture is then released by the reading thread when the
    read returns.
    """

    closes_during_read = True  # close() never waits for, nor breaks, a read under way

    def __init__(self, spec, cfg, cancel: threading.Event | None = None):
        cam = cfg.camera
        self.is_webcam = isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit())
        self._lock = threading.Lock()
        self._reading = False
        if self.is_webcam:
            idx = int(spec)
            self.cap = _open_capture(idx, cancel)
            if not self.cap.isOpened():
                self.cap.release()
                raise SourceError(f"webcam {idx} cannot be opened (/dev/video{idx}); "
                                  "check it is plugged in and not in use")
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, int(cam.width))
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, int(cam.height))
            self.cap.set(cv2.CAP_PROP_FPS, float(cam.fps))
            self.finite = False
            self.name = f"webcam {idx}"
        else:
            path = str(spec)
            local = "://" not in path
            if local and not os.path.isfile(path):
                raise SourceNotFoundError(f"source {path!r} not found: no such file or folder")
            if local:   # decided by content, whatever the file is called
                kind = file_kind(path)
                if kind in ("text", "empty"):
                    raise DataError(f"source {path!r} is {'a text' if kind == 'text' else 'an empty'} file, "
                                    f"not a video or image; {NOT_A_VIDEO_HINT}")
            self.cap = _open_capture(path, cancel, timeout_s=None if local else cam.stream_timeout_s)
            if not self.cap.isOpened():
                self.cap.release()
                if local:
                    raise DataError(f"source {path!r} is not a video or image OpenCV can read; {NOT_A_VIDEO_HINT}")
                raise SourceError(f"source {redact_url(path)!r} cannot be opened as a video by OpenCV")
            if int(self.cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") == b"ansi":
                self.cap.release()  # FFmpeg's tty demuxer plays a .txt/.nfo file as an "ANSI art" video
                raise DataError(f"source {path!r} is a text file, not a video or image; {NOT_A_VIDEO_HINT}")
            self.finite = "://" not in path
            self.name = redact_url(path)     # logged and shown on the live view: never a password
            count = self.cap.get(cv2.CAP_PROP_FRAME_COUNT) if self.finite else 0
            self.total_frames = int(count) if count and 0 < count < 1e9 else None
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else float(cam.fps)
        self._closed = False

    def _read(self):
        with self._lock:
            if self._closed:
                return False, None
            self._reading = True
        try:
            return self.cap.read()
        finally:
            with self._lock:
                self._reading = False
                if self._closed:  # closed while we were blocked: the release is ours
                    self.cap.release()

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        t0 = time.monotonic()
        last_t = -1.0
        while not self._closed:
            ok, img = self._read()
            if not ok or img is None:
                if not self.finite and not self._closed:
                    log.warning("%s: no frame (camera unplugged?); stopping", self.name)
                break
            if self.is_webcam or not self.finite:
                # a camera or a live URL: real time. A stream without timestamps (HTTP MJPEG) gets
                # FFmpeg's default 25 fps, so its own clock would run fast or slow (cooldowns, calibration)
                t = time.monotonic() - t0
            else:
                ms = self.cap.get(cv2.CAP_PROP_POS_MSEC)
                t = ms / 1000.0 if ms and ms > 0 else index / self.fps
                if index and t <= last_t:  # a container without usable timestamps
                    t = index / self.fps
            last_t = t
            gray = to_gray(img)
            def colour(im=img):
                return im if im.ndim == 3 else None
            yield Frame(gray, index, t, colour, color_fn=colour)
            index += 1

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._reading:
                return  # the reading thread releases it when its read returns
        self.cap.release()


def webcam_present(idx: int = 0) -> bool:
    """True if webcam ``idx`` (/dev/video<idx>) opens."""
    if os.name == "posix" and not os.path.exists(f"/dev/video{idx}"):
        return False
    cap = cv2.VideoCapture(idx)
    try:
        return bool(cap.isOpened())
    finally:
        cap.release()
