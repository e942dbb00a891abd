"""What happens when a smile fires: LED, shutter pulse, photo, event line, joke.

Small pieces, in gpiozero's spirit, each usable on its own:

* :class:`SmileLed` - an LED that is lit while the smile holds (``hold``) or
  blinks once per shot (``blink``), in gpiozero's background thread.
* :class:`ShutterPulse` - a GPIO output pulsed for ``shutter_pulse_ms`` on a
  shot (active high or low) for an external camera; never blocks.
* :class:`PhotoStore` - writes a JSON sidecar, then its JPEG, each atomically (temp
  file in the same folder, flush + fsync, ``os.replace``), keeps the folder
  within a count and a size bound (oldest first) and skips photos, with one
  warning, while free disk space is below a floor.
* :class:`EventLog` - appends one JSON line per shot to ``events.jsonl``.
* :class:`PhotoWriter` - a worker thread with a small bounded queue that
  runs the photo store and then the event log, so the frame loop never
  waits on the disk. When the queue is full the newest photo is dropped
  (its event line is still written, with ``"photo": null``).
* :class:`Actions` - the facade the frame loop calls once per frame.

Pins come from gpiozero's current ``Device.pin_factory`` (the service picks
real or mock pins). Nothing here reads the wall clock for logic; the wall
clock only names photos and stamps events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import queue
import shutil
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np

from .errors import CantCreateError, GpioError
from .fsutil import TEMP_EXT, atomic_write, fsync_dir, is_regular_or_absent
from .logutil import LogLimiter

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .config import GpioConfig, StorageConfig
    from .sources import Frame
    from .trigger import TriggerResult

log = logging.getLogger(__name__)

MB = 1024 * 1024
PHOTO_EXT = ".jpg"
SIDECAR_EXT = ".json"
EVENTS_NAME = "events.jsonl"
PHOTOS_NAME = "photos"
#: out of file descriptors (the process or the system at its limit): a moment's wait, not a lost shot
FD_ERRORS = (errno.EMFILE, errno.ENFILE)
FD_RETRY_S = 3.0


# --------------------------------------------------------------------------
# GPIO pieces
# --------------------------------------------------------------------------

def _gpio_device(make, key: str, pin: int):
    """Build a gpiozero device; a failure becomes a one-line GpioError naming the key."""
    try:
        return make()
    except Exception as e:  # gpiozero raises many types (BadPinFactory, GPIOPinInUse, OSError...)
        raise GpioError(f"cannot use GPIO pin {pin} (config key {key}): {e.__class__.__name__}: {e}; "
                        f"pick another pin, or run with --no-gpio") from None


class SmileLed:
    """An LED that shows the smile: lit while it holds (``hold``) or one blink per shot (``blink``)."""

    def __init__(self, pin: int, mode: str = "hold", blink_s: float = 0.5):
        from gpiozero import LED

        self.mode = mode
        self.blink_s = float(blink_s)
        self.led = _gpio_device(lambda: LED(pin, initial_value=False), "gpio.led_pin", pin)
        self._lit = False

    def update(self, holding: bool) -> None:
        """Called every frame: in ``hold`` mode the LED follows ``holding``."""
        if self.mode != "hold":
            return
        holding = bool(holding)
        if holding != self._lit:  # only touch the pin on a change
            self._lit = holding
            if holding:
                self.led.on()
            else:
                self.led.off()

    def shot(self) -> None:
        """Called on a shot: in ``blink`` mode one blink of ``blink_s`` (background)."""
        if self.mode == "blink":
            self.led.blink(on_time=self.blink_s, off_time=0, n=1, background=True)

    @property
    def is_lit(self) -> bool:
        return bool(self.led.value)

    def off(self) -> None:
        self._lit = False
        self.led.off()

    def close(self) -> None:
        try:
            self.off()
        finally:
            self.led.close()


class ShutterPulse:
    """A GPIO output pulsed for ``pulse_ms`` per shot; inactive otherwise (active high or low)."""

    def __init__(self, pin: int, active_high: bool = True, pulse_ms: int = 100):
        from gpiozero import DigitalOutputDevice  # an OutputDevice that can blink in the background

        self.pulse_s = pulse_ms / 1000.0
        self.active_high = bool(active_high)
        self.out = _gpio_device(
            lambda: DigitalOutputDevice(pin, active_high=self.active_high, initial_value=False),
            "gpio.shutter_pin", pin)

    def fire(self) -> None:
        """Start one pulse and return at once (gpiozero's blink thread ends it)."""
        self.out.blink(on_time=self.pulse_s, off_time=0, n=1, background=True)

    @property
    def active(self) -> bool:
        return bool(self.out.value)

    def off(self) -> None:
        self.out.off()

    def close(self) -> None:
        try:
            self.off()
        finally:
            self.out.close()


# --------------------------------------------------------------------------
# Disk pieces
# --------------------------------------------------------------------------

def _box(box) -> list[int]:
    return [int(v) for v in box]


def _prob(p) -> float:
    return round(float(p), 4)


def event_faces(result: "TriggerResult") -> list[dict]:
    """The ``faces`` list of an event line: ``{"box": [x, y, w, h], "p_smile": float}``."""
    return [{"box": _box(f.box), "p_smile": _prob(f.p_smile)} for f in result.faces]


def sidecar_faces(result: "TriggerResult") -> list[dict]:
    """The richer faces list of a photo's JSON sidecar."""
    out = []
    for f in result.faces:
        out.append({"id": int(f.id), "box": _box(f.box), "p_smile": _prob(f.p_smile),
                    "p_smooth": _prob(f.p_smooth), "smiling": bool(f.smiling),
                    "frames_smiling": int(f.frames_smiling)})
    return out


def photo_stem(when: datetime, frame: int) -> str:
    """``20261125-221530-123_f000042``: wall-clock time to the millisecond, then the frame index."""
    return f"{when:%Y%m%d-%H%M%S}-{when.microsecond // 1000:03d}_f{int(frame):06d}"


class PhotoStore:
    """A folder of JPEG photos with JSON sidecars, written atomically and kept within bounds.

    ``max_photos`` (0 = no limit) and ``max_mb`` (0 = no limit; sidecars
    count too) bound the folder: after each photo the oldest ones (by name,
    which starts with the time) are deleted with their sidecars; the newest
    photo is always kept. Below ``min_free_mb`` of free disk space photos are
    skipped; one warning says so, and one info line says when space is back.
    """

    def __init__(self, folder: Path, *, jpeg_quality: int = 90, max_photos: int = 0,
                 max_mb: float = 0.0, min_free_mb: float = 0.0):
        self.folder = Path(folder).absolute()  # events.jsonl names photos by absolute path
        self.jpeg_quality = int(jpeg_quality)
        self.max_photos = int(max_photos)
        self.max_mb = float(max_mb)
        self.min_free_mb = float(min_free_mb)
        self.low_space = False   # True while photos are being skipped for lack of space
        self.skipped = 0         # photos skipped for lack of space
        self.folder.mkdir(parents=True, exist_ok=True)
        self.clean_temp()

    def clean_temp(self) -> int:
        """Remove what a crash or power cut left behind: temp files, sidecars without their photo."""
        n = 0
        leftovers = list(self.folder.glob("*" + TEMP_EXT))
        leftovers += [p for p in self.folder.glob("*" + SIDECAR_EXT)
                      if not p.name.startswith(".") and not p.with_suffix(PHOTO_EXT).exists()]
        for p in leftovers:
            try:
                p.unlink()
                n += 1
            except OSError as e:
                log.warning("cannot remove leftover file %s: %s", p, e)
        if n:
            log.info("removed %d leftover file(s) (unfinished photos) from %s", n, self.folder)
        return n

    def has_space(self) -> bool:
        """Free space at or above the floor (one warning when it first drops below)."""
        if self.min_free_mb <= 0:
            return True
        try:
            free_mb = shutil.disk_usage(self.folder).free / MB
        except OSError as e:
            log.debug("cannot read free space of %s: %s", self.folder, e)
            return True
        if free_mb < self.min_free_mb:
            if not self.low_space:
                log.warning("only %.0f MB free on %s (floor storage.min_free_mb = %g): skipping photos "
                            "until space is freed", free_mb, self.folder, self.min_free_mb)
                self.low_space = True
            return False
        if self.low_space:
            log.info("%.0f MB free on %s again: saving photos", free_mb, self.folder)
            self.low_space = False
        return True

    def _free_name(self, stem: str) -> str:
        name, n = stem, 1
        while (self.folder / (name + PHOTO_EXT)).exists():
            name = f"{stem}-{n}"
            n += 1
        return name

    def save(self, image: np.ndarray, stem: str, meta: dict | None = None) -> Path | None:
        """Encode ``image`` (BGR or gray uint8) as JPEG, write it and its sidecar; prune.

        Returns the photo's path, or None when skipped for lack of space.
        Raises on an encoding or write failure (no partial file is left).
        """
        if not self.has_space():
            self.skipped += 1
            return None
        ok, buf = cv2.imencode(PHOTO_EXT, image, [int(cv2.IMWRITE_JPEG_QUALITY), self.jpeg_quality])
        if not ok:
            raise ValueError(f"JPEG encoding failed for an image of shape {getattr(image, 'shape', '?')}")
        name = self._free_name(stem)
        photo = self.folder / (name + PHOTO_EXT)
        side_path = photo.with_suffix(SIDECAR_EXT)
        # The sidecar lands first: a kill between the two leaves a sidecar without its photo (removed at
        # the next start), never a photo without its sidecar.
        if meta is not None:
            side = dict(meta)
            side["photo"] = os.path.abspath(photo)   # as in events.jsonl: the JPEG's absolute path
            side["width"], side["height"] = int(image.shape[1]), int(image.shape[0])
            atomic_write(side_path, (json.dumps(side, indent=1) + "\n").encode("utf-8"))
        try:
            atomic_write(photo, buf.tobytes())
        except BaseException:
            if meta is not None:
                with contextlib.suppress(OSError):
                    side_path.unlink()
            raise
        self.prune(keep=photo)
        return photo

    def photos(self) -> list[Path]:
        """Photos in the folder, oldest first (by name, which starts with the time)."""
        return sorted(p for p in self.folder.glob("*" + PHOTO_EXT) if not p.name.startswith("."))

    def prune(self, keep: Path | None = None) -> list[Path]:
        """Delete the oldest photos (and sidecars) beyond the count and size bounds."""
        if self.max_photos <= 0 and self.max_mb <= 0:
            return []
        entries = []
        total = 0
        for p in self.photos():
            size = 0
            for q in (p, p.with_suffix(SIDECAR_EXT)):
                try:
                    size += q.stat().st_size
                except OSError:
                    pass
            entries.append((p, size))
            total += size
        limit = self.max_mb * MB
        deleted = []
        while len(entries) > 1 and ((self.max_photos > 0 and len(entries) > self.max_photos)
                                    or (self.max_mb > 0 and total > limit)):
            p, size = entries.pop(0)
            if keep is not None and p == keep:  # never delete the photo just written
                entries.append((p, size))
                continue
            for q in (p, p.with_suffix(SIDECAR_EXT)):
                try:
                    q.unlink()
                except FileNotFoundError:
                    pass
                except OSError as e:
                    log.warning("cannot delete old photo file %s: %s", q, e)
            total -= size
            deleted.append(p)
        if deleted:
            log.info("deleted %d old photo(s) to stay within storage.max_photos = %d / "
                     "storage.max_photos_mb = %g", len(deleted), self.max_photos, self.max_mb)
        return deleted


class EventLog:
    """``events.jsonl``: one JSON line per shot, written whole or not at all, fsynced, size-bounded.

    A write that does not fit (a full disk: a short write or ENOSPC) is cut
    back to the last whole line and raised. A torn tail found at start (a
    power cut or an older version on a full disk) is moved to
    ``events.jsonl.torn-<time>`` with one warning, so the next line does not
    glue onto it. Past ``max_bytes`` (0 = no bound) the file is renamed to
    ``events.jsonl.1`` (replacing the older one) and a new one is started.
    """

    def __init__(self, path: Path, max_bytes: int = 0):
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._set_aside_torn_tail()

    def _set_aside_odd_file(self) -> None:
        """An events.jsonl that is not a regular file (a folder, a pipe, a link to a device) is moved aside."""
        ok, what = is_regular_or_absent(self.path)
        if ok:
            return
        aside = self.path.with_name(f"{self.path.name}.not-a-file-{datetime.now():%Y%m%d-%H%M%S}")
        os.replace(self.path, aside)
        log.warning("%s is not a regular file (%s): moved to %s, a new one is started", self.path, what, aside.name)

    def _set_aside_torn_tail(self) -> None:
        self._set_aside_odd_file()
        try:
            with open(self.path, "rb+") as f:
                size = f.seek(0, os.SEEK_END)
                if size == 0:
                    return
                f.seek(size - 1)
                if f.read(1) == b"\n":
                    return
                keep = 0
                pos = size
                while pos > 0:  # find the last newline, reading backwards in blocks
                    start = max(0, pos - 65536)
                    f.seek(start)
                    block = f.read(pos - start)
                    i = block.rfind(b"\n")
                    if i >= 0:
                        keep = start + i + 1
                        break
                    pos = start
                f.seek(keep)
                torn = f.read()
                aside = self.path.with_name(f"{self.path.name}.torn-{datetime.now():%Y%m%d-%H%M%S}")
                try:
                    atomic_write(aside, torn)
                    where = f"set aside as {aside.name}"
                except OSError as e:
                    where = f"dropped (cannot write {aside.name}: {e.strerror or e})"
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())
        except FileNotFoundError:
            return
        log.warning("%s ended in half a line (%d bytes, left by a crash or a full disk): %s",
                    self.path, len(torn), where)

    def _rotate(self) -> None:
        old = self.path.with_name(self.path.name + ".1")
        os.replace(self.path, old)
        fsync_dir(self.path.parent)
        log.info("%s reached storage.max_events_mb: moved to %s", self.path.name, old.name)

    def append(self, event: dict) -> None:
        data = (json.dumps(event, separators=(", ", ": ")) + "\n").encode("utf-8")
        if self.max_bytes > 0:
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(data) > self.max_bytes:
                self._rotate()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            before = os.fstat(fd).st_size
            try:
                n = os.write(fd, data)
                if n != len(data):
                    raise OSError(errno.ENOSPC, f"short write ({n} of {len(data)} bytes): disk full?")
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):  # back to the last whole line
                    os.ftruncate(fd, before)
                raise
        finally:
            os.close(fd)


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
    """

    def __init__(self, gpio: "GpioConfig", storage: "StorageConfig", state_dir: Path,
                 on_joke: Callable[[], object] | None = None, *, on_event: Callable[[dict], object] | None = None,
                 queue_size: int = 2):
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
                self.led = SmileLed(g.led_pin, g.led_mode, g.led_blink_s)
            if g.shutter_enabled:
                self.shutter = ShutterPulse(g.shutter_pin, g.shutter_active_high, g.shutter_pulse_ms)
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
                 "faces": event_faces(result), "photo": None}
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
                            "state": "manual" if manual else "smiling", "faces": sidecar_faces(result)}
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
