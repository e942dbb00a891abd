"""Optional live view in the browser: MJPEG stream, status JSON, joke button, recent photos.

Routes (all GET unless noted):

- ``/``              the page: live stream with face boxes and "NN% smiling", the
                     state (watching / smiling / cooldown), the last joke with a
                     "next joke" button, thumbnails of the newest photos.
- ``/stream.mjpg``   ``multipart/x-mixed-replace`` JPEG stream (newest frame only).
- ``/status.json``   fps, faces (box, p_smile), state, last event, uptime_s, model,
                     runtime, last_joke, photos.
- ``POST /joke``     ``teller.tell()``; at most one per ``web.joke_interval_s`` (429 otherwise).
- ``POST /calibrate`` starts a calibration inside the running loop (``on_calibrate``), with the
                     same guard as ``POST /joke`` (token, origin, one per ``web.joke_interval_s``).
- ``/photos/<name>`` a file from the photo folder (``?thumb=1``: a small JPEG of it).

Why the standard library (``http.server.ThreadingHTTPServer``) and not Flask:
on a Raspberry Pi the live view is an optional extra next to the detector, so
it should cost nothing when unused and little when used. The standard library
adds no dependency to install, pin or audit (Flask pulls in Werkzeug, Jinja2,
itsdangerous, click, blinker), nothing extra to import at start-up, and the
whole server is a few hundred lines we can read. A thread per client is the
right model for a handful of viewers on a home network: an MJPEG client is a
long-lived blocking write loop, which a thread handles simply, and the JPEG
encoding (OpenCV, releases the GIL) happens once per frame in one encoder
thread no matter how many clients watch. We need no templates, sessions or
routing tables beyond five paths.

How the stream stays off the detector's back:

- :meth:`WebServer.publish` is called by the frame loop on every frame and
  only stores references (frame, result, fps) under a lock: no copy, no drawing,
  no encoding in the loop thread. (Sources yield a fresh ``gray`` array per
  frame; the encoder only reads it.)
- One encoder thread draws the overlay on a copy of the frame's colour image
  (``Frame.color()``: the camera's BGR frame, on the Pi the lores YUV420
  frame converted; analysis stays on gray) and JPEG-encodes it, at
  most ``web.stream_fps`` times a second, and ONLY while at least one stream
  client is connected; with no viewer it sleeps on a condition variable.
  It runs at a lower scheduling priority (nice +10) where the OS allows.
- Each client sends the newest JPEG when it is ready for one; frames produced
  while it was still writing are skipped (dropped, never queued).

Access: binds 127.0.0.1 by default. Listening on any other address needs
``web.token``; with a token set, every request must carry it as ``?token=``,
``Authorization: Bearer <token>`` or the cookie set on the first visit with a
valid ``?token=`` (401 otherwise).
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import logging
import mimetypes
import os
import socket
import stat
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import cv2
import numpy as np

from . import __version__
from .config import is_loopback, parse_listen  # noqa: F401  (parse_listen: re-exported)
from .errors import AddressInUseError, TempFailError, UnavailableError

log = logging.getLogger(__name__)

BOUNDARY = "djsmileframe"
COOKIE = "djsmile_token"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
THUMB_WIDTH = 200
_THUMB_CACHE_MAX = 64
_PHOTO_LIST_TTL_S = 2.0
SIDECAR_SUFFIX = ".json"        # djsmile writes <stem>.jpg with <stem>.json beside it
SEND_TIMEOUT_S = 5.0            # a viewer that takes longer to take one frame is dropped
STALL_S = 1.0                   # a viewer stuck this long in one frame gives its slot to a newcomer
STREAM_SNDBUF = 32 * 1024       # small send buffer: a viewer that stops reading is noticed within a frame or two
MAX_POST_BYTES = 65536


# --------------------------------------------------------------------------- helpers

def _host_of(host_header: str) -> str:
    h = host_header.strip()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def _plain_file(st) -> bool:
    """A regular file with one name: not a symlink, FIFO or device, not a hard link to a file elsewhere."""
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1


def is_our_photo(path: Path, st=None) -> bool:
    """True for a photo as djsmile writes it: ``<stem>.jpg`` (a plain file) with its plain ``<stem>.json`` sidecar.

    A hard link dropped into photos/ (to /etc/passwd, say) has ``st_nlink`` > 1,
    a stray file has no sidecar: neither is served.
    """
    if path.name.startswith(".") or not path.name.lower().endswith(PHOTO_SUFFIXES):
        return False
    try:
        return _plain_file(st or os.lstat(path)) and _plain_file(os.lstat(path.with_suffix(SIDECAR_SUFFIX)))
    except OSError:
        return False


def _jsonable(obj):
    """Make an event dict JSON-safe (numpy scalars, paths, tuples)."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def frame_image(frame) -> np.ndarray:
    """What the live view shows of a frame: its colour image (``Frame.color()``), else its gray one."""
    color = getattr(frame, "color", None)
    return color() if callable(color) else frame.gray


def render_overlay(gray: np.ndarray, result, fps: float) -> np.ndarray:
    """A BGR copy of ``gray`` (or of a BGR frame) with face boxes, "NN% smiling" and the state drawn on it."""
    img = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR) if gray.ndim == 2 else gray.copy()
    h, w = img.shape[:2]
    scale = max(0.4, min(w, h) / 600.0)
    thick = max(1, int(round(scale * 2)))
    for face in list(getattr(result, "faces", None) or []):
        x, y, bw, bh = (int(v) for v in face.box)
        p = float(getattr(face, "p_smooth", None) if getattr(face, "p_smooth", None) is not None
                  else face.p_smile)
        color = (60, 200, 60) if getattr(face, "smiling", False) else (0, 165, 255)
        cv2.rectangle(img, (x, y), (x + bw, y + bh), color, thick)
        label = f"{round(100 * p):d}% smiling"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, thick)
        ty = y - 6 if y - th - base - 6 > 0 else min(h - base, y + bh + th + 6)
        cv2.rectangle(img, (x, ty - th - base), (x + tw + 4, ty + base), color, -1)
        cv2.putText(img, label, (x + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0),
                    thick, cv2.LINE_AA)
    state = getattr(result, "state", "") or ""
    banner = f"{state}  {fps:.1f} fps" if state else f"{fps:.1f} fps"
    cv2.putText(img, banner, (8, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale,
                (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, banner, (8, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale,
                (255, 255, 255), thick, cv2.LINE_AA)
    return img


# --------------------------------------------------------------------------- stream viewers

class _Viewer:
    __slots__ = ("sock", "busy_since")

    def __init__(self, sock):
        self.sock = sock
        self.busy_since = None     # monotonic time the frame being sent started, None between frames


class _Viewers:
    """The stream's viewer slots (callers hold the server's lock).

    Each viewer sends frames with a send timeout (``SEND_TIMEOUT_S``); when all
    slots are taken, a newcomer takes the slot of a viewer stuck for over
    ``STALL_S`` in one frame (its socket is shut down, which ends its thread),
    so viewers that stop reading never lock new ones out.
    """

    def __init__(self):
        self._all: list[_Viewer] = []

    def __len__(self) -> int:
        return len(self._all)

    def join(self, sock, max_viewers: int):
        if len(self._all) >= max_viewers:
            now = time.monotonic()
            stalled = [v for v in self._all if v.busy_since is not None and now - v.busy_since > STALL_S]
            if not stalled:
                return None
            worst = min(stalled, key=lambda v: v.busy_since)
            self._all.remove(worst)
            log.info("live view: dropped a viewer that stopped reading (%.1f s on one frame) for a new one",
                     now - worst.busy_since)
            try:
                worst.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        v = _Viewer(sock)
        self._all.append(v)
        return v

    def leave(self, v) -> None:
        if v in self._all:
            self._all.remove(v)


# --------------------------------------------------------------------------- server

class WebServer:
    """The live view. ``start()`` -> URL; the loop calls ``publish()`` each frame; ``stop()`` at the end."""

    def __init__(self, wcfg, *, photo_dir: Path, teller=None, info: dict | None = None,
                 on_calibrate=None, calibration: dict | None = None):
        self.cfg = wcfg
        #: ``on_calibrate() -> bool`` starts a calibration (False: one is under way); None: no button
        self.on_calibrate = on_calibrate
        #: the calibration in use (calibration.json's content) or None
        self.calibration = calibration
        #: ``calibration_phase() -> "neutral" | "smile" | None``: a calibration under way
        self.calibration_phase = None
        self.photo_dir = Path(photo_dir)
        self.teller = teller
        self.info = dict(info or {})
        self.host, self._port = parse_listen(wcfg.listen)
        self._token = wcfg.token or ""
        self._cookie_value = hashlib.sha256(("djsmile:" + self._token).encode()).hexdigest()
        self._lock = threading.Lock()
        self._new_frame = threading.Condition(self._lock)   # encoder waits: a frame / a client arrived
        self._new_jpeg = threading.Condition(self._lock)    # clients wait: a JPEG is ready
        self._latest = None          # (frame, result, fps) — references only
        self._seq = 0                # publish() count
        self._jpeg = None
        self._jpeg_seq = -1
        self._clients = 0            # len(self._viewers), read without the lock
        self._viewers = _Viewers()
        self._last_event = None
        self._events = 0
        self._last_joke_press = None
        self._last_calibrate_press = None
        self._joke_lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = None
        self._threads: list[threading.Thread] = []
        self._started_at = None
        self._photos_cache = (0.0, [])
        self._thumbs: dict = {}
        self._thumb_lock = threading.Lock()
        #: JPEG frames encoded for the stream so far (tests and benchmarks read it).
        self.frames_encoded = 0

    # -- the loop's side ------------------------------------------------------
    def publish(self, frame, result, fps: float) -> None:
        """Store references to the newest frame and result. Cheap: no copy, no encoding."""
        with self._lock:
            self._latest = (frame, result, float(fps))
            self._seq += 1
            if self._clients:
                self._new_frame.notify()

    def note_event(self, event: dict) -> None:
        """Remember the newest event (shown in status.json)."""
        with self._lock:
            self._last_event = event
            self._events += 1

    # -- life cycle ---------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._httpd.server_address[1] if self._httpd else self._port

    @property
    def clients(self) -> int:
        return self._clients

    @property
    def url(self) -> str:
        host = self.host
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def start(self) -> str:
        """Bind and serve in background threads; return the URL.

        The config layer has checked ``web.listen`` (syntax; a token when off
        localhost). Raises AddressInUseError / TempFailError (exit 75: the
        service retries) when the port is taken or the address is not up yet,
        UnavailableError (69) when it cannot be bound otherwise.
        """
        handler = type("Handler", (_Handler,), {"web": self})
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_cls = type("Server", (_Server,), {"address_family": family})
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
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.25},
                             name="web-http", daemon=True),
            threading.Thread(target=self._encoder, name="web-encoder", daemon=True),
        ]
        for t in self._threads:
            t.start()
        log.info("live view at %s%s", self.url, " (token required)" if self._token else "")
        return self.url

    def stop(self) -> None:
        """Stop serving: end streams, the encoder and the listener. Safe to call twice."""
        self._stop.set()
        with self._lock:
            self._new_frame.notify_all()
            self._new_jpeg.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        for t in self._threads:
            t.join(timeout=2.0)
        self._threads = []
        self._httpd = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- encoder thread --------------------------------------------------------------
    def _encoder(self) -> None:
        try:  # Linux: a thread is a task; be nicer than the frame loop.
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        interval = 1.0 / float(self.cfg.stream_fps)
        next_t = 0.0
        quality = [int(cv2.IMWRITE_JPEG_QUALITY), int(getattr(self.cfg, "stream_quality", 70))]
        failed_once = False
        while not self._stop.is_set():
            with self._lock:
                while not self._stop.is_set() and (
                        self._clients == 0 or self._latest is None or self._seq == self._jpeg_seq):
                    self._new_frame.wait(timeout=1.0)
                if self._stop.is_set():
                    return
            delay = next_t - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            with self._lock:            # take the newest after the rate-cap pause
                if self._clients == 0:
                    continue
                (frame, result, fps), seq = self._latest, self._seq
            next_t = time.monotonic() + interval
            try:
                img = render_overlay(frame_image(frame), result, fps)
                ok, buf = cv2.imencode(".jpg", img, quality)
                if not ok:
                    raise RuntimeError("cv2.imencode returned False")
            except Exception:  # keep the loop and the server alive; log the first one fully
                if not failed_once:
                    log.exception("live view: could not draw/encode a frame")
                    failed_once = True
                with self._lock:
                    self._jpeg_seq = seq   # do not retry the same frame
                continue
            with self._lock:
                self._jpeg = buf.tobytes()
                self._jpeg_seq = seq
                self.frames_encoded += 1
                self._new_jpeg.notify_all()

    # -- what the handlers read ------------------------------------------------------
    def status(self) -> dict:
        with self._lock:
            latest, last_event, events, clients = self._latest, self._last_event, self._events, self._clients
        frame, result, fps = latest if latest else (None, None, 0.0)
        faces = []
        for f in list(getattr(result, "faces", None) or []):
            d = {"box": [int(v) for v in f.box], "p_smile": round(float(f.p_smile), 4)}
            for key in ("id", "p_smooth", "smiling"):
                v = getattr(f, key, None)
                if v is not None:
                    d[key] = round(float(v), 4) if key == "p_smooth" else (bool(v) if key == "smiling" else int(v))
            faces.append(d)
        out = {
            "state": getattr(result, "state", None) or "starting",
            "fps": round(float(fps), 2),
            "frame": getattr(frame, "index", None),
            "t": round(float(frame.t), 3) if frame is not None else None,
            "faces": faces,
            "last_event": _jsonable(last_event) if last_event is not None else None,
            "events": events,
            "uptime_s": round(time.monotonic() - self._started_at, 1) if self._started_at else 0.0,
            "model": self.info.get("model"),
            "runtime": self.info.get("runtime"),
            "last_joke": getattr(self.teller, "last_joke", None) if self.teller is not None else None,
            "calibration": self.calibration,
            "calibrating": self.calibration_phase() if self.calibration_phase is not None else None,
            "photos": self.recent_photos(),
            "viewers": clients,
            "version": __version__,
        }
        for k, v in self.info.items():
            out.setdefault(k, v)
        return out

    def recent_photos(self) -> list[str]:
        """Names of the newest photos in photo_dir, newest first (cached for 2 s)."""
        n = int(getattr(self.cfg, "photos_shown", 8))
        now = time.monotonic()
        at, names = self._photos_cache
        if now - at < _PHOTO_LIST_TTL_S:
            return names[:n]
        found = []
        try:
            with os.scandir(self.photo_dir) as it:
                for e in it:
                    if e.name.startswith(".") or not e.name.lower().endswith(PHOTO_SUFFIXES):
                        continue
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if _plain_file(st) and is_our_photo(Path(e.path), st):
                        found.append((st.st_mtime_ns, e.name))
        except OSError:
            pass
        names = [name for _, name in sorted(found, reverse=True)[:50]]
        self._photos_cache = (now, names)
        return names[:n]

    def press_joke(self) -> tuple[int, dict]:
        """The "next joke" button: (HTTP status, JSON body)."""
        if self.teller is None:
            return 503, {"ok": False, "error": "jokes are not available in this run"}
        with self._joke_lock:
            now = time.monotonic()
            wait = (self._last_joke_press + self.cfg.joke_interval_s - now
                    if self._last_joke_press is not None else 0.0)
            if wait > 0:
                return 429, {"ok": False, "error": "too soon", "retry_after_s": round(wait, 1)}
            self._last_joke_press = now
        try:
            told = bool(self.teller.tell())
        except Exception as e:  # the teller must never break the server
            log.warning("live view: teller.tell() failed: %s", e)
            return 500, {"ok": False, "error": "the joke teller failed"}
        return 200, {"ok": told, "busy": not told, "last_joke": getattr(self.teller, "last_joke", None)}

    def press_calibrate(self) -> tuple[int, dict]:
        """The *Calibrate* button: (HTTP status, JSON body). Same rate limit as the joke button."""
        if self.on_calibrate is None:
            return 503, {"ok": False, "error": "calibration is not available in this run"}
        with self._joke_lock:
            now = time.monotonic()
            wait = (self._last_calibrate_press + self.cfg.joke_interval_s - now
                    if self._last_calibrate_press is not None else 0.0)
            if wait > 0:
                return 429, {"ok": False, "error": "too soon", "retry_after_s": round(wait, 1)}
            self._last_calibrate_press = now
        try:
            started = bool(self.on_calibrate())
        except Exception as e:
            log.warning("live view: starting a calibration failed: %s", e)
            return 500, {"ok": False, "error": "calibration could not start"}
        return 200, {"ok": started, "busy": not started}

    def resolve_photo(self, raw_name: str) -> tuple[int, Path | None]:
        """Map the ``<name>`` of ``/photos/<name>`` (still %-encoded) to a photo djsmile wrote in photo_dir.

        Returns (200, path) or (403 | 404, None). Refused: ``..`` (plain or %-encoded),
        absolute paths, sub-folders, hidden names, and anything that is not a
        photo djsmile wrote (:func:`is_our_photo`): symlinks, hard links,
        FIFOs, files without their JSON sidecar, the sidecars themselves.
        """
        name = unquote(raw_name)
        if (not name or "/" in name or "\\" in name or "\x00" in name or ".." in name
                or ".." in raw_name or name.startswith(".") or os.path.isabs(name)):
            return 403, None
        try:
            base = self.photo_dir.resolve(strict=True)
        except (OSError, RuntimeError):
            return 404, None
        target = base / name
        if not is_our_photo(target):
            return 404, None
        return 200, target

    def thumbnail(self, path: Path, data: bytes, st) -> bytes | None:
        key = (str(path), st.st_mtime_ns, st.st_size)
        with self._thumb_lock:
            hit = self._thumbs.get(key)
        if hit is not None:
            return hit
        arr = np.frombuffer(data, np.uint8)
        img = cv2.imdecode(arr, cv2.IMREAD_REDUCED_COLOR_4)   # libjpeg scales while decoding: cheap
        if img is None:
            return None
        h, w = img.shape[:2]
        if w > THUMB_WIDTH:
            img = cv2.resize(img, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), 75])
        if not ok:
            return None
        out = buf.tobytes()
        with self._thumb_lock:
            while len(self._thumbs) >= _THUMB_CACHE_MAX:
                self._thumbs.pop(next(iter(self._thumbs)))
            self._thumbs[key] = out
        return out

    # -- token ------------------------------------------------------------------------
    def check_token(self, query_token: str | None, auth_header: str | None, cookie_header: str | None):
        """(ok, came_from_query): any request is ok when no token is configured."""
        if not self._token:
            return True, False
        want = self._token.encode()
        if query_token is not None and hmac.compare_digest(query_token.encode(), want):
            return True, True
        if auth_header and auth_header[:7].lower() == "bearer ":
            if hmac.compare_digest(auth_header[7:].strip().encode(), want):
                return True, False
        for part in (cookie_header or "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == COOKIE and hmac.compare_digest(v.strip().encode(), self._cookie_value.encode()):
                return True, False
        return False, False


# --------------------------------------------------------------------------- handler

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64      # listen backlog (socketserver's 5 drops SYNs when a burst of clients arrives)

    def handle_error(self, request, client_address):
        """A client that resets or times out is not news: one short line at most, never a traceback."""
        exc = sys.exc_info()[1]
        who = client_address[0] if isinstance(client_address, tuple) else "?"
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
            log.debug("live view: %s went away (%s)", who, type(exc).__name__)
        else:
            log.warning("live view: a request from %s failed: %s: %s", who, type(exc).__name__, str(exc)[:160])
            log.debug("live view: request failure details", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    web: WebServer = None  # set on the subclass made by WebServer.start()
    server_version = f"djsmile/{__version__}"
    timeout = 15           # seconds: slow or dead clients do not hold a thread forever

    # ---- plumbing
    def log_message(self, fmt, *args):  # route to logging, without the token
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", self.address_string(), (fmt % args).split("?", 1)[0])

    def _send(self, code: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self._set_cookie:
            self.send_header("Set-Cookie", f"{COOKIE}={self.web._cookie_value}; Path=/; HttpOnly; SameSite=Strict")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, obj, headers: dict | None = None) -> None:
        self._send(code, json.dumps(obj).encode(), "application/json", headers)

    def _text(self, code: int, text: str, headers: dict | None = None) -> None:
        self._send(code, (text + "\n").encode(), "text/plain; charset=utf-8", headers)

    def _gate(self) -> tuple[str, dict] | None:
        """Parse the URL and check access; answer and return None when refused."""
        self._set_cookie = False
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        web = self.web
        ok, from_query = web.check_token((query.get("token") or [None])[0],
                                         self.headers.get("Authorization"), self.headers.get("Cookie"))
        if not ok:
            self._text(401, "401 unauthorized: this live view needs its token "
                            "(open /?token=... once, or send 'Authorization: Bearer ...')",
                       {"WWW-Authenticate": 'Bearer realm="djsmile"'})
            return None
        self._set_cookie = from_query
        if not web._token and is_loopback(web.host):
            # No token on localhost: refuse other Host names (DNS rebinding from a web page).
            host = self.headers.get("Host")
            if host is not None and not is_loopback(_host_of(host)):
                self._text(403, "403 forbidden: unexpected Host header")
                return None
        return parts.path, query

    # ---- verbs
    def do_GET(self):
        gated = self._gate()
        if gated is None:
            return
        path, query = gated
        if path == "/" or path == "/index.html":
            self._send(200, PAGE.encode(), "text/html; charset=utf-8")
        elif path == "/status.json":
            self._json(200, self.web.status())
        elif path == "/stream.mjpg":
            self._stream()
        elif path.startswith("/photos/"):
            raw = self.path.split("?", 1)[0]
            raw = urlsplit(raw).path if "://" in raw else raw
            self._photo(raw[len("/photos/"):], "thumb" in query)
        elif path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            self._text(404, "404 not found")

    do_HEAD = do_GET      # _send() leaves the body out; /stream.mjpg answers with its headers only

    def do_POST(self):
        gated = self._gate()
        if gated is None:
            return
        path, _ = gated
        raw = (self.headers.get("Content-Length") or "0").strip()
        if not (raw.isascii() and raw.isdigit()):
            self.close_connection = True
            self._text(400, "400 bad request: Content-Length is not a number")
            return
        length = int(raw)
        if length > MAX_POST_BYTES:
            self.close_connection = True
            self._text(413, f"413 request body too large (at most {MAX_POST_BYTES} bytes)")
            return
        if length:
            self.rfile.read(length)
        if path not in ("/joke", "/calibrate"):
            self._text(404, "404 not found")
            return
        origin = self.headers.get("Origin")
        if origin is not None:   # a browser says where the page came from: only this server's own page may press
            o = urlsplit(origin).netloc if origin != "null" else ""
            if not o or o != self.headers.get("Host", o):
                self._json(403, {"ok": False, "error": "cross-origin request refused"})
                return
        code, body = self.web.press_joke() if path == "/joke" else self.web.press_calibrate()
        headers = {"Retry-After": str(max(1, int(body["retry_after_s"] + 0.999)))} if code == 429 else None
        self._json(code, body, headers)

    # ---- routes
    def _photo(self, raw_name: str, thumb: bool) -> None:
        code, target = self.web.resolve_photo(raw_name)
        if code != 200:
            self._text(code, f"{code} {HTTPStatus(code).phrase.lower()}")
            return
        try:  # O_NOFOLLOW|O_NONBLOCK: no symlink swapped in since resolve(), no hanging on a FIFO
            fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            self._text(404, "404 not found")
            return
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not _plain_file(st):         # linked or swapped since the check
                self._text(404, "404 not found")
                return
            data = fh.read()
        if thumb:
            small = self.web.thumbnail(target, data, st)
            if small is not None:
                self._send(200, small, "image/jpeg", {"Cache-Control": "max-age=3600"})
                return
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self._send(200, data, ctype)

    def _stream(self) -> None:
        web = self.web
        if self.command == "HEAD":
            self._send(200, b"", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            return
        max_viewers = int(getattr(web.cfg, "max_viewers", 4))
        sock = self.connection
        with web._lock:
            viewer = web._viewers.join(sock, max_viewers)
            if viewer is not None:
                web._clients = len(web._viewers)
                want = web._seq          # never send a frame older than the one current at connect
                web._new_frame.notify()
        if viewer is None:
            self._text(503, f"503 busy: at most {max_viewers} viewers (web.max_viewers)", {"Retry-After": "5"})
            return
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
            except OSError:
                pass
            sock.settimeout(SEND_TIMEOUT_S)     # one frame (sendall) must go out within this
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store, no-cache, must-revalidate")
            self.send_header("Pragma", "no-cache")
            self.send_header("Connection", "close")
            if self._set_cookie:
                self.send_header("Set-Cookie", f"{COOKIE}={web._cookie_value}; Path=/; HttpOnly; SameSite=Strict")
            viewer.busy_since = time.monotonic()
            self.end_headers()
            viewer.busy_since = None
            sent = -1
            while not web._stop.is_set():
                with web._lock:
                    while not web._stop.is_set() and (web._jpeg is None or web._jpeg_seq <= sent
                                                      or web._jpeg_seq < want):
                        web._new_jpeg.wait(timeout=1.0)
                    if web._stop.is_set():
                        break
                    jpeg, sent = web._jpeg, web._jpeg_seq
                viewer.busy_since = time.monotonic()
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                 f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                self.wfile.flush()
                viewer.busy_since = None
        except (BrokenPipeError, ConnectionResetError, TimeoutError, socket.timeout, OSError):
            pass  # the viewer went away, stopped reading (send timeout) or was dropped for a new one
        finally:
            with web._lock:
                web._viewers.leave(viewer)
                web._clients = len(web._viewers)
            self.close_connection = True


# --------------------------------------------------------------------------- the page

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>djsmile live</title>
<style>
 body{margin:0;font:15px/1.4 system-ui,sans-serif;background:#1d1f24;color:#eee}
 header{padding:8px 16px;background:#111;display:flex;gap:16px;align-items:center}
 header h1{font-size:18px;margin:0}
 main{display:flex;flex-wrap:wrap;gap:16px;padding:16px}
 #view{flex:1 1 560px;max-width:800px}
 #stream{width:100%;background:#000;border-radius:6px;display:block;min-height:240px}
 aside{flex:1 1 260px;display:flex;flex-direction:column;gap:12px}
 .card{background:#2a2d34;border-radius:6px;padding:10px 12px}
 .state{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600;background:#555}
 .watching{background:#3b6ea8}.smiling{background:#2e9e4f}.cooldown{background:#a8743b}
 #joke{font-size:17px;min-height:2.8em}
 button{font-size:16px;padding:6px 14px;border-radius:6px;border:0;background:#f0b429;cursor:pointer}
 button:disabled{opacity:.5}
 #msg{color:#aaa;font-size:13px;margin-left:8px}
 #photos{display:flex;flex-wrap:wrap;gap:6px}
 #photos img{width:120px;border-radius:4px;display:block}
 small{color:#aaa}
</style></head>
<body>
<header><h1>djsmile</h1><span id="state" class="state">starting</span>
 <span id="fps">– fps</span><small id="faces"></small></header>
<main>
 <div id="view"><img id="stream" src="/stream.mjpg" alt="live camera view"></div>
 <aside>
  <div class="card"><b>Last joke</b><div id="joke">No joke yet.</div>
   <button id="next" type="button">Next joke</button><span id="msg"></span></div>
  <div class="card"><b>Calibration</b> <small id="calib">global threshold</small><div id="prompt"></div>
   <button id="calibrate" type="button">Calibrate</button><span id="cmsg"></span></div>
  <div class="card"><b>Last event</b><div id="event"><small>none yet</small></div></div>
  <div class="card"><b>Recent photos</b><div id="photos"><small>none yet</small></div></div>
  <div class="card"><small id="about"></small></div>
 </aside>
</main>
<script>
const $ = id => document.getElementById(id);
if(/[?&]token=/.test(location.search)) history.replaceState(null, "", location.pathname);  // the cookie has it now
let shown = "";
function esc(s){return String(s).replace(/[&<>"']/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));}
async function poll(){
  try{
    const r = await fetch("status.json",{cache:"no-store"});
    if(!r.ok) throw new Error(r.status);
    const s = await r.json();
    const st = $("state"); st.textContent = s.state; st.className = "state " + s.state;
    $("fps").textContent = s.fps.toFixed(1) + " fps";
    $("faces").textContent = s.faces.length ? s.faces.map(f=>Math.round(100*(f.p_smooth ?? f.p_smile))+"% smiling").join(", ") : "no face";
    if(s.last_joke) $("joke").textContent = s.last_joke;
    $("calib").textContent = s.calibration ? "calibrated " + String(s.calibration.created).slice(0,10) : "not calibrated (global threshold)";
    $("prompt").textContent = s.calibrating === "neutral" ? "look at the camera with a straight face" : s.calibrating === "smile" ? "now smile" : "";
    if(s.last_event) $("event").textContent = Object.entries(s.last_event).filter(([k,v])=>typeof v!=="object").map(([k,v])=>k+": "+v).join("  ");
    const key = s.photos.join("/");
    if(key !== shown){
      shown = key;
      $("photos").innerHTML = s.photos.length ? s.photos.map(n=>{const u="photos/"+encodeURIComponent(n);
        return '<a href="'+u+'" target="_blank"><img src="'+u+'?thumb=1" alt="'+esc(n)+'" loading="lazy"></a>';}).join("") : "<small>none yet</small>";
    }
    $("about").textContent = "model " + (s.model ?? "?") + " · " + (s.runtime ?? "?") + " · up " + Math.round(s.uptime_s) + " s · djsmile " + s.version;
  }catch(e){ $("state").textContent = "offline"; $("state").className = "state"; }
}
$("next").onclick = async () => {
  const b = $("next"); b.disabled = true; $("msg").textContent = "";
  try{
    const r = await fetch("joke",{method:"POST"});
    const j = await r.json();
    if(r.status === 429) $("msg").textContent = "wait " + j.retry_after_s + " s";
    else if(!r.ok) $("msg").textContent = j.error || ("error " + r.status);
    else if(j.busy) $("msg").textContent = "busy telling one";
    else $("msg").textContent = "coming up…";
  }catch(e){ $("msg").textContent = "offline"; }
  setTimeout(()=>{b.disabled=false;}, 1000);
  setTimeout(poll, 800);
};
$("calibrate").onclick = async () => {
  const b = $("calibrate"); b.disabled = true; $("cmsg").textContent = "";
  try{
    const r = await fetch("calibrate",{method:"POST"});
    const j = await r.json();
    if(r.status === 429) $("cmsg").textContent = "wait " + j.retry_after_s + " s";
    else if(!r.ok) $("cmsg").textContent = j.error || ("error " + r.status);
    else if(j.busy) $("cmsg").textContent = "already calibrating";
    else $("cmsg").textContent = "starting…";
  }catch(e){ $("cmsg").textContent = "offline"; }
  setTimeout(()=>{b.disabled=false;}, 1000);
  setTimeout(poll, 500);
};
poll(); setInterval(poll, 1000);
</script>
</body></html>
"""
