"""Each row of the README's exit-code table, as a user meets it (issue 24 item 3): a test per row.

The rows are read from the README; a row without a test here (or a test without a row) fails
:func:`test_every_row_of_the_readme_table_has_a_test`.
"""

from __future__ import annotations

import importlib.util
import re
import signal
import socket
import subprocess

import cv2
import numpy as np
import pytest

from djsmile import cli
from helpers import (PY, QUIET, ROOT, FixedFinder, djsmile_env, one_error_line, read_until, run_djsmile,
                     write_clip)

QUIET = [*QUIET, "--no-gpio"]


def readme_rows() -> dict[int, str]:
    text = (ROOT / "README.md").read_text()
    table = text[text.index("### Exit codes"):]
    table = table[:table.index("\n## ")]
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^\| (\d+) \|(.*)\|\s*$", table, flags=re.M)}


# --------------------------------------------------------------------------- one test per row
def test_0_a_finite_source_ended(tmp_path, frames):
    p = run_djsmile("run", "--source", frames, "--state-dir", tmp_path / "s", *QUIET)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "stopped after 3 frames" in p.stderr
    p = run_djsmile("run", "--source", frames, "--state-dir", tmp_path / "s", "--max-frames", 2, *QUIET)
    assert p.returncode == 0 and "stopped after 2 frames" in p.stderr, p.stderr[-3000:]


def test_64_a_mistyped_flag():
    p = run_djsmile("run", "--sorce", "x")
    assert p.returncode == 64 and p.stderr.startswith("usage: djsmile run"), p.stderr


TEXT = "shopping list\n- milk\n- eggs\n" * 20


@pytest.mark.parametrize("name", ["notes.mp4", "notes.avi", "notes", "notes.txt"])
def test_65_a_text_file_given_as_a_video_whatever_its_name(tmp_path, name):
    f = tmp_path / name
    f.write_text(TEXT)
    p = run_djsmile("run", "--source", f, "--state-dir", tmp_path / "s", *QUIET)
    assert p.returncode == 65, p.stderr[-3000:]
    line = one_error_line(p.stderr)
    assert "is a text file, not a video or image" in line and "give a video file" in line, line
    assert "moov atom" not in p.stderr and "[mov," not in p.stderr  # no FFmpeg noise


def test_65_a_file_that_is_no_video_nor_image_and_no_ffmpeg_noise(tmp_path):
    f = tmp_path / "clip.mp4"
    f.write_bytes(np.random.default_rng(1).integers(0, 256, 20000, np.uint8).tobytes())
    p = run_djsmile("run", "--source", f, "--state-dir", tmp_path / "s", *QUIET)
    assert p.returncode == 65, p.stderr[-3000:]
    line = one_error_line(p.stderr)
    assert "not a video or image" in line and "give a video file" in line, line
    assert "moov atom" not in p.stderr and "[mov," not in p.stderr


def test_65_bench_and_calibrate_read_a_text_file_the_same_way(tmp_path):
    f = tmp_path / "notes.mp4"
    f.write_text(TEXT)
    for argv in (["bench", "--source", f, "--frames", 5], ["calibrate", "--source", f, "--state-dir", tmp_path]):
        p = run_djsmile(*argv, *QUIET[:4])
        assert p.returncode == 65, p.stderr[-3000:]
        assert "is a text file, not a video or image" in one_error_line(p.stderr)


def test_65_an_image_is_read_by_its_content_whatever_its_name(tmp_path):
    f = tmp_path / "snapshot.dat"
    ok, buf = cv2.imencode(".png", np.full((120, 160, 3), 90, np.uint8))
    f.write_bytes(buf.tobytes())
    p = run_djsmile("run", "--source", f, "--state-dir", tmp_path / "s", *QUIET)
    assert p.returncode == 0 and "stopped after 1 frames" in p.stderr, p.stderr[-3000:]


def test_66_a_source_that_does_not_exist(tmp_path):
    p = run_djsmile("run", "--source", tmp_path / "no" / "clip.mp4", "--state-dir", tmp_path / "s", *QUIET)
    assert p.returncode == 66 and "not found" in one_error_line(p.stderr)


def test_69_no_camera(tmp_path):
    if importlib.util.find_spec("picamera2") is not None:
        pytest.skip("picamera2 is installed here: the Pi camera may be present")
    p = run_djsmile("run", "--source", "camera", "--state-dir", tmp_path / "s", *QUIET)
    assert p.returncode == 69 and "picamera2" in one_error_line(p.stderr)


def test_70_frames_failing_one_after_another():
    from djsmile import service
    from djsmile.config import Config
    from djsmile.sources import Frame, Source

    class Frames(Source):
        finite, name = True, "frames"

        def __iter__(self):
            for i in range(100):
                yield Frame(np.zeros((40, 40), np.uint8), i, i / 30)

    class Broken:
        threshold = 0.5

        def predict(self, gray, boxes, landmarks=None):
            raise RuntimeError("interpreter broken")

    assert service.run(Config(), Frames(), service.LoopParts(model=Broken(), finder=FixedFinder())) == 70


def test_73_the_state_folder_cannot_be_created(tmp_path, frames):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    p = run_djsmile("run", "--source", frames, "--state-dir", blocker / "state", *QUIET)
    assert p.returncode == 73 and "state folder" in one_error_line(p.stderr)


def test_75_the_live_views_port_is_in_use(tmp_path, frames):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = run_djsmile("run", "--source", frames, "--state-dir", tmp_path / "s", "--web", f"127.0.0.1:{port}", *QUIET)
    assert p.returncode == 75 and f"127.0.0.1:{port}" in one_error_line(p.stderr)


def test_78_a_config_rule(tmp_path):
    f = tmp_path / "config.toml"
    f.write_text("[trigger]\nhold_frames = 0\n")
    assert cli.main(["config", "--check", str(f)]) == 78
    p = run_djsmile("run", "--set", "trigger.hold_frames=0", "--state-dir", tmp_path / "s", *QUIET)
    assert p.returncode == 78 and "trigger.hold_frames" in one_error_line(p.stderr)


def _interrupt(argv, wait_for: str, tmp_path) -> tuple[int, str]:
    """Start ``djsmile argv``, wait for ``wait_for`` on stderr, press Ctrl+C (SIGINT); (exit code, stderr)."""
    proc = subprocess.Popen([PY, "-m", "djsmile", *map(str, argv)], cwd=tmp_path, env=djsmile_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        err = read_until(proc.stderr, wait_for, 120)
        proc.send_signal(signal.SIGINT)
        # generous: a loaded 2-core machine (the stop itself is timed elsewhere)
        rest = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(err) + rest


def test_130_ctrl_c(tmp_path):
    clip = write_clip(tmp_path / "clip.avi", 300, 10.0)   # 30 s played in real time
    rc, err = _interrupt(["run", "--source", clip, "--realtime", "--state-dir", tmp_path / "s", *QUIET],
                         "running; Ctrl+C", tmp_path)
    assert rc == 130, err[-3000:]
    assert "stopped after" in err and "interrupted (Ctrl+C)" in err, err[-3000:]


@pytest.mark.slow
def test_130_ctrl_c_on_bench_and_calibrate_says_interrupted(tmp_path):
    clip = write_clip(tmp_path / "clip.avi", 600, 0.5, size=(320, 240), noise=True)  # 20 min of stream time
    for argv, wait_for in ((["bench", "--source", clip, "--frames", 100000], "bench:"),
                           (["calibrate", "--source", clip, "--seconds", 600, "--state-dir", tmp_path / "s"],
                            "calibrating from")):
        rc, err = _interrupt([*argv, *QUIET[:4]], wait_for, tmp_path)
        assert rc == 130, err[-3000:]
        assert f"djsmile {argv[0]} interrupted (Ctrl+C)" in err, err[-3000:]
        assert "Traceback" not in err
    assert not (tmp_path / "s" / "calibration.json").exists()


ROW_TESTS = {int(m.group(1)) for name in list(globals()) if (m := re.match(r"test_(\d+)_", name))}


def test_every_row_of_the_readme_table_has_a_test():
    rows = readme_rows()
    assert set(rows) == ROW_TESTS, f"README rows {sorted(rows)}, tests for {sorted(ROW_TESTS)}"
    assert "text file" in rows[65] and "Ctrl+C" in rows[130]


def test_after_ctrl_c_the_process_ends_without_the_teardown_that_can_abort(tmp_path):
    """After Ctrl+C a daemon thread still inside LiteRT / OpenCV can make the interpreter's teardown abort
    ("terminate called without an active exception", exit -6 instead of 130: once in seven full runs, after
    bench's "interrupted" line). An atexit abort stands for that teardown here: the command still ends 130 with
    its line said (it gave -6 when djsmile's entry point was sys.exit(main()))."""
    prog = ("import atexit, os, sys\n"
            "import djsmile.cli as cli\n"
            "atexit.register(os.abort)            # a teardown that aborts\n"
            "def pressed(mod, args):\n"
            "    raise KeyboardInterrupt\n"
            "cli.run_command = pressed\n"
            "sys.argv = ['djsmile', 'config', '--show']\n"
            "cli.entry()\n")
    p = subprocess.run([PY, "-c", prog], cwd=tmp_path, env=djsmile_env(), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 130, p.stderr[-2000:]
    assert "djsmile config interrupted (Ctrl+C)" in p.stderr
