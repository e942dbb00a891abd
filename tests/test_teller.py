"""JokeTeller and the joke button: non-blocking, one joke at a time, press / long press on MockFactory pins."""

from __future__ import annotations

import json
import stat
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from djsmile.config import Config
from djsmile.gpio import attach_button
from djsmile.jokes_bundled import JOKES as BUNDLED
from djsmile.speech import Engine, Espeak
from djsmile.teller import JokeTeller
from helpers import press

EVIL = "$(touch pwned.txt); echo hi"


class RecordingEngine(Engine):
    """Speaks nothing; records what it was asked to say. ``gate`` can hold an utterance open."""

    name = "recording"

    def __init__(self, gate: threading.Event | None = None):
        super().__init__(timeout_s=10)
        self.said: list[str] = []
        self.started = threading.Event()
        self.gate = gate

    def _say(self, text):
        self.said.append(text)
        self.started.set()
        if self.gate is not None:
            self.gate.wait(10)
        return True


def offline_cfg(**gpio):
    cfg = Config()
    cfg.set("jokes.api_url", "")
    cfg.set("speech.engine", "none")
    for k, v in gpio.items():
        cfg.set(f"gpio.{k}", v)
    return cfg


@pytest.fixture
def teller_factory(tmp_path):
    made = []

    def make(cfg=None, engine="recording", state=None):
        if engine == "recording":
            engine = RecordingEngine()
        cfg = cfg or offline_cfg()
        t = JokeTeller(cfg.jokes, cfg.speech, state or tmp_path / "state", engine=engine)
        made.append(t)
        return t
    yield make
    for t in made:
        t.close()


def test_tell_is_non_blocking_and_speaks_a_joke(teller_factory):
    gate = threading.Event()
    eng = RecordingEngine(gate)
    teller = teller_factory(engine=eng)
    t0 = time.perf_counter()
    assert teller.tell() is True
    assert time.perf_counter() - t0 < 0.05                 # the caller (frame loop) is not held up
    assert eng.started.wait(5)
    assert eng.said == [teller.last_joke] and teller.last_joke in BUNDLED
    # Busy: a second trigger is dropped, not queued.
    assert teller.tell() is False and teller.repeat() is False
    gate.set()
    assert teller.wait_idle(5)
    time.sleep(0.1)
    assert len(eng.said) == 1 and teller.dropped == 2
    assert teller.tell() is True and teller.wait_idle(5)
    assert len(eng.said) == 2 and eng.said[0] != eng.said[1]


def test_repeat_tells_the_last_joke_again_even_after_restart(teller_factory, tmp_path):
    eng = RecordingEngine()
    teller = teller_factory(engine=eng)
    teller.tell()
    teller.wait_idle(5)
    teller.repeat()
    teller.wait_idle(5)
    assert eng.said[0] == eng.said[1]
    teller.close()
    eng2 = RecordingEngine()
    teller2 = teller_factory(engine=eng2)                  # same state dir
    assert teller2.repeat() and teller2.wait_idle(5)
    assert eng2.said == [eng.said[0]]


def test_button_press_speaks_a_joke(mock_factory, teller_factory):
    cfg = offline_cfg(button_pin=22, button_bounce_ms=0, button_long_press_s=0.3)
    eng = RecordingEngine()
    teller = teller_factory(cfg, eng)
    button = attach_button(cfg.gpio, teller)
    assert button is not None
    pin = mock_factory.pin(22)
    pin.drive_low()                                          # pressed (pull-up: active low)
    time.sleep(0.05)
    pin.drive_high()                                         # released before the long-press time
    assert eng.started.wait(5) and teller.wait_idle(5)
    assert eng.said == [teller.last_joke] and teller.last_joke in BUNDLED
    button.close()


def test_long_press_repeats_without_telling_a_new_joke(mock_factory, teller_factory):
    cfg = offline_cfg(button_pin=22, button_bounce_ms=0, button_long_press_s=0.15)
    eng = RecordingEngine()
    teller = teller_factory(cfg, eng)
    button = attach_button(cfg.gpio, teller)
    pin = mock_factory.pin(22)
    press(pin, 0.03)                                         # short press: a new joke
    assert teller.wait_idle(5) and len(eng.said) == 1
    time.sleep(0.05)
    press(pin, 0.5)                                          # long press: the same joke again
    time.sleep(0.1)
    assert teller.wait_idle(5)
    assert eng.said == [eng.said[0], eng.said[0]]
    button.close()


def test_button_disabled_or_unusable(mock_factory, teller_factory):
    teller = teller_factory()
    assert attach_button(offline_cfg(button_enabled=False).gpio, teller) is None
    cfg = offline_cfg(led_pin=22, button_pin=22)
    first = attach_button(cfg.gpio, teller)
    assert first is not None
    assert attach_button(cfg.gpio, teller) is None           # pin in use: logged, no crash
    first.close()


# --- the whole path: API -> teller -> engine process, with a joke that tries to run a command

class _Evil(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        body = json.dumps({"id": "evil", "joke": EVIL, "status": 200}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


RECORDER = """#!{python}
import json, sys
open({rec!r}, "a").write(json.dumps({{"argv": sys.argv, "stdin": sys.stdin.read()}}) + "\\n")
"""


def test_shell_metacharacters_reach_the_engine_as_data(tmp_path, monkeypatch, teller_factory):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Evil)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        rec = tmp_path / "engine.rec"
        exe = tmp_path / "espeak-ng"
        exe.write_text(RECORDER.format(python=sys.executable, rec=str(rec)))
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
        cfg = Config()
        cfg.set("jokes.api_url", f"http://127.0.0.1:{httpd.server_address[1]}/")
        cfg.set("speech.espeak_binary", str(exe))
        cfg.set("speech.output", "engine")
        teller = teller_factory(cfg, engine=None)            # engine built from the config
        assert isinstance(teller.engine, Espeak)
        assert teller.source.wait_ready(1, timeout=5)
        assert teller.tell() and teller.wait_idle(10)
        [r] = [json.loads(line) for line in rec.read_text().splitlines()]
        assert r["stdin"] == EVIL and EVIL not in r["argv"]
        assert teller.last_origin == "api"
        assert list(cwd.iterdir()) == [] and not list(tmp_path.rglob("pwned.txt"))
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_close_kills_a_hung_engine(tmp_path, teller_factory):
    exe = tmp_path / "espeak-ng"
    exe.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(120)\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    teller = teller_factory(engine=Espeak(str(exe), output="engine", timeout_s=60))
    assert teller.tell()
    time.sleep(0.3)
    assert teller.busy
    t0 = time.monotonic()
    teller.close()
    assert time.monotonic() - t0 < 3.0
    assert teller.tell() is False                             # closed
