"""Find likely label errors with confident learning (cleanlab) for review by eye.

::

    python -m djsmile.training.labelaudit ../shared/datasets/djsmile ../shared/datasets/smilesmiled \\
        --fer /tmp/fer/fer/data/emotion_model_quantized.tflite --roots djsmile-faces --out .cache/audit

1. Every face crop of the chosen roots is described by the FER2013 emotion
   model's features (:mod:`djsmile.training.teacher`: a network trained on
   other data, so its features carry no memory of our labels).
2. Out-of-fold p(smile): a logistic regression, k-fold, fitted *within* the
   train+val part and, separately, within the test part (the test labels
   never touch anything the device model learns from).
3. ``cleanlab.filter.find_label_issues`` ranks the images whose given label
   the out-of-fold probabilities disagree with most (self-confidence).
4. ``OUT/candidates.csv`` lists them (rank, dataset, file, label, p of the
   given label) and ``OUT/sheet-NN.png`` shows them numbered, 8 x 6 per
   sheet, for review. Decisions go into ``training/label_fixes.csv`` by hand.

Images and sheets stay under ``OUT`` (a cache folder): never commit them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)


def oof_probs(X: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold class probabilities (N, 2) from a standardized logistic regression, k-fold within each group."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    P = np.zeros((len(y), 2))
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        k = min(folds, int(np.bincount(y[idx], minlength=2).min()))
        if k < 2:
            raise ValueError(f"group {g!r}: too few images of one class for {folds}-fold")
        for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(idx, y[idx]):
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
            clf.fit(X[idx[tr]], y[idx[tr]])
            P[idx[te]] = clf.predict_proba(X[idx[te]])
    return P


def rank_issues(y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Indices cleanlab flags as label issues, most likely first."""
    from cleanlab.filter import find_label_issues
    return np.asarray(find_label_issues(labels=y, pred_probs=P, return_indices_ranked_by="self_confidence"), int)


def contact_sheet(images: list, captions: list, cols: int = 8, cell: int = 112) -> np.ndarray:
    """Gray images tiled ``cols`` wide, each ``cell`` px with its caption below (uint8 BGR)."""
    rows = (len(images) + cols - 1) // cols
    cap = 18
    sheet = np.full((rows * (cell + cap), cols * cell, 3), 255, np.uint8)
    for i, (im, c) in enumerate(zip(images, captions)):
        r, k = divmod(i, cols)
        y0, x0 = r * (cell + cap), k * cell
        tile = cv2.resize(im, (cell - 4, cell - 4), interpolation=cv2.INTER_AREA)
        sheet[y0 + 2:y0 + cell - 2, x0 + 2:x0 + cell - 2] = tile[..., None]
        cv2.putText(sheet, c, (x0 + 3, y0 + cell + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 200), 1, cv2.LINE_AA)
    return sheet


def main(argv=None) -> int:
    from djsmile.config import Config
    from djsmile.fsutil import atomic_write
    from . import data as D
    from . import labelfix, teacher
    ap = argparse.ArgumentParser(prog="python -m djsmile.training.labelaudit", description=__doc__.split("\n")[0])
    ap.add_argument("roots", nargs="+", metavar="DATA_ROOT", help="the data roots, as for djsmile train (same split)")
    ap.add_argument("--fer", required=True, metavar="TFLITE", help="fer's emotion_model_quantized.tflite")
    ap.add_argument("--roots-audited", "--roots", dest="audit", default="djsmile-faces",
                    help="comma-separated root names to audit (default: djsmile-faces)")
    ap.add_argument("--label-fixes", default="none", help="audit labels after these fixes (default: none = original)")
    ap.add_argument("--top", type=int, default=240, help="candidates shown on sheets (default 240)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--cache", default=str(D.DEFAULT_CACHE))
    ap.add_argument("--out", default=".cache/audit")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = D.CropParams(input_size=48, crop_margin=-0.075, detector=D.detector_kwargs(Config().detector))
    roots, items, crops, _ = D.prepare(args.roots, params, Path(args.cache), 2, False)
    labelfix.apply(items, labelfix.load(args.label_fixes))
    keep = {r.strip() for r in args.audit.split(",")}
    M = D.masks(items, crops)
    sel = np.flatnonzero((M["train"] | M["val"] | M["test"]) & np.array([it.root in keep for it in items]))
    if not len(sel):
        print(f"no images in roots {args.audit}", file=sys.stderr)
        return 66
    faces = teacher.ctx_to_face(crops.ctx[sel], 64, params.ctx_margin)
    X = teacher.fer_features(args.fer, faces, cache=Path(args.cache) / "fer-features.npz",
                             keys=[items[i].sha1 for i in sel])
    y = np.array([items[i].label for i in sel])
    groups = np.array(["test" if items[i].split == "test" else "trainval" for i in sel])
    P = oof_probs(X, y, groups, args.folds)
    for g in ("trainval", "test"):
        m = groups == g
        print(f"out-of-fold accuracy ({g}, n={int(m.sum())}): {float(((P[m, 1] >= 0.5) == (y[m] == 1)).mean()):.4f}")
    order = rank_issues(y, P)
    print(f"cleanlab flags {len(order)} of {len(y)} labels as likely issues")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["rank,dataset,file,label,p_given_label,split"]
    for r, j in enumerate(order):
        it = items[sel[j]]
        lines.append(f"{r},{it.root},{it.rel},{D.CLASSES[it.label]},{P[j, it.label]:.3f},{it.split}")
    atomic_write(out / "candidates.csv", ("\n".join(lines) + "\n").encode())
    per = 48
    top = order[: args.top]
    for s in range(0, len(top), per):
        chunk = top[s:s + per]
        ims = [D.load_gray(items[sel[j]].path) for j in chunk]
        caps = [f"{s + k} {'S' if items[sel[j]].label else 'N'} {P[j, items[sel[j]].label]:.2f}"
                for k, j in enumerate(chunk)]
        ok = [(im, c) for im, c in zip(ims, caps) if im is not None]
        cv2.imwrite(str(out / f"sheet-{s // per:02d}.png"), contact_sheet([a for a, _ in ok], [b for _, b in ok]))
    print(f"wrote {out / 'candidates.csv'} and {(len(top) + per - 1) // per} sheets in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
