"""Where the loop's results go: one small protocol (frame, event, joke, close) and one fan-out.

The frame loop (:mod:`djsmile.service`) walks a :class:`Sinks` list: the live
view, MQTT and systemd's notifier are each a :class:`Sink` (Frigate's
``Communicator`` + ``Dispatcher``, in small). Photo and event writing is not a
sink but their source: :class:`~djsmile.actions.Actions` hands each written
event line to :meth:`Sinks.event`.

A sink's methods are called from the loop's thread (``frame``), the photo
writer's (``event``) and the joke teller's (``joke``): they must not block and
must not call back upstream. A sink that raises is logged (a few lines, however
often it fails) and the others still get the call.
"""

from __future__ import annotations

import logging

from .logutil import LogLimiter

log = logging.getLogger(__name__)


class Sink:
    """One output of the loop. Every method is optional: the base class's do nothing.

    ``frame(frame, result, stats)``: once per frame, with the
    :class:`~djsmile.sources.Frame`, the trigger's
    :class:`~djsmile.trigger.TriggerResult` (the one truth: read it, never
    recompute it) and the loop's counters (``stats.fps``, ``stats.shots``,
    ``stats.last_shot_wall``, ``stats.line()``).
    ``event(event)``: a shot's event line once it is written.
    ``joke(text)``: a joke that was told.
    ``close()``: the run ends (called once, in the service's order).
    """

    name = "sink"

    def frame(self, frame, result, stats) -> None:
        pass

    def event(self, event: dict) -> None:
        pass

    def joke(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class Sinks:
    """The fan-out: calls each sink in turn; one that fails does not keep the call from the others."""

    def __init__(self, sinks=()):
        self._sinks: list = []
        self._logs = LogLimiter(log)
        for s in sinks:
            self.add(s)

    def add(self, sink) -> None:
        """Add ``sink`` (None is ignored, so optional parts read as one line)."""
        if sink is not None:
            self._sinks.append(sink)

    def __iter__(self):
        return iter(list(self._sinks))

    def __len__(self) -> int:
        return len(self._sinks)

    def _each(self, method: str, *args) -> None:
        for sink in list(self._sinks):
            try:
                getattr(sink, method)(*args)
            except Exception:
                name = getattr(sink, "name", sink.__class__.__name__)
                self._logs.log((name, method), logging.ERROR, "%s: %s() failed", name, method, exc_info=True)

    def frame(self, frame, result, stats) -> None:
        self._each("frame", frame, result, stats)

    def event(self, event: dict) -> None:
        self._each("event", event)

    def joke(self, text: str) -> None:
        self._each("joke", text)
