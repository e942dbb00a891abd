"""Who may use the live view, and how often the joke button may be pressed: all access rules in one place.

- Token: binds 127.0.0.1 by default. Listening on any other address needs
  ``web.token`` (a config rule, checked at load); with a token set, every
  request must carry it as ``?token=``, ``Authorization: Bearer <token>`` or the
  cookie set on the first visit with a valid ``?token=`` (401 otherwise). The
  cookie holds a hash of the token, not the token.
- Host guard: with no token on localhost, a request naming another Host is
  refused (DNS rebinding from a web page).
- Origin guard: a POST that a browser says came from another page (``Origin``, or without it
  ``Referer``; or ``null``) is refused; only this server's own page may press.
- Rate limit: at most one "next joke" (and one "Calibrate") press per ``web.joke_interval_s``.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from urllib.parse import urlsplit

from ..config import is_loopback

COOKIE = "djsmile_token"


def host_of(host_header: str) -> str:
    """The host part of a ``Host:`` header (``[::1]:8080`` -> ``::1``, ``pi:8080`` -> ``pi``)."""
    h = host_header.strip()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


class Access:
    """The token, cookie, Host and Origin checks for a server listening on ``listen_host``."""

    def __init__(self, token: str, listen_host: str):
        self._token = token or ""
        self._listen_host = listen_host
        self._cookie_value = hashlib.sha256(("djsmile:" + self._token).encode()).hexdigest()

    @property
    def token_required(self) -> bool:
        return bool(self._token)

    @property
    def set_cookie(self) -> str:
        """The ``Set-Cookie`` value that lets a browser in after one visit with ``?token=``."""
        return f"{COOKIE}={self._cookie_value}; Path=/; HttpOnly; SameSite=Strict"

    def check(self, query_token: str | None, auth_header: str | None, cookie_header: str | None):
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

    def host_allowed(self, host_header: str | None) -> bool:
        """False for a foreign ``Host:`` while serving localhost without a token (DNS rebinding)."""
        if self._token or not is_loopback(self._listen_host) or host_header is None:
            return True
        return is_loopback(host_of(host_header))

    @staticmethod
    def origin_allowed(origin: str | None, host_header: str | None, referer: str | None = None) -> bool:
        """A POST from this server's own page (or from no browser page at all).

        ``Origin`` decides; without it (older browsers, some form posts) the ``Referer`` does.
        """
        if origin is None:
            origin = referer
        if origin is None:   # not sent by a browser page: curl, scripts
            return True
        o = urlsplit(origin).netloc if origin != "null" else ""
        return bool(o) and o == (host_header if host_header is not None else o)


class RateLimit:
    """At most one go per ``interval_s`` seconds (monotonic clock), across threads."""

    def __init__(self, interval_s: float):
        self.interval_s = float(interval_s)
        self._lock = threading.Lock()
        self._last: float | None = None

    def take(self) -> float:
        """0.0 and the go is recorded; else the seconds left to wait (nothing recorded)."""
        with self._lock:
            now = time.monotonic()
            wait = self._last + self.interval_s - now if self._last is not None else 0.0
            if wait > 0:
                return wait
            self._last = now
            return 0.0
