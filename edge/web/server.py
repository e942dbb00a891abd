"""The live view's server object: wires the encoder, broadcaster, photos and access rules to the HTTP handler."""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import threading
import time
from importlib import resources
from pathlib import Path

from .. import __version__
from ..config import parse_listen
from ..errors import AddressInUseError, TempFailError, UnavailableError
from ..sinks import Sink
from .auth import Access, RateLimit
from .encoder import Encoder
from .handler import Handler, Server
from .photos import PhotoShelf
from .stream import Broadcaster, Viewer

log = logging.getLogger(__name__)

EXTRA_CONNECTIONS = 16     # page loads, status polls, photos and button presses beside the stream viewers
RESERVE_FDS = 64           # file descriptors never used by the live view: photos, event lines, jokes, MQTT
FDS_PER_CONNECTION = 2     # its socket, and a photo file it may be reading


def open_fds() -> int:
    """File descriptors this process has open now (0 when the system does not say)."""
    for d in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(d))
        except OSError:
            continue
    return 0


def connection_cap(max_viewers: int, fd_limit: int | None = None, fds_in_use: int | None = None) -> int:
    """How many connections the live view may hold at once.

    ``max_viewers`` + ``EXTRA_CONNECTIONS``, but never more than the descriptors left under the
    process's limit (``RLIMIT_NOFILE``) after those in use and ``RESERVE_FDS`` for what shots need,
    so no photo or event line is ever lost to the web view. At least 1.
    """
    want = int(max_viewers) + EXTRA_CONNECTIONS
    if fd_limit is None:
        try:
            import resource
            fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (ImportError, OSError, ValueError):
            fd_limit = -1
        if fd_limit < 0:      # RLIM_INFINITY
            return want
    used = open_fds() if fds_in_use is None else int(fds_in_use)
    budget = (int(fd_limit) - used - RESERVE_FDS) // FDS_PER_CONNECTION
    return max(1, min(want, budget))


def load_page() -> bytes:
    """The page's HTML (package data ``static/index.html``)."""
    return resources.files(__package__).joinpath("static", "index.html").read_bytes()


def _public_event(event: dict) -> dict:
    """The event as the page shows it: ``photo`` is the name ``/photos/<name>`` serves, not the server's path."""
    ev = _jsonable(event)
    if isinstance(ev, dict) and ev.get("photo"):
        ev = dict(ev, photo=os.path.basename(str(ev["photo"])))
    return ev


def _jsonable(obj):
    """Make an event dict JSON-safe (numpy scalars, paths, tuples)."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


class WebServer(Sink):
    """The live view. ``start()`` -> URL; the loop calls ``publish()`` each frame; ``stop()`` at the end.

    A :class:`~djsmile.sinks.Sink`: ``frame()`` publishes, ``event()`` notes the event, ``close()`` stops.
    """

    name = "live view"

    def __init__(self, wcfg, *, photo_dir: Path, teller=None, info: dict | None = None,
                 calibration: dict | None = None, calibrator=None):
        self.cfg = wcfg
        #: calibration.json's content (shown; no *Calibrate* button behind it), or None
        self.calibration = calibration
        #: the run's in-loop calibration (a :class:`~djsmile.calibration.session.LoopCalibration`:
        #: ``current``, ``phase``, ``request(origin)``), or None: the *Calibrate* button is 503
        self.calibrator = calibrator
        self.teller = teller
        self.info = dict(info or {})
        self.host, self._port = parse_listen(wcfg.listen)
        self.access = Access(wcfg.token, self.host)
        self.stream = Broadcaster(wcfg.max_viewers)
        self.photos = PhotoShelf(photo_dir, wcfg.photos_shown)
        self.page = load_page()
        self._encoder = Encoder(self.stream, wcfg.stream_fps, wcfg.stream_quality)
        self._jokes = RateLimit(wcfg.joke_interval_s)
        self._calibrations = RateLimit(wcfg.joke_interval_s)
        self._lock = threading.Lock()
        self._last_event = None
        self._events = 0
        self._httpd = None
        self._http_thread: threading.Thread | None = None
        self._started_at = None

    @property
    def photo_dir(self) -> Path:
        return self.photos.folder

    # -- the loop's side ------------------------------------------------------------
    def publish(self, frame, result, fps: float) -> None:
        """Store references to the newest frame and result. Cheap: no copy, no encoding."""
        self._encoder.submit(frame, result, fps)

    def frame(self, frame, result, stats) -> None:
        """The loop's :class:`~djsmile.sinks.Sink` call: :meth:`publish` with the loop's fps."""
        self.publish(frame, result, stats.fps)

    def event(self, event: dict) -> None:
        """Remember the newest event (shown in status.json)."""
        with self._lock:
            self._last_event = event
            self._events += 1

    # -- what one sees from outside -------------------------------------------------
    @property
    def port(self) -> int:
        return self._httpd.server_address[1] if self._httpd else self._port

    @property
    def clients(self) -> int:
        """Stream viewers connected now."""
        return self.stream.viewers

    @property
    def frames_encoded(self) -> int:
        """JPEG frames encoded for the stream so far (tests and benchmarks read it)."""
        return self._encoder.frames_encoded

    @property
    def url(self) -> str:
        host = self.host
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    # -- life cycle -----------------------------------------------------------------
    def start(self) -> str:
        """Bind and serve in background threads; return the URL.

        The config layer has checked ``web.listen`` (syntax; a token when off
        localhost). Raises AddressInUseError / TempFailError (exit 75: the
        service retries) when the port is taken or the address is not up yet,
        UnavailableError (69) when it cannot be bound otherwise.
        """
        handler = type("Handler", (Handler,), {"web": self})
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        cap = connection_cap(self.cfg.max_viewers)
        server_cls = type("Server", (Server,), {"address_family": family, "max_connections": cap})
        try:
            self._httpd = server_cls((self.host, self._port), handler)
        except OSError as e:
            what = f"web.listen = {self.cfg.listen!r} cannot be used: {e.strerror or e}"
            if e.errno == errno.EADDRINUSE:
                raise AddressInUseError(f"{what}; another program listens there: stop it or choose "
                                        "another HOST:PORT") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise TempFailError(f"{what}; this machine has no such address (yet): "
                                    "check the network or choose another HOST") from None
            raise UnavailableError(f"{what}; choose another HOST:PORT") from None
        self._started_at = time.monotonic()
        self.stream.open()
        self._encoder.start()
        self._http_thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.25},
                                             name="web-http", daemon=True)
        self._http_thread.start()
        log.info("live view at %s%s", self.url, " (token required)" if self.access.token_required else "")
        if cap < self.cfg.max_viewers + EXTRA_CONNECTIONS:
            log.warning("live view: at most %d connection(s) at once: the open-file limit (ulimit -n) leaves no "
                        "more beside what photos and events need; raise LimitNOFILE", cap)
        return self.url

    def stop(self) -> None:
        """Stop serving: end streams, the encoder and the listener. Safe to call twice."""
        self.stream.close()
        self._encoder.stop()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._http_thread is not None:
            self._http_thread.join(timeout=2.0)
        self._http_thread = None
        self._httpd = None

    def close(self) -> None:
        """The :class:`~djsmile.sinks.Sink` end of the run: :meth:`stop`."""
        self.stop()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- what the handler uses ------------------------------------------------------
    def open_viewer(self, sock) -> Viewer | None:
        """A stream slot for a new viewer (None: all taken); it gets no frame older than the newest now."""
        viewer = self.stream.join(sock, after=self._encoder.seq - 1)
        if viewer is not None:
            self._encoder.wake()
        return viewer

    def close_viewer(self, viewer: Viewer) -> None:
        self.stream.leave(viewer)

    def status(self) -> dict:
        latest = self._encoder.latest
        with self._lock:
            last_event, events = self._last_event, self._events
        clients = self.stream.viewers
        frame, result, fps = latest if latest else (None, None, 0.0)
        out = {
            "state": result.state if result is not None else "starting",
            "smiling": bool(result.smiling) if result is not None else False,
            "fps": round(float(fps), 2),
            "frame": frame.index if frame is not None else None,
            "t": round(float(frame.t), 3) if frame is not None else None,
            "faces": [f.to_json() for f in result.faces] if result is not None else [],
            "last_event": _public_event(last_event) if last_event is not None else None,
            "events": events,
            "uptime_s": round(time.monotonic() - self._started_at, 1) if self._started_at else 0.0,
            "model": self.info.get("model"),
            "runtime": self.info.get("runtime"),
            "last_joke": self.teller.last_joke if self.teller is not None else None,
            "calibration": self.calibrator.current if self.calibrator is not None else self.calibration,
            "calibrating": self.calibrator.phase if self.calibrator is not None else None,
            "photos": self.photos.recent(),
            "viewers": clients,
            "version": __version__,
        }
        for k, v in self.info.items():
            out.setdefault(k, v)
        return out

    def press_joke(self) -> tuple[int, dict]:
        """The "next joke" button: (HTTP status, JSON body)."""
        if self.teller is None:
            return 503, {"ok": False, "error": "jokes are not available in this run"}
        wait = self._jokes.take()
        if wait > 0:
            return 429, {"ok": False, "error": "too soon", "retry_after_s": round(wait, 1)}
        try:
            told = bool(self.teller.tell())
        except Exception as e:  # the teller must never break the server
            log.warning("live view: teller.tell() failed: %s", e)
            return 500, {"ok": False, "error": "the joke teller failed"}
        return 200, {"ok": told, "busy": not told, "last_joke": self.teller.last_joke}

    def press_calibrate(self) -> tuple[int, dict]:
        """The *Calibrate* button: (HTTP status, JSON body). Same rate limit as the joke button."""
        if self.calibrator is None:
            return 503, {"ok": False, "error": "calibration is not available in this run"}
        wait = self._calibrations.take()
        if wait > 0:
            return 429, {"ok": False, "error": "too soon", "retry_after_s": round(wait, 1)}
        try:
            started = bool(self.calibrator.request("live view"))
        except Exception as e:
            log.warning("live view: starting a calibration failed: %s", e)
            return 500, {"ok": False, "error": "calibration could not start"}
        return 200, {"ok": started, "busy": not started}
