"""``djsmile train``: train the smile CNN on class-folder datasets.

::

    djsmile train ../shared/datasets/djsmile ../shared/datasets/smilesmiled --out runs/small

writes ``OUT/model.keras``, ``OUT/curves.png`` and ``OUT/summary.json`` (data
roots and counts, split sizes, parameters, val and test metrics). Early
stopping and the learning-rate schedule watch the val split only; the test
split is scored once at the end, for the record.

``--export-split DIR`` writes the held-out split as symlinks
(``DIR/<root>/test/{smile,no_smile}/``) for ``djsmile eval`` and exits
without training (no TensorFlow needed).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from djsmile import preprocess
from djsmile.argtypes import checked, real_number
from djsmile.errors import DataError, MissingDependencyError, UsageError

from . import data as D
from . import labelfix
from .augment import AugParams, augment, resize_ctx
from .evaluate import choose_threshold, metrics, write_json_atomic
from .nets import ARCHS, TF_HINT

log = logging.getLogger(__name__)

DEFAULT_MARGIN = -0.075   # model crop = 0.85 x the Haar box side (about dlib's face box; measured)


def add_arguments(parser) -> None:
    parser.add_argument("roots", nargs="+", metavar="DATA_ROOT",
                        help="folders with smile/ and no_smile/ (or folders of such folders); "
                             "append :faces or :photos to force the kind")
    parser.add_argument("--out", metavar="DIR", default="runs/train", help="output folder (default: runs/train)")
    parser.add_argument("--arch", choices=sorted(ARCHS), default="small",
                        help="small: our CNN; seed: the 2019 app's architecture (default: small)")
    parser.add_argument("--epochs", type=int, default=16,
                        help="epochs (cosine learning-rate decay over them; early stopping on val; default 16)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--input-size", type=int, default=None,
                        help="model input in pixels (default: 48 small, 100 seed)")
    parser.add_argument("--widths", default=None,
                        help="small arch: channels of the 4 blocks, comma-separated (default 32,64,128,256)")
    parser.add_argument("--crop-margin", type=float, default=DEFAULT_MARGIN,
                        help=f"margin added to a detected face box on each side, fraction of its side "
                             f"(default {DEFAULT_MARGIN})")
    parser.add_argument("--crop", choices=("box", "aligned"), default="box",
                        help="box: the detector's box made square (v2); aligned: eyes level at fixed places, scaled "
                             "by the face, from BlazeFace's landmarks (else eyes estimated from the box) (default box)")
    parser.add_argument("--template", type=_template, default=None, metavar="EYE_Y,EYE_DIST,MOUTH_Y",
                        help="--crop aligned: where the eyes' midpoint (x 0.5, y EYE_Y), their distance and the mouth "
                             "go, in fractions of the crop's side; recorded in the model's sidecar (default "
                             + ",".join(f"{v:g}" for v in preprocess.ALIGN_TEMPLATE) + ")")
    parser.add_argument("--head", choices=("flatten", "gap"), default="flatten",
                        help="small arch: 3x3 flatten (keeps where features are) or global average pool")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3,
                        help="initial learning rate (Adam, cosine decay; default 3e-3)")
    parser.add_argument("--label-smoothing", type=_smoothing, default=0.0, metavar="E",
                        help="train on labels E/2 and 1-E/2 instead of 0 and 1 (the djsmile labels come from search "
                             "terms and are a few percent wrong; default 0)")
    parser.add_argument("--patience", type=int, default=8, help="epochs without val improvement before stopping")
    parser.add_argument("--cache", metavar="DIR", default=str(D.DEFAULT_CACHE),
                        help="crop cache folder (default: $DJSMILE_CACHE, else $XDG_CACHE_HOME/djsmile, "
                             "else ~/.cache/djsmile)")
    parser.add_argument("--workers", type=int, default=2, help="processes for cropping (default 2)")
    parser.add_argument("--export-split", metavar="DIR",
                        help="write the held-out test split as symlinks DIR/<root>/test/<class>/ and exit")
    parser.add_argument("--export-splits", default="test", help="splits to export, comma-separated (default: test)")
    parser.add_argument("--no-augment", action="store_true", help="train on the plain crops")
    parser.add_argument("--only-roots", metavar="NAMES",
                        help="train and validate on these roots only (comma-separated names, e.g. djsmile-faces); "
                             "the split is still computed over all DATA_ROOTs, so it is the same split")
    parser.add_argument("--limit", type=int, default=0, help=argparse_suppress())
    parser.add_argument("--label-fixes", metavar="CSV", default=str(labelfix.DEFAULT_PATH),
                        help="reviewed label corrections applied to the data as it is loaded (also to "
                             "--export-split); 'none' = the original labels (default: the committed "
                             "training/label_fixes.csv)")
    parser.add_argument("--soft-targets", metavar="NPZ", default=None,
                        help="distillation: a teacher's p(smile) per training image (.npz with sha1 and p, from "
                             "'python -m djsmile.training.distill'); the training target becomes "
                             "(1 - W) x label + W x teacher")
    parser.add_argument("--soft-weight", type=float, default=0.5, metavar="W",
                        help="weight W of the teacher in the target (default 0.5)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


_template = checked(lambda text: preprocess.check_template(text.split(",")))
_smoothing = real_number(lambda v: 0.0 <= v < 0.5, "expected a number 0 <= E < 0.5, got {s!r}")


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS


def crop_params(args, cfg) -> D.CropParams:
    size = args.input_size or ARCHS[args.arch][0]
    crop = getattr(args, "crop", "box")
    template = getattr(args, "template", None)
    if template is not None and crop != "aligned":
        raise UsageError("--template is the aligned crop's: add --crop aligned (or leave --template out)")
    return D.CropParams(input_size=size, crop_margin=args.crop_margin,
                        detector=D.detector_kwargs(cfg.detector), crop=crop,
                        landmarks=D.landmark_settings(cfg.detector) if crop == "aligned" else {},
                        template=template or preprocess.ALIGN_TEMPLATE)


class _Seq:
    """Batches of augmented crops (a keras.utils.PyDataset is built around this)."""

    def __init__(self, ctx, y, w, input_size, ctx_margin, batch, seed, aug: AugParams | None, onehot=False):
        self.ctx, self.y, self.w = ctx, y, w
        self.S, self.m, self.batch, self.seed, self.aug = input_size, ctx_margin, batch, seed, aug
        self.onehot = onehot
        self.epoch = 0
        self.order = np.random.default_rng(seed).permutation(len(y))

    def __len__(self):
        return math.ceil(len(self.y) / self.batch)

    def get(self, i):
        idx = self.order[i * self.batch:(i + 1) * self.batch]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        if self.aug is not None:
            x = augment(self.ctx[idx], self.S, self.m, rng, self.aug)
        else:  # --no-augment: self.ctx holds the exact model-size crops
            x = self.ctx[idx].astype(np.float32) / 255.0
        y = self.y[idx]
        if self.onehot:
            y = np.eye(2, dtype=np.float32)[y]
        else:
            y = y.astype(np.float32)[:, None]
        return x[..., None], y, self.w[idx].astype(np.float32)

    def next_epoch(self):
        self.epoch += 1
        self.order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.y))


def _epochs(seq, n_epochs: int):
    """Yield each epoch's whole augmented training set ``(x, y, w)``; a new shuffle and jitter every epoch.

    A background thread augments epoch e+1 while the model trains on epoch e
    (OpenCV and numpy release the GIL). Whole-epoch arrays let Keras slice
    batches itself, about 1.6x faster per step than feeding it a Python
    generator.
    """
    import queue
    import threading
    q: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def work():
        for _ in range(n_epochs):
            parts = [seq.get(i) for i in range(len(seq))]
            arrays = tuple(np.concatenate([p[k] for p in parts]) for k in range(3))
            seq.next_epoch()
            while not stop.is_set():
                try:
                    q.put(arrays, timeout=0.5)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return

    t = threading.Thread(target=work, name="augment", daemon=True)
    t.start()
    try:
        for _ in range(n_epochs):
            yield q.get()
    finally:
        stop.set()


def fit(model, seq, val, epochs: int, patience: int, verbose: int) -> tuple[dict, int]:
    """Train epoch by epoch; stop after ``patience`` epochs without a lower val loss.

    Returns the history (Keras' keys: loss, accuracy, val_loss, val_accuracy)
    and the best epoch (1-based); the model is left with the best epoch's weights.
    """
    x_va, y_va, w_va = val
    hist: dict = {}
    best, best_epoch, best_w = float("inf"), 0, None
    for e, (x, y, w) in enumerate(_epochs(seq, epochs)):
        t = time.time()
        h = model.fit(x, y, sample_weight=w, batch_size=seq.batch, epochs=1, shuffle=False,
                      validation_data=(x_va, y_va, w_va), verbose=1 if verbose == 1 else 0)
        for k, v in h.history.items():
            hist.setdefault(k, []).append(float(v[-1]))
        vl = hist["val_loss"][-1]
        improved = vl < best
        if improved:
            best, best_epoch, best_w = vl, e + 1, model.get_weights()
        print(f"epoch {e + 1}/{epochs}  {time.time() - t:5.0f} s  loss {hist['loss'][-1]:.4f}  "
              f"accuracy {hist['accuracy'][-1]:.4f}  val_loss {vl:.4f}  val_accuracy {hist['val_accuracy'][-1]:.4f}"
              + ("  (best)" if improved else ""), flush=True)
        if e + 1 - best_epoch >= patience:
            print(f"early stop: no lower val loss for {patience} epochs", flush=True)
            break
    if best_w is not None:
        model.set_weights(best_w)
    return hist, best_epoch


def _hard_accuracy(keras):
    """Keras' "accuracy" for one sigmoid column, with the target rounded at 0.5 as well as the prediction.

    With hard 0/1 labels it equals binary accuracy; with soft targets binary
    accuracy compares 0.73 with 1 and reads 0.
    """
    ops = keras.ops

    def hard_accuracy(y_true, y_pred):
        return ops.mean(ops.cast(ops.equal(y_true >= 0.5, y_pred >= 0.5), "float32"), axis=-1)
    return keras.metrics.MeanMetricWrapper(hard_accuracy, name="accuracy")


def predict_p(model, x, output: str, batch: int = 512) -> np.ndarray:
    """p_smile for float inputs (N, S, S, 1)."""
    if len(x) == 0:
        return np.zeros(0)
    y = model.predict(x, batch_size=batch, verbose=0)
    return (y[:, 1] if output == "softmax" else y.reshape(-1)).astype(np.float64)


def per_root_metrics(items, sel, p, threshold) -> dict:
    roots = sorted({items[i].root for i in np.flatnonzero(sel)})
    y = np.array([it.label for it in items])
    root = np.array([it.root for it in items])
    out = {}
    idx = np.flatnonzero(sel)
    for r in roots + ["all"]:
        m = np.ones(len(idx), bool) if r == "all" else (root[idx] == r)
        out[r] = metrics(y[idx][m], p[m], threshold)
    return out


def soft_targets(path, sha1s, y, weight: float):
    """Training targets ``(1 - weight) * y + weight * p_teacher`` (hard label where the teacher has no entry)."""
    if not 0.0 <= weight <= 1.0:
        raise DataError(f"--soft-weight {weight}: expected 0 to 1")
    try:
        with np.load(path, allow_pickle=False) as z:
            table = dict(zip(z["sha1"].tolist(), z["p"].astype(np.float64)))
    except FileNotFoundError:
        raise DataError(f"soft targets {path} not found") from None
    except (KeyError, ValueError) as e:
        raise DataError(f"soft targets {path}: expected an .npz with arrays sha1 and p ({e})") from None
    p = np.array([table.get(s, np.nan) for s in sha1s])
    have = np.isfinite(p)
    t = np.where(have, (1.0 - weight) * y + weight * np.clip(np.nan_to_num(p), 0.0, 1.0), y).astype(np.float32)
    agree = float(((p[have] >= 0.5) == (y[have] == 1)).mean()) if have.any() else None
    return t, {"file": str(path), "weight": weight, "covered": int(have.sum()), "of": int(len(y)),
               "teacher_agrees_with_labels": agree}


class _Orig:
    """An item seen with its original (unfixed) label."""

    def __init__(self, it):
        self.root, self.label = it.root, getattr(it, "orig_label", it.label)


def plot_curves(hist: dict, path: Path, title: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no curves.png")
        return False
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    ep = np.arange(1, len(hist.get("loss", [])) + 1)
    for k, ax in (("loss", axes[0]), ("accuracy", axes[1])):
        if k in hist:
            ax.plot(ep, hist[k], label="train (augmented)")
        if "val_" + k in hist:
            ax.plot(ep, hist["val_" + k], label="val")
        ax.set_xlabel("epoch")
        ax.set_ylabel(k)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return True


def main(args, cfg) -> int:
    params = crop_params(args, cfg)
    progress = not args.no_progress and sys.stderr.isatty()
    if not args.export_split:
        # fail before the slow part when TensorFlow is missing
        try:
            import tensorflow  # noqa: F401
            import keras  # noqa: F401
        except ImportError:
            raise MissingDependencyError(TF_HINT) from None
    t0 = time.time()
    cache = Path(args.cache)
    roots, items, crops, split_stats = D.prepare(args.roots, params, cache, args.workers, progress)
    fix_stats = labelfix.apply(items, labelfix.load(args.label_fixes))
    fix_stats["file"] = None if str(args.label_fixes).lower() == "none" else str(args.label_fixes)
    log.info("label fixes %s: %d relabelled, %d dropped", args.label_fixes, fix_stats["relabelled"],
             fix_stats["dropped"])
    split_stats["label_fixes"] = fix_stats
    t_data = time.time() - t0
    log.info("data ready in %.1f s: %s", t_data, json.dumps(crops.stats))
    if args.export_split:
        counts = D.export_split(items, args.export_split, tuple(s.strip() for s in args.export_splits.split(",")))
        for k, v in sorted(counts.items()):
            print(f"{v:6d}  {Path(args.export_split) / k}")
        return 0
    return train(args, params, roots, items, crops, split_stats, t_data)


def train(args, params, roots, items, crops, split_stats, t_data) -> int:
    import keras
    from . import nets

    import cv2
    cv2.setNumThreads(1)  # augmentation runs one batch at a time; OpenCV's own threads only contend
    keras.utils.set_random_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    M = D.masks(items, crops)
    if args.only_roots:
        keep = {n.strip() for n in args.only_roots.split(",") if n.strip()}
        known = {it.root for it in items}
        if not keep <= known:
            raise DataError(f"--only-roots {args.only_roots}: unknown root(s); "
                            f"the roots are {', '.join(sorted(known))}")
        sel = np.array([it.root in keep for it in items])
        M = {k: v & sel for k, v in M.items()}
    labels = np.array([it.label for it in items])
    tr = np.flatnonzero(M["train"])
    if args.limit:
        tr = tr[:args.limit]
    va, te = M["val"], M["test"]
    if len(tr) == 0 or va.sum() == 0:
        raise DataError("not enough images for a train and a val split "
                        f"(train {len(tr)}, val {int(va.sum())}); add data")
    y_tr = labels[tr]
    if len(np.unique(y_tr)) < 2:
        raise DataError("the train split has only one class; add images of both classes")
    # balanced classes
    counts = np.bincount(y_tr, minlength=2).astype(np.float64)
    cw = counts.sum() / (2.0 * np.maximum(counts, 1))
    w_tr = cw[y_tr]
    S = params.input_size
    ctx = crops.crop[tr] if args.no_augment else resize_ctx(crops.ctx[tr], S, params.ctx_margin)
    output = ARCHS[args.arch][1]
    aug = None if args.no_augment else AugParams()
    t_tr = y_tr
    soft_stats = None
    if args.soft_targets:
        if output != "sigmoid":
            raise DataError("--soft-targets needs a sigmoid model (--arch small)")
        t_tr, soft_stats = soft_targets(args.soft_targets, [items[i].sha1 for i in tr], y_tr, args.soft_weight)
        log.info("distillation: %s", soft_stats)
    seq = _Seq(ctx, t_tr, w_tr, S, params.ctx_margin, args.batch_size, args.seed, aug, onehot=output == "softmax")
    x_va = (crops.crop[va].astype(np.float32) / 255.0)[..., None]
    y_va = labels[va]
    y_va_fit = np.eye(2, dtype=np.float32)[y_va] if output == "softmax" else y_va.astype(np.float32)[:, None]
    w_va = cw[y_va].astype(np.float32)

    widths = [int(v) for v in args.widths.split(",")] if args.widths else list(nets.SMALL_WIDTHS)
    model = nets.build(args.arch, S, widths=widths, head=args.head)
    ls = args.label_smoothing
    loss = (keras.losses.CategoricalCrossentropy(label_smoothing=ls) if output == "softmax"
            else keras.losses.BinaryCrossentropy(label_smoothing=ls))
    steps = len(seq)
    sched = keras.optimizers.schedules.CosineDecay(args.lr, decay_steps=max(1, args.epochs * steps), alpha=0.02)
    # sigmoid: accuracy against the targets rounded at 0.5, so soft targets (--soft-targets) score like labels
    acc = "accuracy" if output == "softmax" else _hard_accuracy(keras)
    model.compile(optimizer=keras.optimizers.Adam(sched), loss=loss, metrics=[acc],
                  weighted_metrics=[])
    n_params = int(model.count_params())
    log.info("%s: %d parameters, input %dx%d, train %d, val %d, test %d", model.name, n_params, S, S,
             len(tr), int(va.sum()), int(te.sum()))
    # cosine learning-rate decay over --epochs; keep the weights of the best val loss
    t1 = time.time()
    verbose = 1 if (not args.no_progress and sys.stdout.isatty()) else 2
    h, best_epoch = fit(model, seq, (x_va, y_va_fit, w_va), args.epochs, args.patience, verbose)
    t_train = time.time() - t1

    # threshold on val, then the record on test (no decision uses it)
    p_va = predict_p(model, x_va, output)
    thr = choose_threshold(y_va, p_va)
    x_te = (crops.crop[te].astype(np.float32) / 255.0)[..., None]
    p_te = predict_p(model, x_te, output)
    res = {"val": per_root_metrics(items, va, p_va, thr), "test": per_root_metrics(items, te, p_te, thr),
           "val_at_0.5": per_root_metrics(items, va, p_va, 0.5)}
    # the same test faces on the original labels (dropped ones included), side by side with the fixed ones
    te_orig = crops.ok & crops.found & (np.array([it.split for it in items]) == "test")
    if args.only_roots:
        te_orig &= sel
    if not np.array_equal(te_orig, te) or any(it.orig_label != it.label for it in items):
        x_o = (crops.crop[te_orig].astype(np.float32) / 255.0)[..., None]
        orig = [_Orig(it) for it in items]
        res["test_original_labels"] = per_root_metrics(orig, te_orig, predict_p(model, x_o, output), thr)

    model_path = out / "model.keras"
    tmp = out / "model.tmp.keras"
    model.save(tmp)
    os.replace(tmp, model_path)
    plot_curves(h, out / "curves.png", f"{model.name} ({args.arch})")
    summary = {
        "model": str(model_path), "arch": args.arch, "model_name": model.name, "parameters": n_params,
        "input_size": S, "color": "gray", "normalize": {"scale": 1.0 / 255.0, "offset": 0.0},
        "crop_margin": params.crop_margin, "crop": params.crop, "labels": list(D.CLASSES), "smile_index": 1,
        "output": output,
        "threshold_val": thr,
        "data_roots": [{"path": str(r.path.resolve()), "kind": r.kind, "name": r.name} for r in roots],
        "root_specs": [str(s) for s in args.roots], "only_roots": args.only_roots,
        "data_counts": crops.stats, "split": {"fractions": list(D.SPLIT_FRACTIONS), "salt": D.SPLIT_SALT,
                                              "near_dup_bits": D.NEAR_DUP_BITS, **split_stats,
                                              "counts_used": D.split_counts(items, crops.ok & crops.found)},
        "split_sizes": {s: int(M[s].sum()) for s in D.SPLITS}, "train_used": int(len(tr)),
        "detector": {k: v for k, v in params.detector.items() if k != "cascade"},
        "landmarks": params.landmarks or None,
        "template": list(params.template) if params.crop == "aligned" else None,
        "training": {"epochs_max": args.epochs, "epochs_run": len(h.get("loss", [])), "best_epoch": best_epoch,
                     "batch_size": args.batch_size, "lr": args.lr, "lr_schedule": "cosine", "patience": args.patience,
                     "label_smoothing": args.label_smoothing, "seed": args.seed,
                     "soft_targets": soft_stats,
                     "widths": widths if args.arch == "small" else None,
                     "stem_stride": 2 if args.arch == "small" else None,
                     "head": args.head if args.arch == "small" else None, "class_weight": cw.tolist(),
                     "augment": aug.to_dict() if aug else None,
                     "seconds_data": round(t_data, 1), "seconds_train": round(t_train, 1)},
        "history": h, "metrics": res,
    }
    write_json_atomic(out / "summary.json", summary)
    print(f"model {model_path}  ({n_params} parameters, {len(h.get('loss', []))} epochs, best {best_epoch}, "
          f"{t_train / 60:.1f} min)")
    for split in ("val", "test", "test_original_labels"):
        for r, m in res.get(split, {}).items():
            print(f"  {split:4s} {r:18s} n={m['n']:5d} acc={m['accuracy']:.4f} bal={m['balanced_accuracy']:.4f} "
                  f"auc={m['roc_auc']:.4f}")
    print(f"  threshold (val) {thr:.3f}; summary {out / 'summary.json'}")
    return 0
