"""djsmile.gpio: gpiozero's own pin factory choice, the MockFactory fallback, devices on a factory of their own."""

from __future__ import annotations

import logging
import sys
import warnings

import pytest

from djsmile import gpio
from djsmile.cli import exit_code_for
from djsmile.config import GpioConfig
from djsmile.errors import GpioError
from helpers import press, wait_until

#: what gpiozero imports for lgpio, rpigpio, pigpio and native: blocked, gpiozero finds no pin library
PIN_LIBRARIES = ("lgpio", "RPi", "RPi.GPIO", "pigpio", "gpiozero.pins.lgpio", "gpiozero.pins.rpigpio",
                 "gpiozero.pins.pigpio", "gpiozero.pins.native")


@pytest.fixture
def unchosen(monkeypatch):
    """No pin factory chosen yet and no GPIOZERO_PIN_FACTORY; the one the test leads to is closed after it."""
    from gpiozero import Device
    saved = Device.pin_factory
    Device.pin_factory = None
    monkeypatch.delenv(gpio.PIN_FACTORY_ENV, raising=False)
    yield Device
    if Device.pin_factory is not None:
        Device.pin_factory.close()
    Device.pin_factory = saved


@pytest.fixture
def no_pin_library(monkeypatch):
    """Every pin library gpiozero tries fails to import (a Pi without python3-lgpio, or a PC)."""
    for name in PIN_LIBRARIES:
        monkeypatch.setitem(sys.modules, name, None)


def gpio_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "GPIO" in r.getMessage() and r.levelno >= logging.INFO]


@pytest.mark.parametrize("on_a_pi", [True, False])
def test_no_pin_library_means_mock_pins_and_one_line(unchosen, no_pin_library, monkeypatch, caplog, on_a_pi):
    """gpiozero's own search (lgpio, rpigpio, pigpio, native) finds nothing: MockFactory, one line, no warning
    escapes to the terminal, gpiozero's reasons at DEBUG."""
    from gpiozero.pins.mock import MockFactory
    monkeypatch.setattr(gpio, "is_raspberry_pi", lambda: on_a_pi)
    caplog.set_level(logging.DEBUG, logger="djsmile.gpio")
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        assert gpio.set_pin_factory(GpioConfig()) == "MockFactory"
    assert [str(w.message) for w in escaped] == []
    assert isinstance(unchosen.pin_factory, MockFactory)
    (line,) = gpio_lines(caplog)
    msg = line.getMessage()
    assert "\n" not in msg and "simulated" in msg
    if on_a_pi:
        assert line.levelname == "WARNING" and "python3-lgpio" in msg
    else:
        assert line.levelname == "INFO" and "not a Pi" in msg
    (debug,) = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert "no pin factory loads" in debug
    assert all(f"Falling back from {n}" in debug for n in ("lgpio", "rpigpio", "pigpio", "native")), debug
    # the simulated pins work: an LED on them reads back
    led = gpio.SmileLed(17)
    led.update(True)
    assert unchosen.pin_factory.pin(17).state
    led.close()
    assert not unchosen.pin_factory.pin(17).state


def test_gpiozero_pin_factory_variable_is_gpiozeros_own(unchosen, monkeypatch, caplog):
    """GPIOZERO_PIN_FACTORY is read by gpiozero itself: 'mock' gives its MockFactory, said in one INFO line."""
    monkeypatch.setenv(gpio.PIN_FACTORY_ENV, "mock")
    caplog.set_level(logging.INFO, logger="djsmile.gpio")
    assert gpio.set_pin_factory(GpioConfig()) == "MockFactory"
    assert [r.getMessage() for r in gpio_lines(caplog)] == ["GPIO: MockFactory"]


def test_a_named_pin_factory_that_cannot_load_is_exit_69_and_leaves_the_environment(unchosen, no_pin_library,
                                                                                    monkeypatch):
    """gpio.pin_factory names the library (it wins over GPIOZERO_PIN_FACTORY); if it does not load: one line, 69."""
    monkeypatch.setenv(gpio.PIN_FACTORY_ENV, "mock")
    with pytest.raises(GpioError) as e:
        gpio.set_pin_factory(GpioConfig(pin_factory="lgpio"))
    assert "gpio.pin_factory = 'lgpio'" in str(e.value) and "\n" not in str(e.value)
    assert exit_code_for(e.value) == 69
    import os
    assert os.environ[gpio.PIN_FACTORY_ENV] == "mock"
    assert unchosen.pin_factory is None


def test_a_factory_already_set_is_kept(mock_factory, caplog):
    caplog.set_level(logging.INFO, logger="djsmile.gpio")
    assert gpio.set_pin_factory(GpioConfig(pin_factory="lgpio")) == "MockFactory"
    assert "already set" in gpio_lines(caplog)[0].getMessage()


def test_devices_take_their_own_pin_factory(unchosen):
    """pin_factory= per device, as in gpiozero: nothing global is chosen or needed."""
    from gpiozero.pins.mock import MockFactory
    pins = MockFactory()
    try:
        led = gpio.SmileLed(5, pin_factory=pins)
        shutter = gpio.ShutterPulse(6, active_high=False, pulse_ms=50, pin_factory=pins)
        calls = []
        button = gpio.JokeButton(13, on_tell=lambda: calls.append("tell"), on_repeat=lambda: calls.append("repeat"),
                                 long_press_s=5.0, pin_factory=pins)
        led.update(True)
        assert pins.pin(5).state
        assert pins.pin(6).state          # active low: idle high
        pins.pin(6).clear_states()
        shutter.fire()
        wait_until(lambda: len(pins.pin(6).states) >= 3, 10, "the shutter pulse")
        assert [s for _, s in pins.pin(6).states] == [True, False, True]   # one pulse, low while it lasts
        press(pins.pin(13))
        wait_until(lambda: calls, 10, "the button's joke")
        assert calls == ["tell"]
        for dev in (led, shutter, button):
            dev.close()
        assert not pins.pin(5).state and pins.pin(6).state
        assert unchosen.pin_factory is None     # the global one was never touched
    finally:
        pins.close()


def test_calibration_led_on_a_busy_pin_is_one_warning_and_none(mock_factory, caplog):
    from gpiozero import OutputDevice
    busy = OutputDevice(17)
    try:
        assert gpio.prompt_led(GpioConfig(led_pin=17)) is None
    finally:
        busy.close()
    (line,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    msg = line.getMessage()
    assert msg.startswith("LED on GPIO17 unavailable (") and "printed and spoken only" in msg
    assert "--no-gpio" not in msg   # gpiozero's own reason, not the GpioError of djsmile run
    assert gpio.prompt_led(GpioConfig(led_enabled=False)) is None


def test_the_loop_calibration_blinks_the_smile_led(mock_factory, tmp_path):
    """djsmile run's in-loop calibration prompts on the smile LED itself (gpio.SmileLed): the pin blinks, the
    hold-mode state is handed back, and a refusal turns it off."""

    from djsmile.calibration import session as calib_session
    from djsmile.config import Config
    from djsmile.trigger import Trigger
    from helpers import wait_until

    cfg = Config()
    cfg.set("speech.engine", "none")
    led = gpio.SmileLed(17, "hold")
    lc = calib_session.for_loop(cfg, tmp_path, "0" * 64, trigger=Trigger(cfg.trigger, 0.5), led=led)
    pin = mock_factory.pin(17)
    try:
        led.update(True)                  # lit: the smile holds
        lc.on_start()                     # the calibration takes the LED over
        assert not pin.state
        pin.clear_states()
        lc.guide.phase("smile")           # fast blink
        wait_until(lambda: sum(1 for _, s in pin.states if s) >= 3, 10, "three blinks of the LED pin")
        lc.guide.done(False, "could not calibrate")
        assert not pin.state
        led.update(True)                  # back to the smile: lit again
        assert pin.state
    finally:
        lc.guide.close(timeout=1)
        led.close()
    assert not pin.state


def test_actions_fire_on_their_own_pin_factory(unchosen, tmp_path):
    """The shot's LED and shutter on the pins handed to Actions: nothing global is chosen or needed."""
    from gpiozero.pins.mock import MockFactory

    from djsmile.actions import Actions
    from djsmile.config import GpioConfig, StorageConfig
    from djsmile.trigger import TrackedFace, TriggerResult
    from djsmile.sources import Frame
    import numpy as np

    pins = MockFactory()
    g = GpioConfig(led_pin=5, shutter_pin=6, led_mode="hold")
    act = Actions(g, StorageConfig(save_photos=False), tmp_path, pin_factory=pins)
    try:
        face = TrackedFace(1, (10, 10, 30, 30), 0.9, 0.9, True, 3)
        frame = Frame(np.zeros((60, 80), np.uint8), 0, 0.0)
        act.update(TriggerResult(0, 0.0, True, "smiling", [face], holding=True, smiling=True, face=face), frame)
        assert pins.pin(5).state                      # the LED holds while the smile does
        wait_until(lambda: len(pins.pin(6).states) >= 3, 10, "the shutter pulse")
        assert [s for _, s in pins.pin(6).states] == [False, True, False]   # one pulse
        assert act.wait_idle(5) and act.last_event["frame"] == 0
    finally:
        act.close()
    assert not pins.pin(5).state and not pins.pin(6).state
