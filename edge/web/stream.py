"""The MJPEG broadcaster: the newest JPEG, handed to every viewer that is ready for one.

Modelled on picamera2's ``StreamingOutput`` (examples/mjpeg_server.py): the
encoder calls :meth:`Broadcaster.publish`; each viewer's thread calls
:meth:`Broadcaster.wait_newer` with the number of the frame it sent last and
gets the newest one after it. Frames published while a viewer was still
writing are skipped for it (dropped, never queued).

Viewer slots: at most ``max_viewers`` at once. Each viewer sends with a send
timeout; when all slots are taken, a newcomer takes the slot of a viewer stuck
for over ``STALL_S`` in one frame (its socket is shut down, which ends its
thread), so viewers that stop reading never lock new ones out.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time

log = logging.getLogger(__name__)

STALL_S = 1.0                   # a viewer stuck this long in one frame gives its slot to a newcomer


class Viewer:
    """One stream client: its socket, and since when it has been writing the current frame."""

    __slots__ = ("sock", "busy_since", "after")

    def __init__(self, sock, after: int = -1):
        self.sock = sock
        self.after = after         # it wants frames newer than this one (set when it joins)
        self.busy_since = None     # monotonic time the frame being sent started, None between frames

    @contextlib.contextmanager
    def sending(self):
        """Mark the viewer busy while the block writes to it (a viewer stuck here can be evicted)."""
        self.busy_since = time.monotonic()
        try:
            yield
        finally:
            self.busy_since = None


class Broadcaster:
    """The newest JPEG and the viewers waiting for it."""

    def __init__(self, max_viewers: int):
        self.max_viewers = int(max_viewers)
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._seq = -1
        self._closed = False
        self._viewers: list[Viewer] = []

    # -- frames ---------------------------------------------------------------------
    def publish(self, jpeg: bytes, seq: int) -> None:
        """Make ``jpeg`` (showing frame number ``seq``, increasing) the newest; wake the waiting viewers."""
        with self._cond:
            self._jpeg, self._seq = jpeg, int(seq)
            self._cond.notify_all()

    def wait_newer(self, seq: int, timeout: float) -> tuple[int, bytes] | None:
        """(seq, jpeg) of the newest frame after ``seq``; None after ``timeout`` s or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or (self._jpeg is not None and self._seq > seq), timeout)
            if self._closed or self._jpeg is None or self._seq <= seq:
                return None
            return self._seq, self._jpeg

    # -- life cycle -----------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def open(self) -> None:
        with self._cond:
            self._closed = False

    def close(self) -> None:
        """Wake every waiting viewer; :meth:`wait_newer` returns None from now on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- viewer slots ---------------------------------------------------------------
    @property
    def viewers(self) -> int:
        """Viewers connected now (read without a lock: a snapshot)."""
        return len(self._viewers)

    def join(self, sock, after: int = -1) -> Viewer | None:
        """A slot for a new viewer (evicting one stalled for over STALL_S when all are taken), or None: busy."""
        with self._cond:
            if len(self._viewers) >= self.max_viewers:
                now = time.monotonic()
                stalled = [v for v in self._viewers
                           if v.busy_since is not None and now - v.busy_since > STALL_S]
                if not stalled:
                    return None
                worst = min(stalled, key=lambda v: v.busy_since)
                self._viewers.remove(worst)
                log.info("live view: dropped a viewer that stopped reading (%.1f s on one frame) for a new one",
                         now - worst.busy_since)
                try:
                    worst.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            v = Viewer(sock, after)
            self._viewers = self._viewers + [v]     # a new list: `viewers` reads it without the lock
            return v

    def leave(self, viewer: Viewer) -> None:
        with self._cond:
            if viewer in self._viewers:
                self._viewers = [v for v in self._viewers if v is not viewer]
