"""``SmileModel``: a TFLite runtime plus the preprocessing metadata that travels with it.

The metadata is a JSON sidecar next to the model (``smile_int8.tflite`` ->
``smile_int8.json``), written by ``djsmile convert``::

    {"input_size": 48, "color": "gray", "normalize": {"scale": 0.00392, "offset": 0.0},
     "crop_margin": 0.0, "labels": ["no_smile", "smile"], "smile_index": 1,
     "output": "sigmoid", "threshold": 0.5}

A paired model (v3) takes two crops of each face, one per input, and averages
its two networks inside the one file; its sidecar lists them under ``"inputs"``
(``"crop": "pair"``)::

    {"crop": "pair", "inputs": [{"name": "box", "crop": "box", "input_size": 48, "crop_margin": -0.075, ...},
                                {"name": "aligned", "crop": "aligned", "input_size": 48, "template": {...}, ...}],
     "labels": [...], "smile_index": 1, "output": "sigmoid", "threshold": 0.6}

The device never guesses: without a sidecar the model is refused.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import preprocess
from .errors import ModelError
from .runtime import Runtime

log = logging.getLogger(__name__)

#: File name of the shipped model (package data ``djsmile.models``), used when ``model.path`` is empty.
DEFAULT_MODEL_NAME = "smile_int8.tflite"


def default_model_path() -> Path:
    """The shipped model, read as package data (``djsmile.models``) wherever djsmile is installed."""
    from importlib import resources
    # The package is a real folder on disk (editable, --user, venv or wheel installs alike),
    # so the resource is a plain file the TFLite interpreter can open by path.
    return Path(str(resources.files("djsmile.models").joinpath(DEFAULT_MODEL_NAME)))


def sidecar_path(model_path) -> Path:
    return Path(model_path).with_suffix(".json")


@dataclass
class ModelMeta:
    """How the device must prepare a face for the model, and read its answer."""
    input_size: int = 48
    color: str = "gray"
    scale: float = 1.0 / 255.0
    offset: float = 0.0
    crop_margin: float = 0.0
    labels: list = field(default_factory=lambda: ["no_smile", "smile"])
    smile_index: int = 1
    output: str = "sigmoid"  # "sigmoid": one p_smile column; "softmax": one column per label
    threshold: float = 0.5
    #: "box": the detector's box made square (v2); "aligned": eye-aligned (v3; preprocess.crop_aligned)
    crop: str = "box"
    #: aligned crops: (eye_y, eye_distance, mouth_y) of the crop's side (sidecar "template"; absent = the default)
    template: tuple = preprocess.ALIGN_TEMPLATE
    #: a paired model (``"crop": "pair"``): one ModelMeta per input, each naming its crop (``name``: the input's)
    inputs: list = field(default_factory=list)
    #: the input's name in a paired model ("box", "aligned")
    name: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path) -> "ModelMeta":
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise ModelError(f"model metadata {p} not found; "
                             "it is written by 'djsmile convert' next to the .tflite") from None
        except (OSError, ValueError) as e:
            raise ModelError(f"model metadata {p} is not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise ModelError(f"model metadata {p} is not a JSON object")
        try:
            head = dict(labels=list(d.get("labels", ["no_smile", "smile"])),
                        smile_index=int(d.get("smile_index", 1)), output=str(d.get("output", "sigmoid")),
                        threshold=float(d.get("threshold", 0.5)), extra=d)
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"model metadata {p} is missing or has a bad key: {e}") from None
        if d.get("crop") == "pair" or "inputs" in d:
            parts = d.get("inputs")
            if d.get("crop") != "pair" or not isinstance(parts, list) or len(parts) < 2 \
                    or not all(isinstance(x, dict) for x in parts):
                raise ModelError(f"model metadata {p}: a paired model has \"crop\": \"pair\" and \"inputs\", a "
                                 "list of two or more objects (one crop of the face each)")
            inputs = [cls(**_crop_fields(x, p, paired=True)) for x in parts]
            names = [m.name for m in inputs]
            if len(set(names)) != len(names):
                raise ModelError(f"model metadata {p}: the inputs' names {names} are not distinct")
            first = inputs[0]
            return cls(input_size=first.input_size, crop="pair", inputs=inputs, **head)
        return cls(**_crop_fields(d, p), **head)

    @property
    def parts(self) -> list:
        """The crops the model takes, one ModelMeta each (a single-input model: itself)."""
        return self.inputs or [self]

    def to_input(self, crops) -> np.ndarray:
        """The model's input tensor for uint8 crops of ``input_size`` squared (float, normalised as trained)."""
        return preprocess.to_input(crops, self.scale, self.offset)

    def decode(self, y: np.ndarray) -> np.ndarray:
        """p_smile per row of the model's (dequantised) output: the one decoder, used by the device and convert."""
        y = np.asarray(y)
        if self.output == "softmax" or (y.ndim == 2 and y.shape[1] > 1):
            return y[:, self.smile_index].astype(np.float32)
        return y.reshape(len(y)).astype(np.float32)

    def to_json(self) -> dict:
        d = dict(self.extra)
        if self.inputs:
            for k in ("input_size", "color", "normalize", "crop_margin", "template"):
                d.pop(k, None)
            d.update({"crop": "pair", "inputs": [m.crop_json() for m in self.inputs]})
        else:
            d.update(self.crop_json())
        d.update({"labels": self.labels, "smile_index": self.smile_index, "output": self.output,
                  "threshold": self.threshold})
        return d

    def crop_json(self) -> dict:
        """How one input's crop is made: the sidecar's keys (top level, or one entry of a pair's ``"inputs"``)."""
        d = {"name": self.name} if self.name else {}
        d.update({"input_size": self.input_size, "color": self.color,
                  "normalize": {"scale": self.scale, "offset": self.offset}, "crop_margin": self.crop_margin})
        if self.crop != "box" or "crop" in self.extra or self.name:   # v2's sidecar stays as it was (no key = "box")
            d["crop"] = self.crop
        if self.crop == "aligned":   # the device reproduces the crop from the sidecar alone
            d["template"] = template_json(self.template)
        return d


def _crop_fields(d: dict, p, paired: bool = False) -> dict:
    """ModelMeta's crop fields from one sidecar object (the top level, or one input of a paired model)."""
    where = f"model metadata {p}" + (f" input {d.get('name', '?')!r}" if paired else "")
    try:
        norm = d.get("normalize", {})
        f = dict(input_size=int(d["input_size"]), color=str(d.get("color", "gray")),
                 scale=float(norm.get("scale", 1.0 / 255.0)), offset=float(norm.get("offset", 0.0)),
                 crop_margin=float(d.get("crop_margin", 0.0)), crop=str(d.get("crop", "box")))
        if paired:
            f["name"] = str(d["name"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ModelError(f"{where} is missing or has a bad key: {e}") from None
    if "template" in d:
        t = d["template"]
        try:
            if not isinstance(t, dict):
                raise ValueError(f"template {t!r} is not an object")
            f["template"] = preprocess.check_template([t["eye_y"], t["eye_distance"], t["mouth_y"]])
        except (KeyError, ValueError) as e:
            raise ModelError(f"{where}: bad \"template\" ({e}); it needs eye_y, eye_distance and "
                             "mouth_y as fractions of the crop's side") from None
    if f["crop"] not in preprocess.CROP_MODES:
        raise ModelError(f"{where}: crop {f['crop']!r} is not supported "
                         f"({' or '.join(repr(m) for m in preprocess.CROP_MODES + ('pair',))})")
    if f["input_size"] < 8:
        raise ModelError(f"{where}: input_size {f['input_size']} is too small")
    if f["color"] != "gray":
        raise ModelError(f"{where}: color {f['color']!r} is not supported (only 'gray')")
    return f


def template_json(template) -> dict:
    """The sidecar's ``"template"`` object for an aligned crop's ``(eye_y, eye_distance, mouth_y)``."""
    ey, ed, my = (float(v) for v in template)
    return {"eye_y": ey, "eye_distance": ed, "mouth_y": my}


class SmileModel:
    """Smile probability for face boxes in a gray frame.

    >>> model = SmileModel("models/smile_int8.tflite")
    >>> model.predict(gray, [(120, 80, 96, 96)])   # -> array([0.93])
    """

    def __init__(self, path=None, num_threads: int = 1, runtime_prefer: str | None = None, mirror: bool = False):
        self.mirror = bool(mirror)
        self.path = Path(path) if path else default_model_path()
        if not self.path.is_file():
            raise ModelError(f"model file {self.path} not found; pass --model PATH or set model.path")
        self.meta = ModelMeta.load(sidecar_path(self.path))
        self.runtime = Runtime(self.path, num_threads=num_threads, prefer=runtime_prefer)
        if self.meta.inputs:
            shapes = dict(zip(self.runtime.input_names, self.runtime.input_shapes))
            if sorted(shapes) != sorted(m.name for m in self.parts):
                raise ModelError(f"model {self.path} has inputs {sorted(shapes)}, its metadata names "
                                 f"{[m.name for m in self.parts]}")
        else:
            shapes = {"": self.runtime.input_shape}
        for m in self.meta.parts:
            shp = shapes[m.name]
            if len(shp) != 4 or shp[1] != m.input_size or shp[2] != m.input_size:
                raise ModelError(f"model {self.path} input {list(shp)} does not match its metadata's "
                                 f"input_size {m.input_size}")

    @classmethod
    def from_config(cls, mc) -> "SmileModel":
        return cls(mc.path or None, num_threads=mc.num_threads, mirror=mc.mirror)

    @property
    def threshold(self) -> float:
        return self.meta.threshold

    @property
    def parts(self) -> list:
        """The crops the model takes, one ModelMeta each (a single-input model: its metadata)."""
        return self.meta.parts

    @property
    def aligned(self) -> bool:
        """Does this model take an eye-aligned crop (its metadata's ``"crop": "aligned"``, or one of a pair's)?"""
        return any(m.crop == "aligned" for m in self.parts)

    @property
    def paired(self) -> bool:
        """Does this model take several crops of each face (``"crop": "pair"``)?"""
        return bool(self.meta.inputs)

    def enlarges(self, box) -> bool:
        """Is a box crop of ``box`` enlarged (its square smaller than the input: OpenCV's INTER_LINEAR, whose
        results may differ between CPUs)? An aligned crop is integer arithmetic and never counts."""
        return any(m.crop == "box" and preprocess.square_box(box, m.crop_margin)[2] < m.input_size
                   for m in self.parts)

    def crop(self, gray: np.ndarray, box, landmarks=None):
        """The model's uint8 input crop for one box (the function training uses too); a paired model: a tuple of
        its crops, one per input.

        Box models (v2): the box made square with ``crop_margin``. Aligned models: aligned on the
        detection's ``landmarks``, or on eyes estimated from the (Haar-style) box when there are none.
        """
        crops = tuple(preprocess.crop_for(m.crop, gray, box, m.input_size, m.crop_margin, landmarks,
                                          preprocess.BOX_EYES, m.template) for m in self.meta.parts)
        return crops if self.meta.inputs else crops[0]

    def predict_crops(self, crops) -> np.ndarray:
        """p_smile for uint8 crops of ``input_size`` squared (a paired model: tuples, one crop per input).

        With ``mirror``: the mean over each crop and its mirror image.
        """
        if len(crops) == 0:
            return np.zeros((0,), np.float32)
        if self.meta.inputs:
            if not all(isinstance(c, tuple) and len(c) == len(self.parts) for c in crops):
                raise ValueError(f"a paired model takes {len(self.parts)} crops of each face, a tuple "
                                 "(SmileModel.crop makes it)")
            xs = {m.name: m.to_input([c[i] for c in crops]) for i, m in enumerate(self.parts)}
            run = self.runtime.run_named
        else:
            xs = {"": self.meta.to_input(crops)}
            run = lambda d: self.runtime.run(d[""])  # noqa: E731
        if not self.mirror:
            return self.meta.decode(run(xs))
        n = len(crops)
        p = self.meta.decode(run({k: np.concatenate([x, x[:, :, ::-1]]) for k, x in xs.items()}))
        return (0.5 * (p[:n] + p[n:])).astype(np.float32)

    def predict(self, gray: np.ndarray, boxes, landmarks=None) -> np.ndarray:
        """p_smile for each box in ``gray`` (``landmarks``: one dict or None per box, used by aligned models)."""
        marks = list(landmarks) if landmarks is not None else [None] * len(boxes)
        if len(marks) != len(boxes):
            marks = [None] * len(boxes)
        return self.predict_crops([self.crop(gray, b, m) for b, m in zip(boxes, marks)])
