"""``djsmile calibrate`` end to end on clips made from the shared test photos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from djsmile.fsutil import file_sha256
from djsmile.cli import main
from helpers import djsmile_env, read_until

SECONDS = "1"     # --seconds: the clip is exactly the two phases


@pytest.fixture
def conf(tmp_path):
    p = tmp_path / "djsmile.toml"
    p.write_text('[speech]\nengine = "none"\n[gpio]\npin_factory = "mock"\n')
    return p


def calibrate(tmp_path, conf, clip, *extra):
    return main(["calibrate", "--source", str(clip), "--state-dir", str(tmp_path / "state"),
                 "--config", str(conf), "--seconds", SECONDS, *extra])


@pytest.mark.slow
def test_clip_calibrates_between_the_two_phases(tmp_path, conf, calib_photos, capsys, mock_factory, clip_writer):
    clip = clip_writer(tmp_path / "clip.avi", calib_photos["no_smile"] + calib_photos["smile"])
    rc = calibrate(tmp_path, conf, clip, "--json", str(tmp_path / "out.json"))
    out = capsys.readouterr().out
    assert rc == 0
    d = json.loads((tmp_path / "state" / "calibration.json").read_text())
    assert list(d) == ["created", "neutral", "smile", "on_threshold", "off_threshold",
                       "model_sha256", "frames_skipped"]
    assert json.loads((tmp_path / "out.json").read_text()) == d
    # the phases are the clip's stream time: 10 frames each
    for ph in ("neutral", "smile"):
        assert 5 <= d[ph]["n"] <= 10
    assert d["neutral"]["n"] + d["smile"]["n"] + d["frames_skipped"] == 20
    assert d["neutral"]["p90"] < d["off_threshold"] <= d["on_threshold"] < d["smile"]["p10"]
    assert 0.2 <= d["off_threshold"] <= d["on_threshold"] <= 0.9
    assert d["model_sha256"] == file_sha256(__import__("djsmile.model").model.default_model_path())
    # the prompts were printed, in order
    i, j = out.find("look at the camera with a straight face"), out.find("now smile")
    assert 0 <= i < j
    assert "thresholds: on" in out


def test_smiles_in_both_phases_are_refused(tmp_path, conf, calib_photos, capsys, mock_factory, clip_writer):
    clip = clip_writer(tmp_path / "smiles.avi", calib_photos["smile"] + calib_photos["smile"])
    rc = calibrate(tmp_path, conf, clip, "--json", str(tmp_path / "out.json"))
    err = capsys.readouterr().err
    assert rc == 65
    # the straight-face phase was the problem (it smiled too): the line says so, not "a bigger smile"
    assert "could not tell your smile from your straight face: the straight face already scored like a smile" in err
    assert not (tmp_path / "state" / "calibration.json").exists()
    assert not (tmp_path / "out.json").exists()
    assert not list((tmp_path / "state").glob(".*.tmp"))


def test_no_face_is_refused(tmp_path, conf, capsys, mock_factory, clip_writer):
    clip = clip_writer(tmp_path / "empty.avi", [np.full((480, 640), 90, np.uint8)] * 12)
    assert calibrate(tmp_path, conf, clip) == 65
    assert not (tmp_path / "state" / "calibration.json").exists()


def test_reset_removes_the_file(tmp_path, conf, capsys):
    state = tmp_path / "state"
    state.mkdir()
    (state / "calibration.json").write_text("{}")
    assert main(["calibrate", "--reset", "--state-dir", str(state), "--config", str(conf)]) == 0
    assert not (state / "calibration.json").exists()
    assert main(["calibrate", "--reset", "--state-dir", str(state), "--config", str(conf)]) == 0
    assert "no calibration" in capsys.readouterr().out


class FakeLed:
    def __init__(self):
        self.calls = []

    def blink(self, **kw):
        self.calls.append(("blink", kw))

    def off(self):
        self.calls.append(("off", {}))


class FakeEngine:
    def __init__(self):
        self.said = []

    def say(self, text):
        self.said.append(text)
        return True


def test_guide_prompts_print_speak_and_blink():
    from djsmile.calibration.session import Guide
    led, eng, printed = FakeLed(), FakeEngine(), []
    g = Guide(eng, led, out=printed.append)
    g.phase("neutral")
    g.phase("smile")
    g.done(True, "calibrated")
    g.close()
    assert printed == ["look at the camera with a straight face", "now smile", "calibrated"]
    assert eng.said == printed
    (k1, neutral), (k2, smile), (k3, done) = led.calls
    assert k1 == k2 == k3 == "blink"
    assert neutral["on_time"] > smile["on_time"] and neutral["off_time"] > smile["off_time"]  # slow, then fast
    assert done == {"on_time": 1.0, "off_time": 0, "n": 1, "background": True}   # solid 1 s
    led2, errs = FakeLed(), []
    g = Guide(None, led2, out=printed.append, err=errs.append)
    g.done(False, "could not calibrate")
    assert led2.calls == [("off", {})] and errs == ["could not calibrate"]


@pytest.mark.slow
def test_led_pin_is_off_after_calibrating(tmp_path, conf, calib_photos, mock_factory, capsys, clip_writer):
    clip = clip_writer(tmp_path / "clip.avi", calib_photos["no_smile"] + calib_photos["smile"])
    assert calibrate(tmp_path, conf, clip) == 0
    assert mock_factory.pin(17).state == 0


@pytest.mark.slow
def test_image_folder_calibrates_one_image_per_frame(tmp_path, conf, calib_photos, capsys, mock_factory):
    """An image folder: each image is one frame of 1/camera.fps s (a new scene, nothing carried over)."""
    import cv2
    folder = tmp_path / "me"
    folder.mkdir()
    for i, g in enumerate(calib_photos["no_smile"] + calib_photos["smile"]):
        cv2.imwrite(str(folder / f"{i:02d}.png"), g)
    rc = main(["calibrate", "--source", str(folder), "--state-dir", str(tmp_path / "state"),
               "--config", str(conf), "--seconds", "1", "--set", "camera.fps=5"])
    assert rc == 0, capsys.readouterr().err
    d = json.loads((tmp_path / "state" / "calibration.json").read_text())
    assert d["neutral"]["n"] + d["smile"]["n"] + d["frames_skipped"] == 10
    assert d["neutral"]["p90"] < d["off_threshold"] <= d["on_threshold"] < d["smile"]["p10"]


@pytest.mark.slow
@pytest.mark.parametrize("sig, want", [("SIGTERM", 0), ("SIGHUP", 0), ("SIGQUIT", 0), ("SIGINT", 130)])
def test_calibrate_stops_on_a_signal_like_run_and_writes_nothing(tmp_path, conf, sig, want):
    """SIGTERM / SIGHUP / SIGQUIT: a clean stop (0), Ctrl+C: 130; within 2 s, one line, nothing written."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import cv2
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(tmp_path / "one.png"), np.full((120, 160, 3), 90, np.uint8))
    for i in range(30000):                    # minutes of frames: the calibration is still running
        os.symlink(tmp_path / "one.png", frames / f"{i:05d}.png")
    proc = subprocess.Popen([sys.executable, "-m", "djsmile", "calibrate", "--source", str(frames),
                             "--state-dir", str(tmp_path / "state"), "--config", str(conf), "--seconds", "600"],
                            env=djsmile_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = "".join(read_until(proc.stderr, "calibrating from"))
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    err = seen + err
    assert proc.returncode == want, err[-3000:]
    assert took < 2.5, f"took {took:.2f} s to stop"
    assert "Traceback" not in err
    assert not (tmp_path / "state" / "calibration.json").exists()
    assert not list((tmp_path / "state").glob(".calibration.json.*")) if (tmp_path / "state").exists() else True
    assert "nothing written" in err, err[-3000:]
