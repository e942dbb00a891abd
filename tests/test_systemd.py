"""The systemd unit, the Pi install script and the exit code 78 contract.

No systemd runs as PID 1 here, so:

* the unit is checked with ``systemd-analyze verify`` on a copy whose ExecStart
  binary (/opt/djsmile/venv/bin/djsmile, absent here) is swapped for an existing
  one; any output at all (unknown key, bad value) fails the test. verify does
  not check that the djsmile user or the gpio group exist, so nothing else is
  rewritten.
* install.sh runs with ``--dry-run`` against a fake system: DJSMILE_TEST_ROOT
  prefixes every path it reads or writes, and stub commands on PATH answer the
  package/user queries and record every call. When the tests run as root the
  script runs as ``nobody`` (setpriv), as a user would run a dry run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from helpers import run_djsmile

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "djsmile.service"
INSTALL = ROOT / "systemd" / "install.sh"
APT_PACKAGES = ["python3-picamera2", "python3-lgpio", "espeak-ng", "alsa-utils", "python3-venv", "python3-pip"]

# --------------------------------------------------------------------------------------------
# the unit


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values...]}} (later assignments append, as systemd reads most keys)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def unit():
    return parse_unit(UNIT.read_text())


def _verify(text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (Debian package 'systemd')")
    true = shutil.which("true")
    assert "ExecStart=/opt/djsmile/venv/bin/djsmile " in text
    copy = tmp_path / "djsmile.service"
    copy.write_text(text.replace("ExecStart=/opt/djsmile/venv/bin/djsmile ", f"ExecStart={true} "))
    return subprocess.run([exe, "verify", str(copy)], capture_output=True, text=True, timeout=60)


def test_systemd_analyze_verify_passes_without_a_single_warning(tmp_path):
    r = _verify(UNIT.read_text(), tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr


def test_systemd_analyze_verify_would_catch_a_typo(tmp_path):
    # the check above can fail: a misspelt option is reported
    r = _verify(UNIT.read_text().replace("ProtectHome=yes", "ProtectHome=yes\nProtectHomme=yes"), tmp_path)
    assert "ProtectHomme" in r.stdout + r.stderr


def test_unit_is_a_notify_service_with_watchdog_and_no_restart_on_config_errors(unit):
    s = unit["Service"]
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert 10 <= int(s["WatchdogSec"][0]) <= 120
    assert s["Restart"] == ["on-failure"]
    assert int(s["RestartSec"][0]) >= 1
    assert "78" in s["RestartPreventExitStatus"][0].split()
    u = unit["Unit"]
    assert int(u["StartLimitBurst"][0]) >= 2 and int(u["StartLimitIntervalSec"][0]) > 0
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_runs_as_a_dedicated_user_with_device_groups_and_its_own_dirs(unit):
    s = unit["Service"]
    assert s["User"] == ["djsmile"] and "DynamicUser" not in s
    assert set(" ".join(s["SupplementaryGroups"]).split()) >= {"video", "gpio", "audio"}
    assert s["StateDirectory"] == ["djsmile"] and s["ConfigurationDirectory"] == ["djsmile"]
    # lgpio writes its notification pipe into the working directory: it must be the writable state dir
    assert s["WorkingDirectory"] == ["/var/lib/djsmile"]
    assert "PYTHONUNBUFFERED=1" in s["Environment"]
    argv = shlex.split(s["ExecStart"][0])
    assert argv[:2] == ["/opt/djsmile/venv/bin/djsmile", "run"]
    assert argv[argv.index("--config") + 1] == "/etc/djsmile/config.toml"
    assert argv[argv.index("--state-dir") + 1] == "/var/lib/djsmile"


def test_unit_limits_open_files_to_what_leaves_the_live_view_its_full_share(unit):
    from djsmile.config import WebConfig
    from djsmile.web.server import EXTRA_CONNECTIONS, connection_cap
    limit = unit["Service"]["LimitNOFILE"]
    assert len(limit) == 1 and limit[0].isdigit(), limit      # one number: soft = hard
    most = WebConfig.__dataclass_fields__["max_viewers"].metadata["max"]
    # with 150 descriptors in use (camera, model, threads, MQTT) the cap is not lowered by the limit
    assert connection_cap(most, int(limit[0]), 150) == most + EXTRA_CONNECTIONS


def test_unit_hardening_is_on_and_blocks_no_camera_gpio_or_sound_device(unit):
    s = unit["Service"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "ProtectKernelTunables": "yes", "ProtectControlGroups": "yes",
                       "LockPersonality": "yes", "RestrictRealtime": "yes"}.items():
        assert s.get(key) == [value], key
    families = set(s["RestrictAddressFamilies"][0].split())
    assert {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"} <= families  # netlink: libcamera's udev
    # these would hide or deny /dev/video*, /dev/media*, /dev/dma_heap, /dev/gpiochip*, /dev/gpiomem, /dev/snd
    assert s.get("PrivateDevices", ["no"]) == ["no"]
    assert "DevicePolicy" not in s and "DeviceAllow" not in s
    assert "ProtectClock" not in s  # implies a device allow-list on systemd 252 (Bookworm)
    assert "ProcSubset" not in s    # gpiozero/picamera2 read /proc/cpuinfo and /proc/device-tree
    for path_key in ("InaccessiblePaths", "TemporaryFileSystem", "BindReadOnlyPaths"):
        assert not any("/dev" in v for v in s.get(path_key, [])), path_key


def test_every_service_option_has_a_comment():
    lines = UNIT.read_text().splitlines()
    in_service = False
    for i, line in enumerate(lines):
        if line.startswith("["):
            in_service = line.strip() == "[Service]"
            continue
        if in_service and line and not line.startswith("#"):
            j = i - 1  # the comment is right above, or above a group of related options
            while j >= 0 and lines[j] and not lines[j].startswith("#"):
                j -= 1
            assert j >= 0 and lines[j].startswith("#") and i - j <= 3, f"no comment for: {line}"


def test_execstart_arguments_are_accepted_by_djsmile_run(unit):
    pytest.importorskip("djsmile.service", reason="edge/service.py ('djsmile run') is not written yet")
    from djsmile import cli

    argv = shlex.split(unit["Service"]["ExecStart"][0])[1:]
    args = cli.build_parser(argv).parse_args(argv)
    assert args.command == "run" and args.config == "/etc/djsmile/config.toml"
    assert str(args.state_dir) == "/var/lib/djsmile"


# --------------------------------------------------------------------------------------------
# exit code 78 on a bad config (the unit's RestartPreventExitStatus=78)

BAD_CONFIG = "[trigger]\ncooldown_s = -3\n"


def test_config_check_of_a_bad_file_exits_78_naming_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_CONFIG)
    r = run_djsmile("config", "--check", str(bad))
    assert r.returncode == 78, r.stderr
    assert "trigger.cooldown_s" in r.stderr


def test_run_with_a_bad_config_exits_78_naming_the_key(tmp_path):
    pytest.importorskip("djsmile.service", reason="edge/service.py ('djsmile run') is not written yet")
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_CONFIG)
    r = run_djsmile("run", "--config", str(bad), "--state-dir", str(tmp_path / "state"))
    assert r.returncode == 78, r.stderr
    assert "trigger.cooldown_s" in r.stderr
    missing = run_djsmile("run", "--config", str(tmp_path / "absent.toml"), "--state-dir", str(tmp_path / "state"))
    assert missing.returncode == 78 and "absent.toml" in missing.stderr


# --------------------------------------------------------------------------------------------
# install.sh


def test_install_script_passes_shellcheck():
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.skip("shellcheck is not installed (Debian package 'shellcheck')")
    r = subprocess.run([exe, str(INSTALL)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


# Commands that only look: their stubs answer from environment variables.
READ_ONLY_STUBS = {
    "dpkg-query": '[ -n "${STUB_PKGS_INSTALLED:-}" ] && printf "install ok installed" && exit 0; exit 1',
    "apt-cache": 'case " ${STUB_NOT_IN_APT:-} " in *" $2 "*) c="(none)";; *) c=1.0;; esac\n'
                 'printf "%s:\\n  Installed: (none)\\n  Candidate: %s\\n" "$2" "$c"',
    "getent": 'case " ${STUB_GROUPS:-video audio} " in *" $2 "*) echo "$2:x:1:"; exit 0;; esac; exit 2',
    "id": 'if [ -z "${STUB_USER_GROUPS:-}" ]; then echo "id: $2: no such user" >&2; exit 1; fi\n'
          'case "$1" in -u) echo 999;; -nG) echo "$STUB_USER_GROUPS";; esac',
}
# Commands that would change the system: their stubs only record the call.
CHANGING = ["apt-get", "useradd", "usermod", "userdel", "groupadd", "groupdel", "systemctl", "journalctl",
            "install", "mkdir", "rmdir", "rm", "mv", "cp", "tar", "chown", "chmod", "ln", "mktemp", "sync", "pip"]


class Sandbox:
    """A fake system root, stub commands and a call log, all readable by 'nobody'."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="djsmile-install-"))
        os.chmod(self.dir, 0o755)
        self.root = self.dir / "root"
        self.bin = self.dir / "bin"
        self.log = self.dir / "calls.log"
        self.root.mkdir()
        self.bin.mkdir()
        self.log.touch()
        os.chmod(self.log, 0o666)
        for name, body in READ_ONLY_STUBS.items():
            self._stub(name, body)
        for name in CHANGING:
            self._stub(name, "exit 0")

    def _stub(self, name, body):
        p = self.bin / name
        p.write_text(f'#!/bin/sh\necho "{name} $*" >> "$STUB_LOG"\n{body}\n')
        p.chmod(0o755)

    def add(self, rel: str, text: str = "") -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    def snapshot(self) -> dict:
        def state(p: Path):
            if p.is_symlink():
                return ("link", os.readlink(p))
            return ("dir", None) if p.is_dir() else ("file", p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        return {str(p.relative_to(self.root)): state(p) for p in self.root.rglob("*")}

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()

    def changing_calls(self) -> list[str]:
        out = []
        for c in self.calls():
            name, _, rest = c.partition(" ")
            if name == "systemctl" and rest.split()[:1] in (["is-active"], ["is-enabled"], ["status"]):
                continue
            if name in CHANGING:
                out.append(c)
        return out

    def run(self, *args, env=None, test_root=True, as_nobody=True):
        e = {"PATH": f"{self.bin}:/usr/bin:/bin", "STUB_LOG": str(self.log), "LANG": "C.UTF-8"}
        if test_root:
            e["DJSMILE_TEST_ROOT"] = str(self.root)
        e.update(env or {})
        cmd = [str(INSTALL), *args]
        if as_nobody and os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("needs setpriv (util-linux) to run the script as a normal user")
            cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=120, cwd=self.dir)

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def sandbox():
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    s = Sandbox()
    yield s
    s.close()


def _would(out: str) -> list[str]:
    return [line[len("would: "):] for line in out.splitlines() if line.startswith("would: ")]


def _index(lines, pattern):
    for i, line in enumerate(lines):
        if re.search(pattern, line):
            return i
    raise AssertionError(f"no action matching {pattern!r} in:\n" + "\n".join(lines))


def test_dry_run_prints_every_install_action_and_changes_nothing(sandbox):
    sandbox.add("run/systemd/system/.keep")  # systemd is running
    sandbox.add("etc/os-release", 'PRETTY_NAME="Raspberry Pi OS (bookworm)"\nID=debian\n')
    before = sandbox.snapshot()
    r = sandbox.run("--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    acts = _would(r.stdout)
    root = str(sandbox.root)
    venv = f"{root}/opt/djsmile/venv"
    order = [
        _index(acts, r"^apt-get update$"),
        _index(acts, r"^apt-get install -y --no-install-recommends " + re.escape(" ".join(APT_PACKAGES)) + "$"),
        _index(acts, r"^groupadd --system gpio$"),  # the stub has no gpio group
        _index(acts, r"^useradd --system .*--home-dir /var/lib/djsmile .*djsmile$"),
        _index(acts, r"^usermod --append --groups video,gpio,audio djsmile$"),
        _index(acts, r"^/usr/bin/python3 -m venv --system-site-packages " + re.escape(venv) + "$"),
        _index(acts, r"/scripts/pip-install\.sh " + re.escape(venv) + r"/bin/python /usr/bin/python3 '\S+\[pi\]'$"),
        _index(acts, r"^write " + re.escape(f"{root}/etc/djsmile/config.toml") + r" from .*djsmile config --default"),
        _index(acts, r"^install -D -m 0644 " + re.escape(str(UNIT)) + " "
               + re.escape(f"{root}/etc/systemd/system/djsmile.service") + "$"),
        _index(acts, r"^systemctl daemon-reload$"),
        _index(acts, r"^systemctl enable djsmile.service$"),
        _index(acts, r"^systemctl restart djsmile.service$"),
    ]
    assert order == sorted(order), acts
    assert "journalctl -u djsmile -f" in r.stdout
    # it does not claim to be done: the last line says nothing was changed (issue 24)
    assert "done." not in r.stdout, r.stdout
    assert r.stdout.strip().splitlines()[-1].endswith("dry run: nothing was changed"), r.stdout
    # nothing was done: no changing command ran and the fake system is untouched
    assert sandbox.changing_calls() == []
    assert sandbox.snapshot() == before
    assert any(c.startswith("dpkg-query") for c in sandbox.calls())  # it did look


def test_dry_run_of_a_second_install_keeps_the_edited_config_and_skips_finished_steps(sandbox):
    sandbox.add("run/systemd/system/.keep")
    edited = "# mine\n[trigger]\nsensitivity = \"big\"\n"
    sandbox.add("etc/djsmile/config.toml", edited)
    sandbox.add("etc/systemd/system/djsmile.service", UNIT.read_text())
    venv_py = sandbox.root / "opt/djsmile/venv/bin/python"
    venv_py.parent.mkdir(parents=True)
    venv_py.symlink_to("/usr/bin/python3")  # a venv of the system's Python
    before = sandbox.snapshot()
    r = sandbox.run("--dry-run", env={"STUB_PKGS_INSTALLED": "1", "STUB_GROUPS": "video gpio audio",
                                      "STUB_USER_GROUPS": "djsmile video gpio audio"})
    assert r.returncode == 0, r.stdout + r.stderr
    acts = _would(r.stdout)
    assert "apt packages already installed" in r.stdout and not any(a.startswith("apt-get") for a in acts)
    assert not any(a.split()[0] in ("useradd", "usermod", "groupadd") for a in acts), acts
    assert "venv" in r.stdout and not any(" -m venv " in a for a in acts)
    assert "keeping your" in r.stdout and not any("config.toml" in a and a.startswith("write") for a in acts)
    assert "up to date" in r.stdout and not any(a.startswith("install -D") for a in acts)
    # the package is still upgraded and the service restarted to pick it up
    _index(acts, r"/scripts/pip-install\.sh .*\[pi\]")
    _index(acts, r"^systemctl restart djsmile.service$")
    assert sandbox.changing_calls() == []
    assert sandbox.snapshot() == before
    assert (sandbox.root / "etc/djsmile/config.toml").read_text() == edited


def _installed_system(sandbox):
    sandbox.add("run/systemd/system/.keep")
    sandbox.add("etc/systemd/system/djsmile.service", UNIT.read_text())
    sandbox.add("opt/djsmile/venv/bin/djsmile", "#!/bin/sh\n")
    sandbox.add("etc/djsmile/config.toml", "[trigger]\n")
    sandbox.add("var/lib/djsmile/photos/2024-01-01_12-00-00.jpg", "jpeg")
    sandbox.add("var/lib/djsmile/events.jsonl", "{}\n")


def test_uninstall_dry_run_removes_service_and_venv_but_keeps_photos_and_config(sandbox):
    _installed_system(sandbox)
    before = sandbox.snapshot()
    r = sandbox.run("--uninstall", "--dry-run", env={"STUB_USER_GROUPS": "djsmile video"})
    assert r.returncode == 0, r.stdout + r.stderr
    acts = _would(r.stdout)
    root = str(sandbox.root)
    _index(acts, r"^systemctl disable --now djsmile.service$")
    _index(acts, r"^rm -f -- " + re.escape(f"{root}/etc/systemd/system/djsmile.service") + "$")
    _index(acts, r"^rm -rf -- " + re.escape(f"{root}/opt/djsmile/venv") + "$")
    _index(acts, r"^systemctl daemon-reload$")
    assert not any("/var/lib/djsmile" in a or "/etc/djsmile" in a or a.startswith("userdel") for a in acts), acts
    assert "kept photos" in r.stdout and "--purge" in r.stdout
    assert sandbox.changing_calls() == []
    assert sandbox.snapshot() == before


def test_uninstall_purge_dry_run_also_deletes_photos_config_and_user(sandbox):
    _installed_system(sandbox)
    before = sandbox.snapshot()
    r = sandbox.run("--uninstall", "--purge", "--dry-run", env={"STUB_USER_GROUPS": "djsmile video"})
    assert r.returncode == 0, r.stdout + r.stderr
    acts = _would(r.stdout)
    root = str(sandbox.root)
    _index(acts, r"^rm -rf -- " + re.escape(f"{root}/var/lib/djsmile {root}/etc/djsmile "
                                             f"{root}/etc/systemd/system/djsmile.service.d") + "$")
    _index(acts, r"^userdel djsmile$")
    assert "purged" not in r.stdout and "would purge photos, events and config" in r.stdout, r.stdout
    assert r.stdout.strip().splitlines()[-1].endswith("dry run: nothing was changed"), r.stdout
    assert sandbox.changing_calls() == []
    assert sandbox.snapshot() == before


def test_install_refuses_clearly_without_root(sandbox):
    r = sandbox.run(test_root=False)  # as a normal user, no --dry-run
    assert r.returncode == 77
    assert "must run as root" in r.stderr and "sudo" in r.stderr and "--dry-run" in r.stderr
    assert sandbox.calls() == []  # refused before looking at or touching anything
    r = sandbox.run("--uninstall", test_root=False)
    assert r.returncode == 77 and "sudo" in r.stderr


def test_install_rejects_bad_options(sandbox):
    r = sandbox.run("--purge", "--dry-run")
    assert r.returncode == 64 and "--uninstall" in r.stderr
    r = sandbox.run("--frobnicate")
    assert r.returncode == 64 and "unknown option" in r.stderr
    r = sandbox.run("--help", test_root=False)
    assert r.returncode == 0 and "--uninstall" in r.stdout and "--purge" in r.stdout


# --------------------------------------------------------------------------------------------
# plain Debian (not Raspberry Pi OS): no python3-picamera2, no python3-lgpio in apt

def _fake_python(sandbox, machine: str, version: tuple) -> Path:
    """A system python that says it is `machine` with Python `version` (for DJSMILE_TEST_PYTHON)."""
    site = sandbox.dir / "fakepy"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        f"import platform, sys\nplatform.machine = lambda: {machine!r}\nsys.version_info = {version!r}\n")
    py = sandbox.dir / "python3"
    py.write_text(f'#!/bin/sh\nPYTHONPATH={site} exec /usr/bin/python3 "$@"\n')
    py.chmod(0o755)
    for p in (site, site / "sitecustomize.py"):
        os.chmod(p, 0o755)
    return py


@pytest.mark.parametrize("machine, version, says", [
    ("aarch64", (3, 13, 5, "final", 0), "PyPI's lgpio has no wheel for Python 3.13: the LED, shutter and button "
                                        "use gpiozero's native pins"),
    ("aarch64", (3, 11, 2, "final", 0), "pip installs lgpio from PyPI instead (Python 3.11)"),
    ("x86_64", (3, 13, 5, "final", 0), "this x86_64 machine has no Pi GPIO"),
])
def test_without_pi_os_archive_lgpio_is_one_line_saying_what_drives_the_pins(sandbox, machine, version, says):
    sandbox.add("run/systemd/system/.keep")
    sandbox.add("etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\n')
    py = _fake_python(sandbox, machine, version)
    r = sandbox.run("--dry-run", env={"DJSMILE_TEST_PYTHON": str(py),
                                      "STUB_NOT_IN_APT": "python3-picamera2 python3-lgpio"})
    assert r.returncode == 0, r.stdout + r.stderr
    lgpio = [ln for ln in (r.stdout + r.stderr).splitlines() if "lgpio" in ln]
    assert len(lgpio) == 1, lgpio
    assert lgpio[0].startswith("djsmile-install: warning: python3-lgpio is not in your apt sources")
    assert says in lgpio[0]
    camera = [ln for ln in r.stderr.splitlines() if "picamera2" in ln]
    assert len(camera) == 1 and "USB webcam" in camera[0]
    acts = _would(r.stdout)
    # the rest is still installed; the system python asked is the one given
    _index(acts, r"^apt-get install -y --no-install-recommends espeak-ng alsa-utils python3-venv python3-pip$")
    _index(acts, "^" + re.escape(str(py)) + " -m venv --system-site-packages ")
    assert sandbox.changing_calls() == []


def test_test_python_is_refused_outside_a_dry_run(sandbox):
    r = sandbox.run(test_root=False, as_nobody=False, env={"DJSMILE_TEST_PYTHON": "/usr/bin/python3"})
    assert r.returncode == 64 and "only for --dry-run" in r.stderr
    assert sandbox.calls() == []
