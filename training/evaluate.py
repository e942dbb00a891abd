"""``djsmile eval``: a TFLite model's accuracy on a ``smile/`` + ``no_smile/`` folder.

Runs the model exactly as the device does (``djsmile.model.SmileModel`` on the
``djsmile.runtime`` TFLite interpreter; no TensorFlow needed):

- ``--mode faces``: every image already is a face crop; the whole image is
  the box (``crop_face`` with the whole-image box, no margin).
- ``--mode photos``: the device's Haar detector (settings from ``--config``'s
  ``[detector]``) finds faces and the largest one is classified. A photo with
  no face counts as wrong end-to-end: for ``accuracy``, ``balanced_accuracy``,
  ``f1`` and ``roc_auc`` it is scored as the opposite class (p_smile 0 for a
  smile photo, 1 for a no_smile photo). ``accuracy_on_found`` counts only
  photos with a face.

``ms_per_image`` is the mean wall time per image of detection (photos mode),
crop and model run, single image at a time, not counting JPEG decoding.

Metrics are plain numpy (no scikit-learn).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from djsmile.errors import DataError
from djsmile.fsutil import atomic_write

log = logging.getLogger(__name__)

JSON_KEYS = ("n", "accuracy", "balanced_accuracy", "f1", "roc_auc", "face_found_rate",
             "accuracy_on_found", "threshold", "ms_per_image")


# ------------------------------------------------------------------- metrics
def roc_auc(y, p) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties). NaN if one class is absent."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, np.float64)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    ranks = np.empty(len(p), np.float64)
    i = 0
    while i < len(ps):
        j = i
        while j + 1 < len(ps) and ps[j + 1] == ps[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def roc_curve(y, p):
    """(fpr, tpr, thresholds), thresholds decreasing; starts at (0, 0)."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, np.float64)
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    distinct = np.r_[np.flatnonzero(np.diff(ps)), len(ps) - 1]
    tps = np.cumsum(ys)[distinct]
    fps = (distinct + 1) - tps
    P, N = max(1, int(y.sum())), max(1, int((~y).sum()))
    return np.r_[0.0, fps / N], np.r_[0.0, tps / P], np.r_[np.inf, ps[distinct]]


def confusion(y, pred):
    """[[tn, fp], [fn, tp]] for labels 0 = no_smile, 1 = smile."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(pred).astype(bool)
    return np.array([[int((~y & ~pred).sum()), int((~y & pred).sum())],
                     [int((y & ~pred).sum()), int((y & pred).sum())]])


def metrics(y, p, threshold: float = 0.5) -> dict:
    """accuracy, balanced_accuracy, f1 (smile = positive), roc_auc for scores ``p``."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, np.float64)
    n = len(y)
    if n == 0:
        nan = float("nan")
        return {"n": 0, "accuracy": nan, "balanced_accuracy": nan, "f1": nan, "roc_auc": nan}
    pred = p >= threshold
    (tn, fp), (fn, tp) = confusion(y, pred)
    rec1 = tp / (tp + fn) if tp + fn else float("nan")
    rec0 = tn / (tn + fp) if tn + fp else float("nan")
    recs = [r for r in (rec0, rec1) if r == r]
    prec = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * prec * rec1 / (prec + rec1) if (tp + fn) and (prec + rec1) > 0 else 0.0
    return {"n": int(n), "accuracy": float((tp + tn) / n),
            "balanced_accuracy": float(np.mean(recs)) if recs else float("nan"),
            "f1": float(f1), "roc_auc": roc_auc(y, p)}


def choose_threshold(y, p, lo: float = 0.05, hi: float = 0.95) -> float:
    """The threshold in [lo, hi] with the best balanced accuracy (ties: the one nearest 0.5)."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, np.float64)
    if y.all() or (~y).all():
        return 0.5
    # candidates halfway between neighbouring scores: robust to rounding (int8 outputs are k/256)
    u = np.unique(p)
    cands = np.unique(np.clip(np.r_[(u[:-1] + u[1:]) / 2.0, 0.5], lo, hi))
    best, best_t = -1.0, 0.5
    P, N = y.sum(), (~y).sum()
    for t in cands:
        pred = p >= t
        ba = 0.5 * ((pred & y).sum() / P + (~pred & ~y).sum() / N)
        if ba > best + 1e-12 or (abs(ba - best) <= 1e-12 and abs(t - 0.5) < abs(best_t - 0.5)):
            best, best_t = ba, float(t)
    return best_t


# ------------------------------------------------------------- running a model
def list_class_folder(data_dir) -> list:
    """[(path, label)] for DATA_DIR/no_smile and DATA_DIR/smile; DataError naming a missing/empty folder."""
    from djsmile.training.data import CLASSES, IMAGE_EXTS, check_class_root
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(f"data folder {d} not found")
    check_class_root(d)
    out = []
    for label, c in enumerate(CLASSES):
        for f in sorted((d / c).iterdir()):
            if f.suffix.lower() in IMAGE_EXTS and f.is_file():
                out.append((f, label))
    return out


def face_crop(model, gray, landmark_detector=None):
    """The model's crop of an image that already is a face crop (``--mode faces``), as training made it.

    Box models (v2): the whole image, no margin. Aligned models (v3): aligned on the landmarks
    ``landmark_detector`` (BlazeFace) finds in the padded image, else on eyes estimated from the whole image.
    A paired model: a tuple of both, one per input.
    """
    from djsmile import preprocess
    box = preprocess.whole_image_box(gray)
    parts = getattr(model, "parts", None) or [model.meta]
    marks = None
    if any(m.crop == "aligned" for m in parts):
        marks = preprocess.face_crop_landmarks(gray, landmark_detector) if landmark_detector is not None else None
        if marks is None:
            marks = preprocess.eyes_from_box(box, preprocess.FACE_CROP_EYES)
    crops = tuple(preprocess.crop_aligned(gray, marks, m.input_size, template=m.template) if m.crop == "aligned"
                  else preprocess.crop_face(gray, box, m.input_size, 0.0) for m in parts)
    return crops if getattr(model, "paired", False) else crops[0]


def landmark_detector_for(model, cfg=None):
    """The detector an aligned model's face crops are aligned with (BlazeFace, the config's settings), or None."""
    if not getattr(model, "aligned", False):
        return None
    from djsmile.config import Config
    from djsmile.detectors.blazeface import BlazeFaceDetector
    det = (cfg or Config()).detector
    return BlazeFaceDetector(min_score=det.blazeface_min_score, model=det.blazeface_model)


def run_eval(data_dir, model, mode: str = "faces", detector=None, progress: bool = False, cfg=None) -> dict:
    """Score every image; returns a dict of arrays: y, p (NaN = no face), found, ms, paths, and counts."""
    from djsmile import preprocess
    from djsmile.training.data import load_gray
    files = list_class_folder(data_dir)
    landmark_detector = landmark_detector_for(model, cfg) if mode != "photos" else None
    ys, ps, found, ms, paths, corrupt = [], [], [], [], [], []
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(files), unit="img", leave=False)
        except ImportError:
            bar = None
    for path, label in files:
        if bar:
            bar.update(1)
        color = cv2.imread(str(path), cv2.IMREAD_COLOR) if mode == "photos" and detector.wants_color else None
        g = load_gray(path) if color is None else preprocess.to_gray(color)
        if g is None:
            corrupt.append(str(path))
            continue
        t0 = time.perf_counter()
        if mode == "photos":
            dets = detector.detect_faces(g, color)
            if dets:   # an aligned model (v3) is cropped on the detection's landmarks, as on the device
                p = float(model.predict(g, [dets[0].box], [dets[0].landmarks])[0])
            else:
                p = float("nan")
        else:
            p = float(model.predict_crops([face_crop(model, g, landmark_detector)])[0])
        ms.append((time.perf_counter() - t0) * 1000.0)
        ys.append(label)
        ps.append(p)
        found.append(p == p)
        paths.append(str(path))
    if bar:
        bar.close()
    if corrupt:
        log.warning("%d unreadable or corrupt image(s) skipped (first: %s)", len(corrupt), corrupt[0])
    if not ys:
        raise DataError(f"no readable images in {data_dir}")
    return {"y": np.array(ys, int), "p": np.array(ps, np.float64), "found": np.array(found, bool),
            "ms": np.array(ms), "paths": paths, "corrupt": len(corrupt)}


def summarize(res: dict, threshold: float) -> dict:
    """The JSON report (exactly JSON_KEYS) from :func:`run_eval`'s result."""
    y, p, found = res["y"], res["p"], res["found"]
    # end to end: no face = wrong (scored as the opposite class)
    p_e2e = np.where(found, p, 1.0 - y.astype(np.float64))
    pred = np.where(found, p >= threshold, y == 0)
    m = metrics(y, np.where(found, p, 0.0), threshold)  # for n only
    (tn, fp), (fn, tp) = confusion(y, pred)
    n = len(y)
    rec1 = tp / (tp + fn) if tp + fn else float("nan")
    rec0 = tn / (tn + fp) if tn + fp else float("nan")
    prec = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * prec * rec1 / (prec + rec1) if (prec + rec1) > 0 and rec1 == rec1 else 0.0
    recs = [r for r in (rec0, rec1) if r == r]
    acc_found = float(((p[found] >= threshold) == (y[found] == 1)).mean()) if found.any() else float("nan")
    return {"n": int(m["n"]), "accuracy": float((tp + tn) / n), "balanced_accuracy": float(np.mean(recs)),
            "f1": float(f1), "roc_auc": roc_auc(y, p_e2e), "face_found_rate": float(found.mean()),
            "accuracy_on_found": acc_found, "threshold": float(threshold),
            "ms_per_image": float(np.mean(res["ms"])) if len(res["ms"]) else float("nan")}


def format_table(rep: dict, extra: dict | None = None) -> str:
    rows = [("images", f"{rep['n']}"), ("accuracy", f"{rep['accuracy']:.4f}"),
            ("balanced accuracy", f"{rep['balanced_accuracy']:.4f}"), ("F1 (smile)", f"{rep['f1']:.4f}"),
            ("ROC AUC", f"{rep['roc_auc']:.4f}"), ("face found", f"{rep['face_found_rate']:.4f}"),
            ("accuracy on found", f"{rep['accuracy_on_found']:.4f}"), ("threshold", f"{rep['threshold']:.3f}"),
            ("ms per image", f"{rep['ms_per_image']:.3f}")]
    for k, v in (extra or {}).items():
        rows.append((k, str(v)))
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def fixed_labels(res: dict, fixes_path=None):
    """``(res with the reviewed labels, {"relabelled", "dropped"})``, or None when no fix touches these files."""
    from djsmile.training import labelfix
    path = labelfix.DEFAULT_PATH if fixes_path is None else fixes_path
    if fixes_path is None and not Path(path).is_file():
        return None
    fixes = labelfix.load(path)
    if not fixes:
        return None
    keep, ys = [], []
    n_re = n_drop = 0
    for path_i, y in zip(res["paths"], res["y"]):
        ds, f = labelfix.dataset_of(path_i)
        lab = labelfix.new_label(fixes, ds, f, int(y))
        keep.append(lab is not None)
        ys.append(y if lab is None else lab)
        n_drop += lab is None
        n_re += lab is not None and lab != y
    if not (n_re or n_drop):
        return None
    k = np.array(keep, bool)
    out = {"y": np.array(ys, int)[k], "p": res["p"][k], "found": res["found"][k], "ms": res["ms"][k],
           "paths": [p for p, kk in zip(res["paths"], keep) if kk], "corrupt": res["corrupt"]}
    return out, {"relabelled": int(n_re), "dropped": int(n_drop)}


def format_side_by_side(rep: dict, rep_fixed: dict, counts: dict, extra: dict | None = None) -> str:
    """Original and reviewed labels in two columns (the reviewed column names how many labels changed)."""
    keys = [("images", "n", "{}"), ("accuracy", "accuracy", "{:.4f}"),
            ("balanced accuracy", "balanced_accuracy", "{:.4f}"), ("F1 (smile)", "f1", "{:.4f}"),
            ("ROC AUC", "roc_auc", "{:.4f}"), ("face found", "face_found_rate", "{:.4f}"),
            ("accuracy on found", "accuracy_on_found", "{:.4f}")]
    head = f"fixed labels ({counts['relabelled']} relabelled, {counts['dropped']} dropped)"
    w = max(len(k) for k, _, _ in keys)
    lines = [f"{'':<{w}}  {'original labels':>16}  {head}"]
    for name, k, fmt in keys:
        lines.append(f"{name:<{w}}  {fmt.format(rep[k]):>16}  {fmt.format(rep_fixed[k])}")
    rest = format_table(rep, extra).splitlines()[len(keys):]
    return "\n".join(lines + rest)


def _finite(o):
    """NaN / inf -> None, so the file is strict JSON."""
    if isinstance(o, float) and not np.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def write_json_atomic(path, data) -> None:
    """Write ``data`` as JSON atomically (temp file, fsync, rename); NaN becomes null."""
    data = _finite(data)
    path = Path(path)
    atomic_write(path, (json.dumps(data, indent=2, allow_nan=False) + "\n").encode())


def write_plots(res: dict, rep: dict, out_dir, title: str = "") -> list:
    """confusion.png and roc.png in ``out_dir`` (needs matplotlib; returns the files written)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y, p, found = res["y"], res["p"], res["found"]
    t = rep["threshold"]
    pred = np.where(found, p >= t, y == 0)
    cm = confusion(y, pred)
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(cm, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks([0, 1], ["no_smile", "smile"])
    ax.set_yticks([0, 1], ["no_smile", "smile"])
    ax.set_xlabel("predicted" + (" (no face = wrong)" if not found.all() else ""))
    ax.set_ylabel("true")
    ax.set_title(f"{title} acc {rep['accuracy']:.3f}".strip())
    fig.tight_layout()
    files = [out / "confusion.png"]
    fig.savefig(files[0], dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    p_e2e = np.where(found, p, 1.0 - y)
    fpr, tpr, _ = roc_curve(y, p_e2e)
    ax.plot(fpr, tpr, label=f"end to end, AUC {rep['roc_auc']:.3f}")
    if not found.all() and found.any():
        f2, t2, _ = roc_curve(y[found], p[found])
        ax.plot(f2, t2, "--", label=f"found faces, AUC {roc_auc(y[found], p[found]):.3f}")
    ax.plot([0, 1], [0, 1], ":", color="gray")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{title} ROC".strip())
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    files.append(out / "roc.png")
    fig.savefig(files[1], dpi=110)
    plt.close(fig)
    return files


# --------------------------------------------------------------------- CLI
def add_arguments(parser) -> None:
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder with smile/ and no_smile/ images")
    parser.add_argument("--model", metavar="PATH", help="TFLite model (default: model.path from the config, "
                        "else the shipped models/smile_int8.tflite); its .json sidecar must be next to it")
    parser.add_argument("--mode", choices=("faces", "photos"), default="faces",
                        help="faces: images are face crops; photos: the device's detector finds the face "
                             "(default: faces)")
    parser.add_argument("--json", metavar="OUT", help="write the metrics as JSON")
    parser.add_argument("--plots", metavar="DIR", help="write confusion.png and roc.png here")
    parser.add_argument("--threshold", type=float, default=None,
                        help="decision threshold (default: the one in the model's metadata)")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads (default: model.num_threads)")
    parser.add_argument("--errors", metavar="FILE", help="write the misclassified files (one per line, with p_smile)")
    parser.add_argument("--label-fixes", metavar="CSV", default=None,
                        help="also score the images on their reviewed labels (default: the committed "
                             "training/label_fixes.csv; 'none' = original labels only); files are matched "
                             "through symlinks to their data root")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")


def main(args, cfg) -> int:
    from djsmile.model import SmileModel
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} not found")
    from djsmile.training.data import check_class_root
    check_class_root(data_dir)
    model_path = args.model or cfg.model.path or None
    threads = args.threads or cfg.model.num_threads
    model = SmileModel(model_path, num_threads=threads, mirror=cfg.model.mirror)
    detector = None
    if args.mode == "photos":
        from djsmile.detectors import make_detector
        detector = make_detector(cfg.detector)   # detector.backend: the device's default unless set
    thr = model.threshold if args.threshold is None else float(args.threshold)
    res = run_eval(data_dir, model, args.mode, detector, progress=args.progress, cfg=cfg)
    rep = summarize(res, thr)
    extra = {"model": str(model.path), "mode": args.mode, "runtime": model.runtime.describe()}
    if detector is not None:
        extra["detector"] = detector.describe()
    if res["corrupt"]:
        extra["skipped (unreadable)"] = res["corrupt"]
    if args.mode == "photos" and res["found"].any():
        f = res["found"]
        extra["ROC AUC on found"] = f"{roc_auc(res['y'][f], res['p'][f]):.4f}"
    fixed = fixed_labels(res, args.label_fixes)
    rep_fixed = None
    if fixed is not None:
        res_f, counts = fixed
        rep_fixed = summarize(res_f, thr)
        print(format_side_by_side(rep, rep_fixed, counts, extra))
    else:
        print(format_table(rep, extra))
    if args.json:
        write_json_atomic(args.json, rep if rep_fixed is None else {**rep, "fixed_labels": {**rep_fixed, **counts}})
    if args.plots:
        for f in write_plots(res, rep, args.plots, title=f"{data_dir.name} ({args.mode})"):
            log.info("wrote %s", f)
    if args.errors:
        y, p, found = res["y"], res["p"], res["found"]
        wrong = ~found | ((p >= thr) != (y == 1))
        lines = [f"{res['paths'][i]}\t{'no face' if not found[i] else f'{p[i]:.3f}'}" for i in np.flatnonzero(wrong)]
        Path(args.errors).write_text("\n".join(lines) + ("\n" if lines else ""))
    return 0
