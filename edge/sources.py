"""Frame sources behind one small interface: Pi camera, OpenCV (webcam or video file), image folder.

Every source yields :class:`Frame` objects: a 2-D uint8 gray analysis image,
the frame's index from the start of the run, its stream time in seconds, a
way to get the full-resolution colour still (only when a photo is taken) and
the colour image at the analysis size (:meth:`Frame.color`, for the live view;
made only when asked for; on the Pi from the lores YUV420 frame's chroma).

* :class:`PiCamera2Source` — ``picamera2`` (imported only when used): a
  ``lores`` YUV420 (or NV12) stream at the analysis size (its Y plane, with the
  row stride removed, is the gray frame) and the full-resolution ``main`` stream
  for stills, in whatever format the camera configured (RGB888 asked for;
  BGR888, XRGB8888, XBGR8888, NV12, YUV420 converted). Stream time is the
  sensor timestamp.
* :class:`OpenCVSource` — ``cv2.VideoCapture``: a webcam index (stream time
  from the monotonic clock), a video file (its own timestamps) or a live stream URL (the monotonic
  clock: an HTTP MJPEG stream has no timestamps, and FFmpeg's default 25 fps would be wrong).
* :class:`FolderSource` — the images in a folder, sorted by name (numbers in
  names compare as numbers: ``2.jpg`` before ``10.jpg``); frame ``i`` is at
  ``i / camera.fps`` seconds.

:func:`open_source` picks one from a ``--source`` string. :class:`ThreadedSource`
reads a camera on its own thread: the loop always gets the newest frame, and
frames it had no time for are dropped (and counted) instead of queueing up.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from .errors import DataError, NoCameraError, SourceError, SourceNotFoundError
from .preprocess import to_gray

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
PI_SPECS = {"camera", "pi", "picamera", "picamera2", "libcamera"}  # --source names of the Pi camera (run, bench, calibrate)
#: an image in a folder source above this many pixels is read reduced (JPEG) or skipped
MAX_IMAGE_PIXELS = 40_000_000


@dataclass
class Frame:
    """One analysis frame."""
    gray: np.ndarray          # 2-D uint8 analysis image (Pi: lores Y plane, stride removed)
    index: int                # 0-based frame index from the start of the run
    t: float                  # stream time in seconds
    still_fn: Callable[[], np.ndarray] | None = None   # lazily returns the full-res BGR still
    color_fn: Callable[[], np.ndarray] | None = None   # lazily returns the BGR image (any size)
    captured: float | None = None   # time.perf_counter() when the frame was taken (capture thread, bench)
    release_fn: Callable[[], None] | None = None       # gives a held camera buffer back
    new_scene: bool = False   # nothing carries over from the frame before (a new image in a folder)

    def still(self) -> np.ndarray:
        """The full-resolution BGR uint8 still (falls back to the gray frame as BGR)."""
        if self.still_fn is not None:
            try:
                img = self.still_fn()
            except Exception as e:  # a failed still must not lose the shot
                log.warning("full-resolution still failed (%s); saving the analysis frame", e)
                img = None
            if img is not None:
                return _to_bgr(img)
        return cv2.cvtColor(self.gray, cv2.COLOR_GRAY2BGR)

    def color(self) -> np.ndarray:
        """The BGR uint8 image at the analysis size (made once, when first asked for).

        From ``color_fn`` (OpenCV sources: the frame as read; the Pi: the
        lores YUV420 frame converted), else the still scaled, else the gray
        frame as BGR.
        """
        cached = getattr(self, "_color", None)
        if cached is not None:
            return cached
        img = None
        fn = self.color_fn or self.still_fn
        if fn is not None:
            try:
                img = fn()
            except Exception as e:
                log.debug("colour frame failed (%s); showing the gray one", e)
        if img is None:
            out = cv2.cvtColor(self.gray, cv2.COLOR_GRAY2BGR)
        else:
            out = _to_bgr(img)
            h, w = self.gray.shape[:2]
            if out.shape[:2] != (h, w):
                out = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)
        self._color = out
        return out

    def release(self) -> None:
        """Give a held camera buffer back (a no-op for most sources; idempotent)."""
        fn, self.release_fn = self.release_fn, None
        if fn is not None:
            try:
                fn()
            except Exception:  # pragma: no cover - a camera already stopped
                pass


class Source:
    """Base class: iterate for frames; ``close()`` (or ``with``) releases the device."""

    name: str = "source"
    finite: bool = False
    total_frames: int | None = None   # frames a finite source will give, when known (progress lines)

    def __iter__(self) -> Iterator[Frame]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def _to_bgr(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    return img


# --------------------------------------------------------------------------- Pi camera
def _import_picamera2():
    try:
        from picamera2 import Picamera2  # type: ignore
    except Exception as e:  # ImportError, or libcamera missing underneath
        raise SourceError(f"the Pi camera needs picamera2 ({type(e).__name__}: {e}); "
                          "install it with 'sudo apt install python3-picamera2'") from None
    return Picamera2


def pi_camera_present(picamera2_cls=None) -> bool:
    """True if picamera2 imports and reports at least one camera.

    Raises :class:`SourceError` when picamera2 is installed but does not import (e.g. a
    pip numpy 2 shadowing apt's numpy): "no camera found" would hide the real fault.
    """
    if picamera2_cls is None:
        try:
            from picamera2 import Picamera2 as picamera2_cls  # type: ignore
        except Exception as e:
            if importlib.util.find_spec("picamera2") is None:
                return False
            raise SourceError(f"picamera2 is installed but failed to import: {type(e).__name__}: {e} "
                              "(a pip numpy over apt's? reinstall with 'make run' or "
                              "systemd/install.sh, which keep apt's numpy)") from None
    try:
        return bool(picamera2_cls.global_camera_info())
    except Exception:
        return False


#: what PiCamera2Source reads, per stream (picamera2's names; libcamera's RGB888 is B, G, R in memory)
MAIN_FORMATS = ("RGB888", "BGR888", "XRGB8888", "XBGR8888", "NV12", "YUV420")
LORES_FORMATS = ("YUV420", "NV12")
_RGB_BYTES = {"RGB888": 3, "BGR888": 3, "XRGB8888": 4, "XBGR8888": 4}


def _yuv_planes(arr: np.ndarray, fmt: str, width: int, height: int, stride: int) -> np.ndarray:
    """A YUV420 or NV12 stream array as a contiguous ``(height * 3 // 2, width)`` I420 or NV12 image.

    ``arr`` is what picamera2's ``make_array`` gives: ``(height * 3 // 2, W)`` where ``W`` is the
    stride (YUV420; NV12 in older picamera2) or the width (NV12: picamera2 0.3.3x cuts the padding),
    or the flat buffer (``stride`` bytes a row). NV12's interleaved UV rows are as wide as the Y
    rows; YUV420's U and V rows are ``W / 2`` bytes, two to an array row.
    """
    h, w = height, width
    if arr.ndim == 1:
        arr = arr[: stride * h * 3 // 2].reshape(h * 3 // 2, stride)
    if arr.ndim != 2 or arr.shape[0] < h * 3 // 2 or arr.shape[1] < w:
        raise ValueError(f"a {fmt} {w}x{h} array cannot be {arr.shape}")
    if fmt == "NV12":
        return np.ascontiguousarray(arr[: h * 3 // 2, :w])
    row = arr.shape[1]
    cw, ch = row // 2, h // 2
    chroma = np.ascontiguousarray(arr[h: h + h // 2]).reshape(-1)
    u = chroma[: cw * ch].reshape(ch, cw)[:, : w // 2]
    v = chroma[cw * ch: 2 * cw * ch].reshape(ch, cw)[:, : w // 2]
    return np.concatenate([arr[:h, :w].reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(h * 3 // 2, w)


def stream_to_bgr(arr: np.ndarray, fmt: str, size, stride: int = 0) -> np.ndarray:
    """A picamera2 stream array in format ``fmt`` (one of :data:`MAIN_FORMATS`) as a BGR uint8 image.

    ``size`` is the stream's (width, height) and ``stride`` its bytes per row (from
    ``camera_configuration()``), used when the array still carries the row padding.
    """
    w, h = int(size[0]), int(size[1])
    if fmt in ("NV12", "YUV420"):
        img = _yuv_planes(arr, fmt, w, h, stride or w)
        return cv2.cvtColor(img, cv2.COLOR_YUV2BGR_NV12 if fmt == "NV12" else cv2.COLOR_YUV2BGR_I420)
    bpp = _RGB_BYTES.get(fmt)
    if bpp is None:
        raise ValueError(f"stream format {fmt!r} is not one of {', '.join(MAIN_FORMATS)}")
    if arr.ndim == 1:  # the flat buffer
        arr = arr[: (stride or w * bpp) * h].reshape(h, stride or w * bpp)
    if arr.ndim == 2:  # rows of bytes, maybe padded
        arr = np.ascontiguousarray(arr[:h, : w * bpp]).reshape(h, w, bpp)
    if arr.shape[:2] != (h, w) or arr.shape[2] != bpp:
        raise ValueError(f"a {fmt} {w}x{h} array cannot be {arr.shape}")
    if fmt == "RGB888":     # B, G, R in memory: OpenCV's order
        return arr
    if fmt == "BGR888":     # R, G, B
        return cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    if fmt == "XRGB8888":   # B, G, R, X
        return np.ascontiguousarray(arr[:, :, :3])
    return cv2.cvtColor(arr, cv2.COLOR_RGBA2BGR)  # XBGR8888: R, G, B, X


class PiCamera2Source(Source):
    """The Raspberry Pi camera through picamera2.

    Two streams: ``main`` at the still size (default the sensor's full
    resolution; ``camera.still_width/still_height`` to choose) in ``RGB888``
    (BGR byte order, as OpenCV wants) and ``lores`` at the analysis size in
    ``YUV420``. A lores YUV420 array is ``(height * 3 // 2, stride)``: the
    first ``height`` rows are the Y plane; columns past ``width`` are padding.
    The camera may configure other formats than those asked for (libcamera's
    virtual camera gives NV12 only): the formats, sizes and strides are read
    back from ``camera_configuration()``; main ``RGB888``, ``BGR888``,
    ``XRGB8888``, ``XBGR8888``, ``NV12`` or ``YUV420`` becomes a BGR still,
    lores ``YUV420`` or ``NV12`` the gray frame and the colour live view; any
    other format is refused at start (:class:`SourceError`, exit 69).

    Each frame holds its camera request until the next frame is taken, so a
    still grabbed for that frame is the same exposure as its gray image.
    A full-resolution ``main`` may cap the frame rate at the sensor mode's
    (e.g. about 14 fps for Camera Module 3, 10 fps for the HQ camera) and
    needs large buffers; set a smaller still size (e.g. 2304x1296) for more
    frames per second. The analysis size keeps the stills' shape (16:9
    stills and ``camera.width = 640`` give 640x360 analysis frames).
    """

    finite = False

    def __init__(self, cfg, picamera2_cls=None, camera_num: int = 0):
        cam = cfg.camera
        Picamera2 = picamera2_cls or _import_picamera2()
        try:
            info = Picamera2.global_camera_info()
        except Exception as e:
            raise SourceError(f"the Pi camera cannot be listed: {e}") from None
        if not info or camera_num >= len(info):
            raise NoCameraError("no Pi camera found (picamera2 lists none); check the ribbon cable, "
                                "or try --source 0 for a webcam")
        try:
            self.picam2 = Picamera2(camera_num)
        except Exception as e:
            raise SourceError(f"the Pi camera cannot be opened ({e}); is another program using it?") from None
        self.width, self.height = int(cam.width) & ~1, int(cam.height) & ~1
        try:
            sensor = tuple(int(v) for v in self.picam2.sensor_resolution)
        except Exception:
            sensor = (self.width, self.height)
        still = (int(cam.still_width) or sensor[0], int(cam.still_height) or sensor[1])
        # Both streams show the same field of view: a lores of another shape would squash faces.
        if abs(self.width / self.height - still[0] / still[1]) > 0.02 * still[0] / still[1]:
            h = int(round(self.width * still[1] / still[0])) & ~1
            log.info("Pi camera: analysis frames %dx%d instead of %dx%d, to keep the stills' %dx%d shape",
                     self.width, h, self.width, self.height, still[0], still[1])
            self.height = h
        still = (max(still[0], self.width), max(still[1], self.height))  # lores must not exceed main
        # Full-resolution RGB buffers are big (a 12 MP frame is 36 MB): fewer of them.
        buffers = 4 if still[0] * still[1] <= 2_100_000 else 3
        try:
            config = self.picam2.create_video_configuration(
                main={"size": still, "format": "RGB888"},
                lores={"size": (self.width, self.height), "format": "YUV420"},
                controls={"FrameRate": float(cam.fps)},
                buffer_count=buffers)
            self.picam2.configure(config)
            # What the camera configured, which may not be what was asked for (libcamera adjusts a
            # format or size it cannot give, e.g. an RGB888 main to NV12): read it back.
            actual = self.picam2.camera_configuration()
            main, lores = actual.get("main"), actual.get("lores")
        except Exception as e:
            self._close_cam()
            raise SourceError(f"the Pi camera cannot be configured for {self.width}x{self.height} "
                              f"analysis + {still[0]}x{still[1]} stills ({e}); try smaller "
                              "camera.still_width / camera.still_height") from None
        self._check_formats(main, lores)
        self.width, self.height = (int(v) for v in lores["size"])
        self.lores_format = str(lores["format"])
        self.stride = int(lores.get("stride") or self.width)
        self.still_size = tuple(int(v) for v in main["size"])
        self.main_format = str(main["format"])
        self.main_stride = int(main.get("stride") or 0)
        for name, asked, got in (("main", "RGB888", self.main_format), ("lores", "YUV420", self.lores_format)):
            if got != asked:
                log.info("Pi camera: %s stream is %s (asked for %s): converted", name, got, asked)
        try:
            self.picam2.start()
        except Exception as e:
            self._close_cam()
            raise SourceError(f"the Pi camera cannot be started ({e}); is another program using it?") from None
        model = info[camera_num].get("Model", "camera") if isinstance(info[camera_num], dict) else "camera"
        self.name = (f"picamera2:{camera_num} ({model}, lores {self.width}x{self.height} stride {self.stride}, "
                     f"stills {self.still_size[0]}x{self.still_size[1]})")
        self._closed = False
        self._req = None
        #: each frame holds its request until ``Frame.release()`` (set by ThreadedSource, which
        #: releases the frames it drops and each frame once the loop takes the next)
        self.frames_hold_requests = False
        self._held: set = set()
        self._lock = threading.Lock()

    def _check_formats(self, main, lores) -> None:
        """Refuse (exit 69, one line) a stream format this source cannot read, before any frame."""
        bad = []
        if not main or main.get("format") not in MAIN_FORMATS:
            bad.append(f"main stream {main.get('format') if main else None!r} "
                       f"(djsmile reads {', '.join(MAIN_FORMATS)})")
        if not lores or lores.get("format") not in LORES_FORMATS:
            bad.append(f"lores stream {lores.get('format') if lores else None!r} "
                       f"(djsmile reads {', '.join(LORES_FORMATS)})")
        if bad:
            self._close_cam()
            raise SourceError(f"the Pi camera gave a frame format djsmile cannot read: {'; '.join(bad)}")

    def gray_from_lores(self, arr: np.ndarray) -> np.ndarray:
        """The Y plane of a lores YUV420 or NV12 array, stride padding removed."""
        if arr.ndim == 1:
            arr = arr[: self.stride * self.height].reshape(self.height, self.stride)
        return arr[: self.height, : self.width]

    def bgr_from_lores(self, arr: np.ndarray) -> np.ndarray:
        """The lores YUV420 or NV12 array as BGR at the analysis size (the small colour stream).

        The array is our own copy, so this may run on any thread after the
        request is gone. With a stride, each YUV420 chroma row is ``stride / 2``
        bytes (two per ``stride``-wide array row).
        """
        return stream_to_bgr(arr, self.lores_format, (self.width, self.height), self.stride)

    def bgr_from_main(self, arr: np.ndarray) -> np.ndarray:
        """A ``main`` stream array, whatever format the camera configured, as the BGR still."""
        return stream_to_bgr(arr, self.main_format, self.still_size, self.main_stride)

    def _release(self):
        req, self._req = self._req, None
        with self._lock:
            reqs, self._held = list(self._held), set()
        for r in ([req] if req is not None else []) + reqs:
            try:
                r.release()
            except Exception:  # pragma: no cover
                pass

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        t0_ns = None
        t0_mono = time.monotonic()
        try:
            while not self._closed:
                if not self.frames_hold_requests:
                    self._release()
                req = self.picam2.capture_request()
                held = {"req": req}
                if self.frames_hold_requests:
                    with self._lock:
                        self._held.add(req)
                else:
                    self._req = req
                arr = req.make_array("lores")
                gray = np.ascontiguousarray(self.gray_from_lores(arr))
                try:
                    ts = int(req.get_metadata().get("SensorTimestamp") or 0)
                except Exception:
                    ts = 0
                if ts:
                    t0_ns = ts if t0_ns is None else t0_ns
                    t = (ts - t0_ns) / 1e9
                else:
                    t = time.monotonic() - t0_mono
                yield Frame(gray, index, t, self._still_for(req, held),
                            color_fn=lambda a=arr: self.bgr_from_lores(a),
                            release_fn=self._release_fn(req, held) if self.frames_hold_requests else None)
                index += 1
        finally:
            self._release()

    def _holds(self, req, held) -> bool:
        if self.frames_hold_requests:
            return held.get("req") is req and not self._closed
        return self._req is req

    def _still_for(self, req, held):
        def still():
            if self._holds(req, held):  # still held: the same exposure as the gray frame
                return self.bgr_from_main(req.make_array("main"))
            return self.bgr_from_main(self.picam2.capture_array("main"))
        return still

    def _release_fn(self, req, held):
        def release():
            with self._lock:
                if held.pop("req", None) is None:
                    return
                self._held.discard(req)
            try:
                req.release()
            except Exception:  # pragma: no cover
                pass
        return release

    def _close_cam(self):
        for step in ("stop", "close"):
            try:
                getattr(self.picam2, step)()
            except Exception:
                pass

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._release()
        self._close_cam()


# --------------------------------------------------------------------------- OpenCV
def redact_url(text):
    """A source as it may be logged or shown: ``rtsp://user:pass@cam/x`` -> ``rtsp://***@cam/x``."""
    return re.sub(r"(?<=://)[^/@\s]*@", "***@", text) if isinstance(text, str) else text


class OpenCancelled(Exception):
    """A stop was asked (``cancel`` set) while a source was still opening."""


NOT_A_VIDEO_HINT = "give a video file (e.g. .mp4, .avi, .mkv), an image, an image folder or a webcam index"


def file_kind(path) -> str:
    """What a file is by its content, not its name: ``'image'`` (OpenCV knows its signature),
    ``'text'`` (no NUL byte and UTF-8 in its first 8 KB), ``'empty'``, or ``'other'`` (a video, maybe)."""
    with open(path, "rb") as f:
        head = f.read(8192)
    if not head:
        return "empty"
    if cv2.haveImageReader(str(path)):
        return "image"
    if b"\0" in head:
        return "other"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:   # not a multi-byte character cut at the end of the 8 KB
            return "other"
    return "text"


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
            colour = (lambda im=img: im if im.ndim == 3 else None)
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


class FrameReader:
    """Pull frames from a source on a daemon thread, one at a time, only when asked.

    ``next(stop)`` returns the source's next frame, or None when the source
    ended or ``stop`` was set while waiting (the caller can stop even if the
    source is stuck inside a blocking call). Frames are not read ahead: the
    source is driven exactly as a plain ``for`` loop would (a Pi camera
    request stays held until the next frame is asked for). An exception of
    the source is raised here.
    """

    POLL_S = 0.05

    def __init__(self, source: Source):
        self.source = source
        self._it = iter(source)
        self._want = threading.Semaphore(0)
        self._got: queue.Queue = queue.Queue()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="djsmile-frames", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._want.acquire()
            if self._stopped:
                return
            try:
                frame = next(self._it)
            except StopIteration:
                self._got.put(("end", None))
                return
            except BaseException as e:  # handed to the caller
                self._got.put(("error", e))
                return
            self._got.put(("frame", frame))

    def next(self, stop: threading.Event | None = None) -> Frame | None:
        if self._stopped:
            return None
        self._want.release()
        while True:
            try:
                kind, value = self._got.get(timeout=self.POLL_S)
            except queue.Empty:
                if stop is not None and stop.is_set():
                    return None
                continue
            if kind == "frame":
                return value
            self._stopped = True
            if kind == "error":
                raise value
            return None

    def finish(self, timeout: float = 0.2) -> bool:
        """Let the reading thread end; False if it is still inside the source after ``timeout`` s
        (a stalled stream: it is a daemon thread and ends with the process)."""
        self._stopped = True
        self._want.release()
        self._thread.join(timeout)
        return not self._thread.is_alive()


# --------------------------------------------------------------------------- folder
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


_PIL_LOCK = threading.Lock()
_HEADER_BYTES = 64 * 1024          # enough for every header but a JPEG's, whose segments are skipped by seeking
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(f) -> tuple[int, int] | None:
    """Walk a JPEG's marker segments (seeking over them) to its frame header (SOF)."""
    f.seek(2)
    for _ in range(10000):
        b = f.read(1)
        while b and b != b"\xff":          # garbage between segments: skip to the next marker
            b = f.read(1)
        while b == b"\xff":                 # fill bytes
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            continue
        if marker == 0xD9:
            return None
        seg = f.read(2)
        if len(seg) < 2:
            return None
        length = int.from_bytes(seg, "big")
        if marker in _JPEG_SOF:
            head = f.read(5)
            if len(head) < 5:
                return None
            h, w = int.from_bytes(head[1:3], "big"), int.from_bytes(head[3:5], "big")
            return (w, h) if w and h else None
        if length < 2:
            return None
        f.seek(length - 2, os.SEEK_CUR)
    return None


def _tiff_size(head: bytes) -> tuple[int, int] | None:
    order = "little" if head[:2] == b"II" else "big"
    u = lambda b: int.from_bytes(b, order)  # noqa: E731
    big = u(head[2:4]) == 43                 # BigTIFF
    ifd = u(head[8:16]) if big else u(head[4:8])
    count_size, entry_size = (8, 20) if big else (2, 12)
    if ifd + count_size > len(head):
        return None
    n = u(head[ifd:ifd + count_size])
    dims = {}
    for i in range(min(n, 512)):
        e = ifd + count_size + i * entry_size
        if e + entry_size > len(head):
            break
        tag, typ = u(head[e:e + 2]), u(head[e + 2:e + 4])
        if tag in (256, 257):
            val = head[e + (12 if big else 8):e + entry_size]
            dims[tag] = u(val[:2]) if typ == 3 else u(val[:4]) if typ == 4 else u(val[:8]) if typ == 16 else 0
    w, h = dims.get(256, 0), dims.get(257, 0)
    return (w, h) if w and h else None


def _pnm_size(head: bytes) -> tuple[int, int] | None:
    if head[:2] == b"P7":                    # PAM: WIDTH and HEIGHT lines
        fields = dict(ln.split(None, 1) for ln in head.split(b"ENDHDR")[0].decode("latin-1").splitlines()[1:]
                      if len(ln.split(None, 1)) == 2)
        try:
            return int(fields["WIDTH"]), int(fields["HEIGHT"])
        except (KeyError, ValueError):
            return None
    tokens = []
    for ln in head[2:].split(b"\n"):
        tokens += ln.split(b"#", 1)[0].split()
        if len(tokens) >= 2:
            break
    try:
        return int(tokens[0]), int(tokens[1])
    except (IndexError, ValueError):
        return None


def image_header(path) -> tuple[str | None, tuple[int, int] | None]:
    """(format, (width, height)) from the file's first bytes, whatever its name; None for what is unknown.

    Reads no pixels and never trusts the extension: a PNG named ``.jpg`` is a PNG.
    Covers what OpenCV reads in an image folder (JPEG, PNG, BMP, GIF, WebP, TIFF, PNM/PAM,
    PFM, Sun raster, Radiance HDR); a damaged file whose header is whole still tells its size.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER_BYTES)
            if head[:3] == b"\xff\xd8\xff":
                return "jpeg", _jpeg_size(f)
    except OSError:
        return None, None
    le = lambda b: int.from_bytes(b, "little")  # noqa: E731
    be = lambda b: int.from_bytes(b, "big")     # noqa: E731
    size = None
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png", ((be(head[16:20]), be(head[20:24])) if head[12:16] == b"IHDR" else None)
    if head[:2] == b"BM" and len(head) >= 26:
        if le(head[14:18]) == 12:
            size = le(head[18:20]), le(head[20:22])
        else:
            size = abs(int.from_bytes(head[18:22], "little", signed=True)), \
                abs(int.from_bytes(head[22:26], "little", signed=True))
        return "bmp", size
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif", (le(head[6:8]), le(head[8:10]))
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = head[12:16]
        if kind == b"VP8 " and len(head) >= 30:
            size = le(head[26:28]) & 0x3FFF, le(head[28:30]) & 0x3FFF
        elif kind == b"VP8L" and len(head) >= 25:
            bits = le(head[21:25])
            size = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        elif kind == b"VP8X" and len(head) >= 30:
            size = le(head[24:27]) + 1, le(head[27:30]) + 1
        return "webp", size
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff", _tiff_size(head)
    if len(head) >= 2 and head[0:1] == b"P" and head[1:2] in b"1234567":
        return "pnm", _pnm_size(head)
    if head[:2] in (b"PF", b"Pf"):
        return "pfm", _pnm_size(head)
    if head[:4] == b"\x59\xa6\x6a\x95":
        return "sunras", (be(head[4:8]), be(head[8:12]))
    if head[:2] == b"#?":
        m = re.search(rb"\n\n([-+])Y (\d+) ([-+])X (\d+)", head)
        return "hdr", ((int(m.group(4)), int(m.group(2))) if m else None)
    return None, None


def image_size(path) -> tuple[int, int] | None:
    """(width, height) from the file's header (no pixels read), or None if unknown.

    Our own reading of the header first (:func:`image_header`: by content, and it tells the
    size of a damaged file Pillow refuses); then Pillow for the formats it does not know.
    """
    size = image_header(path)[1]
    if size is not None:
        return size
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    with _PIL_LOCK:  # Pillow's own bomb check would refuse to tell the size of a huge image
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(path) as im:
                return int(im.size[0]), int(im.size[1])
        except Exception:
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = saved


class ImageRefused(DataError):
    """An image file read_image will not decode (too big, truncated): skipped in a folder with one warning."""


def image_truncated(path, kind: str | None) -> bool:
    """True when a JPEG lacks its end marker or a PNG its IEND chunk: the file was cut short
    (a copy or a download that stopped). OpenCV would decode what is there and fill the rest."""
    if kind not in ("jpeg", "png"):
        return False
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 4096))
            tail = f.read().rstrip(b"\x00\r\n\t ")     # some writers pad after the end
    except OSError:
        return False
    return not tail.endswith(b"\xff\xd9") if kind == "jpeg" else b"IEND" not in tail[-12:]


class ImageTruncated(ImageRefused):
    """An image file cut short."""


class ImageTooBig(ImageRefused):
    """An image above the pixel cap that cannot be read reduced (or whose size cannot be told)."""


def read_image(path, max_pixels: int = 0) -> np.ndarray | None:
    """``cv2.imread`` (8-bit BGR) with a pixel cap checked on the header, before any decoding.

    The size and the format come from the file's content, never its name. Above
    ``max_pixels`` (0 = no cap) a JPEG is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's own
    reduced decoding, so the full image never exists in memory) with one warning; another
    format, or a file whose size cannot be told from its header, raises :class:`ImageTooBig`;
    a JPEG or PNG cut short (no end marker) raises :class:`ImageTruncated` (OpenCV would decode
    what is there and fill the rest with gray). None when the file is not a readable image.
    """
    path = Path(path)
    kind, size = image_header(path)
    if image_truncated(path, kind):
        raise ImageTruncated(f"{path}: truncated (the {kind.upper()} file ends before its end marker: "
                             "a copy or download cut short)")
    if max_pixels:
        if size is None:
            size = image_size(path)
        if size is None:
            if kind is None:        # neither we nor Pillow know it: not an image (never decoded)
                return None
            raise ImageTooBig(f"{path}: its size cannot be told from its header "
                              f"({kind or 'not a known image format'}); not decoded")
        w, h = size
        if w * h > max_pixels:
            if kind == "jpeg":
                for k, flag in ((2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4),
                                (8, cv2.IMREAD_REDUCED_COLOR_8)):
                    if (w // k) * (h // k) <= max_pixels:
                        break
                if (w // k) * (h // k) <= max_pixels:
                    log.warning("%s: %dx%d is more than %d pixels: decoded at 1/%d size", path, w, h,
                                max_pixels, k)
                    return cv2.imread(str(path), flag)
            raise ImageTooBig(f"{path}: {w}x{h} is more than {max_pixels} pixels "
                              f"({w * h * 3 / 1e6:.0f} MB decoded)")
    return cv2.imread(str(path), cv2.IMREAD_COLOR)  # 8-bit BGR, EXIF orientation applied


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
        self.name = f"{self.path} ({len(self.files)} image{'' if len(self.files) == 1 else 's'}{subs} at {self.fps:g} fps)"
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


# --------------------------------------------------------------------------- capture thread
class ThreadedSource(Source):
    """Reads ``inner`` on its own thread; the loop always gets the newest frame.

    For sources that block until the next frame (the Pi camera, a webcam, a
    stream): while the loop works on one frame, the next is captured; a frame
    the loop had no time for is replaced by a newer one and counted in
    ``dropped`` (never queued, so the loop never works on a stale frame).
    Each frame is stamped with ``captured`` (``time.perf_counter()``). A
    frame's camera buffer is released when it is dropped or when the loop
    takes the next one. Iteration ends when the inner source ends (its error,
    if any, is raised in the loop), on :meth:`close`, or once ``stop_event``
    is set, even while the camera is stuck.
    """

    POLL_S = 0.1   # how often a waiting loop looks at stop_event

    def __init__(self, inner: Source, stop_event: threading.Event | None = None):
        self.inner = inner
        self.name = inner.name
        self.finite = inner.finite
        self.stop_event = stop_event
        self.captured = 0      # frames read from the inner source
        self.dropped = 0       # of them, replaced before the loop took them
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._current: Frame | None = None   # the frame the loop works on
        self._ended = False
        self._error: BaseException | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        if hasattr(inner, "frames_hold_requests"):
            inner.frames_hold_requests = True   # the Pi camera: frames hold their request

    def _read(self) -> None:
        try:
            for frame in self.inner:
                if frame.captured is None:
                    frame.captured = time.perf_counter()
                with self._cond:
                    if self._closed:
                        frame.release()
                        break
                    old, self._slot = self._slot, frame
                    self.captured += 1
                    if old is not None:
                        self.dropped += 1
                    self._cond.notify_all()
                if old is not None:
                    old.release()
        except BaseException as e:  # handed to the loop
            with self._cond:
                self._error = e
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _stopped(self) -> bool:
        return self._closed or (self.stop_event is not None and self.stop_event.is_set())

    def __iter__(self) -> Iterator[Frame]:
        if self._thread is not None:
            raise RuntimeError("a ThreadedSource is iterated once")
        self._thread = threading.Thread(target=self._read, name="capture", daemon=True)
        self._thread.start()
        try:
            while True:
                with self._cond:
                    while self._slot is None and not self._ended and not self._stopped():
                        self._cond.wait(self.POLL_S)
                    if self._stopped():
                        return
                    frame, self._slot = self._slot, None
                    if frame is None:  # ended, nothing left
                        if self._error is not None:
                            raise self._error
                        return
                self._release_current()
                self._current = frame
                yield frame
        finally:
            self._release_current()

    def _release_current(self) -> None:
        cur, self._current = self._current, None
        if cur is not None:
            cur.release()

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            slot, self._slot = self._slot, None
            self._cond.notify_all()
        if slot is not None:
            slot.release()
        self._release_current()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            # the reader sees _closed after its current frame (never close a read under way), unless the
            # inner source's close() is safe during a read (OpenCV: the reading thread releases it)
            t.join(0.1 if getattr(self.inner, "closes_during_read", False) else 1.0)
        self.inner.close()


# --------------------------------------------------------------------------- choice
def _webcam_present(idx: int = 0) -> bool:
    if os.name == "posix" and not os.path.exists(f"/dev/video{idx}"):
        return False
    cap = cv2.VideoCapture(idx)
    try:
        return bool(cap.isOpened())
    finally:
        cap.release()


class LoopSource(Source):
    """A file source (video, image folder, image) played again from the start each time it ends
    (``camera.loop``, ``djsmile run --loop``): frame index and stream time keep rising, so hold,
    cooldown and real-time pacing go on as in one long clip. ``reopen()`` gives a fresh copy of the
    source for each pass; a pass that yields no frame ends the loop."""

    finite = True        # a file: paced by its own time stamps, never wrapped in a capture thread
    looping = True

    def __init__(self, first: Source, reopen: Callable[[], Source]):
        self._current = first
        self._reopen = reopen
        self._closed = False
        self.fps = getattr(first, "fps", 30.0)
        self.still_images = getattr(first, "still_images", False)
        self.passes = 0
        self.name = f"{first.name}, looped"

    def __iter__(self) -> Iterator[Frame]:
        import dataclasses
        index, t_base = 0, 0.0
        while not self._closed:
            got, last_t = 0, 0.0
            for fr in self._current:
                if self._closed:
                    return
                last_t = fr.t
                yield dataclasses.replace(fr, index=index, t=t_base + fr.t)
                index += 1
                got += 1
            self.passes += 1
            if not got or self._closed:
                return
            t_base += last_t + 1.0 / (self.fps or 30.0)
            log.debug("%s: pass %d done, playing it again from the start", self.name, self.passes)
            self._current.close()
            self._current = self._reopen()

    def close(self) -> None:
        self._closed = True
        self._current.close()


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
        if _webcam_present(0):
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
