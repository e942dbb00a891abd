"""The Pi install path: apt's numpy kept (scripts/pip-install.sh), a broken picamera2 named as such,
and the x86-vs-arm agreement logic of scripts/check-pi-emulated.sh (djsmile.crosscheck)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from djsmile import config as config_mod
from djsmile import crosscheck
from djsmile.errors import SourceError
from djsmile.sources import open_source

ROOT = Path(__file__).resolve().parent.parent
PIP_INSTALL = ROOT / "scripts" / "pip-install.sh"


# --------------------------------------------------------------------------- numpy pin
def _exe(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _pip_install(tmp_path, sys_answer: str, env_extra=None):
    """Run pip-install.sh with a fake system python (answers 'machine numpy picamera2') and a fake
    venv python that records its pip arguments and the constraints file's text."""
    sys_py = _exe(tmp_path / "sys-python", f'echo "{sys_answer}"\n')
    rec = tmp_path / "pip-args.txt"
    venv_py = _exe(tmp_path / "venv-python", f"""
printf '%s\\n' "$@" > {rec}
prev=""
for a in "$@"; do
    if [ "$prev" = "--constraint" ]; then cat "$a" > {tmp_path}/constraints.txt; fi
    prev=$a
done
""")
    env = {k: v for k, v in os.environ.items() if k != "DJSMILE_PIN_NUMPY"}
    env.update(env_extra or {})
    r = subprocess.run([str(PIP_INSTALL), str(venv_py), str(sys_py), "--quiet", "-e", "."],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    args = rec.read_text().split("\n")
    cons = tmp_path / "constraints.txt"
    return r, args, cons.read_text() if cons.exists() else None


@pytest.mark.parametrize("answer", ["aarch64 1.24.2 no 3.11", "armv7l 1.24.2 yes 3.11", "x86_64 1.24.2 yes 3.11"])
def test_pi_install_pins_apt_numpy(tmp_path, answer):
    r, args, cons = _pip_install(tmp_path, answer)
    assert args[:3] == ["-m", "pip", "install"] and "-e" in args
    assert cons.splitlines() == ["numpy==1.24.2", "opencv-python-headless<4.12", "ml-dtypes<0.6"]
    assert "keeping the system numpy 1.24.2" in r.stdout


@pytest.mark.parametrize("answer", ["x86_64 1.24.2 no 3.11", "aarch64 - no 3.13", "x86_64 - no 3.12"])
def test_no_pin_off_a_pi_or_without_system_numpy(tmp_path, answer):
    r, args, cons = _pip_install(tmp_path, answer)
    assert "--constraint" not in args and cons is None
    assert args[:3] == ["-m", "pip", "install"]


def test_pin_can_be_forced_off_and_on(tmp_path):
    _, args, cons = _pip_install(tmp_path, "aarch64 1.24.2 no 3.11", {"DJSMILE_PIN_NUMPY": "0"})
    assert cons is None and "--constraint" not in args
    _, args, cons = _pip_install(tmp_path, "x86_64 2.2.4 no 3.13", {"DJSMILE_PIN_NUMPY": "1"})
    assert cons == "numpy==2.2.4\n"   # numpy 2: no caps on opencv / ml-dtypes


@pytest.mark.parametrize("answer, needle", [
    ("armv7l 1.24.2 no 3.13", "no TFLite runtime for 32-bit ARM with Python 3.13"),
    ("armv6l 1.24.2 no 3.11", "no TFLite runtime for ARMv6"),
])
def test_a_platform_without_a_tflite_runtime_is_refused_before_pip(tmp_path, answer, needle):
    sys_py = _exe(tmp_path / "sys-python", f'echo "{answer}"\n')
    venv_py = _exe(tmp_path / "venv-python", f"touch {tmp_path}/pip-ran\n")
    for args in ([str(venv_py), str(sys_py), "-e", "."], ["--check", str(sys_py)]):
        r = subprocess.run([str(PIP_INSTALL), *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 69
        assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr
    assert not (tmp_path / "pip-ran").exists()


@pytest.mark.parametrize("answer", ["armv7l 1.24.2 no 3.11", "aarch64 2.2.4 no 3.13", "x86_64 - no 3.13"])
def test_platforms_with_a_runtime_pass_the_check(tmp_path, answer):
    sys_py = _exe(tmp_path / "sys-python", f'echo "{answer}"\n')
    r = subprocess.run([str(PIP_INSTALL), "--check", str(sys_py)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == ""


def test_install_sh_runs_the_platform_check():
    text = (ROOT / "systemd" / "install.sh").read_text()
    assert '"$REPO/scripts/pip-install.sh" --check "$SYS_PYTHON"' in text


def test_makefile_installs_through_the_pin():
    text = (ROOT / "Makefile").read_text()
    assert "./scripts/pip-install.sh $(BIN)/python $(PYTHON) --quiet -e .\n" in text
    assert "$(BIN)/pip install" not in text


# --------------------------------------------------------------------------- picamera2 that does not import
@pytest.fixture
def broken_picamera2(tmp_path, monkeypatch):
    """A picamera2 package that fails to import the way a pip numpy 2 over apt's numpy makes it fail."""
    pkg = tmp_path / "site" / "picamera2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        'raise ValueError("numpy.dtype size changed, may indicate binary incompatibility. '
        'Expected 96 from C header, got 88 from PyObject")\n')
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    return tmp_path / "site"


def test_broken_picamera2_is_named_not_reported_as_no_camera(broken_picamera2):
    with pytest.raises(SourceError) as e:
        open_source("", config_mod.Config())
    msg = str(e.value)
    assert msg.startswith("picamera2 is installed but failed to import: ValueError: numpy.dtype size changed")
    assert "no camera" not in msg


def test_djsmile_run_says_picamera2_failed_to_import(broken_picamera2, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(broken_picamera2)}
    r = subprocess.run([sys.executable, "-m", "djsmile", "run", "--no-gpio", "--no-jokes",
                        "--state-dir", str(tmp_path / "state")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 69, r.stderr
    assert "picamera2 is installed but failed to import: ValueError: numpy.dtype size changed" in r.stderr
    assert "no camera found" not in r.stderr


def test_absent_picamera2_is_still_no_camera(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "picamera2" else real(n, *a))
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    monkeypatch.setattr("djsmile.sources.choose.webcam_present", lambda idx=0: False)
    with pytest.raises(SourceError, match="no camera found"):
        open_source("", config_mod.Config())


# --------------------------------------------------------------------------- x86 vs arm agreement
def _row(frame, boxes=((10, 10, 40, 40),), p=(0.5,), gray="g", crops=None, enlarged=None):
    return {"frame": frame, "file": f"{frame}.jpg", "gray_sha256": gray, "boxes": [list(b) for b in boxes],
            "crop_sha256": list(crops if crops is not None else ["c"] * len(boxes)), "p_smile": list(p),
            "enlarged": list(enlarged if enlarged is not None else [False] * len(boxes))}


def test_identical_runs_agree():
    rows = [_row(0), _row(1, boxes=(), p=()), _row(2, boxes=((1, 2, 30, 30), (50, 5, 30, 30)), p=(0.1, 0.9))]
    ag = crosscheck.compare(rows, [dict(r) for r in rows], 0.06, [{"frame": 2}], [{"frame": 2}])
    assert ag.ok, ag.problems
    assert (ag.frames, ag.faces, ag.p_equal, ag.crops_equal, ag.max_diff) == (3, 3, 3, 3, 0.0)


def test_a_difference_within_tolerance_passes_and_is_reported():
    ag = crosscheck.compare([_row(0, p=(0.195,), enlarged=[True]), _row(1, enlarged=[True])],
                            [_row(0, p=(0.242,), crops=["other"]), _row(1)], 0.06)
    assert ag.ok
    assert ag.max_diff == pytest.approx(0.047)
    assert ag.p_equal == 1 and ag.crops_equal == 1
    assert (ag.enlarged, ag.enlarged_differ) == (2, 1)
    assert "crops bit-identical on 1/2 (enlarged: 2, 1 of them differ)" in ag.summary()
    assert "frame 0 0.jpg face 0: 0.1950 vs 0.2420" in ag.worst


def test_a_difference_beyond_tolerance_fails_naming_the_face():
    ag = crosscheck.compare([_row(0), _row(1, p=(0.10,))], [_row(0), _row(1, p=(0.30,))], 0.06)
    assert not ag.ok
    assert any("frame 1 1.jpg face 0" in p and "0.2000 > tolerance 0.06" in p for p in ag.problems)


@pytest.mark.parametrize("b, needle", [
    (_row(0, boxes=((11, 10, 40, 40),)), "boxes differ"),
    (_row(0, gray="other"), "gray frames differ"),
    (_row(1), "different frames"),
])
def test_frames_and_boxes_must_be_equal(b, needle):
    ag = crosscheck.compare([_row(0)], [b], 0.06)
    assert not ag.ok and any(needle in p for p in ag.problems), ag.problems


def test_different_shots_fail():
    ag = crosscheck.compare([_row(0)], [_row(0)], 0.06, [{"frame": 0}], [])
    assert not ag.ok and any("different shots" in p for p in ag.problems)


def test_score_and_compare_commands(tmp_path, small_face_scene):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "1.png"), small_face_scene(64))
    cv2.imwrite(str(photos / "2.png"), np.full((240, 320), 128, np.uint8))
    out = tmp_path / "a.jsonl"
    assert crosscheck.main(["score", str(photos), "--out", str(out)]) == 0
    rows = crosscheck.read_jsonl(out)
    assert [r["file"] for r in rows] == ["1.png", "2.png"]
    assert len(rows[0]["boxes"]) == 1 and 0.0 <= rows[0]["p_smile"][0] <= 1.0
    assert rows[0]["enlarged"] in ([True], [False]) and rows[1]["enlarged"] == []
    assert rows[1]["boxes"] == [] and rows[1]["p_smile"] == []
    # a copy agrees; a copy with one score moved by 0.1 does not
    moved = [dict(r) for r in rows]
    moved[0] = {**moved[0], "p_smile": [min(1.0, rows[0]["p_smile"][0] + 0.1) if rows[0]["p_smile"][0] < 0.9
                                        else rows[0]["p_smile"][0] - 0.1]}
    b = tmp_path / "b.jsonl"
    b.write_text("".join(json.dumps(r) + "\n" for r in moved))
    figures = tmp_path / "agreement.json"
    assert crosscheck.main(["compare", str(out), str(out), "--tolerance", "0.06", "--json", str(figures)]) == 0
    assert json.loads(figures.read_text())["ok"] is True
    assert crosscheck.main(["compare", str(out), str(b), "--tolerance", "0.06"]) == 1


# --------------------------------------------------------------------------- the emulated check's own scripts
CHECK = ROOT / "scripts" / "check-pi-emulated.sh"


@pytest.mark.slow
@pytest.mark.parametrize("script", [CHECK, ROOT / ".ci" / "run", PIP_INSTALL,
                                    ROOT / "scripts" / "check-camera-chroot.sh",
                                    ROOT / "scripts" / "lib" / "common.sh"])
def test_ci_and_check_scripts_pass_shellcheck(script):
    import shutil
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.skip("shellcheck is not installed (Debian package 'shellcheck')")
    r = subprocess.run([exe, "-x", str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("args, needle", [
    (["--suite", "bullseye"], "--suite must be bookworm or trixie, not 'bullseye'"),
    (["--arch", "riscv64"], "--arch must be arm64 or armhf"),
    (["--max-photos", "0"], "--max-photos must be a positive whole number"),
    (["--enlarged-tolerance", "lots"], "--enlarged-tolerance must be a number from 0 to 1, not 'lots'"),
    (["--frobnicate"], "unknown option: --frobnicate"),
])
def test_check_refuses_bad_options_before_building_anything(tmp_path, args, needle):
    r = subprocess.run([str(CHECK), "--cache", str(tmp_path / "cache"), *args], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 64 and needle in r.stderr
    assert not (tmp_path / "cache").exists()


def test_ci_runs_the_emulated_check_for_both_pi_os_releases():
    text = (ROOT / ".ci" / "run").read_text()
    assert "for suite in bookworm trixie; do" in text
    assert 'check-pi-emulated.sh --suite "$suite"' in text


def test_a_cnn_detectors_box_may_move_within_the_box_tolerance_and_says_how_far():
    a = [_row(0, boxes=((10, 10, 40, 40),))]
    near = [_row(0, boxes=((12, 9, 40, 41),))]
    far = [_row(0, boxes=((14, 10, 40, 40),))]
    assert not crosscheck.compare(a, near, 0.06).ok                      # exact by default (Haar)
    ag = crosscheck.compare(a, near, 0.06, box_tolerance=2)
    assert ag.ok and ag.max_box_diff == 2 and ag.boxes_equal == 0
    assert "boxes identical on 0/1 (max coordinate diff 2 px, tolerance 2" in ag.summary()
    bad = crosscheck.compare(a, far, 0.06, box_tolerance=2)
    assert not bad.ok and any("differ by up to 4 px" in p for p in bad.problems)


def test_score_folder_runs_the_default_back_end_on_colour(tmp_path, _large_face):
    face, w, bg = _large_face
    face = cv2.resize(face, None, fx=150 / w, fy=150 / w, interpolation=cv2.INTER_AREA)   # a face 150 px wide
    img = np.full((480, 640), bg, np.uint8)
    img[100:100 + face.shape[0], 200:200 + face.shape[1]] = face
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    rows = list(crosscheck.score_folder(tmp_path))
    assert rows[0]["detector"] == config_mod.Config().detector.backend
    assert len(rows[0]["boxes"]) == 1 and len(rows[0]["scores"]) == 1 and 0.5 <= rows[0]["scores"][0] <= 1.0


def test_camera_check_takes_this_machines_arch_or_arm64_only(tmp_path):
    cam = ROOT / "scripts" / "check-camera-chroot.sh"
    r = subprocess.run([str(cam), "--arch", "riscv64", "--cache", str(tmp_path / "cache")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 64 and "--arch must be" in r.stderr and "or arm64, not 'riscv64'" in r.stderr
    assert not (tmp_path / "cache").exists()


def test_an_enlarged_crop_that_differs_has_its_own_tolerance_and_no_other_face_does():
    # face 0: crop enlarged on A and different on B (INTER_LINEAR between OpenCV builds); face 1: same bytes
    boxes = ((10, 10, 30, 30), (60, 10, 90, 90))
    a = [_row(0, boxes=boxes, p=(0.32, 0.50), crops=["c0", "c1"], enlarged=[True, False])]
    b = [_row(0, boxes=boxes, p=(0.25, 0.50), crops=["other", "c1"])]
    assert not crosscheck.compare(a, b, 0.06).ok                            # one tolerance for all by default
    ag = crosscheck.compare(a, b, 0.06, enlarged_tolerance=0.1)
    assert ag.ok, ag.problems
    assert "tolerance 0.06 (0.1 for an enlarged crop that differs)" in ag.summary()
    # the same difference on a face whose model input is the same bytes is a real disagreement
    b_same_crop = [_row(0, boxes=boxes, p=(0.32, 0.43), crops=["c0", "c1"])]
    ag = crosscheck.compare(a, b_same_crop, 0.06, enlarged_tolerance=0.1)
    assert not ag.ok and any("face 1" in p and "> tolerance 0.06" in p for p in ag.problems), ag.problems
    # beyond the enlarged-crop tolerance fails too, saying which tolerance
    b_far = [_row(0, boxes=boxes, p=(0.10, 0.50), crops=["other", "c1"])]
    ag = crosscheck.compare(a, b_far, 0.06, enlarged_tolerance=0.1)
    assert not ag.ok and any("> enlarged-crop tolerance 0.1" in p for p in ag.problems), ag.problems


def test_compare_command_takes_the_enlarged_tolerance(tmp_path):
    boxes = ((10, 10, 30, 30),)
    rows_a = [_row(0, boxes=boxes, p=(0.32,), crops=["c0"], enlarged=[True])]
    rows_b = [_row(0, boxes=boxes, p=(0.25,), crops=["other"], enlarged=[True])]
    for name, rows in (("a", rows_a), ("b", rows_b)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["compare", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--tolerance", "0.06"]
    assert crosscheck.main(args) == 1
    assert crosscheck.main([*args, "--enlarged-tolerance", "0.1", "--json", str(tmp_path / "ag.json")]) == 0
    assert json.loads((tmp_path / "ag.json").read_text())["enlarged_tolerance"] == 0.1
