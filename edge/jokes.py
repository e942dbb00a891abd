"""Dad jokes: the icanhazdadjoke API, a local cache, the bundled list, no repeats, prefetch.

Where a joke comes from, in order:

1. **API** — ``GET [jokes] api_url`` with ``Accept: application/json`` and a
   ``User-Agent`` naming djsmile and its URL (as the API asks). Connect and
   read timeouts plus a total deadline keep one request within
   ``jokes.timeout_s``; the body is capped at 16 KB; the JSON must be an object
   with a string ``joke`` of sane length. A background thread prefetches
   ``jokes.prefetch`` jokes so one is ready when a smile fires.
2. **cache** — every fetched joke is kept in ``<state_dir>/jokes_cache.json``
   (atomic writes, at most ``jokes.cache_size`` jokes, survives restarts, a
   corrupt file is logged and set aside).
3. **bundled** — :mod:`djsmile.jokes_bundled`, our own offline list.

None of the last ``jokes.no_repeat`` jokes told is told again (the recent list
is saved in the cache file too), unless every joke known has been told lately.

``djsmile joke [--say]`` prints one joke (and speaks it) using the same config
and cache as ``djsmile run``.
"""

from __future__ import annotations

import collections
import http.client
import json
import logging
import os
import random
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import __version__
from .fsutil import TEMP_EXT, atomic_write
from .jokes_bundled import JOKES as BUNDLED
from .speech import clean_text

log = logging.getLogger(__name__)

PROJECT_URL = "https://github.com/djsmile/djsmile"
USER_AGENT = f"djsmile/{__version__} ({PROJECT_URL})"
CACHE_NAME = "jokes_cache.json"
MAX_RESPONSE_BYTES = 16 * 1024      # an API answer is ~150 bytes; anything past this is rejected
MAX_JOKE_CHARS = 1000               # a longer "joke" is rejected as malformed
MAX_CACHE_FILE_BYTES = 32 * 1024 * 1024
CLI_API_WAIT_S = 3.0                # `djsmile joke` waits at most this for the API (prints within 5 s)
RETRY_MIN_S, RETRY_MAX_S = 5.0, 300.0


class FetchError(Exception):
    """The API gave no usable joke (unreachable, slow, HTTP error, not JSON, wrong shape, too big)."""


@dataclass
class Joke:
    text: str
    origin: str          # "api" | "cache" | "bundled"
    id: str = ""


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


# --------------------------------------------------------------------------- API
def fetch_joke(url: str, timeout_s: float = 2.0) -> tuple[str, str]:
    """One joke from the API: ``(id, text)``. Raises :class:`FetchError` on anything unusable.

    Total time stays near ``timeout_s``: connect and read timeouts split it,
    and reading the body stops at the deadline.
    """
    import requests  # imported here: `djsmile joke` with api_url = "" never needs it

    if not url.startswith(("http://", "https://")):
        raise FetchError(f"jokes.api_url {url!r} is not an http(s) URL")
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    connect = max(0.05, 0.45 * timeout_s)
    read = max(0.05, 0.45 * timeout_s)
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    r = None
    try:
        with requests.get(url, headers=headers, timeout=(connect, read), stream=True,
                          allow_redirects=True) as r:
            if r.status_code != 200:
                raise FetchError(f"HTTP {r.status_code}")
            length = r.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > MAX_RESPONSE_BYTES:
                raise FetchError(f"answer too big ({length} bytes)")
            body = bytearray()
            for chunk in _chunks(r):
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise FetchError(f"answer too big (over {MAX_RESPONSE_BYTES} bytes)")
                if time.monotonic() > deadline:
                    raise FetchError(f"answer too slow (over {timeout_s:g} s)")
            ctype = r.headers.get("Content-Type", "?")
    except FetchError:
        raise
    except Exception as e:     # requests, urllib3 (body reads), http.client, socket, zlib: one reason each
        raise FetchError(_reason(e, r, timeout_s, read)) from None
    try:
        data = json.loads(bytes(body).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FetchError(f"answer is not JSON (Content-Type {ctype.split(';')[0]})") from None
    return parse_joke(data)


def _reason(e: Exception, r, timeout_s: float, read_s: float) -> str:
    """The true reason one request failed, in a few words (no traceback, no nested reprs)."""
    import requests
    from urllib3 import exceptions as u3

    inner = e
    while isinstance(inner, (u3.ProtocolError, requests.RequestException)) and len(inner.args) > 1 \
            and isinstance(inner.args[1], BaseException):
        inner = inner.args[1]           # urllib3 wraps the http.client error: ('Connection broken: ...', err)
    if r is None:                       # nothing came back yet: connecting or waiting for the headers
        if isinstance(e, requests.Timeout):
            return f"no answer within {timeout_s:g} s"
        if isinstance(e, requests.ConnectionError):
            return f"cannot connect ({_short(e)})"
        return _short(e)
    chunked = "chunked" in r.headers.get("Transfer-Encoding", "").lower()
    if isinstance(e, (u3.ReadTimeoutError, requests.Timeout, TimeoutError)):
        return f"answer stalled mid-body (no data for {read_s:g} s)"
    if isinstance(e, (u3.DecodeError, requests.exceptions.ContentDecodingError)):
        enc = r.headers.get("Content-Encoding", "?")
        return f"answer body is not valid {enc} (Content-Encoding)"
    if isinstance(inner, u3.InvalidChunkLength) or (chunked and isinstance(inner, http.client.IncompleteRead)):
        return "bad chunked encoding in the answer"
    if isinstance(inner, (u3.IncompleteRead, http.client.IncompleteRead)):
        got, more = _partial(inner), getattr(inner, "expected", None)
        if isinstance(got, int) and isinstance(more, int):
            return f"answer cut short ({got} of {got + more} bytes, Content-Length)"
        return "answer cut short (body shorter than its Content-Length)"
    if isinstance(e, (u3.ProtocolError, requests.ConnectionError, OSError)):
        return f"connection broken mid-answer ({_short(inner)})"
    return f"{type(inner).__name__}: {_short(inner)}"


def _partial(err) -> object:
    p = getattr(err, "partial", None)
    return len(p) if isinstance(p, (bytes, bytearray)) else p


def _chunks(r):
    """The body as it arrives (urllib3 2: whatever one recv gives, so a trickling server meets the deadline)."""
    read1 = getattr(r.raw, "read1", None)
    if read1 is None:       # urllib3 1.x
        yield from r.iter_content(chunk_size=1024)
        return
    while True:
        chunk = read1(4096, decode_content=True)
        if not chunk:
            return
        yield chunk


def parse_joke(data) -> tuple[str, str]:
    """Check the API JSON's shape: an object with a string ``joke`` (and ``status`` 200 if present)."""
    if not isinstance(data, dict):
        raise FetchError(f"JSON is a {type(data).__name__}, not an object")
    status = data.get("status", 200)
    if status != 200:
        raise FetchError(f"JSON status is {status!r}")
    joke = data.get("joke")
    if not isinstance(joke, str):
        raise FetchError("JSON has no string 'joke'")
    if len(joke) > MAX_JOKE_CHARS:
        raise FetchError(f"joke is {len(joke)} characters long (limit {MAX_JOKE_CHARS})")
    text = clean_text(joke, MAX_JOKE_CHARS)
    if len(text) < 3:
        raise FetchError("joke is empty")
    jid = data.get("id")
    jid = clean_text(jid, 64) if isinstance(jid, str) else ""
    return jid, text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:      # someone else's process
        return True
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    return True


def _short(e: Exception) -> str:
    s = str(e)
    # requests' messages nest the whole urllib3 repr; keep the innermost reason.
    if "Errno" in s:
        s = s[s.rfind("[Errno"):].rstrip("')\"")
    return s[:160]


# --------------------------------------------------------------------------- cache file
# --------------------------------------------------------------------------- source
class JokeSource:
    """API + cache + bundled list, no repeats, background prefetch.

    ``next_joke()`` never waits for the network unless asked to (``wait_api``).
    Thread-safe. Call :meth:`start` for the background prefetch/saver thread
    and :meth:`close` at the end (it saves pending changes).
    """

    def __init__(self, jcfg, state_dir: Optional[Path], *, rng: Optional[random.Random] = None,
                 warn: bool = True):
        self.cfg = jcfg
        self._warn = warn                     # False: API failures only at DEBUG (the caller reports them)
        self.path = Path(state_dir) / CACHE_NAME if state_dir is not None else None
        self._rng = rng or random.Random()
        self._lock = threading.RLock()
        self._cache: list[dict] = []          # oldest first: {"id": str, "joke": str}
        self._recent: list[str] = []          # texts told, oldest first
        self._ready: collections.deque = collections.deque()   # fetched, not told yet
        self._dirty = False
        self._save_warned = False
        self.last_error = "" if jcfg.api_url else "jokes.api_url is empty"
        self._failures = 0
        self._last_logged_reason = ""
        self._retry_at = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._load()

    # -- public -----------------------------------------------------------
    @property
    def api_enabled(self) -> bool:
        return bool(self.cfg.api_url)

    @property
    def prefetching(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.cfg.prefetch > 0 and self.api_enabled

    @property
    def last_told(self) -> Optional[str]:
        with self._lock:
            return self._recent[-1] if self._recent else None

    def cached(self) -> list[str]:
        with self._lock:
            return [e["joke"] for e in self._cache]

    def start(self) -> "JokeSource":
        """Start the background thread (prefetch and cache saves)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="joke-prefetch", daemon=True)
            self._thread.start()
        return self

    def wait_ready(self, n: int = 1, timeout: float = 5.0) -> bool:
        """Wait until ``n`` prefetched jokes are ready (tests, benchmarks)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len(self._ready) >= n:
                return True
            time.sleep(0.02)
        return len(self._ready) >= n

    def close(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.save()

    def next_joke(self, *, wait_api: float = 0.0) -> Joke:
        """The next joke to tell, marked as told. Never fails.

        A prefetched API joke if one is ready; else, with ``wait_api > 0``,
        one API request bounded by ``wait_api`` seconds; else the cache, then
        the bundled list (each without the last ``no_repeat`` jokes told).
        """
        joke = self._take_ready()
        if joke is None and self.api_enabled and wait_api > 0:
            joke = self._fetch_bounded(wait_api)
        if joke is None:
            joke = self._from_store()
        self._mark_told(joke.text)
        return joke

    # -- choosing -----------------------------------------------------------
    def _recent_keys(self) -> set:
        n = self.cfg.no_repeat
        return {_key(t) for t in self._recent[-n:]} if n > 0 else set()

    def _take_ready(self) -> Optional[Joke]:
        with self._lock:
            recent = self._recent_keys()
            while self._ready:
                j = self._ready.popleft()
                if _key(j.text) not in recent:
                    self._wake.set()          # refill
                    return j
            self._wake.set()
            return None

    def _from_store(self) -> Joke:
        with self._lock:
            recent = self._recent_keys()
            ready = {_key(j.text) for j in self._ready}
            fresh = [e for e in self._cache if _key(e["joke"]) not in recent and _key(e["joke"]) not in ready]
            if fresh:
                e = self._rng.choice(fresh)
                return Joke(e["joke"], "cache", e.get("id", ""))
            fresh = [t for t in BUNDLED if _key(t) not in recent]
            if fresh:
                return Joke(self._rng.choice(fresh), "bundled")
            # Everything known was told lately: the one told longest ago.
            pool = {_key(e["joke"]): Joke(e["joke"], "cache", e.get("id", "")) for e in self._cache}
            pool.update({_key(t): Joke(t, "bundled") for t in BUNDLED})
            for t in self._recent:
                if _key(t) in pool:
                    return pool[_key(t)]
            return Joke(self._rng.choice(BUNDLED), "bundled")

    def _mark_told(self, text: str) -> None:
        with self._lock:
            k = _key(text)
            self._recent = [t for t in self._recent if _key(t) != k] + [text]
            keep = max(1, self.cfg.no_repeat)
            del self._recent[:-keep]
        self._request_save()

    # -- API -----------------------------------------------------------------
    def _fetch_once(self) -> Optional[Joke]:
        """One API request; on success the joke is cached. Records the error otherwise."""
        try:
            jid, text = fetch_joke(self.cfg.api_url, self.cfg.timeout_s)
        except FetchError as e:
            self._failed(str(e))
            return None
        except Exception as e:   # a bug or a library error fetch_joke does not know: still one line, no traceback
            self._failed(f"{type(e).__name__}: {_short(e)}")
            return None
        if self._failures:
            log.info("joke API answers again")
        self._failures = 0
        self.last_error = ""
        self._add_to_cache(jid, text)
        return Joke(text, "api", jid)

    def _failed(self, reason: str) -> None:
        """One failed request: one log line with its reason, and the next try backs off (5 s doubling to 300 s)."""
        self.last_error = reason
        self._failures += 1
        delay = min(RETRY_MAX_S, RETRY_MIN_S * 2 ** min(self._failures - 1, 30))
        self._retry_at = time.monotonic() + delay
        if not self._warn:
            level = logging.DEBUG
        elif self._failures == 1 or reason != self._last_logged_reason:
            level = logging.WARNING
        else:
            level = logging.INFO
        self._last_logged_reason = reason
        log.log(level, "joke API %s: %s; next try in %g s, telling cached and bundled jokes meanwhile",
                self.cfg.api_url, reason, delay)

    def _fetch_bounded(self, budget: float) -> Optional[Joke]:
        """API jokes until one not told lately, in a helper thread; gives up after ``budget`` seconds."""
        box: list = []
        end = time.monotonic() + budget

        def work():
            try:
                for _ in range(3):
                    j = self._fetch_once()
                    if j is None or _key(j.text) not in self._recent_keys() or time.monotonic() > end:
                        box.append(j)
                        return
            finally:
                if not box:
                    box.append(None)

        t = threading.Thread(target=work, name="joke-fetch", daemon=True)
        t.start()
        t.join(budget)
        if not box:        # still waiting for the network
            self.last_error = f"no answer within {budget:g} s"
            return None
        j = box[0]
        if j is not None and _key(j.text) in self._recent_keys():
            return None
        return j

    def _add_to_cache(self, jid: str, text: str) -> None:
        if self.cfg.cache_size <= 0:
            return
        with self._lock:
            k = _key(text)
            self._cache = [e for e in self._cache if _key(e["joke"]) != k]
            self._cache.append({"id": jid, "joke": text})
            del self._cache[:-self.cfg.cache_size]
        self._request_save()

    # -- background ----------------------------------------------------------
    def _loop(self) -> None:
        dups = 0
        while not self._stop.is_set():
            try:
                dups = self._step(dups)
            except Exception as e:   # never let one bad answer (or a bug) end the prefetch for the run
                self._failed(f"{type(e).__name__}: {_short(e)}")
        if self._dirty:
            self.save()

    def _step(self, dups: int) -> int:
        """One round of the background thread: save if needed, wait, or fetch one joke."""
        if self._dirty:
            self.save()
        want = self.api_enabled and len(self._ready) < self.cfg.prefetch
        now = time.monotonic()
        if not want or now < self._retry_at:
            self._wake.wait(None if not want else self._retry_at - now)
            self._wake.clear()
            return dups
        j = self._fetch_once()
        if j is None or self._stop.is_set():
            return dups
        with self._lock:
            k = _key(j.text)
            if k in self._recent_keys() or any(_key(r.text) == k for r in self._ready):
                dups += 1
                if dups >= 5:          # the API keeps repeating itself: pause a little
                    self._retry_at = time.monotonic() + 30.0
                    dups = 0
                return dups
            self._ready.append(j)
        return 0

    def _request_save(self) -> None:
        self._dirty = True
        if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
            self._wake.set()
        else:
            self.save()

    # -- persistence ---------------------------------------------------------
    def _load(self) -> None:
        """Read the cache file. Whatever fails to load is set aside (``.corrupt``) and logged, never raised."""
        if self.path is None:
            return
        self._clean_temp()
        try:
            st = self.path.stat()
            if not stat.S_ISREG(st.st_mode):
                raise ValueError("not a regular file")
            if st.st_size > MAX_CACHE_FILE_BYTES:
                raise ValueError(f"{st.st_size} bytes is too big")
            data = json.loads(self.path.read_bytes().decode("utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("jokes", []), list) \
                    or not isinstance(data.get("recent", []), list):
                raise ValueError("not a djsmile joke cache")
        except FileNotFoundError:
            return
        except RecursionError:
            self._set_aside("nested too deep")
            return
        except Exception as e:     # JSONDecodeError, UnicodeDecodeError, OSError (unreadable, a folder), MemoryError...
            self._set_aside(_short(e) or type(e).__name__)
            return
        cache = []
        for e in data.get("jokes", []):
            if isinstance(e, dict) and isinstance(e.get("joke"), str):
                text = clean_text(e["joke"], MAX_JOKE_CHARS)
                if text:
                    jid = e.get("id") if isinstance(e.get("id"), str) else ""
                    cache.append({"id": jid[:64], "joke": text})
        if self.cfg.cache_size > 0:
            self._cache = cache[-self.cfg.cache_size:]
        self._recent = [clean_text(t, MAX_JOKE_CHARS) for t in data.get("recent", [])
                        if isinstance(t, str) and t.strip()][-max(1, self.cfg.no_repeat):]
        log.debug("joke cache %s: %d jokes, %d told lately", self.path, len(self._cache), len(self._recent))

    def _set_aside(self, why: str) -> None:
        bad = self.path.with_name(self.path.name + ".corrupt")
        try:
            if bad.is_dir() and not bad.is_symlink():
                bad = self.path.with_name(f"{self.path.name}.corrupt.{os.getpid()}")
            os.replace(self.path, bad)
            kept = f"old file kept as {bad.name}"
        except OSError as e:
            kept = f"could not set it aside: {e.strerror or e}"
        log.warning("joke cache %s cannot be loaded (%s): starting with an empty cache (%s)",
                    self.path, why[:120], kept)

    def _clean_temp(self) -> None:
        """Remove ``.jokes_cache.json.<pid>.tmp`` files left by a crash or power cut (not a live process's)."""
        prefix = f".{self.path.name}."
        try:
            names = [n for n in os.listdir(self.path.parent) if n.startswith(prefix) and n.endswith(TEMP_EXT)]
        except OSError:
            return
        for name in names:
            pid = name[len(prefix):-len(TEMP_EXT)]
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue      # another djsmile (run and `djsmile joke` share the cache) is writing it now
            try:
                os.unlink(self.path.parent / name)
                log.info("removed leftover temp file %s", self.path.parent / name)
            except OSError as e:
                log.warning("cannot remove leftover temp file %s: %s", self.path.parent / name, e)

    def save(self) -> None:
        """Write the cache file now (atomic). Errors are logged once, never raised."""
        if self.path is None:
            self._dirty = False
            return
        with self._lock:
            self._dirty = False
            payload = {"version": 1, "jokes": list(self._cache), "recent": list(self._recent)}
        try:
            atomic_write(self.path, json.dumps(payload, ensure_ascii=False, indent=0).encode("utf-8"))
        except OSError as e:
            (log.debug if self._save_warned else log.warning)(
                "joke cache %s cannot be written (%s): jokes are not kept across restarts", self.path, e)
            self._save_warned = True

