"""The foundation: edge/ without TensorFlow, the CLI, config validation, the runtime loader."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from block_tensorflow import BLOCK_TF

from djsmile import config
from djsmile.errors import ConfigError, ModelError

ROOT = Path(__file__).resolve().parent.parent


def _py(code: str, *args, **kw):
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, **kw)


def edge_modules():
    """Every module of the device package, subpackages' too (``djsmile.calibration.run``)."""
    return sorted(".".join(("djsmile",) + p.relative_to(ROOT / "edge").with_suffix("").parts).removesuffix(".__init__")
                  for p in (ROOT / "edge").rglob("*.py") if p.stem != "__main__")


def test_edge_imports_without_tensorflow():
    mods = edge_modules()
    assert "djsmile.runtime" in mods and "djsmile.cli" in mods
    code = ("import importlib, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras'))\n"
            "print('TF:', bad)\n"
            "sys.exit(1 if bad else 0)\n")
    r = _py(code)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "TF: []" in r.stdout


def test_edge_runtime_loads_without_tensorflow():
    """With TensorFlow made unimportable, the runtime still finds a TFLite interpreter."""
    r = _py(BLOCK_TF + "from djsmile.runtime import find_interpreter\n"
            "name, ver, cls = find_interpreter()\nprint(name, ver)\n"
            "assert 'tensorflow' not in sys.modules\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] in ("ai-edge-litert", "tflite-runtime")


def test_train_without_tensorflow_says_how_to_install(tmp_path):
    r = _py(BLOCK_TF + "from djsmile.cli import main\nsys.exit(main(sys.argv[1:]))\n",
            "train", str(tmp_path), "--out", str(tmp_path / "out"))
    assert r.returncode != 0
    assert "pip install '.[train]'" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("cmd", ["run", "train", "convert", "eval", "bench", "joke", "config", "mqtt"])
def test_every_subcommand_has_help(cmd):
    r = subprocess.run([sys.executable, "-m", "djsmile", cmd, "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"djsmile {cmd}" in r.stdout and "--log-level" in r.stdout


def test_default_config_is_commented_and_loads_back():
    text = config.default_toml()
    data = tomllib.loads(text)
    assert set(data) == {"camera", "detector", "model", "trigger", "gpio", "speech", "jokes", "storage", "web", "mqtt"}
    cfg = config.from_dict(data)
    assert cfg == config.Config()
    # every key is preceded by its description
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if " = " in line and not line.startswith("#"):
            assert lines[i - 1].startswith("# "), line


@pytest.mark.parametrize("toml, words", [
    ("[trigger]\nhold = 3\n", ["trigger.hold", "unknown", "hold_frames"]),
    ("[trigger]\nhold_frames = 'three'\n", ["trigger.hold_frames", "'three'", "integer"]),
    ("[trigger]\ncooldown_s = -1\n", ["trigger.cooldown_s", "-1", "0.0 to 86400.0"]),
    ("[trigger]\npolicy = 'most'\n", ["trigger.policy", "'most'", "'largest', 'any', 'all'"]),
    ("[cameraa]\nfps = 3\n", ["[cameraa]", "unknown"]),
    ("[gpio]\nled_pin = 40\n", ["gpio.led_pin", "40"]),
    ("[gpio]\nled_enabled = 1\n", ["gpio.led_enabled", "true/false"]),
    ("[trigger\n", ["not valid TOML"]),
])
def test_bad_config_names_key_value_and_allowed(tmp_path, toml, words):
    f = tmp_path / "bad.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError) as e:
        config.load(f)
    from djsmile.cli import exit_code_for
    assert exit_code_for(e.value) == 78
    for w in words:
        assert w in str(e.value)


def test_config_check_command_exit_codes(tmp_path):
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(config.default_toml())
    bad.write_text("[detector]\nscale_factor = 0.5\n")
    ok = subprocess.run([sys.executable, "-m", "djsmile", "config", "--check", str(good)],
                        cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    r = subprocess.run([sys.executable, "-m", "djsmile", "config", "--check", str(bad)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 78
    assert "detector.scale_factor" in r.stderr and "0.5" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    missing = subprocess.run([sys.executable, "-m", "djsmile", "config", "--check", str(tmp_path / "nope.toml")],
                             cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 78 and "nope.toml" in missing.stderr


def test_override_uses_same_checks():
    cfg = config.Config()
    cfg.set("trigger.policy", "all")
    assert cfg.trigger.policy == "all"
    with pytest.raises(ConfigError, match="trigger.policy"):
        cfg.set("trigger.policy", "some")


def test_state_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "sd"))
    assert config.resolve_state_dir("") == tmp_path / "sd"
    assert config.resolve_state_dir(str(tmp_path / "x")) == tmp_path / "x"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert config.resolve_state_dir("") == tmp_path / "xdg" / "djsmile"


# -- the runtime loader ---------------------------------------------------

def test_missing_and_corrupt_model_are_one_clear_line(tmp_path):
    from djsmile.runtime import Runtime
    with pytest.raises(ModelError, match=str(tmp_path / "none.tflite")):
        Runtime(tmp_path / "none.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"this is not a model at all")
    with pytest.raises(ModelError, match="not a TFLite model") as e:
        Runtime(junk)
    assert str(junk) in str(e.value) and "\n" not in str(e.value)
    truncated = tmp_path / "trunc.tflite"
    truncated.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 10)
    with pytest.raises(ModelError, match="trunc.tflite"):
        Runtime(truncated)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A float32 and a full-int8 TFLite model of one small conv net (needs TensorFlow)."""
    tf = pytest.importorskip("tensorflow", reason="building test models needs TensorFlow ('.[train]')")
    d = tmp_path_factory.mktemp("models")
    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((16, 16, 1))
    x = tf.keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    out = tf.keras.layers.Dense(1, activation="sigmoid")(x)
    m = tf.keras.Model(inp, out)
    rng = np.random.default_rng(0)
    rep = rng.random((32, 16, 16, 1), dtype=np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    (d / "f32.tflite").write_bytes(conv.convert())
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([r[None]] for r in rep)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    (d / "i8.tflite").write_bytes(conv.convert())
    x = rng.random((5, 16, 16, 1), dtype=np.float32)
    return d, x, m(x).numpy()


@pytest.mark.slow
def test_runtime_float_and_int8_give_the_keras_answer(tiny_models):
    from djsmile.runtime import Runtime
    d, x, want = tiny_models
    f32 = Runtime(d / "f32.tflite", num_threads=1)
    assert f32.input_dtype == np.float32
    np.testing.assert_allclose(f32.run(x), want, atol=1e-5)
    i8 = Runtime(d / "i8.tflite", num_threads=2)
    assert i8.input_dtype == np.int8  # quantized I/O handled by the loader
    got = i8.run(x)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=0.02)
    # batch size changes are handled, and one image equals its row of the batch
    np.testing.assert_allclose(i8.run(x[:1]), got[:1], atol=1e-6)


def test_runtime_logs_which_backend(tiny_models, caplog):
    from djsmile.runtime import Runtime
    caplog.set_level("INFO")
    rt = Runtime(tiny_models[0] / "i8.tflite")
    assert rt.name in caplog.text and rt.version in caplog.text


def test_log_limiter_lets_a_few_lines_through_per_key_then_says_how_many_it_suppressed(caplog):
    import logging
    from djsmile.logutil import LogLimiter
    now = [0.0]
    lim = LogLimiter(logging.getLogger("djsmile.test"), per_s=10.0, burst=3, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="djsmile.test"):
        shown = [lim.log("a/topic", logging.INFO, "press %d", i) for i in range(1000)]
        assert sum(shown) == 3
        assert lim.log("other", logging.INFO, "another key")          # keys are counted apart
        now[0] = 10.5
        assert lim.log("a/topic", logging.INFO, "press again")        # a new window
        lim.log("a/topic", logging.INFO, "x")
        lim.log("a/topic", logging.INFO, "x")
        lim.log("a/topic", logging.INFO, "x")                         # 4th in the window: suppressed
        lim.flush()
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs[:4] == ["press 0", "press 1", "press 2", "another key"]
    assert "a/topic: 997 more like this suppressed in 10 s" in msgs
    assert msgs[-1].startswith("a/topic: 1 more like this suppressed")
    assert len(msgs) == 9


def test_percentiles_are_rounded_and_none_without_samples():
    from djsmile.stats import percentiles
    assert percentiles(range(101), (10, 50, 90)) == {"p10": 10.0, "p50": 50.0, "p90": 90.0}
    assert percentiles([1, 2], (50,), mean=True) == {"p50": 1.5, "mean": 1.5}
    assert percentiles([1 / 3], (99,)) == {"p99": 0.3333}
    assert percentiles(iter([]), (50, 95), mean=True) == {"p50": None, "p95": None, "mean": None}


def test_file_digest_reads_in_chunks_what_hashlib_says(tmp_path):
    import hashlib

    from djsmile.fsutil import file_digest, file_sha256
    f = tmp_path / "m"
    f.write_bytes(b"ab" * 700_000)   # more than one 1 MiB chunk
    assert file_sha256(f) == hashlib.sha256(b"ab" * 700_000).hexdigest()
    assert file_digest(f, "sha1") == hashlib.sha1(b"ab" * 700_000).hexdigest()
