"""Distillation targets and the FER teacher's crop geometry (no TensorFlow needed)."""

import numpy as np
import pytest

from djsmile.errors import DataError
from djsmile.training.teacher import ctx_to_face
from djsmile.training.train import soft_targets


def test_soft_targets_mix_label_and_teacher_and_fall_back_to_the_label(tmp_path):
    f = tmp_path / "soft.npz"
    np.savez(f, sha1=np.array(["a", "b"]), p=np.array([0.2, 0.9], np.float32))
    y = np.array([1, 0, 1])
    t, st = soft_targets(f, ["a", "b", "c"], y, 0.5)
    assert t.tolist() == pytest.approx([0.6, 0.45, 1.0])          # c has no teacher: its hard label
    assert st["covered"] == 2 and st["teacher_agrees_with_labels"] == 0.0
    t0, _ = soft_targets(f, ["a", "b", "c"], y, 0.0)
    assert t0.tolist() == [1.0, 0.0, 1.0]                          # weight 0 = plain labels
    with pytest.raises(DataError, match="not found"):
        soft_targets(tmp_path / "nope.npz", ["a"], y[:1], 0.5)
    with pytest.raises(DataError, match="soft-weight"):
        soft_targets(f, ["a"], y[:1], 1.5)


def test_teacher_sees_the_model_crop_inside_the_context():
    ctx = np.zeros((1, 112, 112), np.uint8)
    side = 112 / 1.6                                               # context margin 0.3 a side
    o = int(round((112 - side) / 2))
    ctx[0, o:o + int(round(side)), o:o + int(round(side))] = 200   # the model crop's square
    face = ctx_to_face(ctx, 64, 0.3)
    assert face.shape == (1, 64, 64)
    assert face.min() >= 190                                       # all of it is the crop, none of the margin


def test_budget_fit_and_interleaved_timing_take_every_model_in_turn():
    from djsmile.training.budget import BUDGET_BYTES, fits, time_interleaved
    assert fits(0.99, BUDGET_BYTES) and not fits(1.01, 1000) and not fits(0.5, BUDGET_BYTES + 1)
    calls = []

    class Fake:
        def __init__(self, name):
            self.name = name

        def run(self, x):
            calls.append((self.name, x.shape))

    med = time_interleaved({"a": Fake("a"), "b": Fake("b")}, {"a": 48, "b": 64}, rounds=3, per_round=2)
    assert set(med) == {"a", "b"} and all(v >= 0 for v in med.values())
    assert ("b", (1, 64, 64, 1)) in calls and ("a", (1, 48, 48, 1)) in calls
    timed = [n for n, _ in calls[40:]]                 # after 20 warm-up runs each
    assert timed[:2] == ["a", "a"] and timed[2:4] == ["b", "b"] and timed[4:6] == ["b", "b"]   # turns rotate


def test_budget_times_a_paired_model_with_one_crop_per_input():
    """The reference is the shipped model, a pair since v3: one face = one crop per input, by name."""
    from djsmile.training.budget import input_sizes_of, time_interleaved
    calls = []

    class FakePair:
        input_names, input_shapes = ["aligned", "box"], [(1, 64, 64, 1), (1, 48, 48, 1)]

        def run(self, x):
            raise AssertionError("a pair is fed by name")

        def run_named(self, xs):
            calls.append({k: v.shape for k, v in xs.items()})

    pair = FakePair()
    assert input_sizes_of(pair) == {"aligned": 64, "box": 48}
    med = time_interleaved({"pair": pair}, {"pair": input_sizes_of(pair)}, rounds=2, per_round=3)
    assert med["pair"] >= 0 and len(calls) == 20 + 6
    assert calls[-1] == {"aligned": (1, 64, 64, 1), "box": (1, 48, 48, 1)}


@pytest.mark.slow
def test_training_on_soft_targets_reports_a_real_accuracy(tmp_path, capsys):
    """Soft targets (0.75 / 0.25 here) are scored rounded at 0.5, like labels: Keras' binary accuracy read 0.0000."""
    pytest.importorskip("tensorflow")
    import hashlib
    import json
    from djsmile.cli import main
    from test_training import make_faces
    data = make_faces(tmp_path / "data", n=20)
    files = sorted(data.rglob("*.png"))
    soft = tmp_path / "soft.npz"
    np.savez(soft, sha1=np.array([hashlib.sha1(f.read_bytes()).hexdigest() for f in files]),
             p=np.full(len(files), 0.5, np.float32))
    run = tmp_path / "run"
    assert main(["train", str(data), "--out", str(run), "--epochs", "2", "--input-size", "32", "--batch-size", "16",
                 "--cache", str(tmp_path / "cache"), "--no-progress", "--workers", "1",
                 "--soft-targets", str(soft), "--soft-weight", "0.5"]) == 0
    acc = json.loads((run / "summary.json").read_text())["history"]["accuracy"]
    assert len(acc) == 2 and min(acc) >= 0.3, acc   # about chance or better on balanced classes; never 0
    print_acc = [ln.split("  accuracy ")[1].split()[0] for ln in capsys.readouterr().out.splitlines()
                 if ln.startswith("epoch ")]
    assert len(print_acc) == 2 and "0.0000" not in print_acc, print_acc
