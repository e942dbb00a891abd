"""The ``djsmile calibrate`` loop: learn the trigger's thresholds from the person in front of the camera.

Two phases of ``--seconds`` each (stream time, so a recorded clip calibrates
the same way every time): a straight face, then a smile. Each frame goes
through the same face finder, model and trigger as ``djsmile run``; the
p_smile of the face the policy picks is collected (frames with no face or
several faces are skipped and counted). The result is
``<state dir>/calibration.json``, which ``djsmile run`` loads; a refusal
(exit 65) writes nothing. ``--reset`` removes the file.

It stops like ``djsmile run``: SIGINT / SIGTERM / SIGHUP / SIGQUIT end it within a
frame (frames are read on a daemon thread, so a stalled camera cannot hold up the
stop), with the LED off and nothing written; Ctrl+C exits 130, the others 0.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time

from ..errors import EX_DATAERR, EX_INTERRUPTED, EX_OK, EX_SOFTWARE, CantCreateError
from ..fsutil import atomic_write, file_sha256
from ..signals import STOP_GRACE_S, stop_signals
from . import file
from .session import DONE_SOLID_S, Guide, Session
from .thresholds import DEFAULT_SECONDS

log = logging.getLogger(__name__)


def _led(cfg):
    """The LED on gpio.led_pin for the prompts (:func:`djsmile.gpio.prompt_led`; MockFactory off a Pi, as
    ``djsmile run``), or None."""
    from .. import gpio
    if not cfg.gpio.led_enabled:
        return None
    gpio.set_pin_factory(cfg.gpio, log=log)
    return gpio.prompt_led(cfg.gpio)


def calibrate(cfg, *, seconds: float = DEFAULT_SECONDS, json_out: str | None = None,
              reset: bool = False) -> int:
    """``djsmile calibrate`` with ``cfg`` loaded and checked: returns the exit code (0, or 65 on a refusal)."""
    from ..model import SmileModel
    from ..trigger import Trigger

    state_dir = cfg.state_dir()
    if reset:
        gone = file.remove(state_dir)
        print(f"removed {file.path_in(state_dir)}" if gone else f"no calibration at {file.path_in(state_dir)}")
        return 0

    model = SmileModel.from_config(cfg.model)
    sha = file_sha256(model.path)
    trigger = Trigger(cfg.trigger, model.threshold)
    stop_event = threading.Event()
    held: dict = {}

    def force_exit(signum):
        log.error("still not stopped %.1f s after the signal; forcing the exit (nothing written)", STOP_GRACE_S)
        led = held.get("led")
        if led is not None:
            try:
                led.off()
            except Exception:
                pass
        sys.stderr.flush()
        os._exit(EX_SOFTWARE)

    with stop_signals(stop_event, on_force=force_exit) as stopped:
        return _calibrate(cfg, model, sha, trigger, state_dir, seconds, json_out, stop_event, stopped, held)


def _stopped_code(stopped: dict) -> int:
    """A calibration stopped by a signal: one line; 130 for Ctrl+C, 0 otherwise (as ``djsmile run``)."""
    signum = stopped.get("signum")
    name = signal.Signals(signum).name if signum else "a stop"
    if signum == signal.SIGINT:
        log.warning("djsmile calibrate interrupted (Ctrl+C): nothing written")
        return EX_INTERRUPTED
    log.info("calibration stopped (%s) before it finished: nothing written", name)
    return EX_OK


def _calibrate(cfg, model, sha, trigger, state_dir, seconds, json_out, stop_event, stopped, held) -> int:
    from ..faces import FaceFinder
    from ..pipeline import Pipeline
    from ..sources import FrameReader, OpenCancelled, open_source
    from ..speech import make_engine

    try:
        source = open_source(cfg.camera.source, cfg, cancel=stop_event)
    except OpenCancelled:
        return _stopped_code(stopped)
    finder = None
    led = None
    guide = None
    reader = None
    try:
        # a file runs flat out (stream time); a camera is paced: as in 'djsmile run'
        finder = FaceFinder.from_config(cfg.detector, paced=not source.finite)
        pipeline = Pipeline(finder, model, trigger)
        led = held["led"] = _led(cfg)
        guide = Guide(make_engine(cfg.speech), led, out=lambda s: print(s, flush=True),
                      err=lambda s: print(s, file=sys.stderr, flush=True))
        session = Session(state_dir, sha, guide, seconds=seconds, policy=cfg.trigger.policy)
        log.info("calibrating from %s: %g s straight face, then %g s smile", source.name,
                 seconds, seconds)
        reader = FrameReader(source)   # a source stuck in a blocking read cannot hold up a stop
        while not stop_event.is_set():
            frame = reader.next(stop_event)
            if frame is None:
                break
            result = pipeline.process(frame)  # as in 'djsmile run' (an image is a new scene)
            if not session.feed(frame.t, result.faces):
                break
        if stop_event.is_set():
            return _stopped_code(stopped)
        try:
            data = session.finish()
        except OSError as e:
            raise CantCreateError(f"cannot write {file.path_in(state_dir)} ({e.strerror or e}); "
                              "use --state-dir with a writable folder") from None
        guide.close(timeout=cfg.speech.timeout_s)
        if data is None:   # refused: the guide has printed and spoken the one line
            return EX_DATAERR  # the refusal (CalibrationRefused, a DataError)
        if led is not None:   # "solid 1 s = done": let it show before the pin is released
            time.sleep(DONE_SOLID_S)
        log.info("wrote %s", file.path_in(state_dir))
        if json_out:
            text = json.dumps(data, indent=2) + "\n"
            if json_out == "-":
                sys.stdout.write(text)
            else:
                try:
                    atomic_write(json_out, text.encode())
                except OSError as e:
                    raise CantCreateError(f"cannot write --json {json_out} ({e.strerror or e})") from None
        n, s = data["neutral"], data["smile"]
        print(f"straight face p_smile median {n['median']:.2f} (p90 {n['p90']:.2f}, {n['n']} frames); "
              f"smile median {s['median']:.2f} (p10 {s['p10']:.2f}, {s['n']} frames); "
              f"{data['frames_skipped']} frames skipped", flush=True)
        print(f"thresholds: on {data['on_threshold']:.3f}, off {data['off_threshold']:.3f} "
              f"-> {file.path_in(state_dir)}", flush=True)
        return 0
    finally:
        if guide is not None:
            guide.close(timeout=1.0)
        if reader is not None:
            reader.finish()
        source.close()
        if finder is not None:
            finder.close()
        if led is not None:
            try:
                led.close()   # off (stops a blink in progress), then the pin released low
            except Exception:
                pass
