"""Hostile files in the state folder: ``djsmile run`` reads each one only when it is a regular file of a sane
size, parses it depth-safe, and on anything else says one warning and goes on (never a crash, never a hang).

Each run is a subprocess with its address space capped (4 GB), so an endless read fails there instead of
eating the machine.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import pytest

from helpers import QUIET, run_djsmile, write_frames

QUIET = [*QUIET, "--no-gpio", "--no-jokes"]


def _cap_memory():
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    return write_frames(tmp_path_factory.mktemp("frames"), values=(60, 100, 140))


def run(state: Path, frames: Path, timeout: float = 90.0) -> tuple[int, str, float]:
    t0 = time.monotonic()
    p = run_djsmile("run", "--source", frames, "--state-dir", state, *QUIET, timeout=timeout, preexec_fn=_cap_memory)
    return p.returncode, p.stderr, time.monotonic() - t0


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE = {
    "nested 100,000 deep (200 KB)": lambda p: p.write_text(_deep(100_000)),
    "nested 30,000 deep (60 KB)": lambda p: p.write_text(_deep(30_000)),
    "a link to /dev/zero": lambda p: p.symlink_to("/dev/zero"),
    "a named pipe": lambda p: os.mkfifo(p),
    "a folder": lambda p: p.mkdir(),
    "8 MB of spaces": lambda p: p.write_bytes(b" " * (8 << 20) + b"{}"),
    "not UTF-8": lambda p: p.write_bytes(b"\xff\xfe{\x00"),
}


@pytest.mark.slow
@pytest.mark.parametrize("what", list(HOSTILE))
def test_a_hostile_calibration_json_is_ignored_with_one_warning(tmp_path, frames, what):
    state = tmp_path / "state"
    state.mkdir()
    HOSTILE[what](state / "calibration.json")
    rc, err, took = run(state, frames)
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err
    warned = [ln for ln in err.splitlines() if "calibration" in ln and "WARNING" in ln]
    assert len(warned) == 1 and "ignored" in warned[0], err[-3000:]
    assert "thresholds from the sensitivity preset" in err
    assert "stopped after 3 frames" in err


@pytest.mark.slow
@pytest.mark.parametrize("what", ["a link to /dev/zero", "a named pipe", "a folder"])
def test_an_events_jsonl_that_is_not_a_file_is_set_aside_with_one_warning(tmp_path, frames, what):
    state = tmp_path / "state"
    state.mkdir()
    HOSTILE[what](state / "events.jsonl")
    rc, err, _ = run(state, frames)
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err
    warned = [ln for ln in err.splitlines() if "events.jsonl" in ln and "WARNING" in ln]
    assert len(warned) == 1 and "not a regular file" in warned[0], err[-3000:]
    assert not (state / "events.jsonl").is_symlink() and not (state / "events.jsonl").exists()
    assert list(state.glob("events.jsonl.not-a-file-*"))          # set aside, not deleted


@pytest.mark.slow
def test_a_calibration_temp_file_left_by_a_kill_is_removed_at_the_next_start(tmp_path, frames):
    state = tmp_path / "state"
    state.mkdir()
    stale = state / ".calibration.json.999999999.tmp"   # no such PID
    stale.write_text('{"half": ')
    rc, err, _ = run(state, frames)
    assert rc == 0, err[-3000:]
    assert not stale.exists()
    assert any("leftover" in ln and stale.name in ln for ln in err.splitlines()), err[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("what", [w for w in HOSTILE if w != "8 MB of spaces"])   # valid JSON under its 32 MB cap
def test_a_hostile_joke_cache_is_set_aside_and_a_joke_is_still_told(tmp_path, what):
    state = tmp_path / "state"
    state.mkdir()
    HOSTILE[what](state / "jokes_cache.json")
    p = run_djsmile("joke", "--state-dir", state, "--set", 'jokes.api_url=""', timeout=60, preexec_fn=_cap_memory)
    assert p.returncode == 0 and p.stdout.strip(), p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    warned = [ln for ln in p.stderr.splitlines() if "jokes_cache.json" in ln and "WARNING" in ln]
    assert len(warned) == 1, p.stderr[-3000:]
