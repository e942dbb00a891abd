"""The calibration core: phases in stream time, skips, stats, thresholds, refusals, the file."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from hypothesis import given, settings, strategies as st

from djsmile.calibration import file as calfile
from djsmile.calibration import thresholds
from djsmile.fsutil import file_sha256
from djsmile.config import Config
from djsmile.errors import EX_DATAERR
from helpers import press, wait_until


def face(p, w=100):
    return SimpleNamespace(p_smile=p, box=(0, 0, w, w), frames_smiling=0)


def collect(neutral, smile, fps=10.0, seconds=1.0):
    """A collector fed ``neutral`` then ``smile`` frames (each a list of faces)."""
    col = thresholds.Collector(seconds=seconds)
    frames = list(neutral) + list(smile)
    for i, faces in enumerate(frames):
        col.add(i / fps, faces)
    return col


def test_phases_follow_stream_time_and_count_skips():
    col = thresholds.Collector(seconds=1.0)
    t0 = 100.0   # stream time need not start at 0
    phases = [col.add(t0 + i / 10, [face(0.1)] if i % 5 else []) for i in range(25)]
    assert phases[:10] == ["neutral"] * 10
    assert phases[10:20] == ["smile"] * 10
    assert phases[20:] == ["done"] * 5
    assert len(col.samples["neutral"]) == 8 and len(col.samples["smile"]) == 8
    assert col.skipped == {"neutral": 2, "smile": 2}
    assert col.frames_skipped == 4


def test_several_faces_are_skipped_not_sampled():
    col = collect([[face(0.1), face(0.9, w=50)]] * 10, [[face(0.9)]] * 10)
    assert col.samples["neutral"] == [] and col.skipped["neutral"] == 10


def test_stats():
    s = thresholds.stats([i / 100 for i in range(101)])
    assert s["n"] == 101
    assert s["median"] == pytest.approx(0.5)
    assert s["p10"] == pytest.approx(0.1)
    assert s["p90"] == pytest.approx(0.9)


def test_thresholds_between_the_distributions_with_hysteresis():
    col = collect([[face(0.1 + 0.01 * (i % 10))] for i in range(10)],
                  [[face(0.8 + 0.01 * (i % 10))] for i in range(10)])
    d = thresholds.summarize(col, "abc", now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert set(d) == set(calfile.KEYS)
    assert d["neutral"]["p90"] < d["off_threshold"] < d["on_threshold"] < d["smile"]["p10"]
    assert d["created"].startswith("2026-01-02T03:04:05")
    assert d["model_sha256"] == "abc" and d["frames_skipped"] == 0


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1), st.floats(0, 1))
def test_thresholds_always_clamped_and_ordered(a, b):
    lo, hi = min(a, b), max(a, b)
    on, off = thresholds.choose_thresholds({"p90": lo}, {"p10": hi})
    assert 0.2 <= off <= on <= 0.9


def test_thresholds_clamped_for_extreme_faces():
    on, off = thresholds.choose_thresholds({"p90": 0.001}, {"p10": 0.05})
    assert (on, off) == (0.2, 0.2)
    on, off = thresholds.choose_thresholds({"p90": 0.95}, {"p10": 0.999})
    assert (on, off) == (0.9, 0.9)


@pytest.mark.parametrize("neutral,smile,names", [
    # the straight face was the problem: it already scored like a smile; the smile itself was clear
    ([[face(0.8)]] * 10, [[face(0.82)]] * 10, ["straight face already scored like a smile", "p90 0.80",
                                                "relax your mouth"]),
    # the smile was the problem: the straight face was clearly straight
    ([[face(0.1)]] * 10, [[face(0.12)]] * 10, ["smile scored too low", "p10 0.12", "bigger smile"]),
    # both in between: too close, neither clearly wrong
    ([[face(0.46)]] * 10, [[face(0.5)]] * 10, ["too close", "0.46", "0.50"]),
    ([[face(0.1)]] * 4 + [[]] * 6, [[face(0.9)]] * 10, ["straight-face phase", "4 of 10 frames",
                                                         "6 with no face", "face the camera"]),
    ([[face(0.1)]] * 10, [[face(0.9), face(0.9)]] * 10, ["smile phase", "0 of 10 frames",
                                                          "10 with several faces", "one person"]),
])
def test_refusals_name_the_phase_that_failed_and_why(neutral, smile, names):
    col = collect(neutral, smile)
    with pytest.raises(thresholds.CalibrationRefused) as e:
        thresholds.summarize(col, "abc")
    msg = str(e.value)
    for n in names:
        assert n in msg, msg
    if "phase" not in names[0]:
        assert msg.startswith("could not tell your smile from your straight face: "), msg
    assert "try more light or a bigger smile" not in msg   # the old one-size advice
    from djsmile.cli import exit_code_for
    assert exit_code_for(e.value) == EX_DATAERR == 65


def test_half_the_frames_with_a_face_is_enough():
    col = collect([[face(0.1)]] * 5 + [[]] * 5, [[face(0.9)]] * 10)
    assert thresholds.summarize(col, "x")["frames_skipped"] == 5


def good(sha="s" * 64):
    col = collect([[face(0.1)]] * 10, [[face(0.9)]] * 10)
    return thresholds.summarize(col, sha)


def test_write_load_roundtrip_and_sha_check(tmp_path, caplog):
    d = good("a" * 64)
    p = calfile.write(tmp_path, d)
    assert p == tmp_path / "calibration.json"
    assert json.loads(p.read_text()) == d
    assert [f.name for f in tmp_path.iterdir()] == ["calibration.json"]   # no temp file left
    assert calfile.load(tmp_path, "a" * 64) == d
    with caplog.at_level("WARNING"):
        assert calfile.load(tmp_path, "b" * 64) is None
    assert sum("another model" in r.message for r in caplog.records) == 1
    assert calfile.remove(tmp_path) is True and not p.exists()
    assert calfile.remove(tmp_path) is False
    assert calfile.load(tmp_path, "a" * 64) is None


@pytest.mark.parametrize("text", ["{", "[]", json.dumps({"on_threshold": 0.5}),
                                  json.dumps({**dict.fromkeys(calfile.KEYS, 1), "on_threshold": "x"})])
def test_bad_file_is_ignored_with_a_warning(tmp_path, caplog, text):
    (tmp_path / "calibration.json").write_text(text)
    with caplog.at_level("WARNING"):
        assert calfile.load(tmp_path) is None
    assert any("calibrate" in r.message for r in caplog.records)


def test_write_refuses_incomplete_data(tmp_path):
    with pytest.raises(ValueError):
        calfile.write(tmp_path, {"created": "now"})
    assert not (tmp_path / "calibration.json").exists()


def test_config_thresholds_win_over_calibration():
    d = good()
    tc, src = calfile.trigger_config(Config().trigger, d)
    assert src == "calibration" and (tc.on_threshold, tc.off_threshold) == (d["on_threshold"], d["off_threshold"])
    cfg = Config()
    cfg.set("trigger.on_threshold", 0.7)
    tc, src = calfile.trigger_config(cfg.trigger, d)
    assert src == "config" and tc.on_threshold == 0.7 and tc.off_threshold == 0.0
    tc, src = calfile.trigger_config(Config().trigger, None)
    assert src == "sensitivity" and tc.on_threshold == 0.0


def test_file_sha256(tmp_path):
    import hashlib
    f = tmp_path / "m.tflite"
    f.write_bytes(b"x" * 3_000_000)
    assert file_sha256(f) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


def test_calibrate_hold_must_be_longer_than_the_repeat_hold(tmp_path):
    from djsmile import config
    from djsmile.errors import ConfigError
    p = tmp_path / "c.toml"
    p.write_text("[gpio]\nbutton_long_press_s = 2.0\ncalibrate_hold_s = 1.5\n")
    with pytest.raises(ConfigError) as e:
        config.load(p)
    from djsmile.cli import exit_code_for
    assert exit_code_for(e.value) == 78 and "gpio.calibrate_hold_s" in str(e.value)
    p.write_text("[gpio]\nbutton_long_press_s = 2.0\ncalibrate_hold_s = 0\n")   # 0 = off
    assert config.load(p).gpio.calibrate_hold_s == 0


class _Teller:
    def __init__(self):
        self.calls = []

    def tell(self):
        self.calls.append("tell")

    def repeat(self):
        self.calls.append("repeat")


@pytest.mark.slow
def test_button_press_repeat_and_calibrate_holds(mock_factory):
    """Short press: a joke; a hold shorter than calibrate_hold_s: the last joke again; the long hold: calibrate."""
    import time
    from djsmile.config import GpioConfig
    from djsmile.gpio import attach_button
    teller, asked = _Teller(), []
    g = GpioConfig(button_long_press_s=0.1, calibrate_hold_s=1.5, button_bounce_ms=0)
    button = attach_button(g, teller, on_calibrate=lambda: asked.append(1))
    pin = mock_factory.pin(g.button_pin)
    try:
        press(pin)
        wait_until(lambda: teller.calls == ["tell"], what="the joke of a short press")
        press(pin, 0.25)                                            # >= long press, far below 1.5 s
        wait_until(lambda: teller.calls == ["tell", "repeat"], what="the last joke again")
        assert asked == []
        pin.drive_low()
        wait_until(lambda: asked == [1], what="a calibration while the button is still held")
        pin.drive_high()
        time.sleep(0.1)
        assert teller.calls == ["tell", "repeat"]                   # no joke on that release
    finally:
        button.close()
