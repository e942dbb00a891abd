"""What the test files share: waiting for a condition, running ``djsmile`` in a subprocess, fake device parts.

Plain functions and classes (``from helpers import wait_until``); the fixtures are in ``conftest.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models" / "smile_int8.tflite"
#: v2, the last single-input box model (shipped 2026-12-02 to 2026-12-06): tests of one-crop models use it
BOX_MODEL = ROOT / "tests" / "data" / "smile_v2_int8.tflite"
PY = sys.executable
# no joke API and no speech: a subprocess run stays off the network and silent
QUIET = ["--set", 'jokes.api_url=""', "--set", 'speech.engine="none"']


# --------------------------------------------------------------------------- waiting
def wait_until(cond, timeout: float = 30.0, what: str = "the condition", step: float = 0.01):
    """Call ``cond()`` every ``step`` s until it returns something true, and return that.

    After ``timeout`` s it fails the test naming ``what``. The timeout only matters when the test fails (a
    condition that holds returns at once), so keep it generous: the machine may be loaded.
    """
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)


def read_until(stream, text: str, timeout: float = 60.0) -> list[str]:
    """Read lines of ``stream`` (e.g. ``proc.stderr``) until one contains ``text``; return the lines read.

    Fails the test, with the last lines read, when the stream ends or ``timeout`` s pass first.
    """
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"never saw {text!r}: " + "".join(seen)[-3000:])


def press(pin, hold_s: float = 0.0) -> None:
    """Press a button on a MockFactory pin (pulled up: low while pressed) for ``hold_s`` s, then let it go."""
    pin.drive_low()
    if hold_s:
        time.sleep(hold_s)
    pin.drive_high()


# --------------------------------------------------------------------------- djsmile in a subprocess
def djsmile_env(**extra: str) -> dict:
    """The environment for a ``djsmile`` subprocess: this one's, unbuffered, and not under systemd."""
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)     # a test run from a systemd unit must not notify it
    env["PYTHONUNBUFFERED"] = "1"      # lines arrive as they are logged
    env.update(extra)
    return env


def run_djsmile(*argv, cwd=ROOT, env=None, timeout: float = 180, **kw) -> subprocess.CompletedProcess:
    """``python -m djsmile ARGV...`` to its end, output captured as text."""
    return subprocess.run([PY, "-m", "djsmile", *map(str, argv)], cwd=cwd, env=env or djsmile_env(),
                          capture_output=True, text=True, timeout=timeout, **kw)


def one_error_line(err: str) -> str:
    """The one ``ERROR`` line of a run's log (and no traceback): what a user reads."""
    lines = [ln for ln in err.splitlines() if ln.startswith("ERROR")]
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- media files
def write_frames(folder: Path, values=(0, 60, 120), size=(160, 120)) -> Path:
    """An image folder: one plain PNG frame of each grey ``value``, ``size`` = (width, height)."""
    import cv2
    folder.mkdir(parents=True, exist_ok=True)
    for i, v in enumerate(values):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((size[1], size[0], 3), v, np.uint8))
    return folder


def write_clip(path: Path, n: int, fps: float = 30.0, size=(160, 120), noise: bool = False) -> Path:
    """An MJPG AVI (a real video file for OpenCV) of ``n`` plain frames, or of random noise."""
    import cv2
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert vw.isOpened()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 255, (size[1], size[0], 3), np.uint8) if noise else \
            np.full((size[1], size[0], 3), (i * 7) % 256, np.uint8)
        vw.write(img)
    vw.release()
    return path


# --------------------------------------------------------------------------- fake device parts
class FakeModel:
    """A smile model whose p_smile is the face box's mean brightness / 255: frames encode their own smile.

    ``fail_on``: the predict calls (1-based) that raise, as an interpreter hiccup would.
    """
    threshold = 0.5
    path = __file__   # a file that exists: run hashes the model file (calibration.json names its sha256)
    runtime = None

    def __init__(self, fail_on=()):
        self.fail_on = set(fail_on)
        self.calls = 0

    def predict(self, gray, boxes, landmarks=None):
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError("interpreter hiccup")
        return np.array([gray[y:y + h, x:x + w].mean() / 255.0 for x, y, w, h in boxes], np.float32)


class FixedFinder:
    """A face finder that finds the same boxes in every frame (``boxes=()``: never a face)."""
    landmarks = None   # no landmarks: a box-crop model, as a finder without them gives

    def __init__(self, boxes=((10, 10, 20, 20),)):
        self.boxes = [tuple(b) for b in boxes]

    def find(self, gray, color=None):
        return list(self.boxes)

    def reset(self):
        pass
