"""``djsmile run``: the frame loop that wires source -> faces -> model -> trigger -> actions.

One thread runs the loop; everything that can block (photo writing, speech,
the web view, gpiozero's pulse timers) lives on its own threads, fed without
waiting. The loop:

    for frame in source:
        result = pipeline.process(frame)            # faces -> model -> trigger (djsmile.pipeline)
        actions.update(result, frame)               # LED, shutter, photo, event, joke
        sinks.frame(frame, result, stats)           # live view, MQTT, systemd (djsmile.sinks)

SIGINT / SIGTERM / SIGHUP / SIGQUIT set a stop flag checked every frame: the
loop ends within a frame, then the camera is released, the LED and shutter go
off and a photo being written is finished (or removed, never left
half-written). Frames are read on one daemon thread (a camera's capture thread, else ``FrameReader``'s) and a
stream is opened on one, so a source blocked inside OpenCV (a stalled
network stream: 30 s) cannot hold up the stop. If the loop still has not
ended ``STOP_GRACE_S`` after the signal, a timer forces the exit with the LED
off. SIGUSR1 logs the status line.

A finite source (a video file, an image folder) ends the run with exit 0; a
camera that stops delivering frames ends it with exit 69 (systemd restarts).
A stop by Ctrl+C (SIGINT) exits 130, by SIGTERM / SIGHUP / SIGQUIT 0.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import platform
import signal
import sys
import threading
import time
from typing import Callable

from . import __version__, gpio
from .calibration import file as cal
from .calibration import session as calib_session
from .errors import EX_INTERRUPTED, EX_OK, EX_SOFTWARE, EX_UNAVAILABLE, BusyError
from .fsutil import file_sha256, pid_lock
from .faces import FaceFinder
from .model import SmileModel
from .notify import Notifier
from .pipeline import Pipeline
from .signals import STOP_GRACE_S, stop_signals
from .sinks import Sinks
from .sources import FrameReader, OpenCancelled, Source, ThreadedSource, open_source
from .trigger import Trigger

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"       # in the state dir: held by the running djsmile run
LOG_STATUS_EVERY_S = 60.0  # the same line in the log
FPS_WINDOW_S = 2.0         # the fps figure counts the frames of this many seconds
MAX_ERRORS_IN_A_ROW = 30   # frames failing one after another before the run gives up
PROGRESS_EVERY_S = 10.0    # a finite source (video, image folder): a progress line this often
HELD_BACK_LOG_EVERY_S = 10.0  # at most one "held back by the cooldown" line per this many stream seconds


# --------------------------------------------------------------------------- the loop
class LoopStats:
    """Frames per second and the numbers in the status line.

    ``fps`` is the frames over the elapsed time of the last ``FPS_WINDOW_S``
    seconds (not an average of 1/dt, which uneven frame gaps inflate); one
    frame older than the window is kept, so a stall shows as a low rate.
    """

    def __init__(self):
        self.frames = 0
        self.shots = 0
        self.held_back = 0     # smiles the trigger's cooldown held back
        self.faces = 0
        self.fps = 0.0
        self.last_shot_wall: float | None = None
        self.started = time.monotonic()
        self._times: collections.deque = collections.deque()

    def tick(self, now: float, faces: int, fired: bool) -> None:
        times = self._times
        times.append(now)
        while len(times) > 2 and times[1] <= now - FPS_WINDOW_S:
            times.popleft()
        span = times[-1] - times[0]
        if len(times) >= 2 and span > 0:
            self.fps = (len(times) - 1) / span
        self.frames += 1
        self.faces = faces
        if fired:
            self.shots += 1
            self.last_shot_wall = time.time()

    def stop_line(self) -> str:
        """The last line of a run: frames, shots and the smiles the cooldown held back."""
        held = (f", {self.held_back} smile{'' if self.held_back == 1 else 's'} held back by the cooldown"
                if self.held_back else "")
        return f"stopped after {self.frames} frames: {self.shots} shot{'' if self.shots == 1 else 's'}{held}"

    def progress_line(self, total: int | None, now: float, since: float, frames_before: int = 0) -> str:
        """``progress: 1200/10552 frames (11%), 45.2 fps, 3 shots, about 3 min 26 s left`` (a finite source)."""
        shots = f"{self.shots} shot{'' if self.shots == 1 else 's'}"
        if not total:
            return f"progress: {self.frames} frames, {self.fps:.1f} fps, {shots}"
        left = ""
        elapsed, done = now - since, self.frames - frames_before   # the rate of this loop so far
        if done > 0 and elapsed > 0 and total > self.frames:
            secs = int(round((total - self.frames) * elapsed / done))
            left = f", about {secs // 60} min {secs % 60} s left" if secs >= 60 else f", about {secs} s left"
        return (f"progress: {self.frames}/{total} frames ({100.0 * self.frames / total:.0f}%), "
                f"{self.fps:.1f} fps, {shots}{left}")

    def line(self) -> str:
        last = (time.strftime("%H:%M:%S", time.localtime(self.last_shot_wall))
                if self.last_shot_wall else "none yet")
        return (f"{self.fps:.1f} fps, {self.faces} face{'' if self.faces == 1 else 's'}, "
                f"{self.shots} shot{'' if self.shots == 1 else 's'}, last smile {last}")


@dataclasses.dataclass
class LoopParts:
    """Everything one run of the frame loop works with, beside the config and the source.

    ``model`` and ``finder`` make the :class:`~djsmile.pipeline.Pipeline` with
    ``trigger`` (default: from ``cfg.trigger`` and the model's threshold).
    ``actions`` (:class:`~djsmile.actions.Actions`) shoot; ``sinks`` (a
    :class:`~djsmile.sinks.Sinks`, or a list of :class:`~djsmile.sinks.Sink`)
    are told each frame. ``calibration`` (a
    :class:`~djsmile.calibration.session.LoopCalibration`) is fed every frame; while it
    collects, the actions rest (no shot while you smile for it). ``manual_shot``
    (set by another thread, e.g. MQTT ``shutter/fire``) is read once per frame:
    when set, that frame is shot as a manual shot. ``on_first_frame()`` is
    called once the first frame has been processed.
    """

    model: object
    finder: object
    trigger: Trigger | None = None
    actions: object = None
    sinks: Sinks | list = dataclasses.field(default_factory=Sinks)
    calibration: object = None
    manual_shot: threading.Event | None = None
    stats: LoopStats = dataclasses.field(default_factory=LoopStats)
    stop_event: threading.Event = dataclasses.field(default_factory=threading.Event)
    on_first_frame: Callable[[], object] | None = None


def run(cfg, source: Source, parts: LoopParts, *, max_frames: int | None = None) -> int:
    """Run the frame loop until the source ends, ``parts.stop_event`` is set or ``max_frames`` frames.

    Returns the exit code: 0 when a finite source ended, a stop was asked or
    ``max_frames`` was reached; 69 when a camera stopped delivering frames.
    """
    if parts.trigger is None:
        parts.trigger = Trigger(cfg.trigger, parts.model.threshold)
    if not isinstance(parts.sinks, Sinks):
        parts.sinks = Sinks(parts.sinks)
    reader = FrameReader(source)  # a source stuck in a blocking read cannot hold up a stop
    try:
        return _loop(cfg, source, reader, parts, max_frames)
    finally:
        if not reader.finish():
            log.info("%s is still blocked in a read; not waiting for it", source.name)


def _loop(cfg, source: Source, reader: FrameReader, parts: LoopParts, max_frames: int | None) -> int:
    stop_event, stats, trigger = parts.stop_event, parts.stats, parts.trigger
    actions, calibration, manual_shot, sinks = parts.actions, parts.calibration, parts.manual_shot, parts.sinks
    on_first_frame = parts.on_first_frame
    realtime = bool(cfg.camera.realtime) and source.finite
    wall0 = t0 = None
    next_log = time.monotonic() + LOG_STATUS_EVERY_S
    next_progress = time.monotonic() + PROGRESS_EVERY_S if source.finite else None
    loop_t0, frames0 = time.monotonic(), stats.frames
    errors_in_a_row = 0
    ended = False
    pipeline = Pipeline(parts.finder, parts.model, trigger)
    held_log = {"next_t": None, "quiet": 0}  # rate limit of the "held back" line, in stream time
    while not stop_event.is_set():
        frame = reader.next(stop_event)
        if frame is None:
            ended = not stop_event.is_set()
            break
        if realtime:  # play the file at its own rate
            if wall0 is None:
                wall0, t0 = time.monotonic(), frame.t
            delay = wall0 + (frame.t - t0) - time.monotonic()
            if delay > 0 and stop_event.wait(delay):
                break
        try:
            result = pipeline.process(frame)
            calibrating = calibration is not None and calibration.feed(frame.t, result.faces)
            fired = result.fired and not calibrating   # a smile made for a calibration is no shot
            if actions is not None and not calibrating:
                actions.update(result, frame)
            manual = manual_shot is not None and manual_shot.is_set()
            if manual:
                manual_shot.clear()
                if actions is not None:
                    actions.manual_shot(result, frame)
            errors_in_a_row = 0
        except Exception:
            errors_in_a_row += 1
            log.exception("frame %d (t=%.3f s) failed", frame.index, frame.t)
            if errors_in_a_row >= MAX_ERRORS_IN_A_ROW:
                log.error("%d frames in a row failed; stopping", errors_in_a_row)
                return EX_SOFTWARE
            continue
        if on_first_frame is not None:
            first, on_first_frame = on_first_frame, None
            try:
                first()
            except Exception:
                log.exception("starting after the first frame failed")
        now = time.monotonic()
        stats.tick(now, len(result.faces), fired or manual)
        stats.held_back = trigger.held_back
        if fired:
            log.info("smile! frame %d (t=%.2f s): %s", frame.index, frame.t,
                     ", ".join(f"p={f.p_smile:.2f}" for f in result.faces) or "no face")
        elif result.held_back:
            _log_held_back(held_log, frame, result, trigger)
        sinks.frame(frame, result, stats)
        if next_progress is not None and now >= next_progress:
            next_progress = now + PROGRESS_EVERY_S
            if not source.total_frames or stats.frames < source.total_frames:   # the last frame: the stop line says it
                log.info("%s", stats.progress_line(source.total_frames, now, loop_t0, frames0))
        elif now >= next_log:
            next_log = now + LOG_STATUS_EVERY_S
            log.info("%s", stats.line())
        if max_frames and stats.frames >= max_frames:
            break
    if ended and not source.finite and not stop_event.is_set():
        log.error("%s stopped delivering frames; exiting so the service can restart it", source.name)
        return EX_UNAVAILABLE
    return EX_OK


def _log_held_back(state: dict, frame, result, trigger) -> None:
    """INFO: the cooldown held a smile back (at most one line per ``HELD_BACK_LOG_EVERY_S`` stream seconds)."""
    next_t = state["next_t"]
    if next_t is not None and 0.0 <= next_t - frame.t <= HELD_BACK_LOG_EVERY_S:
        state["quiet"] += 1
        return
    more = f" ({state['quiet']} more since the last such line)" if state["quiet"] else ""
    log.info("smile held back by the cooldown: frame %d (t=%.2f s), %.1f s of trigger.cooldown_s=%g left%s",
             frame.index, frame.t, result.cooldown_left,
             trigger.cooldown_s, more)
    state["next_t"], state["quiet"] = frame.t + HELD_BACK_LOG_EVERY_S, 0


# --------------------------------------------------------------------------- start-up
def _describe_runtime(model) -> str:
    rt = getattr(model, "runtime", None)
    return rt.describe() if rt is not None and hasattr(rt, "describe") else "unknown runtime"


class _Closers:
    """Things to close, in a fixed order whatever order they were opened in."""

    ORDER = ("notifier", "calibration", "actions", "source", "finder", "button", "live view", "MQTT", "teller")

    def __init__(self):
        self._fns: dict = {}

    def add(self, name: str, fn) -> None:
        self._fns[name] = fn

    def close_all(self) -> None:
        for name in self.ORDER:
            fn = self._fns.pop(name, None)
            if fn is None:
                continue
            try:
                fn()
            except Exception:
                log.exception("closing the %s failed", name)


def _lock_state_dir(state_dir) -> int | None:
    """One ``djsmile run`` per state folder: a second one refuses (exit 75) naming the first's PID."""
    try:
        fd, other = pid_lock(state_dir / LOCK_NAME)
    except OSError as e:  # the folder cannot be written: Actions says so, in its own words
        log.debug("no lock on %s: %s", state_dir, e)
        return None
    if fd is None:
        who = f"PID {other}" if other else "another process"
        raise BusyError(f"state folder {state_dir} is in use by another djsmile run ({who}); stop it first "
                        "or give this one another --state-dir")
    return fd


def _stop_code(rc: int, stopped: dict) -> int:
    """Ctrl+C (SIGINT) ends the run with 130, as the README's table says; SIGTERM, SIGHUP and SIGQUIT
    (``systemctl stop``, a closed terminal) with ``rc`` (0: a clean stop systemd does not restart)."""
    if rc == EX_OK and stopped["signum"] == signal.SIGINT:
        log.warning("djsmile run interrupted (Ctrl+C)")
        return EX_INTERRUPTED
    return rc


def joke_on_shot(jokes, teller):
    """What a shot calls for a joke: ``teller.tell`` when ``jokes.on_smile`` is on, else None."""
    return teller.tell if (teller is not None and jokes.on_smile) else None


def _open_source(cfg, stop_event: threading.Event, closers: _Closers) -> Source:
    """The ``--source`` opened (a camera with its capture thread); raises OpenCancelled on a stop meanwhile."""
    source = open_source(cfg.camera.source, cfg, cancel=stop_event)
    closers.add("source", source.close)
    if not source.finite and cfg.camera.capture_thread:
        source = ThreadedSource(source, stop_event)
        closers.add("source", source.close)
    log.info("source %s%s", source.name, " (real time)" if cfg.camera.realtime and source.finite else "")
    return source


def _faces_and_model(cfg, source: Source, closers: _Closers):
    """``(model, finder)``: the smile model and the face finder, said in the log."""
    model = SmileModel.from_config(cfg.model)
    log.info("model %s (%s, threshold %.3f)", model.path, _describe_runtime(model), model.threshold)
    # each image of a folder is its own scene: its faces are detected on it, never tracked into it
    paced = (not source.finite or bool(cfg.camera.realtime)) and not source.still_images
    finder = FaceFinder.from_config(cfg.detector, paced=paced)
    closers.add("finder", finder.close)
    log.info("face detector: %s", finder.detector.describe())
    log.info("full face detection: %s", {"on": "on a worker thread, tracking meanwhile",
                                          "wait": "on a worker thread, waited for (deterministic)",
                                          "off": "in the frame loop"}[finder.async_full])
    return model, finder


def _calibration(cfg, state_dir, model) -> tuple[str, dict | None, object, str]:
    """``(model_sha256, calibration or None, trigger config, where the thresholds come from)``."""
    try:
        model_sha = file_sha256(model.path)
    except OSError as e:   # a model object without a readable file (an embedding program's)
        log.warning("cannot hash the model file %s (%s); calibration.json is not used", model.path, e)
        model_sha = ""
    calib = cal.load(state_dir, model_sha) if model_sha else None
    tcfg, thresholds_from = cal.trigger_config(cfg.trigger, calib)
    if calib is not None and thresholds_from == "config":
        log.info("calibration.json (%s) found, but the config's trigger.on_threshold/off_threshold win",
                 calib["created"])
    return model_sha, calib, tcfg, thresholds_from


def _outputs(cfg, state_dir, closers: _Closers, parts: LoopParts, *, source: Source, model_sha: str,
             calib: dict | None) -> None:
    """Fill ``parts`` with what acts on a result: the actions (LED, shutter, photo, joke), the in-loop
    calibration and the sinks (live view, MQTT); each gets its hooks in its constructor. The live view and
    MQTT start serving last."""
    from .actions import Actions
    from .gpio import attach_button
    from .storage import PHOTOS_NAME
    from .teller import JokeTeller
    from .web import WebServer

    sinks = parts.sinks        # the live view, MQTT and systemd: told each frame, each event, each joke
    teller = None
    if cfg.jokes.on_smile or cfg.gpio.button_enabled or cfg.web.enabled or cfg.mqtt.enabled:
        # no joke work before frames flow (an unrelated error comes alone), and none ahead of
        # time when no smile tells a joke: a button press or the page then fetches one when asked
        jcfg = cfg.jokes if cfg.jokes.on_smile else dataclasses.replace(cfg.jokes, prefetch=0)
        teller = JokeTeller(jcfg, cfg.speech, state_dir, start=False, on_told=sinks.joke)
        closers.add("teller", lambda: teller.close(timeout=0.5))
        parts.on_first_frame = teller.start

    actions = parts.actions = Actions(cfg.gpio, cfg.storage, state_dir, on_joke=joke_on_shot(cfg.jokes, teller),
                                      on_event=sinks.event)
    closers.add("actions", lambda: actions.close(timeout=1.0))
    loop_cal = parts.calibration = calib_session.for_loop(cfg, state_dir, model_sha, trigger=parts.trigger,
                                                          led=actions.led, current=calib)
    closers.add("calibration", lambda: loop_cal.guide.close(timeout=0.5))

    web = mqtt = None
    if cfg.web.enabled:
        web = WebServer(cfg.web, photo_dir=state_dir / PHOTOS_NAME, teller=teller,
                        info={"model": str(parts.model.path), "runtime": _describe_runtime(parts.model),
                              "version": __version__, "source": source.name},
                        calibrator=loop_cal)
        sinks.add(web)
    if cfg.mqtt.enabled:
        from .mqtt import MqttSink
        parts.manual_shot = threading.Event()  # MQTT shutter/fire -> the loop shoots the next frame
        mqtt = MqttSink(cfg.mqtt, version=__version__, on_joke_tell=teller.tell,
                        on_shutter_fire=parts.manual_shot.set)
        sinks.add(mqtt)
    if teller is not None and cfg.gpio.button_enabled:
        button = attach_button(cfg.gpio, teller, on_calibrate=lambda: loop_cal.request("button held"))
        if button is not None:
            closers.add("button", button.close)
    for sink in (web, mqtt):    # each closes after the actions (their last events still go out)
        if sink is not None:
            sink.start()
            closers.add(sink.name, sink.close)


def main(cfg, *, max_frames: int | None = None) -> int:
    """``djsmile run`` with ``cfg`` loaded and checked (``--set`` and flags applied by :mod:`djsmile.commands.run`)."""
    state_dir = cfg.state_dir()
    log.info("djsmile %s on Python %s (%s %s)", __version__, platform.python_version(),
             platform.system(), platform.machine())

    lock_fd = _lock_state_dir(state_dir)
    stop_event = threading.Event()
    closers = _Closers()
    stats = LoopStats()
    parts = None

    def stop_line() -> None:
        log.info("%s", stats.stop_line())

    def force_exit(signum):
        log.error("still not stopped %.1f s after the signal; forcing the exit", STOP_GRACE_S)
        if parts is not None and parts.actions is not None:
            with contextlib.suppress(Exception):
                parts.actions.close(timeout=0.2)
        with contextlib.suppress(Exception):
            stop_line()
            sys.stderr.flush()
        os._exit(EX_SOFTWARE)

    with stop_signals(stop_event, on_force=force_exit, on_status=lambda: log.info("%s", stats.line())) as stopped:
        try:
            try:
                source = _open_source(cfg, stop_event, closers)
            except OpenCancelled as e:
                log.info("%s", e)
                stop_line()
                return _stop_code(EX_OK, stopped)
            model, finder = _faces_and_model(cfg, source, closers)
            log.info("state dir %s", state_dir)
            model_sha, calib, tcfg, thresholds_from = _calibration(cfg, state_dir, model)
            if gpio.in_use(cfg.gpio):
                gpio.set_pin_factory(cfg.gpio, log=log)
            else:
                log.info("GPIO: off (no LED, shutter or button)")
            trigger = Trigger(tcfg, model.threshold)
            parts = LoopParts(model=model, finder=finder, trigger=trigger, stats=stats, stop_event=stop_event)
            _outputs(cfg, state_dir, closers, parts, source=source, model_sha=model_sha, calib=calib)
            log.info("trigger: %s (thresholds from %s)", trigger.describe(),
                     cal.origin_text(thresholds_from, calib, tcfg, model.threshold, state_dir))

            notifier = Notifier.from_env()
            closers.add("notifier", notifier.stopping)
            parts.sinks.add(notifier)
            if stop_event.is_set():  # a signal during start-up
                stop_line()
                return _stop_code(EX_OK, stopped)
            notifier.ready()
            log.info("running; Ctrl+C or SIGTERM stops")
            rc = run(cfg, source, parts, max_frames=max_frames)
            stop_line()
            if isinstance(source, ThreadedSource):
                log.info("capture thread: %d frames captured, %d dropped (the loop was busy)",
                         source.captured, source.dropped)
            return _stop_code(rc, stopped)
        finally:
            closers.close_all()
            if lock_fd is not None:
                os.close(lock_fd)
