"""Log lines an outsider can trigger (a web request, an MQTT message, a button), rate-limited per key.

A flood of commands must not flood the journal (journald then drops the
service's own lines): per key, at most ``burst`` lines every ``per_s``
seconds; the rest are counted and said in one "K more suppressed" line when
the next line of that key is let through, or at :meth:`LogLimiter.flush`.
"""

from __future__ import annotations

import logging
import threading
import time


class LogLimiter:
    """``limiter.log(key, level, msg, *args)``: at most ``burst`` lines per ``per_s`` seconds for each key."""

    def __init__(self, logger: logging.Logger, per_s: float = 10.0, burst: int = 3, clock=time.monotonic):
        self.logger = logger
        self.per_s = float(per_s)
        self.burst = int(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict = {}      # key -> [window start, lines in the window, suppressed, level]

    def log(self, key, level: int, msg: str, *args, exc_info: bool = False) -> bool:
        """Log the line unless ``key`` had ``burst`` lines in the last ``per_s`` s; True if it was logged.
        ``exc_info``: with the exception being handled (its traceback), as ``logger.exception`` does."""
        now = self._clock()
        with self._lock:
            st = self._keys.get(key)
            summary = None
            if st is None or now - st[0] >= self.per_s:
                if st is not None and st[2]:
                    summary = (st[3], st[2], now - st[0])
                st = self._keys[key] = [now, 0, 0, level]
            if st[1] < self.burst:
                st[1] += 1
                let = True
            else:
                st[2] += 1
                st[3] = max(st[3], level)
                let = False
        if summary is not None:
            self._say_suppressed(key, *summary)
        if let:
            self.logger.log(level, msg, *args, exc_info=exc_info)
        return let

    def _say_suppressed(self, key, level: int, n: int, span: float) -> None:
        self.logger.log(level, "%s: %d more like this suppressed in %.0f s", _name(key), n, span)

    def flush(self) -> None:
        """Say what was suppressed so far (at the end of a run)."""
        now = self._clock()
        with self._lock:
            pending = [(k, st[3], st[2], now - st[0]) for k, st in self._keys.items() if st[2]]
            for k, *_ in pending:
                self._keys[k][2] = 0
        for k, level, n, span in pending:
            self._say_suppressed(k, level, n, span)


def _name(key) -> str:
    return " ".join(str(k) for k in key) if isinstance(key, tuple) else str(key)
