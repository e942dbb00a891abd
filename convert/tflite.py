"""``djsmile convert``: Keras model -> int8 and float32 TFLite, checked, with a metadata sidecar.

::

    djsmile convert runs/small/model.keras --out models/

- full-integer int8 post-training quantization (int8 input and output; the
  input scale is 1/255 with zero point -128, so a pixel maps exactly to
  ``pixel - 128``), calibrated on a representative set of training crops;
- a float32 model for comparison;
- both are run through ``djsmile.runtime`` (the device's interpreter) on the
  val split (to choose each model's decision threshold) and on the test split
  (to compare): if int8 accuracy on test is more than ``--max-drop`` points
  below float32, nothing is written and the exit status is 1;
- ``<name>_int8.json`` / ``<name>_float32.json`` sidecars carry what the
  device needs (``djsmile.model.ModelMeta``: input size, colour, normalisation,
  crop margin, labels, output, threshold) plus the measured figures.

The data roots and crop parameters come from the ``summary.json`` that
``djsmile train`` wrote next to the model (or ``--data``), so the split is
the same one training used.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from djsmile import preprocess
from djsmile.errors import DataError, MissingDependencyError, ModelError
from djsmile.fsutil import atomic_write
from djsmile.model import ModelMeta
from djsmile.stats import percentiles

log = logging.getLogger(__name__)

TF_HINT = "TensorFlow is not installed: pip install '.[train]'"


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="MODEL.keras", help="trained Keras model (from djsmile train)")
    parser.add_argument("--out", metavar="DIR", default="models", help="output folder (default: models)")
    parser.add_argument("--name", default="smile",
                        help="file name stem: NAME_int8.tflite, NAME_float32.tflite (default: smile)")
    parser.add_argument("--summary", metavar="JSON", help="training summary (default: summary.json next to the model)")
    parser.add_argument("--pair", nargs="+", metavar="MODEL.keras",
                        help="another trained model taking another crop of the face (e.g. box + aligned): the nets "
                             "are averaged in one file with one input per crop (each model's summary.json beside it)")
    parser.add_argument("--data", nargs="+", metavar="DATA_ROOT", help="data roots (default: those in the summary)")
    parser.add_argument("--representative", type=int, default=500,
                        help="training crops used to calibrate int8 (default 500)")
    parser.add_argument("--max-drop", type=float, default=1.0,
                        help="largest allowed int8 accuracy drop on test, in points (default 1.0)")
    parser.add_argument("--cache", metavar="DIR", default=None,
                        help="crop cache folder (default: $DJSMILE_CACHE, else $XDG_CACHE_HOME/djsmile, "
                             "else ~/.cache/djsmile)")
    parser.add_argument("--no-float", action="store_true", help="do not write the float32 model (it is still checked)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _tf():
    try:
        import tensorflow as tf
    except ImportError:
        raise MissingDependencyError(TF_HINT) from None
    return tf


def convert(model, input_size: int, rep: np.ndarray | None):
    """Keras model -> TFLite bytes: float32 when ``rep`` is None, else full-integer int8."""
    tf = _tf()
    # Keras 3: export a SavedModel with a batch-agnostic signature, then convert that.
    with tempfile.TemporaryDirectory(prefix="djsmile-sm-") as d:
        spec = tf.TensorSpec([None, input_size, input_size, 1], tf.float32, name="face")
        model.export(d, format="tf_saved_model", input_signature=[spec], verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(d)
        return _finish(conv, rep, tf)


def _finish(conv, rep, tf):
    """Convert; with ``rep`` (representative inputs: an array, or ``{input name: array}`` for several inputs,
    which the calibrator matches by name, not by position) to full-integer int8."""
    if rep is not None:
        if isinstance(rep, dict):
            n = min(len(v) for v in rep.values())

            def gen():
                for i in range(n):
                    yield {k: v[i:i + 1].astype(np.float32) for k, v in rep.items()}
        else:
            def gen():
                for i in range(len(rep)):
                    yield [rep[i:i + 1].astype(np.float32)]
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def pair_model(models: list, names: list):
    """One Keras model of several trained nets, one input each (named ``names``), averaging their p_smile."""
    import keras
    ins, outs = [], []
    for m, name in zip(models, names):
        net = keras.Model(m.inputs[0], m.outputs[0], name=f"{name}_net")   # distinct names for the nested nets
        x = keras.Input(tuple(int(v) for v in m.inputs[0].shape[1:]), name=name)
        ins.append(x)
        outs.append(net(x))
    return keras.Model(ins, keras.layers.Average(name="p_smile")(outs), name="pair")


def convert_pair(model, sizes: dict, rep: dict | None):
    """A several-input Keras model (:func:`pair_model`) -> TFLite bytes; ``sizes``: input name -> side, in the
    model's input order; ``rep``: input name -> representative crops (int8), or None (float32)."""
    tf = _tf()
    with tempfile.TemporaryDirectory(prefix="djsmile-sm-") as d:
        specs = [tf.TensorSpec([None, s, s, 1], tf.float32, name=n) for n, s in sizes.items()]
        model.export(d, format="tf_saved_model", input_signature=[specs], verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(d)
        return _finish(conv, rep, tf)


def tflite_p(rt, crops_u8, meta: ModelMeta, batch: int = 256) -> np.ndarray:
    """p_smile from a djsmile.runtime.Runtime for uint8 crops (N, S, S): the device's input and output decoding.
    A paired model: a list of such arrays, one per input (``meta.inputs``' order)."""
    if not meta.inputs:
        crops_u8 = crops_u8[0] if isinstance(crops_u8, list) else crops_u8
        out = [meta.decode(rt.run(meta.to_input(crops_u8[s:s + batch]))) for s in range(0, len(crops_u8), batch)]
    else:
        n = len(crops_u8[0])
        out = [meta.decode(rt.run_named({m.name: m.to_input(a[s:s + batch]) for m, a in zip(meta.inputs, crops_u8)}))
               for s in range(0, n, batch)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def latency_ms(path: Path, input_size: int, meta: ModelMeta | None = None, runs: int = 300) -> dict:
    """Single-threaded time of one face (batch 1) through djsmile.runtime.Runtime: median and mean ms
    (a paired model, ``meta.inputs``: one crop per input, the one invoke)."""
    from djsmile.runtime import Runtime
    rt = Runtime(path, num_threads=1)
    rng = np.random.default_rng(0)
    if meta is not None and meta.inputs:
        xs = {m.name: rng.random((1, m.input_size, m.input_size, 1), np.float32) for m in meta.inputs}

        def step():
            rt.run_named(xs)
    else:
        x = rng.random((1, input_size, input_size, 1), np.float32)

        def step():
            rt.run(x)
    for _ in range(30):
        step()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        step()
        ts.append((time.perf_counter() - t) * 1000.0)
    f = percentiles(ts, (50, 90), mean=True)
    return {"median_ms": f["p50"], "mean_ms": f["mean"], "p90_ms": f["p90"], "runtime": rt.describe(), "threads": 1}


def _load_run(mpath: Path, summary_arg, keras):
    """A trained run: ``(Keras model, its summary dict, the summary's path)``."""
    if not mpath.is_file():
        raise ModelError(f"model file {mpath} not found")
    spath = Path(summary_arg) if summary_arg else mpath.parent / "summary.json"
    try:
        summary = json.loads(spath.read_text())
    except FileNotFoundError:
        raise DataError(f"training summary {spath} not found; pass --summary (written by djsmile train)") from None
    except ValueError as e:
        raise DataError(f"training summary {spath} is not valid JSON: {e}") from None
    try:
        model = keras.models.load_model(mpath, compile=False)
    except Exception as e:
        raise ModelError(f"model file {mpath} could not be loaded by Keras: {e}") from None
    return model, summary, spath


def _crop_setup(summary: dict, spath: Path, cfg, D):
    """How a run's crops were made: ``(ModelMeta without threshold, CropParams, detector settings)``."""
    S = int(summary["input_size"])
    output = summary.get("output", "sigmoid")
    crop_mode = str(summary.get("crop", "box"))   # a summary from before issue 28 was trained on box crops
    # the aligned crop's template as trained (a summary from before the option: the default template)
    try:
        template = preprocess.check_template(summary.get("template") or preprocess.ALIGN_TEMPLATE)
    except ValueError as e:
        raise DataError(f"training summary {spath}: {e}") from None
    meta0 = ModelMeta(input_size=S, scale=1.0 / 255.0, offset=0.0, crop_margin=float(summary["crop_margin"]),
                      labels=list(D.CLASSES), smile_index=1, output=output, crop=crop_mode, template=template)
    det = dict(summary.get("detector") or D.detector_kwargs(cfg.detector))
    if summary.get("detector"):   # a summary written before detector.equalize existed was cropped without it
        det.setdefault("equalize", "none")
    if "cascade" not in det:
        from djsmile.detectors.haar import find_cascade
        det["cascade"] = find_cascade(cfg.detector.cascade)
    params = D.CropParams(input_size=S, crop_margin=float(summary["crop_margin"]), detector=det, crop=crop_mode,
                          template=template,
                          landmarks=summary.get("landmarks") or (D.landmark_settings(cfg.detector)
                                                                 if crop_mode == "aligned" else {}))
    return meta0, params, det


def _joined(prepared: list):
    """Two or more runs' crops of the same images, row-aligned: ``(items, [crops arrays], usable mask)``.

    A pair sees an image only where every run has a crop of it (e.g. a photo only BlazeFace finds has no box crop
    in a Haar-cropped run). The split must be the same in every run (it is keyed by the files, not the crops).
    """
    items0 = prepared[0][1]
    index = [{it.path: i for i, it in enumerate(items)} for _, items, _ in prepared]
    rows = [[] for _ in prepared]
    for it in items0:
        if all(it.path in ix for ix in index):
            for k, ix in enumerate(index):
                rows[k].append(ix[it.path])
    rows = [np.array(r, int) for r in rows]
    items = [items0[i] for i in rows[0]]
    for k, (_, its, _) in enumerate(prepared[1:], 1):
        bad = sum(its[j].split != it.split for j, it in zip(rows[k], items))
        if bad:
            raise DataError(f"{bad} image(s) fall in different splits in the two runs; a pair needs one split")
    use = np.ones(len(items), bool)
    for (_, _, crops), r in zip(prepared, rows):
        use &= crops.ok[r] & crops.found[r]
    return items, [crops.crop[r] for (_, _, crops), r in zip(prepared, rows)], use


def main(args, cfg) -> int:
    tf = _tf()  # noqa: F841  (fail early without TensorFlow)
    import keras
    from djsmile.runtime import Runtime
    from djsmile.training import data as D
    from djsmile.training.evaluate import choose_threshold, write_json_atomic
    from djsmile.training.train import per_root_metrics

    mpath = Path(args.model)
    runs = [(mpath, *_load_run(mpath, args.summary, keras))]
    for extra in getattr(args, "pair", None) or []:
        runs.append((Path(extra), *_load_run(Path(extra), None, keras)))
    setups = [_crop_setup(summary, spath, cfg, D) for _, _, summary, spath in runs]
    paired = len(runs) > 1
    summary, spath = runs[0][2], runs[0][3]
    meta0, params, det = setups[0]
    S = meta0.input_size
    if paired:
        names = [m.crop for m, _, _ in setups]
        if len(set(names)) != len(names):
            raise DataError(f"a pair takes different crops of the face (one box, one aligned), not {names}")
        if any(m.output != "sigmoid" for m, _, _ in setups):
            raise DataError("a pair averages sigmoid outputs; one of the runs is not a sigmoid model")
        for _, _, s2, sp2 in runs[1:]:
            if [r["name"] for r in s2.get("data_roots", [])] != [r["name"] for r in summary.get("data_roots", [])]:
                raise DataError(f"{sp2} was trained on other data roots than {spath}")
            if (s2.get("split", {}).get("label_fixes") or {}).get("file") != \
                    (summary.get("split", {}).get("label_fixes") or {}).get("file"):
                raise DataError(f"{sp2} was trained with other label fixes than {spath}")
        parts = [dataclasses.replace(m, name=m.crop) for m, _, _ in setups]
        meta0 = ModelMeta(labels=list(D.CLASSES), smile_index=1, output="sigmoid", crop="pair", inputs=parts,
                          input_size=parts[0].input_size)
    specs = args.data or [f"{r['path']}:{r['kind']}" for r in summary["data_roots"]]
    cache = Path(args.cache) if args.cache else D.DEFAULT_CACHE
    import sys
    progress = not args.no_progress and sys.stderr.isatty()
    prepared = []
    for _, p_, _ in setups:
        roots, items, crops, _ = D.prepare(specs, p_, cache, 2, progress)
        prepared.append((roots, items, crops))
    roots, items, crops = prepared[0]
    from djsmile.training import labelfix
    fixes_file = (summary.get("split", {}).get("label_fixes") or {}).get("file")  # as the model was trained
    if paired:
        items, crop_arrays, use = _joined(prepared)
        labelfix.apply(items, labelfix.load(fixes_file))
        use &= ~np.array([it.dropped for it in items], bool)
        sp = np.array([it.split for it in items])
        M = {s_: use & (sp == s_) for s_ in D.SPLITS}
        log.info("pair: %d images have a crop in every run (%d usable)", len(items), int(use.sum()))
    else:
        labelfix.apply(items, labelfix.load(fixes_file))
        M = D.masks(items, crops)
        crop_arrays = [crops.crop]
    if summary.get("only_roots"):  # trained on some roots only: check and choose the threshold on those
        keep = {n.strip() for n in summary["only_roots"].split(",")}
        sel = np.array([it.root in keep for it in items])
        M = {k: v & sel for k, v in M.items()}
    labels = np.array([it.label for it in items])
    if M["val"].sum() == 0 or M["test"].sum() == 0 or M["train"].sum() == 0:
        raise DataError("the data has an empty train, val or test split; convert needs all three")

    rng = np.random.default_rng(int(summary.get("training", {}).get("seed", 0)))
    tr = np.flatnonzero(M["train"])
    pick = rng.choice(tr, size=min(args.representative, len(tr)), replace=False)
    reps = []
    for arr in crop_arrays:
        rep = arr[pick].astype(np.float32)[..., None] / 255.0
        # make sure calibration sees the full pixel range, so the input maps exactly to pixel - 128
        rep[0, 0, 0, 0], rep[0, 0, 1, 0] = 0.0, 1.0
        reps.append(rep)

    log.info("converting %s (float32 and int8, %d representative crops)", mpath, len(pick))
    if paired:
        model = pair_model([r[1] for r in runs], [m.name for m in meta0.inputs])
        sizes = {m.name: m.input_size for m in meta0.inputs}
        blobs = {"float32": convert_pair(model, sizes, None),
                 "int8": convert_pair(model, sizes, dict(zip(sizes, reps)))}
    else:
        model = runs[0][1]
        blobs = {"float32": convert(model, S, None), "int8": convert(model, S, reps[0])}
    out = Path(args.out)
    tmpdir = Path(tempfile.mkdtemp(prefix="djsmile-convert-"))
    results = {}
    for kind, blob in blobs.items():
        tpath = tmpdir / f"{args.name}_{kind}.tflite"
        tpath.write_bytes(blob)
        rt = Runtime(tpath, num_threads=2)
        p_va = tflite_p(rt, [a[M["val"]] for a in crop_arrays], meta0)
        thr = choose_threshold(labels[M["val"]], p_va)
        p_te = tflite_p(rt, [a[M["test"]] for a in crop_arrays], meta0)
        results[kind] = {"path": tpath, "threshold": thr, "p_test": p_te, "size_bytes": len(blob),
                         "val": per_root_metrics(items, M["val"], p_va, thr),
                         "test": per_root_metrics(items, M["test"], p_te, thr),
                         "latency": latency_ms(tpath, S, meta0)}
    f_acc = results["float32"]["test"]["all"]["accuracy"]
    q_acc = results["int8"]["test"]["all"]["accuracy"]
    drop = (f_acc - q_acc) * 100.0
    agree = float(((results["int8"]["p_test"] >= results["int8"]["threshold"]) ==
                   (results["float32"]["p_test"] >= results["float32"]["threshold"])).mean())
    print(f"{'model':8s} {'size':>9s} {'ms/face':>8s} {'thr':>6s} {'val acc':>8s} {'test acc':>8s}  per root (test)")
    for kind, r in results.items():
        per = "  ".join(f"{k}={v['accuracy']:.4f}" for k, v in r["test"].items() if k != "all")
        print(f"{kind:8s} {r['size_bytes']:9d} {r['latency']['median_ms']:8.3f} {r['threshold']:6.3f} "
              f"{r['val']['all']['accuracy']:8.4f} {r['test']['all']['accuracy']:8.4f}  {per}")
    print(f"int8 accuracy on test is {abs(drop):.2f} points {'below' if drop >= 0 else 'above'} float32 "
          f"(allowed drop {args.max_drop}); decisions agree on {agree:.4f}")
    if drop > args.max_drop:  # exit 65 (bad data: the int8 model fails the gate)
        raise DataError(f"int8 accuracy on the test split is {drop:.2f} points below float32 "
                        f"(more than --max-drop {args.max_drop:.2f}); nothing written")

    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    for kind, r in results.items():
        if kind == "float32" and args.no_float:
            continue
        path = out / f"{args.name}_{kind}.tflite"
        meta = dataclasses.replace(meta0, threshold=float(r["threshold"]), extra={
            "faces_mode_crop": " + ".join(
                "aligned on BlazeFace's landmarks in the padded image, else eyes estimated from the whole image"
                if m.crop == "aligned" else "whole image, no margin" for m in meta0.parts),
            "quantization": "full-integer int8 (input scale 1/255, zero point -128)" if kind == "int8" else "none",
            "arch": summary.get("arch"), "model_name": summary.get("model_name"),
            "parameters": summary.get("parameters"), "size_bytes": r["size_bytes"],
            "latency_single_thread": r["latency"],
            "threshold_chosen_on": "val split, best balanced accuracy",
            "metrics": {"val": r["val"], "test": r["test"]},
            "int8_vs_float32_test_points": round(-drop, 3), "int8_float32_agreement": round(agree, 4),
            "data_roots": [r_["name"] for r_ in summary.get("data_roots", [])],
            "split": {k: summary.get("split", {}).get(k) for k in ("fractions", "salt", "near_dup_bits")},
            "detector_for_training_crops": {k: v for k, v in det.items() if k != "cascade"},
            "training": {k: summary.get("training", {}).get(k) for k in (
                "widths", "epochs_max", "best_epoch", "seed", "soft_targets", "seconds_train")}
            | {"label_fixes": (summary.get("split", {}).get("label_fixes") or {}).get("file")},
            "source": {"keras_model": str(mpath), "summary": str(spath), "created": created,
                       "tensorflow": tf.__version__, "keras": keras.__version__},
        } | ({"pair": [{"crop": m.crop, "model_name": r[2].get("model_name"), "keras_model": str(r[0]),
                        "summary": str(r[3]), "parameters": r[2].get("parameters"),
                        "training": {k: r[2].get("training", {}).get(k) for k in (
                            "widths", "epochs_max", "best_epoch", "seed", "soft_targets", "seconds_train")}}
                       for m, r in zip(meta0.inputs, runs)],
              "model_name": " + ".join(f"{r[2].get('model_name')} ({m.crop})" for m, r in zip(meta0.inputs, runs)),
              "parameters": sum(int(r[2].get("parameters") or 0) for r in runs),
              "training": {"label_fixes": (summary.get("split", {}).get("label_fixes") or {}).get("file")},
              "source": {"keras_models": [str(r[0]) for r in runs], "summaries": [str(r[3]) for r in runs],
                         "created": created, "tensorflow": tf.__version__, "keras": keras.__version__},
              } if paired else {})).to_json()
        atomic_write(path, path_bytes := r["path"].read_bytes())
        write_json_atomic(path.with_suffix(".json"), meta)
        log.info("wrote %s (%d bytes) and %s", path, len(path_bytes), path.with_suffix(".json").name)
    for f in tmpdir.iterdir():
        f.unlink()
    tmpdir.rmdir()
    return 0
