"""The joke teller: joke source + speech engine on one worker thread (the joke button is :mod:`djsmile.gpio`'s).

``tell()`` and ``repeat()`` never block the caller (the frame loop, a GPIO
callback, the web server): they hand the request to the teller's worker
thread and return at once. While a joke is being fetched or spoken, further
requests are dropped (``False``), not queued.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from .jokes import JokeSource
from .logutil import LogLimiter
from .speech import Engine, make_engine

log = logging.getLogger(__name__)


class JokeTeller:
    """Tells dad jokes out loud, one at a time.

    ``jokes`` and ``speech``: the config's ``[jokes]`` and ``[speech]`` sections.
    With ``start=False`` the joke source's prefetch waits for :meth:`start`.
    ``engine`` / ``source`` may be given (tests, benchmarks); by default they come from those.
    ``on_told(text)`` (optional) is called on the worker thread for each joke told (the sinks: MQTT).
    """

    def __init__(self, jokes, speech, state_dir: Optional[Path], *, engine: Optional[Engine] = None,
                 source: Optional[JokeSource] = None, start: bool = True,
                 on_told: Optional[Callable[[str], object]] = None):
        self.jokes = jokes
        self.engine = engine if engine is not None else make_engine(speech)
        self.source = source if source is not None else JokeSource(jokes, state_dir)
        if start:   # else :meth:`start` later (djsmile run: once frames flow, so no joke work before)
            self.source.start()
        self.last_joke: Optional[str] = self.source.last_told   # so a long press works after a restart
        self.last_origin: Optional[str] = None
        self.told = 0        # requests carried out
        self.dropped = 0     # requests dropped because busy
        self.on_told = on_told
        self._lock = threading.Lock()
        self._logs = LogLimiter(log)     # presses come from outside (button, web, MQTT): a few lines each
        self._busy = False
        self._closed = False
        self._idle = threading.Event()
        self._idle.set()
        self._q: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="joke-teller", daemon=True)
        self._thread.start()

    # -- public -----------------------------------------------------------
    def start(self) -> None:
        """Start the joke source's background thread (prefetch, cache saves); idempotent."""
        self.source.start()

    @property
    def busy(self) -> bool:
        return self._busy

    def tell(self) -> bool:
        """Speak a new joke (non-blocking). ``False`` if busy: the request is dropped."""
        return self._submit("tell")

    def repeat(self) -> bool:
        """Speak the last joke again (a new one if none was told yet). Non-blocking; ``False`` if busy."""
        return self._submit("repeat")

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until the current request is finished (tests, benchmarks, shutdown)."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 3.0) -> None:
        """Stop speaking, stop the worker and the prefetch thread, save the cache."""
        with self._lock:
            self._closed = True
        self.engine.stop()
        self._logs.flush()
        self._q.put(None)
        t_end = time.monotonic() + timeout
        self._thread.join(timeout)
        self.engine.stop()
        self.source.close(timeout=max(0.1, t_end - time.monotonic()))

    # -- worker -------------------------------------------------------------
    def _submit(self, kind: str) -> bool:
        with self._lock:
            if self._closed or self._busy:
                self.dropped += 1
                self._logs.log(("joke", "dropped"), logging.INFO, "joke %s dropped: %s", kind,
                               "closed" if self._closed else "still telling one")
                return False
            self._busy = True
            self._idle.clear()
        self._q.put((kind, time.monotonic()))
        return True

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            kind, _t = item
            try:
                self._handle(kind)
            except Exception:   # never let one joke kill the teller
                log.exception("telling a joke failed")
            finally:
                with self._lock:
                    self._busy = False
                    self._idle.set()

    def _handle(self, kind: str) -> None:
        if kind == "repeat" and self.last_joke:
            text = self.last_joke
            self._logs.log("joke", logging.INFO, "repeating the last joke: %s", text)
        else:
            wait = 0.0 if self.source.prefetching else self.jokes.timeout_s
            joke = self.source.next_joke(wait_api=wait)
            text = joke.text
            self.last_joke, self.last_origin = text, joke.origin
            self._logs.log("joke", logging.INFO, "joke (%s): %s", joke.origin, text)
        self.told += 1
        if self.on_told is not None:
            try:
                self.on_told(text)
            except Exception:
                log.exception("on_told callback failed")
        self.engine.say(text)
