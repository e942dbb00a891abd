"""Stop signals: SIGINT / SIGTERM / SIGHUP / SIGQUIT set a stop flag; a timer forces the exit if a loop hangs.

``djsmile run`` and ``djsmile calibrate`` stop the same way: the loop checks
the flag every frame; if it has not ended ``STOP_GRACE_S`` after the signal
(or a second signal comes), ``on_force`` ends the process.

``djsmile bench`` keeps Python's Ctrl+C (a KeyboardInterrupt, exit 130) but
through :func:`ctrl_c_kept`, so a KeyboardInterrupt that lands inside a
weakref callback or ``__del__`` (printed as "Exception ignored" and lost) still
stops it at the next check.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

log = logging.getLogger(__name__)

STOP_GRACE_S = 1.5         # after a stop signal, force the exit if the loop has not ended

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


@contextlib.contextmanager
def stop_signals(stop_event: threading.Event, on_force=None, grace_s: float = STOP_GRACE_S, on_status=None):
    """SIGINT/SIGTERM/SIGHUP/SIGQUIT set ``stop_event``; if still running ``grace_s`` later, ``on_force(signum)``.

    Yields a dict whose ``"signum"`` is the first stop signal received (None until one is).

    A second signal forces at once. SIGUSR1 calls ``on_status()`` (the
    status line in the log) and the run goes on. Only in the main thread
    (elsewhere a no-op).
    """
    state = {"timer": None, "signum": None}   # yielded: "signum" is the signal that asked the stop
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, _frame):
        name = signal.Signals(signum).name
        if state["signum"] is None:
            state["signum"] = signum
        if stop_event.is_set():
            log.warning("second %s: stopping now", name)
            if on_force is not None:
                on_force(signum)
            return
        log.info("%s: stopping", name)
        stop_event.set()
        if on_force is not None and state["timer"] is None:
            t = threading.Timer(grace_s, on_force, args=(signum,))
            t.daemon = True
            state["timer"] = t
            t.start()

    def status(_signum, _frame):
        if on_status is not None:
            on_status()

    saved = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    saved[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, status)
    try:
        yield state
    finally:
        if state["timer"] is not None:
            state["timer"].cancel()
        for s, h in saved.items():
            signal.signal(s, h)


@contextlib.contextmanager
def ctrl_c_kept():
    """Ctrl+C (SIGINT) raises KeyboardInterrupt as usual and also sets the yielded event, which a loop checks
    with :func:`check_ctrl_c`: a KeyboardInterrupt raised where Python cannot pass it on (a weakref callback,
    ``__del__``: "Exception ignored in ...") is not lost. Only in the main thread; a SIGINT the process was
    started ignoring (a background job) stays ignored."""
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield pressed
        return

    def handler(_signum, _frame):
        pressed.set()
        raise KeyboardInterrupt

    saved = signal.signal(signal.SIGINT, handler)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, saved)


def check_ctrl_c(pressed: threading.Event | None) -> None:
    """Raise KeyboardInterrupt if Ctrl+C was pressed (see :func:`ctrl_c_kept`)."""
    if pressed is not None and pressed.is_set():
        raise KeyboardInterrupt
