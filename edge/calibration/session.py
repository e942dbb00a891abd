"""One guided calibration, fed frame by frame: prompts (printed, spoken, LED) + the collector.

Used by ``djsmile calibrate`` (its own frame loop) and by ``djsmile run``
(the running loop feeds it when the joke button is held or the live view's
*Calibrate* button is pressed: no second camera user).

LED: slow blink = straight-face phase, fast blink = smile phase, solid 1 s =
done (off at once on a refusal). Speech runs on a worker thread so the frame
loop never waits for it; the last line is waited for by :meth:`Guide.close`.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import datetime, timezone

from . import file, thresholds

log = logging.getLogger(__name__)

#: LED (on_time, off_time) per phase
BLINK = {"neutral": (0.5, 0.5), "smile": (0.1, 0.1)}
DONE_SOLID_S = 1.0


class Guide:
    """Says each prompt three ways: ``out(text)`` (print or log), the speech engine, the LED."""

    def __init__(self, engine=None, led=None, out=print, err=None):
        self.engine = engine
        self.led = led          # blink() and off() as gpiozero's LED: djsmile.gpio.SmileLed (or None)
        self.out = out
        self.err = err or out   # the refusal line
        self._q: queue.Queue = queue.Queue(maxsize=4)
        self._worker = None
        if engine is not None:
            self._worker = threading.Thread(target=self._speak, name="calibration-speech", daemon=True)
            self._worker.start()

    def _speak(self) -> None:
        while True:
            text = self._q.get()
            if text is None:
                return
            try:
                self.engine.say(text)
            except Exception:
                log.exception("speaking a calibration prompt failed")

    def say(self, text: str, out=None) -> None:
        (out or self.out)(text)
        if self._worker is not None:
            try:
                self._q.put_nowait(text)
            except queue.Full:
                log.info("speech busy: calibration prompt not spoken: %s", text)

    def _led(self, fn) -> None:
        if self.led is None:
            return
        try:
            fn(self.led)
        except Exception:
            log.exception("calibration LED failed")

    def phase(self, name: str) -> None:
        on, off = BLINK[name]
        self._led(lambda led: led.blink(on_time=on, off_time=off, background=True))
        self.say(thresholds.PROMPTS[name])

    def done(self, ok: bool, text: str) -> None:
        if ok:
            self._led(lambda led: led.blink(on_time=DONE_SOLID_S, off_time=0, n=1, background=True))
        else:
            self._led(lambda led: led.off())
        self.say(text, self.err if not ok else None)

    def close(self, timeout: float = 10.0) -> None:
        """Wait (up to ``timeout``) for the queued speech to finish."""
        if self._worker is not None:
            try:
                self._q.put(None, timeout=timeout)
            except queue.Full:
                pass
            self._worker.join(timeout)
            self._worker = None


class Session:
    """A calibration in progress: ``feed(t, faces)`` per frame until it returns ``False``.

    On the end of the smile phase (or :meth:`finish` when the source ends first) it
    writes ``<state dir>/calibration.json`` and sets :attr:`result`, or sets
    :attr:`error` (the refusal) and writes nothing.
    """

    def __init__(self, state_dir, model_sha256: str, guide: Guide, *, seconds: float = thresholds.DEFAULT_SECONDS,
                 policy: str = "largest"):
        self.state_dir = state_dir
        self.model_sha256 = model_sha256
        self.guide = guide
        self.collector = thresholds.Collector(seconds, policy)
        self.phase: str | None = None
        self.result: dict | None = None
        self.error: thresholds.CalibrationRefused | None = None
        self.finished = False

    def feed(self, t: float, faces) -> bool:
        """One frame's stream time and the trigger's faces; ``False`` once finished."""
        if self.finished:
            return False
        phase = self.collector.add(t, faces)
        if phase != self.phase:
            self.phase = phase
            if phase == "done":
                self.finish()
                return False
            self.guide.phase(phase)
        return True

    def finish(self, now: datetime | None = None) -> dict | None:
        """Summarize and write the file (or refuse); idempotent."""
        if self.finished:
            return self.result
        self.finished = True
        try:
            data = thresholds.summarize(self.collector, self.model_sha256, now or datetime.now(timezone.utc))
        except thresholds.CalibrationRefused as e:
            self.error = e
            log.info("calibration refused: %s", e.detail)
            self.guide.done(False, str(e))
            return None
        file.write(self.state_dir, data)
        self.result = data
        self.guide.done(True, f"calibrated: smile at {data['on_threshold']:.2f}, "
                              f"straight face below {data['off_threshold']:.2f}")
        return data


class LoopCalibration:
    """A calibration inside the running loop, started from another thread (button, web page).

    :meth:`request` only raises a flag; the loop's next frame starts the session
    (so the phases are that frame's stream time) and :meth:`feed` collects while
    it runs. ``on_start()`` and ``on_done(data or None)`` are called in the loop's
    thread. No second camera user: the loop's own frames are used. The live view
    reads :attr:`current` and :attr:`phase`, and asks with :meth:`request`.
    """

    def __init__(self, state_dir, model_sha256: str, guide: Guide, *, seconds: float = thresholds.DEFAULT_SECONDS,
                 policy: str = "largest", on_start=None, on_done=None, current: dict | None = None):
        #: the calibration in use (calibration.json's content; a new one once saved) or None
        self.current = current
        self.state_dir = state_dir
        self.model_sha256 = model_sha256
        self.guide = guide
        self.seconds = float(seconds)
        self.policy = policy
        self.on_start = on_start
        self.on_done = on_done
        self._requested = threading.Event()
        self.session: Session | None = None
        self.runs = 0

    @property
    def active(self) -> bool:
        return self.session is not None or self._requested.is_set()

    @property
    def phase(self) -> str | None:
        s = self.session
        return s.phase if s is not None else ("neutral" if self._requested.is_set() else None)

    def request(self, origin: str = "") -> bool:
        """Ask for a calibration (any thread); ``False`` if one is already under way."""
        if self.active:
            return False
        log.info("calibration asked for%s", f" ({origin})" if origin else "")
        self._requested.set()
        return True

    def feed(self, t: float, faces) -> bool:
        """Call every frame (loop thread); ``True`` while this frame belongs to a calibration."""
        if self.session is None:
            if not self._requested.is_set():
                return False
            self.session = Session(self.state_dir, self.model_sha256, self.guide,
                                   seconds=self.seconds, policy=self.policy)
            self.runs += 1
            if self.on_start is not None:
                self.on_start()
        s = self.session
        try:
            going = s.feed(t, faces)
        except Exception:
            log.exception("calibration failed; the loop goes on with its thresholds")
            going = False
        if going:
            return True
        self.session = None
        self._requested.clear()
        if s.result is not None:
            self.current = s.result
        if self.on_done is not None:
            self.on_done(s.result)
        return True

    def cancel(self) -> None:
        """Drop a calibration in progress (nothing written)."""
        self.session = None
        self._requested.clear()


def for_loop(cfg, state_dir, model_sha256: str, *, trigger, led=None, current: dict | None = None) -> LoopCalibration:
    """The :class:`LoopCalibration` of ``djsmile run``: its LED is the smile LED (``led``, a
    :class:`~djsmile.gpio.SmileLed` or None), its prompts are logged and spoken; a result goes live at
    once (unless the config sets the thresholds). ``current``: calibration.json's content at start."""
    from ..speech import make_engine

    guide = Guide(make_engine(cfg.speech), led, out=lambda text: log.info("calibration: %s", text))
    explicit = bool(cfg.trigger.on_threshold or cfg.trigger.off_threshold)

    def on_start():
        if led is not None:
            led.off()          # the guide's blinking owns the LED until done

    def on_done(data):
        trigger.reset()   # the smile made for the calibration must not become a shot
        if data is None:
            return
        if explicit:
            log.info("calibration saved; the config's trigger.on_threshold/off_threshold still win")
        else:
            trigger.on_threshold, trigger.off_threshold = data["on_threshold"], data["off_threshold"]
            log.info("trigger thresholds from the new calibration: on %.3f off %.3f",
                     trigger.on_threshold, trigger.off_threshold)

    return LoopCalibration(state_dir, model_sha256, guide, seconds=thresholds.DEFAULT_SECONDS,
                           policy=cfg.trigger.policy, on_start=on_start, on_done=on_done, current=current)
