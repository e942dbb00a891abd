"""No long silent stretches (issue 24 item 5): make's install steps, a finite source's progress, bench's variants."""

from __future__ import annotations

import logging
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from djsmile import service
from djsmile.config import Config
from djsmile.service import LoopParts
from djsmile.sources import FolderSource
from helpers import FixedFinder

ROOT = Path(__file__).resolve().parent.parent

# A stand-in for python3: 'python3 -m venv DIR' makes DIR/bin/python (this same script), which logs
# every call; '-c ...' answers pip-install.sh's platform question as an x86 machine without numpy.
FAKE_PY = """#!/bin/sh
echo "CALL $*" >> "{log}"
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    for a in "$@"; do d=$a; done
    mkdir -p "$d/bin" && cp "$0" "$d/bin/python" && chmod +x "$d/bin/python"
fi
if [ "$1" = "-c" ]; then echo "x86_64 - no 3.11"; fi
exit 0
"""


def test_make_says_what_each_install_step_does(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    log = tmp_path / "calls.log"
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PY.format(log=log))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    venv = tmp_path / "venv"
    p = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), f"PYTHON={fake}", f"VENV={venv}",
                        f"{venv}/.installed-dev"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    says = [ln for ln in p.stdout.splitlines() if ln.startswith("make: ")]
    # the line comes before its step, one per step
    steps = ["creating the virtual environment", "upgrading pip", "installing djsmile and what it runs on",
             "installing the test and training packages"]
    assert [next((i for i, ln in enumerate(says) if s in ln), None) for s in steps] == [0, 1, 2, 3], says
    out = p.stdout
    assert out.index("installing djsmile") < out.index("--quiet -e .") < out.index("installing the test")
    calls = log.read_text().splitlines()
    assert any("pip install" in c and "-e ." in c for c in calls) and any(".[dev,train]" in c for c in calls)


# --------------------------------------------------------------------------- run: a finite source's progress
class SlowModel:
    threshold = 0.5

    def predict(self, gray, boxes, landmarks=None):
        time.sleep(0.01)
        return np.array([0.1] * len(boxes), np.float32)


def test_a_finite_source_reports_its_progress(tmp_path, monkeypatch, caplog):
    for i in range(60):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((40, 40), i, np.uint8))
    monkeypatch.setattr(service, "PROGRESS_EVERY_S", 0.15)
    cfg = Config()
    with caplog.at_level(logging.INFO, logger="djsmile.service"):
        assert service.run(cfg, FolderSource(tmp_path, cfg), LoopParts(model=SlowModel(), finder=FixedFinder())) == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress: ")]
    assert len(lines) >= 2, lines          # about 0.6 s of work at least (60 x 10 ms)
    done = [int(ln.split()[1].split("/")[0]) for ln in lines]
    assert all(0 < d < 60 for d in done) and done == sorted(done), lines
    assert all("/60 frames (" in ln and " fps, 0 shots" in ln and "s left" in ln for ln in lines), lines


def test_a_camera_gets_no_progress_line(monkeypatch, caplog):
    from djsmile.sources import Frame, Source

    class Cam(Source):
        finite, name = False, "cam"

        def __iter__(self):
            for i in range(40):
                yield Frame(np.zeros((40, 40), np.uint8), i, i / 30)

    monkeypatch.setattr(service, "PROGRESS_EVERY_S", 0.05)
    with caplog.at_level(logging.INFO, logger="djsmile.service"):
        service.run(Config(), Cam(), LoopParts(model=SlowModel(), finder=FixedFinder()))
    assert not [r for r in caplog.records if r.getMessage().startswith("progress: ")]


# --------------------------------------------------------------------------- bench: a line per variant
def test_bench_says_each_variant_and_its_progress(tmp_path, monkeypatch, capfd):
    from djsmile.bench import run as bench_run
    from djsmile.cli import main
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((120, 160, 3), 50 * i, np.uint8))
    monkeypatch.setattr(bench_run, "PROGRESS_EVERY_S", 0.0)
    rc = main(["bench", "--source", str(folder), "--frames", "20", "--warmup", "2", "--chunk", "5",
               "--modes", "full,track", "--threads", "1"])
    assert rc == 0
    err = capfd.readouterr().err
    variants = [ln for ln in err.splitlines() if "bench: variant " in ln]
    assert len(variants) == 2 and "1/2" in variants[0] and "2/2" in variants[1], err[-3000:]
    assert "/t1/full" in variants[0] and "/t1/track" in variants[1]
    progress = [ln for ln in err.splitlines() if "frames per variant timed" in ln]
    assert [re.search(r"(\d+/\d+) frames per variant", ln).group(1) for ln in progress] == \
        ["5/20", "10/20", "15/20"], err[-3000:]


def test_no_progress_line_for_the_last_frame(tmp_path, monkeypatch, caplog):
    # the stop line says it: a "60/60 frames (100%)" progress line (no time left) came before it on a loaded machine
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((40, 40), i, np.uint8))
    monkeypatch.setattr(service, "PROGRESS_EVERY_S", 0.0)   # a progress line after every frame
    cfg = Config()
    with caplog.at_level(logging.INFO, logger="djsmile.service"):
        assert service.run(cfg, FolderSource(tmp_path, cfg), LoopParts(model=SlowModel(), finder=FixedFinder())) == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress: ")]
    assert lines and not [ln for ln in lines if ln.startswith("progress: 5/5 ")], lines
