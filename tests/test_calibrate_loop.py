"""``djsmile run`` and calibration: the file is honoured or ignored; button hold and page button
start a calibration inside the running loop."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from djsmile import service
from djsmile.calibration import file as calfile
from djsmile.calibration import session as calib_session
from djsmile.calibration import thresholds
from djsmile.fsutil import file_sha256
from djsmile.cli import main
from djsmile.model import default_model_path
from djsmile.sources import Frame, Source
from helpers import QUIET, wait_until

SHA = file_sha256(default_model_path())
DEADLINE_S = 90.0


def calib_file(state, sha=SHA, on=0.83, off=0.61):
    data = {"created": "2026-03-04T05:06:07+00:00",
            "neutral": {"n": 10, "median": 0.05, "p10": 0.01, "p90": 0.3},
            "smile": {"n": 10, "median": 0.99, "p10": 0.97, "p90": 0.99},
            "on_threshold": on, "off_threshold": off, "model_sha256": sha, "frames_skipped": 0}
    calfile.write(state, data)
    return data


def trigger_lines(text):
    return [ln for ln in text.splitlines() if "trigger: policy=" in ln]


def run_clip(tmp_path, clip, *extra):
    return main(["run", "--source", str(clip), "--state-dir", str(tmp_path / "state"), "--no-gpio",
                 "--no-jokes", *QUIET, *extra])


def test_run_honours_then_ignores_the_calibration(tmp_path, calib_photos, clip_writer, capfd):
    clip = clip_writer(tmp_path / "clip.avi", calib_photos["no_smile"][:2])
    state = tmp_path / "state"
    calib_file(state)
    assert run_clip(tmp_path, clip) == 0
    err = capfd.readouterr().err
    (line,) = trigger_lines(err)
    assert "on=0.830 off=0.610" in line and "calibration.json" in line

    # explicit thresholds in the config win
    assert run_clip(tmp_path, clip, "--set", "trigger.on_threshold=0.7") == 0
    (line,) = trigger_lines(capfd.readouterr().err)
    assert "on=0.700" in line and "on=0.830" not in line

    # a calibration made for another model: one warning, then the global thresholds
    calib_file(state, sha="0" * 64)
    assert run_clip(tmp_path, clip) == 0
    err = capfd.readouterr().err
    assert err.count("made for another model") == 1
    (line,) = trigger_lines(err)
    assert "on=0.830" not in line and "sensitivity" in line


class FollowingSource(Source):
    """A person who follows the prompts: straight face, except in a calibration's smile phase.

    Stream time is ``index / 10``; frames come as fast as the loop takes them, until ``stop``.
    """

    finite = True
    name = "following"

    def __init__(self, photos, get_loop_cal, max_frames=5000):
        self.photos, self.get_loop_cal, self.max_frames = photos, get_loop_cal, max_frames
        self.stop = threading.Event()
        self.frames = 0

    def __iter__(self):
        for i in range(self.max_frames):
            if self.stop.is_set():
                return
            t = i / 10.0
            lc = self.get_loop_cal()
            s = lc.session if lc is not None else None
            smiling = s is not None and s.collector.t0 is not None and s.collector.phase_at(t) == "smile"
            pics = self.photos["smile" if smiling else "no_smile"]
            self.frames += 1
            yield Frame(gray=pics[(i // 2) % len(pics)], index=i, t=t)
            time.sleep(0.002)


@pytest.fixture
def running(tmp_path, calib_photos, monkeypatch):
    """Start ``djsmile run`` on a :class:`FollowingSource` in a thread: ``start(*flags)`` -> handles."""
    monkeypatch.setattr(thresholds, "DEFAULT_SECONDS", 1.0)   # 1 s phases (10 frames each) for the in-loop one
    got = {}
    real_for_loop = calib_session.for_loop

    def for_loop(*a, **kw):
        got["lc"] = real_for_loop(*a, **kw)
        return got["lc"]
    monkeypatch.setattr(calib_session, "for_loop", for_loop)

    import djsmile.web

    class WebServer(djsmile.web.WebServer):     # the run's live view, to talk to it
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            got["web"] = self
    monkeypatch.setattr(djsmile.web, "WebServer", WebServer)
    src = FollowingSource(calib_photos, lambda: got.get("lc"))
    monkeypatch.setattr(service, "open_source", lambda spec, cfg, **kw: src)
    threads = []

    def start(*flags):
        rc = {}
        th = threading.Thread(target=lambda: rc.setdefault("rc", main(
            ["run", "--state-dir", str(tmp_path / "state"), *QUIET, *flags])), daemon=True)
        th.start()
        threads.append(th)
        wait_until(lambda: "lc" in got and src.frames > 3 or not th.is_alive(), DEADLINE_S, "the loop to start")
        assert th.is_alive(), f"run ended early: {rc}"
        return src, got, rc, th

    yield start
    src.stop.set()
    for th in threads:
        th.join(30)


def check_calibrated(tmp_path, lc):
    d = json.loads((tmp_path / "state" / "calibration.json").read_text())
    assert d["neutral"]["p90"] < d["off_threshold"] <= d["on_threshold"] < d["smile"]["p10"]
    assert d["model_sha256"] == SHA
    return d


def test_button_hold_calibrates_inside_the_running_loop(tmp_path, running, mock_factory, capfd):
    src, got, rc, th = running("--set", "gpio.pin_factory=\"mock\"", "--set", "gpio.calibrate_hold_s=0.4",
                               "--set", "gpio.button_long_press_s=0.1", "--set", "jokes.on_smile=false")
    lc = got["lc"]
    pin = mock_factory.pin(22)
    pin.drive_low()                                   # pressed (pull-up: pressed = low)
    wait_until(lambda: lc.runs == 1, DEADLINE_S, "the hold to start a calibration")
    pin.drive_high()
    wait_until(lambda: (tmp_path / "state" / "calibration.json").exists() and not lc.active, DEADLINE_S,
               "the calibration")
    d = check_calibrated(tmp_path, lc)
    n_after = src.frames
    wait_until(lambda: src.frames > n_after + 5, DEADLINE_S, "the loop to go on after the calibration")
    assert th.is_alive()
    # the new thresholds are live, and no shot was taken while the person smiled for it
    assert not (tmp_path / "state" / "events.jsonl").exists() or \
        (tmp_path / "state" / "events.jsonl").read_text() == ""
    src.stop.set()
    th.join(30)
    assert rc["rc"] == 0
    assert d["frames_skipped"] >= 0 and lc.runs == 1
    # nor was one counted or announced: the shot count is the events written (0)
    err = capfd.readouterr().err
    assert "smile!" not in err, err[-3000:]
    assert "stopped after" in err and ": 0 shots" in err, err[-3000:]


def test_short_press_still_tells_a_joke_not_a_calibration(tmp_path, running, mock_factory):
    src, got, rc, th = running("--set", "gpio.pin_factory=\"mock\"", "--set", "gpio.calibrate_hold_s=5",
                               "--set", "jokes.on_smile=false")
    pin = mock_factory.pin(22)
    pin.drive_low()
    pin.drive_high()
    n = src.frames
    wait_until(lambda: src.frames > n + 20, DEADLINE_S, "some frames")
    assert got["lc"].runs == 0


def request(port, method, path, token=None):
    url = f"http://127.0.0.1:{port}{path}"
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            return r.status, (json.loads(body) if "json" in r.headers.get("Content-Type", "") else body.decode())
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, body.decode(errors="replace")


@pytest.mark.parametrize("token", ["", "s3cret-tok"])
def test_page_button_calibrates_inside_the_running_loop(tmp_path, running, token):
    src, got, rc, th = running("--no-gpio", "--web", "127.0.0.1:0", "--no-realtime",
                               "--set", f'web.token="{token}"', "--set", "web.joke_interval_s=60")
    web, lc = got["web"], got["lc"]
    wait_until(lambda: web.port != 0, DEADLINE_S, "the live view")
    code, st = request(web.port, "GET", "/status.json", token)
    assert code == 200 and st["calibration"] is None
    if token:
        code, _ = request(web.port, "POST", "/calibrate")             # no token: refused, nothing starts
        assert code == 401
        assert lc.runs == 0 and not lc.active
    code, body = request(web.port, "POST", "/calibrate", token)
    assert code == 200 and body["ok"] is True
    code, body = request(web.port, "POST", "/calibrate", token)      # the same guard as /joke: rate limit
    assert code == 429
    wait_until(lambda: lc.runs == 1 and not lc.active, DEADLINE_S, "the calibration to finish")
    d = check_calibrated(tmp_path, lc)
    code, st = request(web.port, "GET", "/status.json", token)
    assert code == 200 and st["calibration"] == d and st["calibrating"] is None
    code, page = request(web.port, "GET", "/", token)
    assert 'id="calibrate"' in page
    assert th.is_alive()


def test_status_json_shows_the_loaded_calibration(tmp_path, calib_photos, clip_writer):
    from djsmile.config import WebConfig
    from djsmile.web import WebServer
    data = calib_file(tmp_path)
    web = WebServer(WebConfig(listen="127.0.0.1:0"), photo_dir=tmp_path, calibration=calfile.load(tmp_path, SHA))
    web.start()
    try:
        code, st = request(web.port, "GET", "/status.json")
        assert code == 200 and st["calibration"] == data
        code, body = request(web.port, "POST", "/calibrate")     # no loop behind it: said so
        assert code == 503 and "not available" in body["error"]
    finally:
        web.stop()


CHROMIUM = __import__("shutil").which("chromium") or __import__("shutil").which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's 'chromium' package is not installed (apt-get install chromium)")
def test_live_view_shows_calibrated_date(tmp_path):
    import subprocess
    from djsmile.config import WebConfig
    from djsmile.web import WebServer
    calib_file(tmp_path)
    lc = calib_session.LoopCalibration(tmp_path, SHA, calib_session.Guide(out=lambda text: None),
                                       current=calfile.load(tmp_path, SHA))
    web = WebServer(WebConfig(listen="127.0.0.1:0"), photo_dir=tmp_path, calibrator=lc)
    web.start()
    stop = threading.Event()

    def publish():   # a live stream, as the loop gives it
        import numpy as np
        from djsmile.trigger import TriggerResult
        i = 0
        while not stop.wait(0.1):
            web.publish(Frame(gray=np.full((120, 160), 120, np.uint8), index=i, t=i / 10),
                        TriggerResult(frame=i, t=i / 10, fired=False, state="watching"), 10.0)
            i += 1
    pub = threading.Thread(target=publish, daemon=True)
    pub.start()
    try:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=3000", "--dump-dom",
               f"http://127.0.0.1:{web.port}/"]
        dom = subprocess.run(cmd, capture_output=True, timeout=120).stdout.decode(errors="replace")
    finally:
        stop.set()
        pub.join(5)
        web.stop()
    assert "calibrated 2026-03-04" in dom
    assert ">Calibrate</button>" in dom
