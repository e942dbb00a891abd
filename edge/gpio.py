"""GPIO: which pins (gpiozero's pin factory) and the small devices djsmile drives on them.

* :func:`set_pin_factory` - gpiozero's own choice of pin library
  (``Device.ensure_pin_factory()``: ``GPIOZERO_PIN_FACTORY``, else lgpio,
  rpigpio, pigpio, native), or the one ``gpio.pin_factory`` names; when none
  loads, gpiozero's ``MockFactory`` and one line saying so (a WARNING naming
  python3-lgpio on a Pi, INFO elsewhere).
* :class:`SmileLed` - an LED lit while the smile holds (``hold``) or one blink
  per shot (``blink``); it also blinks the calibration prompts.
* :class:`ShutterPulse` - an output pulsed for ``pulse_ms`` per shot (active
  high or low) for an external camera; never blocks.
* :class:`JokeButton` - a short press tells a joke, a long press repeats the
  last one, a longer hold (optional) calibrates.

Each device takes ``pin_factory=`` like gpiozero's own (None: ``Device.pin_factory``)
and a BCM pin number; blinks and pulses run on gpiozero's background threads.
Tests use ``MockFactory`` and read the pin states.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import warnings

from .errors import GpioError

log = logging.getLogger(__name__)

#: the environment variable gpiozero reads for its pin factory
PIN_FACTORY_ENV = "GPIOZERO_PIN_FACTORY"


# --------------------------------------------------------------------------
# The pin factory
# --------------------------------------------------------------------------

def in_use(gpio_cfg) -> bool:
    """Does the config use any pin (LED, shutter or button)?"""
    g = gpio_cfg
    return bool(g.led_enabled or g.shutter_enabled or g.button_enabled)


def is_raspberry_pi(model_file: str = "/proc/device-tree/model", cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Does the device tree name a Raspberry Pi? Without a device tree (qemu-user's emulated Pi, some
    kernels), /proc/cpuinfo's ``Model`` line."""
    try:
        with open(model_file, "rb") as f:
            return b"raspberry pi" in f.read().lower()
    except OSError:
        pass
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            return any(key.strip() == "Model" and "raspberry pi" in value.lower()
                       for key, _, value in (line.partition(":") for line in f))
    except OSError:
        return False


@contextlib.contextmanager
def _factory_named(name: str):
    """``GPIOZERO_PIN_FACTORY = name`` while gpiozero chooses (nothing changed for an empty name)."""
    if not name:
        yield
        return
    saved = os.environ.get(PIN_FACTORY_ENV)
    os.environ[PIN_FACTORY_ENV] = name
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(PIN_FACTORY_ENV, None)
        else:
            os.environ[PIN_FACTORY_ENV] = saved


def gpiozero_default(name: str = ""):
    """Have gpiozero choose its pin factory (``Device.ensure_pin_factory()``: ``GPIOZERO_PIN_FACTORY``, else
    lgpio, rpigpio, pigpio, native), ``name`` standing for the variable; returns it (now ``Device.pin_factory``).

    gpiozero tells why it passed over each library in warnings; they go into
    the error's text (for the DEBUG line) instead of the terminal.
    """
    from gpiozero import Device

    with warnings.catch_warnings(record=True) as passed_over:
        warnings.simplefilter("always")
        try:
            with _factory_named(name):
                Device.ensure_pin_factory()
        except Exception as e:
            why = "; ".join(str(w.message) for w in passed_over)
            raise RuntimeError(f"{e}" + (f" ({why})" if why else "")) from None
    return Device.pin_factory


def set_pin_factory(gpio_cfg, *, log: logging.Logger = log) -> str:
    """Choose gpiozero's pin factory once, and say which in one ``log`` line (mock off a Pi).

    Returns the factory's class name. A factory already set (a test, an
    embedding program) is kept. ``gpio.pin_factory`` that cannot be loaded
    raises :class:`GpioError`; with ``''`` (automatic) no pin library that
    loads means ``MockFactory``.
    """
    from gpiozero import Device

    name = gpio_cfg.pin_factory
    if Device.pin_factory is not None:  # already chosen (a test, an embedding program)
        chosen = type(Device.pin_factory).__name__
        log.info("GPIO: using the pin factory already set (%s)", chosen)
        return chosen
    if name == "mock":
        from gpiozero.pins.mock import MockFactory
        Device.pin_factory = MockFactory()
        log.info("GPIO: simulated pins (gpio.pin_factory = 'mock'); nothing is wired")
        return "MockFactory"
    try:
        factory = gpiozero_default(name)
    except Exception as e:
        if name:
            raise GpioError(f"config key gpio.pin_factory = {name!r} cannot be loaded ({e}); "
                            "use '' (automatic) or 'mock'") from None
        from gpiozero.pins.mock import MockFactory
        Device.pin_factory = MockFactory()
        log.debug("GPIO: no pin factory loads: %s", e)
        if is_raspberry_pi():
            # e.g. plain Debian Trixie: no python3-lgpio, and gpiozero's native pins do not know a Pi 5
            log.warning("GPIO: no GPIO library works on this Pi (sudo apt install python3-lgpio: Raspberry Pi OS's "
                        "archive has it); pins simulated (gpiozero's MockFactory: the LED and shutter do nothing)")
        else:
            log.info("GPIO: not a Pi, pins simulated (gpiozero's MockFactory: the LED and shutter do nothing)")
        return "MockFactory"
    Device.pin_factory = factory
    log.info("GPIO: %s", type(factory).__name__)
    return type(factory).__name__


# --------------------------------------------------------------------------
# Devices
# --------------------------------------------------------------------------

def _device(make, key: str, pin: int):
    """Build a gpiozero device; a failure becomes a one-line GpioError naming the key."""
    try:
        return make()
    except Exception as e:  # gpiozero raises many types (BadPinFactory, GPIOPinInUse, OSError...)
        raise GpioError(f"cannot use GPIO pin {pin} (config key {key}): {e.__class__.__name__}: {e}; "
                        f"pick another pin, or run with --no-gpio") from None


class SmileLed:
    """An LED that shows the smile: lit while it holds (``hold``) or one blink per shot (``blink``).

    :meth:`blink` and :meth:`off` are gpiozero's ``LED`` ones, for the
    calibration prompts (slow blink, fast blink, solid 1 s).
    """

    def __init__(self, pin: int, mode: str = "hold", blink_s: float = 0.5, *, key: str = "gpio.led_pin",
                 pin_factory=None):
        from gpiozero import LED

        self.mode = mode
        self.blink_s = float(blink_s)
        self.led = _device(lambda: LED(pin, initial_value=False, pin_factory=pin_factory), key, pin)
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

    def blink(self, on_time: float = 1.0, off_time: float = 1.0, n: int | None = None,
              background: bool = True) -> None:
        """Blink ``n`` times (None: until :meth:`off`), as gpiozero's ``LED.blink``."""
        self._lit = False
        self.led.blink(on_time=on_time, off_time=off_time, n=n, background=background)

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

    def __init__(self, pin: int, active_high: bool = True, pulse_ms: int = 100, *, pin_factory=None):
        from gpiozero import DigitalOutputDevice  # an OutputDevice that can blink in the background

        self.pulse_s = pulse_ms / 1000.0
        self.out = _device(
            lambda: DigitalOutputDevice(pin, active_high=bool(active_high), initial_value=False,
                                        pin_factory=pin_factory),
            "gpio.shutter_pin", pin)

    def fire(self) -> None:
        """Start one pulse and return at once (gpiozero's blink thread ends it)."""
        self.out.blink(on_time=self.pulse_s, off_time=0, n=1, background=True)

    def off(self) -> None:
        self.out.off()

    def close(self) -> None:
        try:
            self.off()
        finally:
            self.out.close()


class JokeButton:
    """A push button: a short press calls ``on_tell()``, a long press ``on_repeat()``; optionally a
    longer hold ``on_calibrate()``.

    A short press acts on release, so that holding the button for
    ``long_press_s`` repeats the last joke *instead of* telling a new one.
    With ``on_calibrate`` and ``calibrate_hold_s`` > 0, holding it that long
    calls ``on_calibrate()`` (at that moment, while still held) and the repeat
    then happens on release (a hold shorter than ``calibrate_hold_s``). The
    callbacks run on gpiozero's event thread and must not block.
    """

    def __init__(self, pin: int, *, on_tell, on_repeat, on_calibrate=None, pull_up: bool = True,
                 bounce_s: float | None = None, long_press_s: float = 1.0, calibrate_hold_s: float = 0.0,
                 pin_factory=None):
        from gpiozero import Button

        self.long_press_s = float(long_press_s)
        self.calibrate_hold_s = float(calibrate_hold_s or 0.0) if on_calibrate is not None else 0.0
        self.on_tell, self.on_repeat, self.on_calibrate = on_tell, on_repeat, on_calibrate
        self._held = threading.Event()
        self._pressed_at = 0.0
        self.button = Button(pin, pull_up=pull_up, bounce_time=bounce_s,
                             hold_time=self.calibrate_hold_s or self.long_press_s, hold_repeat=False,
                             pin_factory=pin_factory)
        self.button.when_pressed = self._pressed
        self.button.when_held = self._on_held
        self.button.when_released = self._released

    def _pressed(self) -> None:
        self._held.clear()
        self._pressed_at = time.monotonic()

    def _on_held(self) -> None:
        self._held.set()
        if self.calibrate_hold_s:
            self.on_calibrate()
        else:
            self.on_repeat()

    def _released(self) -> None:
        if self._held.is_set():
            self._held.clear()
        elif self.calibrate_hold_s and time.monotonic() - self._pressed_at >= self.long_press_s:
            self.on_repeat()
        else:
            self.on_tell()

    def close(self) -> None:
        self.button.close()


def attach_button(gpio_cfg, teller, on_calibrate=None, *, pin_factory=None) -> JokeButton | None:
    """The joke button on ``gpio_cfg.button_pin``: short press -> ``teller.tell()``, long press ->
    ``teller.repeat()``, a hold of ``gpio.calibrate_hold_s`` -> ``on_calibrate()`` (see :class:`JokeButton`).

    Returns ``None`` if the button is disabled or the pin cannot be used (one warning).
    """
    g = gpio_cfg
    if not g.button_enabled:
        return None
    try:
        button = JokeButton(g.button_pin, on_tell=teller.tell, on_repeat=teller.repeat, on_calibrate=on_calibrate,
                            pull_up=g.button_pull_up,
                            bounce_s=g.button_bounce_ms / 1000.0 if g.button_bounce_ms > 0 else None,
                            long_press_s=g.button_long_press_s, calibrate_hold_s=g.calibrate_hold_s,
                            pin_factory=pin_factory)
    except Exception as e:   # no GPIO on this machine, pin busy, no pin factory...
        log.warning("joke button on GPIO%d unavailable (%s): no button", g.button_pin, e)
        return None
    calib_s = button.calibrate_hold_s
    log.info("joke button on GPIO%d: press for a joke, hold %.1f s to repeat the last one%s",
             g.button_pin, g.button_long_press_s, f", hold {calib_s:g} s to calibrate" if calib_s else "")
    return button


def prompt_led(gpio_cfg, *, pin_factory=None) -> SmileLed | None:
    """The LED on ``gpio.led_pin`` for calibration prompts, or None (switched off, or the pin cannot be
    used: one warning, the prompts are then printed and spoken only)."""
    if not gpio_cfg.led_enabled:
        return None
    try:
        return SmileLed(gpio_cfg.led_pin, pin_factory=pin_factory)
    except GpioError as e:
        cause = e.__context__ or e   # gpiozero's own error (the GpioError hides it from tracebacks only)
        log.warning("LED on GPIO%d unavailable (%s): prompts are printed and spoken only",
                    gpio_cfg.led_pin, cause)
        return None
