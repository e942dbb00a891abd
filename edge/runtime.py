"""Load a ``.tflite`` model with whichever TFLite interpreter is installed.

Order: ``ai_edge_litert`` (LiteRT, the maintained successor), then
``tflite_runtime`` (stopped at 2.14, Python <= 3.11, numpy 1.x), then
``tensorflow.lite`` (a training machine). The choice and its version are
logged. Inputs and outputs are float32 to the caller: quantized (int8 /
uint8) tensors are converted with the tensor's own scale and zero point.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from .errors import ModelError, RuntimeMissingError

log = logging.getLogger(__name__)

#: (name shown in logs, module to import, attribute path of Interpreter, version module)
BACKENDS = [
    ("ai-edge-litert", "ai_edge_litert.interpreter", "Interpreter", "ai_edge_litert"),
    ("tflite-runtime", "tflite_runtime.interpreter", "Interpreter", "tflite_runtime"),
    ("tensorflow.lite", "tensorflow", "lite.Interpreter", "tensorflow"),
]


def _version(modname: str) -> str:
    try:
        from importlib.metadata import version, PackageNotFoundError
        dist = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime",
                "tensorflow": "tensorflow"}[modname]
        for d in (dist, dist + "-cpu"):
            try:
                return version(d)
            except PackageNotFoundError:
                continue
    except Exception:  # pragma: no cover
        pass
    mod = importlib.import_module(modname)
    return str(getattr(mod, "__version__", "unknown"))


def find_interpreter(prefer: str | None = None):
    """Return ``(name, version, Interpreter class)`` of the first runtime that imports.

    ``prefer`` (or the env var ``DJSMILE_RUNTIME``) names one backend to use only.
    """
    prefer = prefer or os.environ.get("DJSMILE_RUNTIME") or None
    tried = []
    for name, modname, attr, vermod in BACKENDS:
        if prefer and prefer != name:
            continue
        try:
            mod = importlib.import_module(modname)
            obj = mod
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as e:  # ImportError, or a broken wheel (numpy ABI mismatch)
            tried.append(f"{name}: {type(e).__name__}: {e}".splitlines()[0])
            continue
        return name, _version(vermod), obj
    raise RuntimeMissingError(
        "no TFLite runtime could be imported (" + "; ".join(tried) + "); "
        "install one: pip install ai-edge-litert")



def _short_name(name: str) -> str:
    """An input tensor's name without the SavedModel signature's decoration."""
    name = name.split(":")[0]
    return name[len("serving_default_"):] if name.startswith("serving_default_") else name


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """A float32 array as the input tensor ``detail`` takes it (int8 / uint8 with its scale and zero point)."""
    dt = np.dtype(detail["dtype"])
    if dt == np.float32:
        return x.astype(np.float32, copy=False)
    scale, zero = detail["quantization"]
    if not scale:
        return x.astype(dt)
    info = np.iinfo(dt)
    q = np.round(x / scale + zero)
    return np.clip(q, info.min, info.max).astype(dt)


_FD2_LOCK = threading.Lock()


@contextlib.contextmanager
def native_stderr_to_log(name: str):
    """While the interpreter is made, the runtime's C++ code writes lines such as ``INFO: Created
    TensorFlow Lite XNNPACK delegate for CPU.`` straight to file descriptor 2: catch them, and log
    its ``INFO:`` lines at DEBUG (named by ``name``); anything else goes to stderr as it was."""
    with _FD2_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):   # no fd 2 (a daemon without stderr)
            yield
            return
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            finally:
                with contextlib.suppress(OSError, ValueError):
                    sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                text = tmp.read().decode("utf-8", "replace")
    for line in text.splitlines():
        if line.startswith("INFO: "):
            log.debug("%s: %s", name, line[len("INFO: "):])
        elif line.strip():
            os.write(2, (line + "\n").encode())

class Runtime:
    """A loaded TFLite model with float32 in, float32 out.

    :param path: the ``.tflite`` file.
    :param num_threads: interpreter threads.
    """

    def __init__(self, path, num_threads: int = 1, prefer: str | None = None, quiet: bool = False):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file {self.path} not found; pass --model PATH or set model.path")
        head = self.path.read_bytes()[:8]
        if len(head) < 8 or head[4:8] != b"TFL3":
            raise ModelError(f"model file {self.path} is not a TFLite model (no TFL3 header)")
        self.name, self.version, Interpreter = find_interpreter(prefer)
        try:
            with native_stderr_to_log(self.name):
                self._interp = Interpreter(model_path=str(self.path), num_threads=int(num_threads))
                self._interp.allocate_tensors()
        except Exception as e:
            raise ModelError(f"model file {self.path} could not be loaded by {self.name}: {e}") from None
        self.num_threads = int(num_threads)
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        self._batch = int(self._in["shape"][0]) if len(self._in["shape"]) else 1
        ins = self._interp.get_input_details()
        shown = " + ".join(f"{[int(v) for v in d['shape']]} {np.dtype(d['dtype']).name}"
                           + (f" '{_short_name(d['name'])}'" if len(ins) > 1 else "") for d in ins)
        (log.debug if quiet else log.info)("model %s loaded with %s %s (%d thread%s, input %s)", self.path,
                                           self.name, self.version, self.num_threads,
                                           "" if self.num_threads == 1 else "s", shown)

    @property
    def input_shape(self):
        return tuple(int(v) for v in self._in["shape"])

    @property
    def input_shapes(self) -> list:
        """The shape of every input, in the order of :attr:`input_names`."""
        return [tuple(int(v) for v in d["shape"]) for d in self._interp.get_input_details()]

    @property
    def input_dtype(self):
        return np.dtype(self._in["dtype"])

    @property
    def output_shapes(self) -> list:
        """The shape of every output, in the model's order."""
        return [tuple(int(v) for v in o["shape"]) for o in self._interp.get_output_details()]

    def describe(self) -> str:
        return f"{self.name} {self.version}"

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        return _quantize(x, self._in)

    def _dequantize(self, y: np.ndarray) -> np.ndarray:
        dt = np.dtype(self._out["dtype"])
        if dt == np.float32:
            return y.astype(np.float32, copy=True)
        scale, zero = self._out["quantization"]
        if not scale:
            return y.astype(np.float32)
        return (y.astype(np.float32) - zero) * np.float32(scale)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run a float32 batch ``(N, ...)``; returns the float32 outputs ``(N, ...)``."""
        x = np.asarray(x, dtype=np.float32)
        n = x.shape[0]
        if n == 0:
            return np.zeros((0,) + tuple(int(v) for v in self._out["shape"][1:]), np.float32)
        if self._batch != n:
            shape = [n] + [int(v) for v in self._in["shape"][1:]]
            self._interp.resize_tensor_input(self._in["index"], shape)
            self._interp.allocate_tensors()
            self._in = self._interp.get_input_details()[0]
            self._out = self._interp.get_output_details()[0]
            self._batch = n
        self._interp.set_tensor(self._in["index"], self._quantize(x))
        self._interp.invoke()
        return self._dequantize(self._interp.get_tensor(self._out["index"]))

    @property
    def input_names(self) -> list:
        """The inputs' names as the model was exported (``serving_default_<name>:0`` -> ``<name>``), in the
        model's order (for a model with several inputs, e.g. the two crops of a paired smile model)."""
        return [_short_name(d["name"]) for d in self._interp.get_input_details()]

    def run_named(self, xs: dict) -> np.ndarray:
        """Run a model with several inputs: ``{input name: float32 batch (N, ...)}``, every input the same N;
        returns the (first) output, float32 ``(N, ...)``."""
        details = {_short_name(d["name"]): d for d in self._interp.get_input_details()}
        if set(xs) != set(details):
            raise ModelError(f"model {self.path} takes inputs {sorted(details)}, not {sorted(xs)}")
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in xs.items()}
        n = {len(a) for a in arrays.values()}
        if len(n) != 1:
            raise ValueError(f"inputs of different batch sizes: { {k: len(a) for k, a in arrays.items()} }")
        n = n.pop()
        if n == 0:
            return np.zeros((0,) + tuple(int(v) for v in self._out["shape"][1:]), np.float32)
        if any(int(d["shape"][0]) != n for d in details.values()):
            for d in details.values():
                self._interp.resize_tensor_input(d["index"], [n] + [int(v) for v in d["shape"][1:]])
            self._interp.allocate_tensors()
            details = {_short_name(d["name"]): d for d in self._interp.get_input_details()}
            self._in = self._interp.get_input_details()[0]
            self._out = self._interp.get_output_details()[0]
            self._batch = n
        for k, d in details.items():
            self._interp.set_tensor(d["index"], _quantize(arrays[k], d))
        self._interp.invoke()
        return self._dequantize(self._interp.get_tensor(self._out["index"]))

    def run_all(self, x: np.ndarray) -> list:
        """Run one float32 input of the model's own shape; every output as float32, in the model's order
        (for models with several outputs, e.g. a detector's boxes and scores)."""
        self._interp.set_tensor(self._in["index"], self._quantize(np.asarray(x, dtype=np.float32)))
        self._interp.invoke()
        return [np.array(self._interp.get_tensor(o["index"]), dtype=np.float32)
                for o in self._interp.get_output_details()]
