"""The config layer and the CLI around it: one loader, every rule at load, one exit-code table.

``djsmile config --check FILE`` and ``djsmile run --config FILE`` must agree on
every file: a file --check calls OK never stops ``run`` with 78 later.
"""

from __future__ import annotations

import math
import re
import socket
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from djsmile import cli, config, errors, service
from djsmile.config import Config

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

#: every config key, from the dataclasses (not a hand list): (dotted name, field)
KEYS = [(f"{sf.name}.{f.name}", f) for sf in fields(Config) for f in fields(getattr(Config(), sf.name))]
FLOAT_KEYS = [k for k, f in KEYS if f.type in ("float", float)]


# --------------------------------------------------------------------------- helpers

def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif o < 0x20 or o == 0x7F or 0xD800 <= o <= 0xDFFF:
            out.append(f"\\u{o:04x}" if not 0xD800 <= o <= 0xDFFF else "?")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(v) -> str:
    """A Python value as TOML text (nan/inf included, nested inline tables and arrays)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_str(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def toml_text(data: dict) -> str:
    lines = []
    for sec, table in data.items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def stub_run(monkeypatch):
    """``djsmile run`` through the real CLI and loader, but the loop replaced: records the config it gets."""
    got = []

    def fake_main(cfg, **kw):
        got.append(cfg)
        return 0

    monkeypatch.setattr(service, "main", fake_main)
    return got


def check_rc(path) -> int:
    return cli.main(["config", "--check", str(path)])


def run_loader_rc(path, *extra) -> int:
    return cli.main(["run", "--config", str(path), "--max-frames", "1", *extra])


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("frames")
    cv2.imwrite(str(d / "000.png"), np.full((120, 160, 3), 90, np.uint8))
    return d


# --------------------------------------------------------------------------- item 2: rules at load

CROSS_FIELD = {
    "led_pin == shutter_pin": ("[gpio]\nled_pin = 5\nshutter_pin = 5\n", ["gpio.led_pin", "gpio.shutter_pin"]),
    "button on the LED pin": ("[gpio]\nbutton_pin = 17\n", ["gpio.led_pin", "gpio.button_pin"]),
    "web.listen garbage": ('[web]\nlisten = "garbage"\n', ["web.listen", "garbage"]),
    "web.listen port 99999": ('[web]\nlisten = "127.0.0.1:99999"\n', ["web.listen", "65535"]),
    "web off localhost, no token": ('[web]\nenabled = true\nlisten = "0.0.0.0:8080"\n', ["web.listen", "web.token"]),
    "jokes.api_url not http": ('[jokes]\napi_url = "ftp://jokes.example"\n', ["jokes.api_url"]),
    "pin_factory typo": ('[gpio]\npin_factory = "lgpoi"\n', ["gpio.pin_factory", "lgpoi"]),
}


@pytest.mark.parametrize("name", CROSS_FIELD)
def test_check_rejects_what_run_would_reject_naming_the_keys(name, tmp_path, stub_run, capfd):
    text, words = CROSS_FIELD[name]
    f = write(tmp_path, text)
    assert check_rc(f) == 78
    err = capfd.readouterr().err
    assert all(w in err for w in words), err
    assert len(err.strip().splitlines()) == 1
    assert run_loader_rc(f) == 78 and stub_run == []  # run never got as far as the loop


def test_same_pins_but_one_switched_off_is_fine(tmp_path, stub_run):
    f = write(tmp_path, "[gpio]\nled_pin = 5\nshutter_pin = 5\nshutter_enabled = false\n")
    assert check_rc(f) == 0
    assert run_loader_rc(f) == 0 and len(stub_run) == 1


def test_flags_go_through_the_same_rules(tmp_path, stub_run, capfd):
    # --web on all interfaces without a token is caught at load, like the same key in a file
    assert cli.main(["run", "--web", "0.0.0.0:8080", "--max-frames", "1"]) == 78
    assert "web.token" in capfd.readouterr().err
    assert cli.main(["run", "--set", "gpio.shutter_pin=17", "--max-frames", "1"]) == 78
    assert cli.main(["run", "--set", "gpio.shutter_pin=17", "--no-gpio", "--max-frames", "1"]) == 0
    assert stub_run and not stub_run[-1].gpio.led_enabled


def test_real_run_and_check_agree_on_a_pin_clash(tmp_path, frames_dir):
    """The issue's case end to end: --check used to say OK, then run stopped with 78."""
    f = write(tmp_path, "[gpio]\nled_pin = 27\nshutter_pin = 27\npin_factory = \"mock\"\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    chk = subprocess.run([PY, "-m", "djsmile", "config", "--check", str(f)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    run = subprocess.run([PY, "-m", "djsmile", "run", "--config", str(f), "--source", str(frames_dir),
                          "--state-dir", str(tmp_path / "state"), "--max-frames", "1", "--no-jokes"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert chk.returncode == run.returncode == 78, (chk.stderr, run.stderr)
    assert "gpio.led_pin and gpio.shutter_pin" in chk.stderr
    assert "Traceback" not in run.stderr + chk.stderr


# --------------------------------------------------------------------------- item 3: NaN, inf, nesting

@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_nan_and_inf_are_rejected_for_every_float_key(key, text, tmp_path, capfd):
    sec, k = key.split(".")
    f = write(tmp_path, f"[{sec}]\n{k} = {text}\n")
    assert check_rc(f) == 78
    err = capfd.readouterr().err
    assert key in err and "finite" in err and len(err.strip().splitlines()) == 1


def test_nan_by_set_is_rejected(stub_run, capfd):
    assert cli.main(["run", "--set", "detector.scale_factor=nan", "--max-frames", "1"]) == 78
    assert "detector.scale_factor" in capfd.readouterr().err and stub_run == []


@pytest.mark.parametrize("text", [
    "a = " + "[" * 500 + "]" * 500 + "\n",
    "[web]\nlisten = " + "{a = " * 500 + "1" + "}" * 500 + "\n",
    "[camera]\nfps = 1" + "0" * 400 + "\n",          # an integer too big for a float
])
def test_absurd_files_are_one_line_exit_78(text, tmp_path, stub_run, capfd):
    f = write(tmp_path, text)
    assert check_rc(f) == 78
    err = capfd.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert run_loader_rc(f) == 78


# --------------------------------------------------------------------------- item 4: exit codes

def test_exit_code_table_covers_every_error_type():
    want = {errors.ConfigError: 78, errors.UsageError: 64, errors.DataError: 65, errors.NoInputError: 66,
            errors.ModelError: 66, errors.SourceNotFoundError: 66, errors.UnavailableError: 69,
            errors.SourceError: 69, errors.NoCameraError: 69, errors.GpioError: 69, errors.CascadeError: 69,
            errors.RuntimeMissingError: 69, errors.MissingDependencyError: 69, errors.CantCreateError: 73,
            errors.TempFailError: 75, errors.AddressInUseError: 75, errors.BusyError: 75,
            errors.SpeechError: 69, errors.DjsmileError: 70}
    for cls, code in want.items():
        assert cli.exit_code_for(cls("x")) == code, cls
    # every error type (in errors.py or beside its module) takes its code from the one table:
    # none carries its own, and none falls through to 70 (internal error) unnoticed
    import importlib
    for mod in ("mqtt", "calibration.thresholds", "calibration.run", "jokes", "bench", "service", "web", "speech"):
        importlib.import_module(f"djsmile.{mod}")
    todo, seen = [errors.DjsmileError], []
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo += cls.__subclasses__()
        assert "exit_code" not in vars(cls), f"{cls.__name__}: exit codes live in cli.EXIT_CODES only"
        if cls is not errors.DjsmileError:
            assert cli.exit_code_for(cls("x")) != 70, f"{cls.__name__}: give it a base in cli.EXIT_CODES"
    assert len(seen) >= len(want)


def test_readme_exit_code_table_matches_the_cli():
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| *`?(\d+)`? *\|(.*)\|\s*$", readme, flags=re.M)
    codes = {int(c) for c, _ in rows}
    assert codes == set(cli.EXIT_CODES.values()) | {0}
    # every code the README mentions in prose is in the table too
    for m in re.finditer(r"(?:exit|exits|code)s? (?:with )?(?:code )?`?(\d{2,3})\b", readme):
        assert int(m.group(1)) in codes, m.group(0)


def test_mistyped_flag_prints_the_subcommands_usage_and_exits_64(capfd):
    assert cli.main(["run", "--sorce", "x"]) == 64
    err = capfd.readouterr().err
    assert err.startswith("usage: djsmile run") and "--sorce" in err and "--max-frames" in err
    assert cli.main(["joke", "--say-it"]) == 64
    assert capfd.readouterr().err.startswith("usage: djsmile joke")
    assert cli.main(["run", "--policy", "most"]) == 64  # a bad choice too
    assert "usage: djsmile run" in capfd.readouterr().err


def test_mistyped_flag_in_a_real_process_exits_64():
    p = subprocess.run([PY, "-m", "djsmile", "run", "--sorce", "x"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 64 and p.stderr.startswith("usage: djsmile run"), p.stderr
    assert "Traceback" not in p.stderr


def _real_run(*argv) -> int:
    return cli.main(["run", "--no-jokes", "--no-gpio", "--max-frames", "1", "--set", 'jokes.api_url=""',
                     *map(str, argv)])


def test_port_in_use_exits_75_not_78(tmp_path, frames_dir, capfd):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc = _real_run("--source", frames_dir, "--state-dir", tmp_path / "s", "--web", f"127.0.0.1:{port}")
    assert rc == 75
    err = capfd.readouterr().err
    assert f"127.0.0.1:{port}" in err and "Traceback" not in err


def test_state_folder_that_cannot_be_created_exits_73(tmp_path, frames_dir, capfd):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert _real_run("--source", frames_dir, "--state-dir", blocker / "state") == 73
    assert "state folder" in capfd.readouterr().err


def test_missing_cascade_file_exits_69(tmp_path, frames_dir, capfd):
    rc = _real_run("--source", frames_dir, "--state-dir", tmp_path / "s", "--set", 'detector.backend="haar"',
                   "--set", f'detector.cascade="{tmp_path / "no.xml"}"')
    assert rc == 69
    assert "detector.cascade" in capfd.readouterr().err


def test_missing_source_exits_66(tmp_path):
    assert _real_run("--source", tmp_path / "no-such.mp4", "--state-dir", tmp_path / "s") == 66


# --------------------------------------------------------------------------- item 15: joke --set

def test_joke_accepts_set_like_run_and_eval(tmp_path, capfd):
    rc = cli.main(["joke", "--state-dir", str(tmp_path), "--set", 'jokes.api_url=""'])
    out = capfd.readouterr()
    assert rc == 0 and out.out.strip(), out.err
    assert "bundled" in out.err or "cache" in out.err  # offline: the API was not asked
    assert cli.main(["joke", "--state-dir", str(tmp_path), "--set", "jokes.timeout_s=nan"]) == 78
    assert "jokes.timeout_s" in capfd.readouterr().err


# --------------------------------------------------------------------------- config --show

def test_config_show_prints_the_effective_config(tmp_path, capfd):
    f = write(tmp_path, "[trigger]\nhold_frames = 7\n")
    assert cli.main(["config", "--show", "--config", str(f), "--set", "camera.fps=12.5"]) == 0
    shown = capfd.readouterr().out
    assert "hold_frames = 7" in shown and "fps = 12.5" in shown
    assert config.load(write(tmp_path, shown, "shown.toml")).trigger.hold_frames == 7


def test_config_show_never_prints_secrets(tmp_path, capfd):
    """mqtt.password and web.token are shown as <set>, never in clear (the output ends up in bug reports)."""
    f = write(tmp_path, '[mqtt]\npassword = "hunter2-secret"\n[web]\ntoken = "tok-secret-42"\n')
    assert cli.main(["config", "--show", "--config", str(f)]) == 0
    shown = capfd.readouterr().out
    assert "hunter2-secret" not in shown and "tok-secret-42" not in shown
    assert 'password = "<set>"' in shown and 'token = "<set>"' in shown
    assert cli.main(["config", "--show"]) == 0
    assert 'password = ""' in capfd.readouterr().out  # unset stays visibly empty


# --------------------------------------------------------------------------- property: check == run

def _bad_and_good_values(f):
    """Values of every kind for one key: in range, out of range, wrong types, NaN/inf, huge, nested."""
    m = f.metadata
    typ = f.type if isinstance(f.type, str) else f.type.__name__
    lo, hi = m.get("min"), m.get("max")
    wrong = st.one_of(
        st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12), st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(min_size=1, max_size=4), st.integers(), max_size=2),
        st.sampled_from([float("nan"), float("inf"), float("-inf"), 10**400, -1, 0, -0.0, "", "\u0000"]))
    if typ == "bool":
        right = st.booleans()
    elif typ == "int":
        right = st.integers(lo if lo is not None else -10, hi if hi is not None else 10**6)
    elif typ == "float":
        right = st.floats(lo if lo is not None else -1e6, hi if hi is not None else 1e6, allow_nan=False)
    elif m.get("choices"):
        right = st.sampled_from(m["choices"])
    else:
        right = st.one_of(st.text(max_size=20), st.sampled_from(["", "127.0.0.1:8080", "[::1]:0", "0.0.0.0:80",
                                                                  "http://x", "https://icanhazdadjoke.com/"]))
    return st.one_of(right, right, wrong)


@st.composite
def configs(draw):
    """A nested dict over a random handful of keys (enumerated from the dataclasses)."""
    chosen = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=6, unique_by=lambda kv: kv[0]))
    data: dict = {}
    for name, f in chosen:
        sec, key = name.split(".")
        data.setdefault(sec, {})[key] = draw(_bad_and_good_values(f))
    if draw(st.integers(0, 19)) == 0:  # now and then an unknown key or a section that is not a table
        data[draw(st.sampled_from(["camera", "nosuch"]))] = draw(st.sampled_from([{"nosuch": 1}, {}]))
    return data


@pytest.mark.slow
@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=configs())
def test_property_check_and_run_loader_agree_on_random_configs(data, tmp_path, stub_run, capfd):
    f = write(tmp_path, toml_text(data))
    stub_run.clear()
    rc_check = check_rc(f)
    rc_run = run_loader_rc(f)
    err = capfd.readouterr().err
    assert rc_check in (0, 78) and rc_run in (0, 78), err
    assert rc_check == rc_run, err
    assert (rc_run == 0) == (len(stub_run) == 1)
    assert "Traceback" not in err


#: keys that reach outside the process: pinned in the real runs below (no network, no real pins)
PINNED = {"camera.source", "model.path", "detector.cascade", "gpio.pin_factory", "storage.state_dir",
          "jokes.api_url", "web.enabled", "web.listen", "speech.engine", "camera.realtime"}


@st.composite
def local_configs(draw):
    chosen = draw(st.lists(st.sampled_from([kv for kv in KEYS if kv[0] not in PINNED]), min_size=1, max_size=6,
                           unique_by=lambda kv: kv[0]))
    data: dict = {}
    for name, f in chosen:
        sec, key = name.split(".")
        data.setdefault(sec, {})[key] = draw(_bad_and_good_values(f))
    return data


@pytest.fixture
def restore_pin_factory():
    from gpiozero import Device
    saved = Device.pin_factory
    yield
    if Device.pin_factory is not saved:
        Device.pin_factory.close()
        Device.pin_factory = saved


@pytest.mark.slow
@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=local_configs())
def test_property_a_config_check_accepts_really_runs(data, tmp_path, frames_dir, restore_pin_factory, capfd):
    """The real ``djsmile run --max-frames 1`` (no stub): 0 when --check says OK, 78 when it does not."""
    state = tmp_path / "state"
    data = {sec: dict(t) for sec, t in data.items()}
    data.setdefault("camera", {}).update(source=str(frames_dir))
    data.setdefault("gpio", {}).update(pin_factory="mock")
    data.setdefault("storage", {}).update(state_dir=str(state))
    data.setdefault("jokes", {}).update(api_url="")
    data.setdefault("speech", {}).update(engine="none")
    f = write(tmp_path, toml_text(data))
    rc_check = check_rc(f)
    rc_run = run_loader_rc(f)
    err = capfd.readouterr().err
    assert rc_check in (0, 78) and rc_run == rc_check, err
    assert "Traceback" not in err, err


# --------------------------------------------------------------------------- fuzz: hostile files named in the config

@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory):
    """Paths a config may name for a file it reads: the real thing, and what a fault probe tries."""
    from djsmile.detectors.haar import find_cascade
    d = tmp_path_factory.mktemp("hostile")
    (d / "empty.xml").write_bytes(b"")
    (d / "notes.txt").write_text("this is not a cascade\n" * 20)
    (d / "random.xml").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (d / "other.xml").write_text('<?xml version="1.0"?>\n<opencv_storage><a>1</a></opencv_storage>\n')
    (d / "data.json").write_text('{"a": 1}\n')
    (d / "a-folder").mkdir()
    (d / "zero.xml").symlink_to("/dev/zero")
    with open(d / "sparse.xml", "wb") as f:       # 200 MB of nothing, on no disk space
        f.truncate(200 * 1024 * 1024)
    return [find_cascade(""), *(str(d / n) for n in ("empty.xml", "notes.txt", "random.xml", "other.xml",
                                                     "data.json", "a-folder", "zero.xml", "sparse.xml",
                                                     "missing.xml"))]


#: keys whose value names a file djsmile reads: '' (unset), the real thing, or one of hostile_files[1:]
FILE_KEYS = ("detector.cascade", "detector.blazeface_model", "detector.yunet_model", "mqtt.ca_file")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@pytest.mark.slow
@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.one_of(st.just({}), st.just({}), local_configs()),
       picks=st.lists(st.one_of(st.sampled_from(["unset", "real"]), st.integers(1, 9)),
                      min_size=len(FILE_KEYS), max_size=len(FILE_KEYS)),
       backend=st.sampled_from(config.DetectorConfig.__dataclass_fields__["backend"].metadata["choices"]))
def test_property_hostile_files_in_a_config_check_equals_run(data, picks, backend, tmp_path, frames_dir,
                                                             hostile_files, restore_pin_factory, capfd):
    """``config --check`` and a real short ``run``: both 78 or neither, exit codes from the README's table
    only, never a traceback, whatever file a key names."""
    data = {sec: dict(t) for sec, t in data.items()}
    real = {"detector.cascade": hostile_files[0], "mqtt.ca_file": CA_BUNDLE}    # the models: '' = shipped
    for key, i in zip(FILE_KEYS, picks):
        sec, k = key.split(".")
        data.setdefault(sec, {})[k] = "" if i == "unset" else real.get(key, "") if i == "real" else hostile_files[i]
    data["detector"].setdefault("backend", backend)
    if data["mqtt"]["ca_file"]:
        data["mqtt"].update(tls=True, enabled=True, host="127.0.0.1", port=1)
    data.setdefault("camera", {}).update(source=str(frames_dir))
    data.setdefault("gpio", {}).update(pin_factory="mock")
    data.setdefault("storage", {}).update(state_dir=str(tmp_path / "state"))
    data.setdefault("jokes", {}).update(api_url="")
    data.setdefault("speech", {}).update(engine="none")
    f = write(tmp_path, toml_text(data))
    rc_check = check_rc(f)
    rc_run = cli.main(["run", "--config", str(f), "--max-frames", "2"])
    err = capfd.readouterr().err
    assert rc_check in (0, 78), err
    assert (rc_run == 78) == (rc_check == 78), err
    assert rc_run in set(cli.EXIT_CODES.values()) | {0}, err
    assert "Traceback" not in err, err


@pytest.mark.parametrize("i, want", [(0, 0), (1, 78), (2, 78), (3, 78), (4, 78), (5, 78), (6, 78), (7, 78), (8, 78),
                                     (9, 69)])
def test_a_cascade_that_is_not_one_is_a_config_error_at_load(i, want, hostile_files, tmp_path, frames_dir,
                                                              restore_pin_factory, capfd):
    """Not a cascade (empty, text, random bytes, other XML, JSON, a folder, /dev/zero, 200 MB): 78 from
    ``config --check`` and ``run`` alike, naming the key; missing: 69 at run, one line."""
    path = hostile_files[i]
    f = write(tmp_path, toml_text({"detector": {"backend": "haar", "cascade": path},
                                   "camera": {"source": str(frames_dir)},
                                   "gpio": {"pin_factory": "mock"}, "storage": {"state_dir": str(tmp_path / "s")},
                                   "jokes": {"api_url": ""}, "speech": {"engine": "none"}}))
    rc_check = check_rc(f)
    rc_run = cli.main(["run", "--config", str(f), "--max-frames", "2"])
    err = capfd.readouterr().err
    assert rc_check == (78 if want == 78 else 0), err
    assert rc_run == want, err
    assert "Traceback" not in err
    if want:
        errors = [ln for ln in err.splitlines() if "detector.cascade" in ln]
        assert errors and Path(path).name in errors[0], err


# ------------------------------------------------------------------ config --show: run's thresholds (issue 24 item 7)
def _calibration_for_the_shipped_model(state: Path, on=0.5, off=0.35) -> dict:
    from djsmile.calibration import file as calfile
    from djsmile.fsutil import file_sha256
    from djsmile.model import default_model_path
    state.mkdir(parents=True, exist_ok=True)
    data = {"created": "2026-12-06T10:00:00+00:00", "neutral": {"n": 10, "median": 0.1, "p10": 0.05, "p90": 0.2},
            "smile": {"n": 10, "median": 0.9, "p10": 0.8, "p90": 0.95}, "on_threshold": on, "off_threshold": off,
            "model_sha256": file_sha256(default_model_path()), "frames_skipped": 0}
    calfile.write(state, data)
    return data


def _shown_thresholds(text: str) -> tuple[str, str]:
    lines = text.splitlines()
    return (next(ln for ln in lines if ln.startswith("on_threshold =")),
            next(ln for ln in lines if ln.startswith("off_threshold =")))


def test_config_show_says_the_thresholds_run_uses_and_where_from(tmp_path, capfd):
    state = tmp_path / "state"
    _calibration_for_the_shipped_model(state)
    sd = ["--set", f'storage.state_dir="{state}"']
    assert cli.main(["config", "--show", *sd]) == 0
    on, off = _shown_thresholds(capfd.readouterr().out)
    assert on.startswith("on_threshold = 0.0") and "djsmile run uses 0.500" in on, on
    assert "calibration.json of 2026-12-06T10:00:00+00:00" in on and str(state) in on, on
    assert "djsmile run uses 0.350" in off, off
    # explicit thresholds win over the calibration, as in run
    assert cli.main(["config", "--show", *sd, "--set", "trigger.on_threshold=0.6"]) == 0
    on, off = _shown_thresholds(capfd.readouterr().out)
    assert "djsmile run uses 0.600 (from the config)" in on, on
    # no calibration: the sensitivity preset on the model's own threshold
    assert cli.main(["config", "--show", "--set", f'storage.state_dir="{tmp_path / "none"}"',
                     "--set", 'trigger.sensitivity="big"']) == 0
    on, _ = _shown_thresholds(capfd.readouterr().out)
    from djsmile.model import SmileModel
    assert f"(from the sensitivity preset 'big' and the model's threshold {SmileModel().threshold:.3f})" in on, on


def test_config_show_agrees_with_what_run_logs(tmp_path, frames_dir, capfd):
    state = tmp_path / "state"
    _calibration_for_the_shipped_model(state, on=0.55, off=0.4)
    assert cli.main(["config", "--show", "--set", f'storage.state_dir="{state}"']) == 0
    on, off = _shown_thresholds(capfd.readouterr().out)
    assert "uses 0.550" in on and "uses 0.400" in off
    assert _real_run("--source", frames_dir, "--state-dir", state) == 0
    assert "on=0.550 off=0.400" in capfd.readouterr().err
