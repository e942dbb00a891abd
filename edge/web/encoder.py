"""The live view's JPEG encoder: one thread, only while someone watches, at most ``web.stream_fps``.

:meth:`Encoder.submit` is called by the frame loop on every frame and only
stores references (frame, result, fps) under a lock: no copy, no drawing, no
encoding in the loop thread. (Sources yield fresh arrays per frame; the
encoder only reads them.) The encoder thread draws the overlay on a copy of the
frame's colour image (``Frame.color()``; analysis stays on gray), JPEG-encodes
it and publishes it to the :class:`~.stream.Broadcaster`, at most ``stream_fps``
times a second and ONLY while the broadcaster has a viewer; with no viewer it
sleeps on a condition variable. It runs at a lower scheduling priority (nice
+10) where the OS allows.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import cv2

from .overlay import frame_image, render_overlay
from .stream import Broadcaster

log = logging.getLogger(__name__)


class Encoder:
    """Draws and encodes the newest frame for the broadcaster's viewers."""

    def __init__(self, stream: Broadcaster, stream_fps: float, quality: int):
        self.stream = stream
        self.interval = 1.0 / float(stream_fps)
        self.quality = int(quality)
        self._cond = threading.Condition()
        self._latest = None          # (frame, result, fps): references only
        self._seq = 0                # submit() count
        self._done = -1              # the last seq encoded (or given up on)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: JPEG frames encoded so far (tests and benchmarks read it).
        self.frames_encoded = 0

    # -- the loop's side ------------------------------------------------------------
    def submit(self, frame, result, fps: float) -> None:
        """Store references to the newest frame and result. Cheap: no copy, no encoding."""
        with self._cond:
            self._latest = (frame, result, float(fps))
            self._seq += 1
            if self.stream.viewers:
                self._cond.notify()

    @property
    def latest(self):
        """(frame, result, fps) of the newest frame submitted, or None."""
        with self._cond:
            return self._latest

    @property
    def seq(self) -> int:
        """Frames submitted so far (the newest frame's number; 0 = none yet)."""
        return self._seq

    def wake(self) -> None:
        """A viewer arrived: encode now if a frame waits."""
        with self._cond:
            self._cond.notify()

    # -- life cycle -----------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="web-encoder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    # -- the thread -----------------------------------------------------------------
    def _idle(self) -> bool:
        return self.stream.viewers == 0 or self._latest is None or self._seq == self._done

    def _run(self) -> None:
        try:  # Linux: a thread is a task; be nicer than the frame loop.
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        next_t = 0.0
        params = [int(cv2.IMWRITE_JPEG_QUALITY), self.quality]
        failed_once = False
        while not self._stop.is_set():
            with self._cond:
                while not self._stop.is_set() and self._idle():
                    self._cond.wait(timeout=1.0)
                if self._stop.is_set():
                    return
            delay = next_t - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            with self._cond:            # take the newest after the rate-cap pause
                if self.stream.viewers == 0:
                    continue
                (frame, result, fps), seq = self._latest, self._seq
            next_t = time.monotonic() + self.interval
            try:
                img = render_overlay(frame_image(frame), result, fps)
                ok, buf = cv2.imencode(".jpg", img, params)
                if not ok:
                    raise RuntimeError("cv2.imencode returned False")
            except Exception:  # keep the loop and the server alive; log the first one fully
                if not failed_once:
                    log.exception("live view: could not draw/encode a frame")
                    failed_once = True
                with self._cond:
                    self._done = seq   # do not retry the same frame
                continue
            with self._cond:
                self._done = seq
                self.frames_encoded += 1
            self.stream.publish(buf.tobytes(), seq)
