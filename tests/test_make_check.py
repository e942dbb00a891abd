"""``make check`` (issue 25 item 6): ruff first, and a finding stops it before the tests; the fast tests; no apt.

The venv is a fake one (``VENV=``): its ``ruff`` and ``python`` only record how they were called, so the
Makefile's recipe is checked without running the suite inside the suite.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from helpers import ROOT

RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "{log}"
exit {rc}
"""

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def fake_venv(tmp_path, ruff_rc: int = 0):
    venv, log = tmp_path / "venv", tmp_path / "calls.log"
    (venv / "bin").mkdir(parents=True)
    for name, rc in (("ruff", ruff_rc), ("python", 0)):
        exe = venv / "bin" / name
        exe.write_text(RECORDER.format(log=log, rc=rc))
        exe.chmod(0o755)
    for stamp in (".installed", ".installed-dev"):   # newer than setup.cfg: nothing to install
        (venv / stamp).touch()
    return venv, log


def make_check(venv) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), f"VENV={venv}", "check"],
                          capture_output=True, text=True, timeout=120)


def calls(log) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_make_check_runs_ruff_on_the_tree_then_the_fast_tests_and_no_apt(tmp_path):
    venv, log = fake_venv(tmp_path)
    p = make_check(venv)
    assert p.returncode == 0, p.stdout + p.stderr
    got = calls(log)
    assert got[0] == "ruff check .", got
    assert len(got) == 2 and got[1].startswith("python -m pytest") and "-m not slow" in got[1], got
    assert "install-system-deps" not in p.stdout and "apt" not in got[1]


def test_a_ruff_finding_fails_make_check_before_any_test_runs(tmp_path):
    venv, log = fake_venv(tmp_path, ruff_rc=1)
    p = make_check(venv)
    assert p.returncode != 0
    assert calls(log) == ["ruff check ."]


def test_ci_runs_make_check_before_make_test():
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    assert "make check" in lines and "make test" in lines
    assert lines.index("make check") < lines.index("make test")


def test_each_make_line_of_the_readme_names_a_target_of_the_makefile():
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
    used = {ln.split()[1] for ln in (ROOT / "README.md").read_text().splitlines()
            if ln.strip().startswith("make ")}
    assert {"check", "test", "run"} <= used, used
    assert used <= targets, used - targets
