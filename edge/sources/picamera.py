"""The Raspberry Pi camera through picamera2 (imported only when used): ``PiCamera2Source``, the
stream formats it reads (``stream_to_bgr``) and ``pi_camera_present``."""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from typing import Iterator

import cv2
import numpy as np

from ..errors import NoCameraError, SourceError
from .base import Source
from .frame import Frame

log = logging.getLogger(__name__)

#: the --source names of the Pi camera (run, bench, calibrate)
PI_SPECS = {"camera", "pi", "picamera", "picamera2", "libcamera"}


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
    holds_requests = True
    _closed = True   # until opened

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
        if self._closed:
            return
        self._closed = True
        self._release()
        self._close_cam()
