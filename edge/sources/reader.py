"""Reading a source on a thread of its own: ``ThreadedSource`` (a camera read ahead; the loop takes
the newest frame, older ones dropped) and ``FrameReader`` (a stop never waits for a blocked read),
which adds no thread of its own to a ThreadedSource: one reader thread per camera."""

from __future__ import annotations

import queue
import threading
import time
from typing import Iterator

from .base import Source
from .frame import Frame


class FrameReader:
    """Pull frames from a source, one at a time, only when asked, so that a stop never waits for a read.

    ``next(stop)`` returns the source's next frame, or None when the source
    ended or ``stop`` was set while waiting (the caller can stop even if the
    source is stuck inside a blocking call). An exception of the source is raised here.

    A plain source is read on a daemon thread of this reader's, and not read ahead: it is
    driven exactly as a plain ``for`` loop would (a Pi camera request stays held until the next
    frame is asked for). A :class:`ThreadedSource` already reads on a thread of its own and
    returns when ``stop`` is set: this reader adds no second thread and asks it for its newest
    frame on the caller's thread (one reader thread per camera).
    """

    POLL_S = 0.05

    def __init__(self, source: Source):
        self.source = source
        self._stopped = False
        self._thread: threading.Thread | None = None
        if isinstance(source, ThreadedSource):
            return
        self._it = iter(source)
        self._want = threading.Semaphore(0)
        self._got: queue.Queue = queue.Queue()
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
        if self._thread is None:   # a ThreadedSource: its own thread reads
            try:
                frame = self.source.next_frame(stop)
            except BaseException:
                self._stopped = True
                raise
            if frame is None and not (stop is not None and stop.is_set()):
                self._stopped = True   # ended (or closed)
            return frame
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
        (a stalled stream: it is a daemon thread and ends with the process). A ThreadedSource's
        thread is ended by its ``close()``."""
        self._stopped = True
        if self._thread is None:
            return True
        self._want.release()
        self._thread.join(timeout)
        return not self._thread.is_alive()


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
        if inner.holds_requests:
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

    def _stopped(self, stop: threading.Event | None = None) -> bool:
        return (self._closed or (self.stop_event is not None and self.stop_event.is_set())
                or (stop is not None and stop.is_set()))

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._read, name="capture", daemon=True)
            self._thread.start()

    def next_frame(self, stop: threading.Event | None = None) -> Frame | None:
        """The newest frame read, waiting for one; None once the inner source ended, on
        :meth:`close`, or once ``stop_event`` or ``stop`` is set, even while the camera is stuck.
        The frame taken before gives its buffer back. The inner source's error is raised here,
        after the frames read before it."""
        self._start()
        try:
            with self._cond:
                while self._slot is None and not self._ended and not self._stopped(stop):
                    self._cond.wait(self.POLL_S)
                if self._stopped(stop):
                    return None
                frame, self._slot = self._slot, None
                if frame is None:  # ended, nothing left
                    if self._error is not None:
                        raise self._error
                    return None
        finally:
            self._release_current()
        self._current = frame
        return frame

    def __iter__(self) -> Iterator[Frame]:
        if self._thread is not None:
            raise RuntimeError("a ThreadedSource is iterated once")
        try:
            while True:
                frame = self.next_frame()
                if frame is None:
                    return
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
            t.join(0.1 if self.inner.closes_during_read else 1.0)
        self.inner.close()
