"""Reviewed label fixes: parsing, applying (with the faces/photos sibling), and eval on both label sets."""

from pathlib import Path

import numpy as np
import pytest

from djsmile.errors import DataError
from djsmile.training import labelfix
from djsmile.training.data import Item

HEAD = "dataset,file,old_label,new_label,reason\n"


def _items():
    return [Item("/d/faces/no_smile/1.jpg", "no_smile/1.jpg", 0, "djsmile-faces", "faces"),
            Item("/d/photos/no_smile/1.jpg", "no_smile/1.jpg", 0, "djsmile-photos", "photos"),
            Item("/d/faces/smile/2.jpg", "smile/2.jpg", 1, "djsmile-faces", "faces"),
            Item("/d/faces/smile/3.jpg", "smile/3.jpg", 1, "djsmile-faces", "faces"),
            Item("/s/smile/3.jpg", "smile/3.jpg", 1, "smilesmiled", "faces")]


def test_fixes_relabel_and_drop_and_follow_the_photo_of_a_face():
    fixes = labelfix.parse(HEAD + "djsmile-faces,no_smile/1.jpg,no_smile,smile,broad grin\n"
                                  "djsmile-faces,smile/2.jpg,smile,drop,a drawing\n")
    items = _items()
    stats = labelfix.apply(items, fixes)
    assert [it.label for it in items] == [1, 1, 1, 1, 1]
    assert [it.dropped for it in items] == [False, False, True, False, False]
    assert stats == {"relabelled": 2, "dropped": 1}       # the face and its photo; one drop
    # smile/3.jpg of another dataset is not touched by a djsmile row
    assert labelfix.apply(_items(), labelfix.load("none")) == {"relabelled": 0, "dropped": 0}


@pytest.mark.parametrize("row,msg", [
    ("djsmile-faces,smile/2.jpg,smile,smile,same\n", "other class"),
    ("djsmile-faces,smile/2.jpg,smile,happy,x\n", "other class"),
    ("djsmile-faces,smile/2.jpg,smile,no_smile,\n", "reason"),
    ("djsmile-faces,no_smile/2.jpg,smile,no_smile,x\n", "folder"),
    ("djsmile-faces,smile/2.jpg,smile\n", "columns"),
])
def test_bad_rows_are_refused_naming_the_line(row, msg):
    with pytest.raises(DataError, match=f"line 2.*{msg}"):
        labelfix.parse(HEAD + row)


def test_a_fix_for_other_data_is_refused_when_applied():
    fixes = labelfix.parse(HEAD + "djsmile-faces,smile/2.jpg,smile,drop,x\n")
    items = _items()
    items[2].label = 0          # the file is not where the CSV says it was
    with pytest.raises(DataError, match="djsmile-faces/smile/2.jpg"):
        labelfix.apply(items, fixes)


def test_the_committed_file_is_valid_and_every_row_has_a_reason():
    fixes = labelfix.load(labelfix.DEFAULT_PATH)
    assert all(r["reason"] for r in fixes.values())


def test_eval_scores_both_label_sets(tmp_path):
    from djsmile.training import evaluate as E
    root = tmp_path / "djsmile" / "faces"
    for rel in ("no_smile/1.jpg", "smile/2.jpg", "smile/3.jpg"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    link = tmp_path / "split" / "smile"
    link.mkdir(parents=True)
    (link / "2.jpg").symlink_to(root / "smile" / "2.jpg")     # exported splits are symlinks
    csvf = tmp_path / "fixes.csv"
    csvf.write_text(HEAD + "djsmile-faces,no_smile/1.jpg,no_smile,smile,grin\n"
                           "djsmile-faces,smile/2.jpg,smile,drop,drawing\n")
    res = {"y": np.array([0, 1, 1]), "p": np.array([0.9, 0.2, 0.8]), "found": np.ones(3, bool),
           "ms": np.ones(3), "corrupt": 0,
           "paths": [str(root / "no_smile/1.jpg"), str(link / "2.jpg"), str(root / "smile/3.jpg")]}
    fixed, counts = E.fixed_labels(res, csvf)
    assert counts == {"relabelled": 1, "dropped": 1}
    import json
    json.dumps(counts)                      # goes into --json as is
    assert fixed["y"].tolist() == [1, 1] and fixed["p"].tolist() == [0.9, 0.8]
    assert E.summarize(res, 0.5)["accuracy"] == pytest.approx(1 / 3)
    assert E.summarize(fixed, 0.5)["accuracy"] == 1.0
    assert E.fixed_labels(res, "none") is None


def test_training_masks_and_exported_splits_follow_the_fixes(tmp_path):
    from types import SimpleNamespace
    from djsmile.training import data as D
    items = _items()
    for it, sp in zip(items, ("test", "test", "test", "train", "val")):
        it.split = sp
        it.path = str(tmp_path / "data" / {"djsmile-faces": "djsmile/faces", "djsmile-photos": "djsmile/photos",
                                           "smilesmiled": "smilesmiled"}[it.root] / it.rel)
        Path(it.path).parent.mkdir(parents=True, exist_ok=True)
        open(it.path, "wb").close()
    labelfix.apply(items, labelfix.parse(HEAD + "djsmile-faces,no_smile/1.jpg,no_smile,smile,grin\n"
                                                "djsmile-faces,smile/2.jpg,smile,drop,drawing\n"))
    crops = SimpleNamespace(ok=np.ones(5, bool), found=np.ones(5, bool))
    M = D.masks(items, crops)
    assert M["test"].tolist() == [True, True, False, False, False]      # the dropped face is out
    # the export is the data as labelled (the dropped face included); eval applies the fixes itself
    counts = D.export_split(items, tmp_path / "out")
    assert counts == {"djsmile-faces/test": 2, "djsmile-photos/test": 1}
    faces = tmp_path / "out" / "djsmile-faces" / "test"
    assert (faces / "no_smile" / "1.jpg").is_symlink() and (faces / "smile" / "2.jpg").is_symlink()
    from djsmile.training import evaluate as E
    exported = [faces / "no_smile" / "1.jpg", faces / "smile" / "2.jpg"]
    res = {"y": np.array([0, 1]), "p": np.array([0.9, 0.1]), "found": np.ones(2, bool), "ms": np.ones(2),
           "corrupt": 0, "paths": [str(f) for f in exported]}
    csvf = tmp_path / "fixes.csv"
    csvf.write_text(HEAD + "djsmile-faces,no_smile/1.jpg,no_smile,smile,grin\n"
                           "djsmile-faces,smile/2.jpg,smile,drop,drawing\n")
    fixed, fix_counts = E.fixed_labels(res, csvf)
    assert fix_counts == {"relabelled": 1, "dropped": 1} and fixed["y"].tolist() == [1]
    # an earlier export (here: a stale link in the other class folder) is replaced, not added to
    (faces / "smile" / "1.jpg").symlink_to(exported[0].resolve())
    (faces / "smile" / "notes.txt").write_text("mine")
    assert D.export_split(items, tmp_path / "out") == counts
    assert sorted(p.name for p in faces.rglob("*.jpg")) == ["1.jpg", "2.jpg"]
    assert (faces / "smile" / "notes.txt").read_text() == "mine"


def test_detector_settings_for_crops_name_equalize_and_keep_old_cache_keys():
    from djsmile.config import Config
    from djsmile.training import data as D
    cfg = Config()
    cfg.set("detector.equalize", "none")
    kw = D.detector_kwargs(cfg.detector)
    assert kw["equalize"] == "none"                       # HaarDetector's own default is "auto"
    old = {k: v for k, v in kw.items() if k != "equalize"}  # as written before the option existed
    assert D.CropParams(detector=kw).key("photos") == D.CropParams(detector=old).key("photos")
    cfg.set("detector.equalize", "auto")
    default_key = D.CropParams(detector=D.detector_kwargs(cfg.detector)).key("photos")
    assert default_key != D.CropParams(detector=kw).key("photos")
