"""``calibration.json`` in the state folder: written whole, read back checked, and which thresholds run uses.

:func:`trigger_config` decides between the calibration and the config;
:func:`origin_text` says where the thresholds came from in the words
``djsmile run`` and ``djsmile config --show`` both use.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

from ..fsutil import atomic_write, clean_stale_temps, file_sha256, read_regular_file
from .thresholds import CLAMP

log = logging.getLogger(__name__)

FILE_NAME = "calibration.json"
MAX_FILE_BYTES = 64 * 1024   # a calibration.json is about 500 bytes
KEYS = ("created", "neutral", "smile", "on_threshold", "off_threshold", "model_sha256", "frames_skipped")


def path_in(state_dir) -> Path:
    return Path(state_dir) / FILE_NAME


def write(state_dir, data: dict) -> Path:
    """Write ``calibration.json`` whole or not at all."""
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise ValueError(f"calibration data lacks {', '.join(missing)}")
    p = path_in(state_dir)
    atomic_write(p, (json.dumps({k: data[k] for k in KEYS}, indent=2) + "\n").encode())
    return p


def remove(state_dir) -> bool:
    """Delete ``calibration.json``; ``True`` if there was one."""
    try:
        path_in(state_dir).unlink()
        return True
    except FileNotFoundError:
        return False


def _valid(d) -> bool:
    if not isinstance(d, dict) or any(k not in d for k in KEYS):
        return False
    try:
        on, off = float(d["on_threshold"]), float(d["off_threshold"])
    except (TypeError, ValueError):
        return False
    return (all(math.isfinite(v) and CLAMP[0] <= v <= CLAMP[1] for v in (on, off)) and off <= on
            and isinstance(d["model_sha256"], str))


def trigger_config(tcfg, calib: dict | None):
    """The trigger config to run with: the calibration's thresholds, unless the config sets its own.

    Returns ``(config, source)``; ``source`` is ``"calibration"``, ``"config"`` (explicit
    ``trigger.on_threshold`` / ``off_threshold`` win) or ``"sensitivity"`` (no calibration).
    """
    if tcfg.on_threshold or tcfg.off_threshold:
        return tcfg, "config"
    if not calib:
        return tcfg, "sensitivity"
    return (dataclasses.replace(tcfg, on_threshold=float(calib["on_threshold"]),
                                off_threshold=float(calib["off_threshold"])), "calibration")


def origin_text(source: str, calib: dict | None, tcfg, model_threshold: float, state_dir=None) -> str:
    """Where the thresholds come from, in the words ``djsmile run`` and ``config --show`` both use."""
    if source == "calibration":
        where = f", {path_in(state_dir)}" if state_dir is not None else ""
        return f"calibration.json of {calib['created']}{where}"
    if source == "config":
        return "the config"
    return f"the sensitivity preset {tcfg.sensitivity!r} and the model's threshold {model_threshold:.3f}"


def run_thresholds(cfg) -> tuple[float, float, str]:
    """``(on, off, where from)``: the thresholds ``djsmile run`` will use with ``cfg`` (the model's
    metadata and ``calibration.json`` read as run reads them; the model itself is not loaded)."""
    from ..model import ModelMeta, default_model_path, sidecar_path
    from ..trigger import thresholds

    path = Path(cfg.model.path).expanduser() if cfg.model.path else default_model_path()
    meta = ModelMeta.load(sidecar_path(path))
    state_dir = cfg.state_dir()
    calib = load(state_dir, file_sha256(path))
    tcfg, source = trigger_config(cfg.trigger, calib)
    on, off = thresholds(tcfg, meta.threshold)
    return on, off, origin_text(source, calib, tcfg, meta.threshold, state_dir)


def load(state_dir, model_sha256: str | None = None) -> dict | None:
    """The calibration for this model, or ``None`` (absent; unreadable, or for another model: one warning)."""
    p = path_in(state_dir)
    for tmp in clean_stale_temps(p):
        log.info("removed leftover temp file %s (an unfinished calibration)", tmp)
    try:   # a regular file of a sane size only (never a read that blocks or does not end), parsed depth-safe
        d = json.loads(read_regular_file(p, MAX_FILE_BYTES).decode("utf-8"))
    except FileNotFoundError:
        return None
    except RecursionError:
        log.warning("calibration %s cannot be read (nested too deep); ignored: run 'djsmile calibrate' again", p)
        return None
    except (OSError, ValueError) as e:    # ValueError: JSON, UTF-8, too big, not a regular file
        log.warning("calibration %s cannot be read (%s); ignored: run 'djsmile calibrate' again", p,
                    str(e)[:160])
        return None
    if not _valid(d):
        log.warning("calibration %s is not a valid calibration; ignored: run 'djsmile calibrate' again", p)
        return None
    if model_sha256 is not None and d["model_sha256"] != model_sha256:
        log.warning("calibration %s was made for another model (sha256 %s...); ignored: "
                    "run 'djsmile calibrate' again", p, str(d["model_sha256"])[:12])
        return None
    return d
