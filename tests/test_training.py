"""Training data, split, and a tiny end-to-end train -> convert -> eval."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from block_tensorflow import BLOCK_TF

from djsmile.training import data as D

ROOT = Path(__file__).resolve().parent.parent

def face(smile: bool, seed: int, size: int = 64) -> np.ndarray:
    """A drawn gray face: the mouth curves up for a smile and is flat otherwise."""
    rng = np.random.default_rng(seed)
    img = rng.integers(40, 120, (size, size), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 1.5)
    c = size // 2 + int(rng.integers(-3, 4))
    cv2.ellipse(img, (c, size // 2), (size // 3, int(size / 2.4)), 0, 0, 360, int(rng.integers(170, 220)), -1)
    for dx in (-size // 7, size // 7):
        cv2.circle(img, (c + dx, int(size * 0.4)), max(2, size // 20), 30, -1)
    my, w = int(size * 0.68), size // 6
    if smile:
        cv2.ellipse(img, (c, my - size // 16), (w, size // 10), 0, 10, 170, 20, 2)
    else:
        cv2.line(img, (c - w, my), (c + w, my), 20, 2)
    return img


def make_faces(root: Path, n: int = 30) -> Path:
    for label in ("smile", "no_smile"):
        d = root / label
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(d / f"{i}.png"), face(label == "smile", seed=i * 2 + (label == "smile")))
    return root


# ------------------------------------------------------------------ split
def _items(n):
    return [D.Item(f"/x/{i}.jpg", f"smile/{i}.jpg", i % 2, "r", "faces", sha1=f"{i:040x}") for i in range(n)]


class _FakeCrops:
    def __init__(self, hashes):
        self.ok = np.ones(len(hashes), bool)
        self.dhash = np.asarray(hashes, np.uint64)


def test_split_is_deterministic_with_the_expected_fractions():
    items = _items(3000)
    rng = np.random.default_rng(0)
    D.assign_splits(items, _FakeCrops(rng.integers(1, 2 ** 63, 3000, dtype=np.uint64)))
    first = [it.split for it in items]
    again = _items(3000)
    D.assign_splits(again, _FakeCrops(rng.integers(1, 2 ** 63, 3000, dtype=np.uint64)))
    assert first == [it.split for it in again]  # depends on the content hash only
    frac = {s: first.count(s) / 3000 for s in D.SPLITS}
    assert abs(frac["train"] - 0.70) < 0.03 and abs(frac["val"] - 0.15) < 0.03 and abs(frac["test"] - 0.15) < 0.03


def test_duplicates_and_face_photo_pairs_share_a_side():
    n = 400
    items = []
    for i in range(n):
        items.append(D.Item(f"/d/photos/smile/{i}.jpg", f"smile/{i}.jpg", 1, "d-photos", "photos", sha1=f"p{i:039x}"))
        items.append(D.Item(f"/d/faces/smile/{i}.jpg", f"smile/{i}.jpg", 1, "d-faces", "faces", sha1=f"f{i:039x}"))
    # byte-identical copies (same sha1) and near-duplicates (dHash 1 bit apart)
    items.append(D.Item("/e/no_smile/a.jpg", "no_smile/a.jpg", 0, "e", "faces", sha1=items[0].sha1))
    items.append(D.Item("/e/no_smile/b.jpg", "no_smile/b.jpg", 0, "e", "faces", sha1="b" * 40))
    rng = np.random.default_rng(1)
    hashes = rng.integers(1, 2 ** 63, len(items), dtype=np.uint64)
    hashes[-1] = hashes[10] ^ np.uint64(1 << 5)
    D.assign_splits(items, _FakeCrops(hashes))
    for i in range(n):
        assert items[2 * i].split == items[2 * i + 1].split      # a face goes with its photo
        assert items[2 * i].group == items[2 * i + 1].group == items[2 * i].sha1  # keyed on the photo
    assert items[-2].split == items[0].split
    assert items[-1].split == items[10].split
    assert len({it.split for it in items}) == 3


def test_missing_or_empty_class_folder_is_one_clear_error(tmp_path):
    from djsmile.errors import DataError
    (tmp_path / "smile").mkdir()
    cv2.imwrite(str(tmp_path / "smile" / "a.png"), face(True, 0))
    with pytest.raises(DataError, match=str(tmp_path / "no_smile")):
        D.resolve_roots([str(tmp_path)])
    (tmp_path / "no_smile").mkdir()
    with pytest.raises(DataError, match="no images"):
        D.resolve_roots([str(tmp_path)])


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    root = make_faces(tmp_path / "set", n=3)
    (root / "smile" / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    roots = D.resolve_roots([str(root) + ":faces"])
    items = D.list_items(roots)
    crops = D.load_crops(items, D.CropParams(input_size=32), tmp_path / "cache", workers=1, progress=False)
    st = crops.stats[roots[0].name]
    assert st == {"kind": "faces", "files": 7, "corrupt": 1, "no_face": 0, "used": 6}


def test_training_modules_import_without_tensorflow():
    code = BLOCK_TF + ("import djsmile.training.train, djsmile.training.evaluate, djsmile.training.data\n"
                       "import djsmile.training.nets, djsmile.convert.tflite\n"
                       "from djsmile.cli import main\n"
                       "sys.exit(main(['train', 'nowhere']))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 69, r.stderr
    assert "TensorFlow is not installed: pip install '.[train]'" in r.stderr


# ------------------------------------------------------------ end to end
@pytest.mark.slow
def test_tiny_train_convert_eval(tmp_path, capsys):
    pytest.importorskip("tensorflow")
    from djsmile.cli import main
    from djsmile.model import SmileModel
    data = make_faces(tmp_path / "data", n=30)
    cache, run, models = tmp_path / "cache", tmp_path / "run", tmp_path / "models"
    rc = main(["train", str(data), "--out", str(run), "--epochs", "3", "--input-size", "32",
               "--batch-size", "16", "--cache", str(cache), "--no-progress", "--workers", "1"])
    assert rc == 0
    for f in ("model.keras", "summary.json"):
        assert (run / f).stat().st_size > 0
    s = json.loads((run / "summary.json").read_text())
    assert sum(s["split_sizes"].values()) == 60 and min(s["split_sizes"].values()) > 0
    assert s["input_size"] == 32 and s["data_counts"]["data"]["used"] == 60
    assert set(s["metrics"]["test"]) >= {"all"}

    rc = main(["convert", str(run / "model.keras"), "--out", str(models), "--cache", str(cache),
               "--max-drop", "100", "--representative", "40", "--no-progress"])
    assert rc == 0
    q = models / "smile_int8.tflite"
    meta = json.loads(q.with_suffix(".json").read_text())
    assert meta["input_size"] == 32 and meta["labels"] == ["no_smile", "smile"] and 0 < meta["threshold"] < 1
    m = SmileModel(q)
    assert m.runtime.input_dtype == np.int8
    scale, zero = m.runtime._in["quantization"]
    assert scale == pytest.approx(1 / 255, rel=1e-3) and zero == -128  # pixel -> pixel - 128, exactly
    p = m.predict_crops([cv2.resize(face(True, 999), (32, 32)), cv2.resize(face(False, 998), (32, 32))])
    assert p.shape == (2,) and ((0 <= p) & (p <= 1)).all()
    assert (models / "smile_float32.tflite").is_file()

    exp = tmp_path / "split"
    assert main(["train", str(data), "--export-split", str(exp), "--cache", str(cache), "--no-progress"]) == 0
    exported = sorted(p.name for p in (exp / "data" / "test").rglob("*.png"))
    assert len(exported) == s["split_sizes"]["test"]
    out = tmp_path / "eval.json"
    capsys.readouterr()
    assert main(["eval", str(data), "--model", str(q), "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["n"] == 60 and rep["face_found_rate"] == 1.0 and rep["threshold"] == pytest.approx(meta["threshold"])
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_shipped_model_on_held_out_djsmile_faces(shared_datasets):
    """The shipped model on every 4th face of the held-out djsmile test split.

    The split is recomputed from file hashes and the face/photo pairing only
    (no near-duplicate merging, which needs every image decoded): that moves
    well under 1% of the groups, fine for a regression check.
    """
    from djsmile.model import SmileModel
    from djsmile.training.evaluate import metrics
    model = SmileModel()
    roots = D.resolve_roots([str(shared_datasets / "djsmile" / "faces") + ":faces"])
    items = D.list_items(roots)
    D.hash_items(items)
    # the faces' split is keyed on their photos: photo sha1s are needed too
    proots = D.resolve_roots([str(shared_datasets / "djsmile" / "photos") + ":photos"])
    pitems = D.list_items(proots)
    D.hash_items(pitems)
    allitems = items + pitems
    D.assign_splits(allitems, None)
    test = [it for it in items if it.split == "test"][::4]
    assert len(test) > 200
    crops = [model.crop(g, D.face_box(g)) for g in (D.load_gray(it.path) for it in test)]
    p = model.predict_crops(crops)
    m = metrics([it.label for it in test], p, model.threshold)
    assert m["accuracy"] >= 0.85, m  # measured 0.889 on the whole test split
