"""HTTP for the live view: the routes, each request checked by :class:`~.auth.Access` first.

The handler uses only the public side of :class:`~.server.WebServer`: ``access``,
``page``, ``status()``, ``press_joke()``, ``press_calibrate()``, ``photos``, ``open_viewer()`` /
``close_viewer()`` and ``stream`` (the :class:`~.stream.Broadcaster`).
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .. import __version__
from ..logutil import LogLimiter

log = logging.getLogger(__name__)

BOUNDARY = "djsmileframe"
SEND_TIMEOUT_S = 5.0            # a viewer that takes longer to take one frame is dropped
STREAM_SNDBUF = 32 * 1024       # small send buffer: a viewer that stops reading is noticed within a frame or two
MAX_POST_BYTES = 65536
HEADER_DEADLINE_S = 10.0        # the request line and every header must have arrived within this
BODY_DEADLINE_S = 10.0          # and a POST body within this
ACCEPT_BACKOFF_S = 0.25         # out of file descriptors: wait this long before accepting again
#: accept() errors that mean "no resources now": wait instead of retrying at once (a busy loop)
ACCEPT_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Server(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once: beyond that a new one is closed at once.

    The cap (set by :class:`~.server.WebServer` from ``web.max_viewers`` and the file-descriptor limit)
    keeps the live view from using the descriptors that photos and event lines need. When accept()
    itself runs out of descriptors, the listener pauses ``ACCEPT_BACKOFF_S`` instead of spinning.
    """

    daemon_threads = True
    request_queue_size = 64      # listen backlog (socketserver's 5 drops SYNs when a burst of clients arrives)
    max_connections = 32

    def __init__(self, *args, **kwargs):
        self._conn_lock = threading.Lock()
        self.open_connections = 0
        self.refused_connections = 0
        self.cut_off = 0               # requests whose header or body did not arrive in time
        self._deadlines: dict = {}     # handler -> monotonic deadline of what it is reading now
        self._logs = LogLimiter(log)   # what clients cause: a few lines per kind, then "K more suppressed"
        super().__init__(*args, **kwargs)

    # -- deadlines: a socket time-out bounds one read only, so a client sending a header line
    #    every few seconds (a slowloris) would hold its thread for ever; the listener's loop
    #    shuts down a connection whose request has not arrived by its deadline.
    def watch(self, handler, seconds: float) -> None:
        with self._conn_lock:
            self._deadlines[handler] = time.monotonic() + seconds

    def unwatch(self, handler) -> None:
        with self._conn_lock:
            self._deadlines.pop(handler, None)

    def service_actions(self):
        """Called by serve_forever() every poll interval: cut off requests past their deadline."""
        super().service_actions()
        now = time.monotonic()
        with self._conn_lock:
            late = [h for h, d in self._deadlines.items() if d <= now]
            for h in late:
                del self._deadlines[h]
        for h in late:
            h.expired = True
            self.cut_off += 1
            try:
                h.connection.shutdown(socket.SHUT_RDWR)    # its blocked read returns at once
            except OSError:
                pass
        if late:
            self._logs.log("late", logging.INFO, "live view: closed %d connection(s) whose request did not "
                         "arrive within %g s", len(late), HEADER_DEADLINE_S)

    def server_close(self):
        super().server_close()
        self._logs.flush()

    def get_request(self):
        try:
            return super().get_request()
        except OSError as e:
            if e.errno in ACCEPT_RESOURCE_ERRORS:
                self._logs.log("accept", logging.WARNING, "live view: cannot accept a connection (%s); "
                             "pausing %.2f s", e.strerror or e, ACCEPT_BACKOFF_S)
                time.sleep(ACCEPT_BACKOFF_S)
            raise

    def process_request(self, request, client_address):
        with self._conn_lock:
            full = self.open_connections >= self.max_connections
            if full:
                self.refused_connections += 1
            else:
                self.open_connections += 1
        if full:
            self._logs.log("full", logging.WARNING, "live view: %d connections open (the most at once): "
                         "closing new ones at once", self.max_connections)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:       # no thread could be started: the slot is free again
            self._release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._conn_lock:
            self.open_connections -= 1

    def handle_error(self, request, client_address):
        """A client that resets or times out is not news: one short line at most, never a traceback."""
        exc = sys.exc_info()[1]
        who = client_address[0] if isinstance(client_address, tuple) else "?"
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
            log.debug("live view: %s went away (%s)", who, type(exc).__name__)
        else:
            if self._logs.log("failed", logging.WARNING, "live view: a request from %s failed: %s: %s", who,
                              type(exc).__name__, str(exc)[:160]):
                log.debug("live view: request failure details", exc_info=True)


class Handler(BaseHTTPRequestHandler):
    web = None             # the WebServer: set on the subclass made by WebServer.start()
    server_version = f"djsmile/{__version__}"
    timeout = 15           # seconds: slow or dead clients do not hold a thread forever

    # ---- plumbing
    def handle_one_request(self):
        self.server.watch(self, HEADER_DEADLINE_S)     # the request line and headers, in time
        try:
            super().handle_one_request()
        finally:
            self.server.unwatch(self)

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self.server.unwatch(self)                      # the headers are in
        if getattr(self, "expired", False):            # cut off while they came: nobody to answer
            self.close_connection = True
            return False
        return ok

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
            self.send_header("Set-Cookie", self.web.access.set_cookie)
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
        access = self.web.access
        ok, from_query = access.check((query.get("token") or [None])[0],
                                      self.headers.get("Authorization"), self.headers.get("Cookie"))
        if not ok:
            self._text(401, "401 unauthorized: this live view needs its token "
                            "(open /?token=... once, or send 'Authorization: Bearer ...')",
                       {"WWW-Authenticate": 'Bearer realm="djsmile"'})
            return None
        self._set_cookie = from_query
        if not access.host_allowed(self.headers.get("Host")):
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
            self._send(200, self.web.page, "text/html; charset=utf-8")
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
            self.server.watch(self, BODY_DEADLINE_S)
            try:
                self.rfile.read(length)
            finally:
                self.server.unwatch(self)
            if getattr(self, "expired", False):
                self.close_connection = True
                return
        if path not in ("/joke", "/calibrate"):
            self._text(404, "404 not found")
            return
        if not self.web.access.origin_allowed(self.headers.get("Origin"), self.headers.get("Host"),
                                              self.headers.get("Referer")):
            self._json(403, {"ok": False, "error": "cross-origin request refused"})
            return
        code, body = self.web.press_joke() if path == "/joke" else self.web.press_calibrate()
        headers = {"Retry-After": str(max(1, int(body["retry_after_s"] + 0.999)))} if code == 429 else None
        self._json(code, body, headers)

    # ---- routes
    def _photo(self, raw_name: str, thumb: bool) -> None:
        code, body, ctype, headers = self.web.photos.read(raw_name, thumb)
        if code != 200:
            self._text(code, f"{code} {HTTPStatus(code).phrase.lower()}")
            return
        self._send(200, body, ctype, headers)

    def _stream(self) -> None:
        web = self.web
        if self.command == "HEAD":
            self._send(200, b"", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            return
        sock = self.connection
        viewer = web.open_viewer(sock)
        if viewer is None:
            self._text(503, f"503 busy: at most {web.stream.max_viewers} viewers (web.max_viewers)",
                       {"Retry-After": "5"})
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
                self.send_header("Set-Cookie", web.access.set_cookie)
            with viewer.sending():
                self.end_headers()
            seq = viewer.after                  # never a frame older than the one current at connect
            while not web.stream.closed:
                got = web.stream.wait_newer(seq, timeout=1.0)
                if got is None:
                    continue
                seq, jpeg = got
                with viewer.sending():
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                     f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                    self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError, socket.timeout, OSError):
            pass  # the viewer went away, stopped reading (send timeout) or was dropped for a new one
        finally:
            web.close_viewer(viewer)
            self.close_connection = True
