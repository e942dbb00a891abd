"""What happens when a smile fires: LED, shutter pulse, photo, event line, joke.

* :class:`PhotoWriter` - a worker thread with a small bounded queue that
  runs the photo store and then the event log (:mod:`djsmile.storage`), so
  the frame loop never waits on the disk. When the queue is full the newest
  photo is dropped (its event line is still written, with ``"photo": null``).
* :class:`Actions` - the facade the frame loop calls once per frame: the
  LED and the shutter pulse (:mod:`djsmile.gpio`), the photo writer, the joke.

Pins come from gpiozero's current ``Device.pin_factory`` (the service picks
real or mock pins). Nothing here reads the wall clock for logic; the wall
clock only names photos and stamps events.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import queue
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .errors import CantCreateError
from .gpio import ShutterPulse, SmileLed
from .logutil import LogLimiter
from .storage import EVENTS_NAME, MB, PHOTOS_NAME, EventLog, PhotoStore, photo_stem

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .config import GpioConfig, StorageConfig
    from .sources import Frame
    from .trigger import TriggerResult

log = logging.getLogger(__name__)

#: out of file descriptors (the process or the system at its limit): a moment's wait, not a lost shot
FD_ERRORS = (errno.EMFILE, errno.ENFILE)
FD_RETRY_S = 3.0


# --------------------------------------------------------------------------
# The worker
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Shot:
    """One firing, as handed from the frame loop to the writer thread."""
    event: dict                       # the events.jsonl line; "photo" is filled in by the writer
    stem: str                         # photo file name without extension
    image: np.ndarray | None = None   # the full-res still (None: no photo for this shot)
    sidecar: dict | None = None       # the photo's JSON sidecar


class PhotoWriter:
    """A worker thread: for each shot, save the photo (if any), then append the event line.

    At most ``queue_size`` photos wait; a shot beyond that keeps its event
    line but loses its photo (newest dropped, logged). ``on_event(event)`` is
    called on the worker thread after each line is written.
    """

    def __init__(self, store: PhotoStore | None, events: EventLog, *, queue_size: int = 2,
                 on_event: Callable[[dict], object] | None = None):
        self.store = store
        self.events = events
        self.queue_size = max(1, int(queue_size))
        self.on_event = on_event
        self.dropped = 0            # photos dropped because the queue was full or at shutdown
        self.failed = 0             # photos that could not be written
        self.written = 0            # photos written
        self.last_event: dict | None = None
        self._q: queue.Queue = queue.Queue()   # unbounded in shots, bounded in photos (below)
        self._pending_photos = 0
        self._lock = threading.Lock()
        self._abort = threading.Event()
        self._closed = False
        self._logs = LogLimiter(log)     # manual shots come from outside (MQTT): a flood of them is a few lines
        self._thread = threading.Thread(target=self._run, name="djsmile-photos", daemon=True)
        self._thread.start()

    def has_room(self) -> bool:
        """Would a photo be accepted now? (Lets the loop skip grabbing a still it would drop.)"""
        with self._lock:
            return not self._closed and self._pending_photos < self.queue_size

    def note_dropped(self, frame) -> None:
        """Count (and log) a photo the caller did not even grab because the queue was full."""
        with self._lock:
            self.dropped += 1
        self._logs.log("full", logging.WARNING, "photo queue full (%d waiting): dropping the photo of frame %s",
                       self.queue_size, frame)

    def submit(self, shot: Shot) -> bool:
        """Queue a shot without blocking; False if its photo was dropped (queue full / closed)."""
        with self._lock:
            if self._closed:
                log.warning("shot at frame %s after close: ignored", shot.event.get("frame"))
                return False
            kept = True
            if shot.image is not None:
                if self._pending_photos >= self.queue_size:
                    shot.image = None
                    self.dropped += 1
                    kept = False
                    self._logs.log("full", logging.WARNING, "photo queue full (%d waiting): dropping the photo "
                                   "of frame %s", self._pending_photos, shot.event.get("frame"))
                else:
                    self._pending_photos += 1
            self._q.put(shot)
        return kept

    def _run(self) -> None:
        while True:
            shot = self._q.get()
            try:
                if shot is None:
                    return
                self._handle(shot)
            except Exception:  # never let one bad shot stop the writer
                log.exception("photo writer: shot failed")
            finally:
                self._q.task_done()

    def _handle(self, shot: Shot) -> None:
        photo = None
        if shot.image is not None:
            try:
                if self._abort.is_set():
                    with self._lock:
                        self.dropped += 1
                    log.warning("shutting down: photo of frame %s not written", shot.event.get("frame"))
                elif self.store is not None:
                    photo = self._when_fds_allow(lambda: self.store.save(shot.image, shot.stem, shot.sidecar))
                    if photo is not None:
                        self.written += 1
            except Exception as e:
                self.failed += 1
                log.error("photo of frame %s not saved: %s: %s", shot.event.get("frame"),
                          e.__class__.__name__, e)
            finally:
                shot.image = None
                with self._lock:
                    self._pending_photos -= 1
        event = dict(shot.event)
        event["photo"] = os.path.abspath(photo) if photo is not None else None
        try:
            self._when_fds_allow(lambda: self.events.append(event))
        except Exception as e:
            log.error("event of frame %s not written to %s: %s", event.get("frame"), self.events.path, e)
        self.last_event = event
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("on_event callback failed")

    def _when_fds_allow(self, fn):
        """``fn()``, tried again for up to ``FD_RETRY_S`` while it fails for want of a file descriptor."""
        deadline = time.monotonic() + FD_RETRY_S
        while True:
            try:
                return fn()
            except OSError as e:
                if e.errno not in FD_ERRORS or time.monotonic() >= deadline or self._abort.is_set():
                    raise
                self._logs.log("fds", logging.WARNING, "out of file descriptors (%s): retrying the shot's files",
                               e.strerror or e)
                time.sleep(0.05)

    @property
    def pending(self) -> int:
        """Shots queued or being written."""
        return self._q.unfinished_tasks

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every queued shot is written (True) or ``timeout`` s pass (False)."""
        deadline = time.monotonic() + timeout
        while self._q.unfinished_tasks > 0 and self._thread.is_alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 2.0) -> bool:
        """Finish queued shots within ``timeout`` s; then drop remaining photos. True if all done."""
        with self._lock:
            if self._closed:
                return not self._thread.is_alive()
            self._closed = True
            self._q.put(None)
        self._thread.join(timeout)
        self._logs.flush()
        if self._thread.is_alive():
            # Photos not started yet are dropped; one being written finishes or, if the process
            # exits first, leaves only a hidden temp file that the next start removes.
            self._abort.set()
            log.warning("photo writer still busy after %.1f s: remaining photos dropped", timeout)
            return False
        return True


# --------------------------------------------------------------------------
# The facade
# --------------------------------------------------------------------------

class Actions:
    """Everything a shot does, behind one call per frame.

    ``update(result, frame)`` every frame: the LED follows the smile; on
    ``result.fired`` the shutter pulses, the LED blinks (``blink`` mode), the
    full-res still is grabbed (in the caller's thread, so it is this frame),
    the photo + sidecar + event line are written on a worker thread, and
    ``on_joke()`` is called (it must not block: ``JokeTeller.tell``).
    ``on_event(event)`` (optional) gets each event dict once it is written.
    ``pin_factory`` (optional, as in gpiozero): the LED's and shutter's pins; default the global one.
    """

    def __init__(self, gpio: "GpioConfig", storage: "StorageConfig", state_dir: Path,
                 on_joke: Callable[[], object] | None = None, *, on_event: Callable[[dict], object] | None = None,
                 queue_size: int = 2, pin_factory=None):
        g, s = gpio, storage
        self.gpio = gpio
        self.state_dir = Path(state_dir)
        self.photo_dir = self.state_dir / PHOTOS_NAME
        self.events_path = self.state_dir / EVENTS_NAME
        self.on_joke = on_joke   # the caller passes none when jokes.on_smile is off
        self.shots = 0
        self.led: SmileLed | None = None
        self.shutter: ShutterPulse | None = None
        self._closed = False
        self._logs = LogLimiter(log)     # manual shots come from outside (MQTT): a flood of them is a few lines

        # pins that clash are a config error, found at load (djsmile.config.validate)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            store = None
            if s.save_photos:
                store = PhotoStore(self.photo_dir, jpeg_quality=s.jpeg_quality, max_photos=s.max_photos,
                                   max_mb=s.max_photos_mb, min_free_mb=s.min_free_mb)
            events = EventLog(self.events_path, max_bytes=int(s.max_events_mb * MB))
        except OSError as e:
            raise CantCreateError(f"state folder {self.state_dir} cannot be used ({e.strerror or e}); "
                              "set storage.state_dir or --state-dir to a writable folder") from None

        try:
            if g.led_enabled:
                self.led = SmileLed(g.led_pin, g.led_mode, g.led_blink_s, pin_factory=pin_factory)
            if g.shutter_enabled:
                self.shutter = ShutterPulse(g.shutter_pin, g.shutter_active_high, g.shutter_pulse_ms,
                                            pin_factory=pin_factory)
        except BaseException:
            self._close_gpio()
            raise
        self.writer = PhotoWriter(store, events, queue_size=queue_size, on_event=on_event)
        log.info("actions: LED %s, shutter %s, photos %s, events %s, joke %s",
                 f"pin {g.led_pin} ({g.led_mode})" if self.led else "off",
                 f"pin {g.shutter_pin} ({'active high' if g.shutter_active_high else 'active low'}, "
                 f"{g.shutter_pulse_ms} ms)" if self.shutter else "off",
                 self.photo_dir if store else "off", self.events_path,
                 "on" if self.on_joke else "off")

    @property
    def last_event(self) -> dict | None:
        """The last event line written (by the worker thread), or None."""
        return self.writer.last_event

    def update(self, result: "TriggerResult", frame: "Frame") -> None:
        """Call once per frame with the trigger's result and the frame it came from."""
        if self._closed:
            return
        if self.led is not None:
            self.led.update(result.holding)
        if result.fired:
            self._shoot(result, frame)

    def manual_shot(self, result: "TriggerResult", frame: "Frame", why: str = "manual") -> None:
        """Fire now, as a smile would (shutter, LED, photo, event line with ``"manual": true``), no joke."""
        if self._closed:
            return
        self._logs.log(("manual", why), logging.INFO, "manual shot (%s): frame %d", why, result.frame)
        self._shoot(result, frame, manual=True)

    def _shoot(self, result: "TriggerResult", frame: "Frame", manual: bool = False) -> None:
        self.shots += 1
        # Latency first: the shutter pulse and the LED, then the still, then the slow parts.
        if self.shutter is not None:
            try:
                self.shutter.fire()
            except Exception:
                log.exception("shutter pulse failed")
        if self.led is not None:
            try:
                self.led.shot()
            except Exception:
                log.exception("LED blink failed")
        when = datetime.now().astimezone()
        event = {"time": when.isoformat(), "frame": int(result.frame),
                 "faces": [f.to_json(brief=True) for f in result.faces], "photo": None}
        if manual:
            event["manual"] = True
        shot = Shot(event=event, stem=photo_stem(when, result.frame))
        if self.writer.store is not None and self.writer.has_room():
            try:
                shot.image = frame.still()
            except Exception as e:
                log.error("cannot grab the still of frame %s: %s: %s", result.frame,
                          e.__class__.__name__, e)
            shot.sidecar = {"time": event["time"], "frame": int(result.frame), "t": float(result.t),
                            # the state that fired (the trigger has already moved on to "cooldown")
                            "state": "manual" if manual else "smiling", "faces": [f.to_json() for f in result.faces]}
        elif self.writer.store is not None:
            self.writer.note_dropped(result.frame)
        self.writer.submit(shot)
        if self.on_joke is not None and not manual:
            try:
                self.on_joke()
            except Exception:
                log.exception("joke callback failed")

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until queued photos and event lines are written (for tests and tools)."""
        return self.writer.wait_idle(timeout)

    def _close_gpio(self) -> None:
        for dev in (self.led, self.shutter):
            if dev is not None:
                try:
                    dev.close()
                except Exception:
                    log.exception("closing %s failed", dev.__class__.__name__)

    def close(self, timeout: float = 2.0) -> None:
        """LED off, shutter inactive, pins released; pending photos finished or dropped (no partial files)."""
        if self._closed:
            return
        self._closed = True
        self._close_gpio()
        parts = [f"LED off (pin {self.gpio.led_pin})"] if self.led is not None else []
        parts += [f"shutter off (pin {self.gpio.shutter_pin})"] if self.shutter is not None else []
        if parts:
            log.info("%s", ", ".join(parts))
        self._logs.flush()
        self.writer.close(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
