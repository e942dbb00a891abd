"""sd_notify over ``$NOTIFY_SOCKET``: tell systemd we are ready, alive and what we are doing.

Pure standard library (no ``sdnotify`` / ``systemd`` package). The protocol is
one ``KEY=VALUE`` line per datagram, sent to the Unix datagram socket named in
``$NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket). Outside
systemd (no ``$NOTIFY_SOCKET``) every method is a cheap no-op, so the frame
loop calls them unconditionally::

    notifier = Notifier.from_env()
    ...camera and model are up...
    notifier.ready()
    for frame in source:
        ...
        notifier.frame(frame, result, stats)  # a Sink: the watchdog, and the status line every STATUS_EVERY_S
    notifier.stopping()

``frame()`` calls ``watchdog()`` (sends WATCHDOG=1 at most every
WATCHDOG_USEC/2) and ``status(stats.line())`` ("12.3 fps, 1 face, last smile
10:42:07") at most every ``STATUS_EVERY_S``.

The watchdog is what restarts a hung loop: ``WatchdogSec=`` in the unit makes
systemd set ``$WATCHDOG_USEC``; if no ``WATCHDOG=1`` arrives for that long,
systemd kills and restarts the service. ``watchdog()`` is therefore called only
from the frame loop (never from a helper thread that would keep pinging while
the loop is stuck).

A failed send (systemd restarting, a full socket buffer) is logged once and
never raised: notification is best effort and must not stop the loop. A
watchdog ping that failed is retried on the next call.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from .sinks import Sink

log = logging.getLogger(__name__)

__all__ = ["Notifier"]

STATUS_EVERY_S = 5.0       # the STATUS= line (``systemctl status djsmile``) at most this often


def _parse_watchdog(environ) -> float | None:
    """The watchdog interval in seconds, or ``None`` if it is off (or meant for another process)."""
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    if value <= 0:
        return None
    pid = environ.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                # systemd meant the watchdog for another process (e.g. a wrapper that exec'd us
                # under a different PID): do as sd_watchdog_enabled() does and stay quiet.
                log.debug("WATCHDOG_PID=%s is not us (%d): watchdog off", pid, os.getpid())
                return None
        except ValueError:
            log.warning("ignoring WATCHDOG_PID=%r: not an integer", pid)
            return None
    return value / 1e6


def _socket_address(value: str) -> str | bytes | None:
    """``$NOTIFY_SOCKET`` -> an AF_UNIX address (``@name`` -> abstract ``\\0name``)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    # vsock:CID:PORT (VMs) and anything else: not for a Pi service.
    log.warning("NOTIFY_SOCKET=%r is not a Unix socket path: systemd notifications are off", value)
    return None


class Notifier(Sink):
    """sd_notify client; every method is a no-op when ``$NOTIFY_SOCKET`` is not set.

    ``address``: the socket (``/path`` or ``@abstract``), ``None`` = off.
    ``watchdog_s``: systemd's watchdog timeout in seconds (``None`` = no watchdog).
    """

    name = "systemd notify"

    def __init__(self, address: str | None = None, watchdog_s: float | None = None):
        self._next_status: float | None = None
        self._addr = _socket_address(address) if address else None
        self.watchdog_s = watchdog_s if (self._addr is not None and watchdog_s and watchdog_s > 0) else None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._last_ping: float | None = None
        self._warned = False

    @classmethod
    def from_env(cls, environ=None) -> "Notifier":
        """From ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID`` (``environ``: default os.environ)."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        notifier = cls(address, _parse_watchdog(env) if address else None)
        if notifier.enabled:
            log.debug("systemd notify socket %s, watchdog %s", address,
                      f"{notifier.watchdog_s:g} s" if notifier.watchdog_s else "off")
        return notifier

    # -- state -------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notify socket."""
        return self._addr is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between two ``WATCHDOG=1`` pings (half the timeout), ``None`` without a watchdog."""
        return self.watchdog_s / 2.0 if self.watchdog_s else None

    # -- messages ----------------------------------------------------------
    def ready(self) -> bool:
        """``READY=1``: start-up finished (camera and model are up)."""
        return self.send("READY=1")

    def status(self, text: str) -> bool:
        """``STATUS=text``: one line shown by ``systemctl status djsmile``."""
        line = " ".join(str(text).split())  # one line: a newline would start a new KEY=VALUE
        return self.send(f"STATUS={line}")

    def stopping(self) -> bool:
        """``STOPPING=1``: shutting down on purpose (sent before the loop closes the camera)."""
        return self.send("STOPPING=1")

    def watchdog(self, now: float | None = None) -> bool:
        """Call every frame: sends ``WATCHDOG=1`` when half the watchdog timeout has passed.

        ``now``: a monotonic time in seconds (default ``time.monotonic()``).
        Returns True when a ping was sent by this call.
        """
        if self.watchdog_s is None:
            return False
        now = time.monotonic() if now is None else now
        last = self._last_ping
        if last is not None and now - last < self.watchdog_s / 2.0:
            return False
        if self.send("WATCHDOG=1"):
            self._last_ping = now
            return True
        return False  # not recorded: the next frame tries again

    def frame(self, frame, result, stats) -> None:
        """The loop's :class:`~djsmile.sinks.Sink` call: the watchdog ping, and the status line
        (``stats.line()``) at most every ``STATUS_EVERY_S`` seconds."""
        if self._addr is None:
            return
        now = time.monotonic()
        self.watchdog(now)
        if self._next_status is None or now >= self._next_status:
            self._next_status = now + STATUS_EVERY_S
            self.status(stats.line())

    def send(self, message: str) -> bool:
        """Send one raw notification (e.g. ``"RELOADING=1"``); True when it was delivered."""
        if self._addr is None:
            return False
        data = message.encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    # Never block the frame loop on a full socket buffer: drop and retry later.
                    self._sock.setblocking(False)
                self._sock.sendto(data, self._addr)
            except OSError as e:
                if not self._warned:
                    self._warned = True
                    log.warning("cannot notify systemd (%s): %s; continuing without it", message.split("=")[0], e)
                else:
                    log.debug("cannot notify systemd (%s): %s", message, e)
                return False
        if self._warned:
            log.info("systemd notifications delivered again")
            self._warned = False
        return True

    def close(self) -> None:
        """Close the socket (the notifier stays usable: the next send reopens it)."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __enter__(self) -> "Notifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        if not self.enabled:
            return "Notifier(off)"
        return f"Notifier({self._addr!r}, watchdog_s={self.watchdog_s})"
