"""Paired smile models (issue 28): two nets, one per crop of the face (the box crop and the eye-aligned crop),
averaged in one .tflite file with one input each; the sidecar says how to make each crop."""

import json

import cv2
import numpy as np
import pytest

from djsmile import preprocess as P
from djsmile.errors import ModelError
from djsmile.model import ModelMeta, SmileModel

BOX = {"name": "box", "crop": "box", "input_size": 32, "crop_margin": -0.075,
       "normalize": {"scale": 1 / 255, "offset": 0.0}}
ALIGNED = {"name": "aligned", "crop": "aligned", "input_size": 24, "crop_margin": 0.0,
           "template": {"eye_y": 0.3, "eye_distance": 0.46, "mouth_y": 0.8}}


def _sidecar(tmp_path, d):
    p = tmp_path / "m.json"
    p.write_text(json.dumps(d))
    return p


def test_a_pair_sidecar_names_each_crop_and_writes_back_the_same(tmp_path):
    meta = ModelMeta.load(_sidecar(tmp_path, {"crop": "pair", "inputs": [BOX, ALIGNED], "threshold": 0.6}))
    assert meta.crop == "pair" and [m.name for m in meta.parts] == ["box", "aligned"]
    box, aligned = meta.parts
    assert (box.crop, box.input_size, box.crop_margin) == ("box", 32, -0.075)
    assert (aligned.crop, aligned.input_size, aligned.template) == ("aligned", 24, (0.3, 0.46, 0.8))
    assert meta.threshold == 0.6
    again = ModelMeta.load(_sidecar(tmp_path, meta.to_json()))
    assert again.to_json() == meta.to_json()
    assert "input_size" not in meta.to_json()   # each input says its own


def test_a_single_crop_sidecar_is_its_own_one_part():
    meta = ModelMeta(input_size=48, crop_margin=-0.075)
    assert meta.parts == [meta] and "inputs" not in meta.to_json() and "crop" not in meta.to_json()


@pytest.mark.parametrize("bad,why", [
    ({"crop": "pair", "inputs": [BOX]}, "two or more"),
    ({"crop": "pair", "inputs": [BOX, dict(BOX)]}, "not distinct"),
    ({"crop": "pair"}, "two or more"),
    ({"inputs": [BOX, ALIGNED]}, "\"crop\": \"pair\""),
    ({"crop": "pair", "inputs": [BOX, {**ALIGNED, "crop": "fisheye"}]}, "'fisheye' is not supported"),
    ({"crop": "pair", "inputs": [BOX, {k: v for k, v in ALIGNED.items() if k != "name"}]}, "missing or has a bad key"),
    ({"crop": "pair", "inputs": [BOX, {**ALIGNED, "template": {"eye_y": 0.9}}]}, "bad \"template\""),
    ({"crop": "pair", "inputs": [BOX, "aligned"]}, "two or more objects"),
])
def test_a_bad_pair_sidecar_is_refused_with_what_is_wrong(tmp_path, bad, why):
    with pytest.raises(ModelError, match=why):
        ModelMeta.load(_sidecar(tmp_path, bad))


# ------------------------------------------------------------------ train two crops -> one file -> eval, device
@pytest.fixture(scope="module")
def pair_run(tmp_path_factory):
    pytest.importorskip("tensorflow")
    from test_training import make_faces

    from djsmile.cli import main
    tmp = tmp_path_factory.mktemp("pair")
    data = make_faces(tmp / "data", n=20)
    cache = tmp / "cache"
    common = ["--epochs", "1", "--batch-size", "16", "--cache", str(cache), "--no-progress", "--workers", "1"]
    assert main(["train", str(data), "--out", str(tmp / "box"), "--input-size", "32", *common]) == 0
    assert main(["train", str(data), "--out", str(tmp / "aligned"), "--input-size", "24", "--crop", "aligned",
                 "--template", "0.30,0.46,0.80", *common]) == 0
    return tmp, data, cache


@pytest.mark.slow
def test_two_runs_on_two_crops_become_one_file_that_averages_them(pair_run, capsys):
    import keras

    from djsmile.cli import main
    tmp, data, cache = pair_run
    out = tmp / "models"
    assert main(["convert", str(tmp / "box" / "model.keras"), "--pair", str(tmp / "aligned" / "model.keras"),
                 "--out", str(out), "--cache", str(cache), "--max-drop", "100", "--representative", "20",
                 "--no-progress"]) == 0
    assert sorted(f.name for f in out.iterdir()) == ["smile_float32.json", "smile_float32.tflite",
                                                      "smile_int8.json", "smile_int8.tflite"]
    side = json.loads((out / "smile_int8.json").read_text())
    assert side["crop"] == "pair" and [i["name"] for i in side["inputs"]] == ["box", "aligned"]
    assert side["inputs"][1]["template"] == {"eye_y": 0.30, "eye_distance": 0.46, "mouth_y": 0.80}
    assert [m["crop"] for m in side["pair"]] == ["box", "aligned"]

    # the device: one file, a crop per input, p = the mean of the two nets on their own crops
    m = SmileModel(out / "smile_float32.tflite")
    assert m.paired and m.aligned
    g = cv2.imread(str(next((data / "smile").iterdir())), cv2.IMREAD_GRAYSCALE)
    box = (4, 6, g.shape[1] - 10, g.shape[0] - 10)
    marks = P.eyes_from_box(box)
    crop = m.crop(g, box, marks)
    assert isinstance(crop, tuple) and [c.shape for c in crop] == [(32, 32), (24, 24)]
    assert np.array_equal(crop[0], P.crop_face(g, box, 32, -0.075))
    assert np.array_equal(crop[1], P.crop_aligned(g, marks, 24, template=(0.30, 0.46, 0.80)))
    nets = [keras.models.load_model(tmp / r / "model.keras", compile=False) for r in ("box", "aligned")]
    want = np.mean([float(net(c[None, :, :, None].astype(np.float32) / 255.0, training=False)[0, 0])
                    for net, c in zip(nets, crop)])
    got = m.predict(g, [box], [marks])
    assert got.shape == (1,) and got[0] == pytest.approx(want, abs=1e-4)
    # a batch of faces, and the int8 file within quantization of the float one
    q = SmileModel(out / "smile_int8.tflite")
    both = q.predict(g, [box, (0, 0, g.shape[1], g.shape[0])], [marks, None])
    assert both.shape == (2,) and both[0] == pytest.approx(want, abs=0.05)
    assert q.predict(g, []).shape == (0,)
    with pytest.raises(ValueError, match="takes 2 crops of each face"):   # one crop where the pair takes two
        q.predict_crops([crop[0]])

    # djsmile eval takes the pair as it is (the faces set: each image's whole-image box crop + its aligned crop)
    capsys.readouterr()
    assert main(["eval", str(data), "--model", str(out / "smile_int8.tflite"), "--json", str(tmp / "e.json")]) == 0
    rep = json.loads((tmp / "e.json").read_text())
    assert rep["n"] == 40 and 0.0 <= rep["accuracy"] <= 1.0


@pytest.mark.slow
def test_a_pair_of_the_same_crop_is_refused(pair_run):
    from djsmile.cli import main
    tmp, data, cache = pair_run
    assert main(["convert", str(tmp / "box" / "model.keras"), "--pair", str(tmp / "box" / "model.keras"),
                 "--out", str(tmp / "no"), "--cache", str(cache), "--no-progress"]) == 65
    assert not (tmp / "no").exists()


@pytest.mark.slow
def test_a_sidecar_that_names_other_inputs_than_the_file_is_refused(pair_run, tmp_path):
    tmp, _, _ = pair_run
    src = tmp / "models" / "smile_int8.tflite"
    if not src.exists():
        pytest.skip("needs the converted pair (test above)")
    dst = tmp_path / "smile_int8.tflite"
    dst.write_bytes(src.read_bytes())
    side = json.loads(src.with_suffix(".json").read_text())
    side["inputs"][1]["name"] = "tilted"
    dst.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(ModelError, match="has inputs"):
        SmileModel(dst)
    side["inputs"][1]["name"] = "aligned"
    side["inputs"][1]["input_size"] = 48
    dst.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(ModelError, match="does not match"):
        SmileModel(dst)
