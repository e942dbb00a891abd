"""djsmile eval: metrics on cases whose answer is known, the JSON contract, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from block_tensorflow import BLOCK_TF
from helpers import run_djsmile

from djsmile.training import evaluate as E

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- pure metrics
def test_roc_auc_known_values():
    assert E.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert E.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)          # a tie counts half
    assert E.roc_auc([0, 0, 1], [0.1, 0.2, 0.9]) == pytest.approx(1.0)
    assert E.roc_auc([1, 1, 0], [0.1, 0.2, 0.9]) == pytest.approx(0.0)
    assert math.isnan(E.roc_auc([1, 1], [0.1, 0.2]))


def test_roc_auc_matches_pairwise_definition():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300), 1)  # many ties
    pos, neg = p[y == 1], p[y == 0]
    want = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert E.roc_auc(y, p) == pytest.approx(want)


def test_metrics_known_confusion():
    # 3 smiles (2 found right), 5 no_smiles (4 right)
    y = [1, 1, 1, 0, 0, 0, 0, 0]
    p = [0.9, 0.8, 0.1, 0.2, 0.3, 0.1, 0.4, 0.7]
    m = E.metrics(y, p, 0.5)
    assert m["n"] == 8
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    prec, rec = 2 / 3, 2 / 3
    assert m["f1"] == pytest.approx(2 * prec * rec / (prec + rec))


def test_threshold_choice_separates_when_it_can():
    y = [0, 0, 0, 1, 1, 1]
    p = [0.1, 0.2, 0.3, 0.35, 0.6, 0.9]
    t = E.choose_threshold(y, p)
    assert 0.3 < t <= 0.35
    assert E.metrics(y, p, t)["accuracy"] == 1.0


def test_no_face_counts_as_wrong_end_to_end():
    res = {"y": np.array([1, 1, 0, 0]), "p": np.array([0.9, np.nan, 0.2, 0.7]),
           "found": np.array([True, False, True, True]), "ms": np.array([1.0, 2.0, 3.0, 2.0])}
    rep = E.summarize(res, 0.5)
    assert list(rep) == list(E.JSON_KEYS)
    assert rep["n"] == 4
    assert rep["accuracy"] == pytest.approx(0.5)
    assert rep["face_found_rate"] == pytest.approx(0.75)
    assert rep["accuracy_on_found"] == pytest.approx(2 / 3)
    assert rep["balanced_accuracy"] == pytest.approx(0.5)
    assert rep["ms_per_image"] == pytest.approx(2.0)
    # end to end, the missed smile scores 0 and the false smile 0.7 beats the true 0.9? no: 0.9 > 0.7
    assert rep["roc_auc"] == pytest.approx(E.roc_auc([1, 1, 0, 0], [0.9, 0.0, 0.2, 0.7]))


# ------------------------------------------------- the CLI on a known model
@pytest.fixture(scope="module")
def brightness_model(tmp_path_factory):
    """A float TFLite model whose p_smile is the mean pixel brightness (x in [0, 1])."""
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    d = tmp_path_factory.mktemp("model")
    inp = keras.Input((16, 16, 1))
    out = keras.layers.GlobalAveragePooling2D()(inp)
    m = keras.Model(inp, out)
    import tempfile
    with tempfile.TemporaryDirectory() as sm:
        m.export(sm, format="tf_saved_model",
                 input_signature=[tf.TensorSpec([None, 16, 16, 1], tf.float32)], verbose=False)
        blob = tf.lite.TFLiteConverter.from_saved_model(sm).convert()
    path = d / "bright.tflite"
    path.write_bytes(blob)
    path.with_suffix(".json").write_text(json.dumps({
        "input_size": 16, "color": "gray", "normalize": {"scale": 1 / 255, "offset": 0.0},
        "crop_margin": 0.0, "labels": ["no_smile", "smile"], "smile_index": 1, "output": "sigmoid",
        "threshold": 0.5}))
    return path


def _write(d: Path, name: str, value: int, size=(30, 30)):
    d.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(d / name), np.full(size, value, np.uint8))


@pytest.mark.slow
def test_eval_faces_known_answer(tmp_path, brightness_model):
    data = tmp_path / "data"
    for i, v in enumerate([220, 200, 180, 90]):       # 3 right, one dark smile -> wrong
        _write(data / "smile", f"{i}.png", v)
    for i, v in enumerate([20, 40, 60, 100, 230]):    # 4 right, one bright no_smile -> wrong
        _write(data / "no_smile", f"{i}.png", v)
    (data / "smile" / "broken.jpg").write_bytes(b"not a jpeg")  # skipped and counted
    out = tmp_path / "r.json"
    r = run_djsmile("eval", data, "--model", brightness_model, "--json", out, "--plots", tmp_path / "plots")
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert list(rep) == list(E.JSON_KEYS)
    assert rep["n"] == 9
    assert rep["accuracy"] == pytest.approx(7 / 9)
    assert rep["balanced_accuracy"] == pytest.approx((3 / 4 + 4 / 5) / 2)
    assert rep["f1"] == pytest.approx(2 * 0.75 * 0.75 / 1.5)
    # p = v / 255: the ranking of the values gives the AUC
    y = [1] * 4 + [0] * 5
    p = [220, 200, 180, 90, 20, 40, 60, 100, 230]
    assert rep["roc_auc"] == pytest.approx(E.roc_auc(y, p), abs=1e-6)
    assert rep["face_found_rate"] == 1.0 and rep["accuracy_on_found"] == pytest.approx(7 / 9)
    assert rep["threshold"] == 0.5
    assert "accuracy" in r.stdout and "skipped" in r.stdout
    if (tmp_path / "plots").exists():
        assert (tmp_path / "plots" / "confusion.png").stat().st_size > 0
        assert (tmp_path / "plots" / "roc.png").stat().st_size > 0


def test_eval_bad_inputs_name_the_path(tmp_path, brightness_model):
    data = tmp_path / "data"
    _write(data / "smile", "a.png", 200)
    r = run_djsmile("eval", data, "--model", brightness_model)
    assert r.returncode != 0
    assert str(data / "no_smile") in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (data / "no_smile").mkdir()
    r = run_djsmile("eval", data, "--model", brightness_model)
    assert r.returncode != 0 and str(data / "no_smile") in r.stderr
    _write(data / "no_smile", "b.png", 10)
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    fake.with_suffix(".json").write_text(brightness_model.with_suffix(".json").read_text())
    r = run_djsmile("eval", data, "--model", fake)
    assert r.returncode != 0
    assert str(fake) in r.stderr and "not a TFLite" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_eval_runs_without_tensorflow(tmp_path, brightness_model):
    data = tmp_path / "data"
    _write(data / "smile", "a.png", 200)
    _write(data / "no_smile", "b.png", 10)
    block = BLOCK_TF + "from djsmile.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    r = subprocess.run([sys.executable, "-c", block, "eval", str(data), "--model", str(brightness_model)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "1.0000" in r.stdout


def test_eval_photos_mode_counts_missing_faces(tmp_path, brightness_model):
    data = tmp_path / "data"
    _write(data / "smile", "blank.png", 200, size=(120, 160))  # no face in a flat image
    _write(data / "no_smile", "blank.png", 20, size=(120, 160))
    out = tmp_path / "r.json"
    r = run_djsmile("eval", data, "--model", brightness_model, "--mode", "photos", "--json", out)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert rep["n"] == 2 and rep["face_found_rate"] == 0.0 and rep["accuracy"] == 0.0


def test_eval_set_changes_the_detector_and_is_checked(tmp_path, brightness_model, small_face_scene):
    data = tmp_path / "data"
    (data / "smile").mkdir(parents=True)
    (data / "no_smile").mkdir()
    cv2.imwrite(str(data / "smile" / "small.png"), small_face_scene(16))
    _write(data / "no_smile", "blank.png", 20, size=(213, 320))
    out = tmp_path / "r.json"
    haar = ("--set", 'detector.backend="haar"')   # upscale is the Haar back-end's key
    r = run_djsmile("eval", data, "--model", brightness_model, "--mode", "photos", "--json", out, *haar)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["face_found_rate"] == 0.0
    r = run_djsmile("eval", data, "--model", brightness_model, "--mode", "photos", "--json", out, *haar,
                 "--set", "detector.upscale=2", "--set", "detector.min_face_fraction=0.05")
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["face_found_rate"] == 0.5   # the small face, not the blank
    r = run_djsmile("eval", data, "--model", brightness_model, "--mode", "photos", "--set", "detector.upscale=9")
    assert r.returncode == 78 and "detector.upscale" in r.stderr
