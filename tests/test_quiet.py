"""No noise on error paths (issue 24 item 6): one short line each, details at DEBUG, no joke work when jokes are off."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from helpers import ROOT, djsmile_env, run_djsmile

LEVELS = ("DEBUG ", "INFO ", "WARNING ", "ERROR ")


def djsmile(*argv, cwd=ROOT) -> subprocess.CompletedProcess:
    """``djsmile ARGV`` with gpiozero choosing its pin factory itself and the joke API refused at once."""
    env = djsmile_env(https_proxy="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    env.pop("GPIOZERO_PIN_FACTORY", None)
    return run_djsmile(*argv, cwd=cwd, env=env)


def not_a_pi() -> bool:
    try:
        return "raspberry pi" not in Path("/proc/device-tree/model").read_text().lower()
    except OSError:
        return True


@pytest.mark.slow
def test_a_run_with_jokes_off_prints_only_our_own_short_lines(tmp_path, frames):
    p = djsmile("run", "--source", frames, "--state-dir", tmp_path / "s", "--no-jokes",
                "--set", 'speech.engine="none"')
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert all(ln.startswith(LEVELS) for ln in lines), p.stderr   # no LiteRT "INFO: Created ..." line
    assert "joke API" not in p.stderr and "djsmile.jokes" not in p.stderr, p.stderr   # no joke work at all
    if not_a_pi():
        gpio = [ln for ln in lines if "GPIO:" in ln]
        assert gpio == ["INFO djsmile.service: GPIO: not a Pi, pins simulated (gpiozero's MockFactory: "
                        "the LED and shutter do nothing)"], gpio


@pytest.mark.slow
def test_details_are_at_debug(tmp_path, frames):
    p = djsmile("run", "--source", frames, "--state-dir", tmp_path / "s", "--no-jokes", "--log-level", "DEBUG",
                "--set", 'speech.engine="none"')
    assert p.returncode == 0, p.stderr[-3000:]
    assert "DEBUG djsmile.runtime: ai-edge-litert: Created TensorFlow Lite XNNPACK delegate" in p.stderr
    if not_a_pi():
        assert "DEBUG djsmile.service: GPIO: no pin factory loads" in p.stderr


@pytest.mark.slow
def test_an_unrelated_error_comes_alone(tmp_path, frames):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = djsmile("run", "--source", frames, "--state-dir", tmp_path / "s", "--web", f"127.0.0.1:{port}",
                    "--set", 'speech.engine="none"')
    assert p.returncode == 75, p.stderr[-3000:]
    assert "joke API" not in p.stderr and [ln for ln in p.stderr.splitlines() if ln.startswith("WARNING")] == []
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"\xff\xd8 not really")
    p = djsmile("run", "--source", bad, "--state-dir", tmp_path / "s2", "--set", 'speech.engine="none"')
    assert p.returncode == 65, p.stderr[-3000:]
    assert "joke API" not in p.stderr, p.stderr


def test_pip_install_hides_setuptools_editable_warning(tmp_path):
    """scripts/pip-install.sh (make run's install) filters setuptools' 'Editable installation' banner."""
    rec = tmp_path / "env.txt"
    sys_py = tmp_path / "sys-python"
    sys_py.write_text('#!/bin/sh\necho "x86_64 - no 3.11"\n')
    venv_py = tmp_path / "venv-python"
    venv_py.write_text(f'#!/bin/sh\nprintf "%s" "$PYTHONWARNINGS" > {rec}\n')
    for f in (sys_py, venv_py):
        f.chmod(f.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    r = subprocess.run([str(ROOT / "scripts" / "pip-install.sh"), str(venv_py), str(sys_py), "--quiet", "-e", "."],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "ignore:Editable installation" in rec.read_text().split(",")
