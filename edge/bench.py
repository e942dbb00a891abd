"""``djsmile bench``: time the detector's loop, stage by stage, on this machine.

The bench runs the classes ``djsmile run`` uses — :mod:`djsmile.sources`
(``FolderSource``, ``OpenCVSource``, ``PiCamera2Source``),
:class:`djsmile.faces.FaceFinder` / :class:`~djsmile.faces.HaarDetector`,
:class:`djsmile.model.SmileModel` and :class:`djsmile.trigger.Trigger` — over
``--frames`` frames after ``--warmup`` frames. Actions are mocked (no GPIO,
no photo, no speech) but the trigger runs and its shots are counted.

Each frame is timed per stage:

* ``capture``  — getting the next frame from the source;
* ``detect``   — ``FaceFinder.find`` (a full Haar detection, or a search near
  the last faces when tracking);
* ``classify`` — ``SmileModel.predict`` (crop + preprocess + interpreter),
  reported **per face** (frames without a face add no sample);
* ``trigger``  — ``Trigger.update`` plus the mocked actions;
* ``frame``    — the whole iteration, capture included.

Variants (every ``--model`` x every ``--threads`` value x every detector mode
``full`` = a full detection every frame, ``track`` = ``detector.full_every``
from the config, ``async`` = as ``track`` with the full detections on a worker
thread, ``detector.async_full = "on"``) run in **one** process, interleaved in round-robin chunks of
``--chunk`` frames so that noise from other programs hits all of them alike.
``--threads T`` sets both the TFLite interpreter's threads and OpenCV's
thread pool (``cv2.setNumThreads``), so ``--threads 1`` is the whole loop on
one core.

Sources:

* an image folder (its images, or the images of its sub-folders, e.g.
  ``smile/`` and ``no_smile/`` interleaved) is played as a camera stream:
  each image is fitted into a ``camera.width`` x ``camera.height`` canvas
  (640x480 by default) and held for ``--hold`` frames while it drifts a few
  pixels per frame, so tracking between full detections is exercised;
* a video file is played as it is (reopened if it ends before the bench);
* ``camera`` is the Pi camera (``PiCamera2Source``; its capture time includes
  waiting for the sensor, so the frame rate is capped by ``camera.fps``);
  a number is a webcam.

Without ``--source`` the bench times the Pi camera if there is one, else it
stops with a one-line error asking for ``--source``.

``--pace FPS`` plays a folder or video feed like a camera running at FPS: a
feeder thread makes frame ``i`` ready at ``start + i / FPS`` (stamped with that
time), the loop takes the newest ready frame (:class:`~djsmile.sources.ThreadedSource`,
as ``djsmile run`` reads a camera) and frames it had no time for are dropped.
Per variant: ``decision_ms_p50/p95/p99`` (a frame's capture time to its
trigger decision), ``late_frames_pct`` (frames whose decision came after the
next frame was due, dropped frames included), ``frames_due`` and
``dropped_frames``. With a pace, ``capture`` is the wait for the next frame,
``frame`` is the loop's work on it (capture excluded) and ``fps`` is at most
the pace; the default modes are ``track,async`` (today's loop and the one
with full detection on a worker). Without a pace, ``async`` outruns its
worker (a frame with no face known yet costs next to nothing), so its fps is
not comparable with the other modes': compare the loops with ``--pace``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import platform
import re
import resource
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from . import __version__
from .errors import DataError, SourceError
from .fsutil import atomic_write
from .pipeline import Pipeline
from .faces import FaceFinder, HaarDetector, iou
from .sources import (PI_SPECS, FolderSource, Frame, OpenCVSource, Source, ThreadedSource, image_folders,
                      open_source, pi_camera_present)

log = logging.getLogger(__name__)

STAGES = ("capture", "detect", "classify", "trigger", "frame")
MODES = ("full", "track", "async")
DEFAULT_MODES = ("full", "track")
PACED_MODES = ("track", "async")   # default with --pace: today's loop and the async one

#: folder stream: the largest drift (pixels) of an image around its place, and the step per frame
SHIFT_MAX = 16
SHIFT_STEP = (3, 2)
BACKGROUND = 110
#: most distinct images held in memory for a folder stream (more frames repeat them)
MAX_IMAGES = 60


# --------------------------------------------------------------------------- machine
_ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
              "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76", "0xb76": "ARM1176", "0xc07": "Cortex-A7"}


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return None


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's name from /proc/cpuinfo (``model name``; on ARM the core type from ``CPU part``)."""
    text = _read("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    if text:
        keys: dict[str, str] = {}
        for line in text.splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                keys.setdefault(k.strip().lower(), v.strip())
        if keys.get("model name"):
            return keys["model name"]
        part = _ARM_PARTS.get(keys.get("cpu part", "").lower())
        hw = keys.get("hardware")
        if part or hw:
            return " ".join(x for x in (part, f"({hw})" if hw else None) if x)
    return platform.processor() or platform.machine() or "unknown"


def os_name() -> str:
    text = _read("/etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return f"{platform.system()} {platform.release()}"


def machine_info() -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "board": _read("/proc/device-tree/model"),
        "arch": platform.machine(),
        "os": os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "loadavg_start": load,
    }


def _rss_mb_now() -> float | None:
    text = _read("/proc/self/statm")
    if not text:
        return None
    try:
        return int(text.split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (ValueError, IndexError, OSError):
        return None


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 1024.0 / 1024.0  # macOS: bytes


# --------------------------------------------------------------------------- frame feeds
def _tri(v: int, amp: int) -> int:
    """A triangle wave in [-amp, amp] (v = 0 -> 0)."""
    if amp <= 0:
        return 0
    period = 4 * amp
    v = (v + amp) % period
    return (v if v < 2 * amp else period - v) - amp


def fit_image(gray: np.ndarray, width: int, height: int, margin: int = SHIFT_MAX) -> np.ndarray:
    """``gray`` scaled (aspect kept) to fit ``width`` x ``height`` less ``margin`` on each side."""
    h, w = gray.shape[:2]
    s = min((width - 2 * margin) / w, (height - 2 * margin) / h)
    size = (max(1, int(round(w * s))), max(1, int(round(h * s))))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.resize(gray, size, interpolation=interp)


class PhotoStream:
    """Still images played as a camera stream of ``width`` x ``height`` frames.

    Image ``k`` is shown for ``hold`` frames, placed on a plain canvas and
    moved by a few pixels every frame (a triangle wave of ``SHIFT_MAX`` px), so
    a face moves between frames like a person in front of a camera, and the
    next image is a scene cut (a new face for the tracker to find).
    """

    live = False

    def __init__(self, images: list[np.ndarray], width: int, height: int, hold: int, fps: float,
                 name: str = "images"):
        if not images:
            raise SourceError("no images to play")
        self.images = [fit_image(g, width, height) for g in images]
        self.width, self.height, self.hold, self.fps = int(width), int(height), int(hold), float(fps)
        self.name = name
        self.nbytes = sum(int(g.nbytes) for g in self.images)

    def frame_at(self, i: int) -> Frame:
        img = self.images[(i // self.hold) % len(self.images)]
        h, w = img.shape
        x0 = (self.width - w) // 2 + _tri(i * SHIFT_STEP[0], SHIFT_MAX)
        y0 = (self.height - h) // 2 + _tri(i * SHIFT_STEP[1], SHIFT_MAX)
        canvas = np.full((self.height, self.width), BACKGROUND, np.uint8)
        canvas[y0:y0 + h, x0:x0 + w] = img
        return Frame(canvas, i, i / self.fps, None)

    def iterator(self) -> Iterator[Frame]:
        i = 0
        while True:
            yield self.frame_at(i)
            i += 1

    def close(self) -> None:
        pass


class VideoStream:
    """A video file; each variant reads its own copy; restarts (stream time going on) at the end."""

    live = False

    def __init__(self, path: str, cfg):
        self.path, self.cfg = path, cfg
        probe = OpenCVSource(path, cfg)  # raises SourceError with a clear line
        self.name = f"video {path}"
        self._open: list = []
        try:
            first = next(iter(probe), None)
        finally:
            probe.close()
        if first is None:
            raise SourceError(f"source {path!r}: the video has no frames OpenCV can read")
        self.height, self.width = first.gray.shape[:2]

    def iterator(self) -> Iterator[Frame]:
        index, t_base, last_t = 0, 0.0, 0.0
        while True:
            src = OpenCVSource(self.path, self.cfg)
            self._open.append(src)
            got = 0
            try:
                for fr in src:
                    last_t = t_base + fr.t
                    yield Frame(fr.gray, index, last_t, fr.still_fn)
                    index += 1
                    got += 1
            finally:
                src.close()
            if not got:
                return
            t_base = last_t + 1.0 / max(1e-3, src.fps)

    def close(self) -> None:
        for s in self._open:
            s.close()


class LiveStream:
    """A camera: one device shared by all variants (each turn takes the next frames)."""

    live = True

    def __init__(self, source):
        self.source = source
        self.name = source.name
        self._it = iter(source)
        self.width = self.height = None

    def iterator(self) -> Iterator[Frame]:
        return self._it

    def close(self) -> None:
        self.source.close()


def load_folder_images(path: Path, cfg, count: int, one_face: bool = False) -> tuple[list, str]:
    """Up to ``count`` gray images from ``path`` (sub-folders interleaved) through ``FolderSource``."""
    folders = image_folders(path)  # the same rule as djsmile run
    if not folders:
        FolderSource(path, cfg)  # raises its own "has no images" SourceError
        raise SourceError(f"source folder {str(path)!r} has no images")
    sources = [FolderSource(d, cfg) for d in folders]
    iters = [iter(s) for s in sources]
    detector = HaarDetector.from_config(cfg.detector) if one_face else None
    W, H = int(cfg.camera.width), int(cfg.camera.height)
    images, scanned = [], 0
    limit = max(count * 40, 200)
    try:
        while len(images) < count and iters and scanned < limit:
            for it in list(iters):
                try:
                    fr = next(it, None)
                except DataError:  # a sub-folder none of whose images reads: the others may
                    fr = None
                if fr is None:
                    iters.remove(it)
                    continue
                scanned += 1
                if detector is not None:
                    canvas = PhotoStream([fr.gray], W, H, 1, 1.0).frame_at(0).gray
                    if len(detector.detect(canvas)) != 1:
                        continue
                images.append(fr.gray)
                if len(images) >= count:
                    break
    finally:
        for s in sources:
            s.close()
    if not images:
        raise SourceError(f"source folder {str(path)!r}: no image with exactly one face among the "
                          f"{scanned} tried" if one_face else f"source folder {str(path)!r} has no readable images")
    names = ", ".join(d.name for d in folders) if len(folders) > 1 else str(path)
    desc = (f"{len(images)} images from {path}" + (f" ({names} interleaved)" if len(folders) > 1 else "")
            + (f", exactly one face each ({scanned} scanned)" if one_face else ""))
    if len(images) < count:
        log.info("only %d usable images for %d needed: the stream repeats them", len(images), count)
    return images, desc


def open_feed(spec, cfg, *, frames_needed: int, hold: int, one_face: bool = False):
    """The frames to time, from a ``--source`` value."""
    if spec is None or str(spec).strip() == "":
        if pi_camera_present():
            spec = "camera"
        else:
            raise SourceError("no --source given and no Pi camera here: pass --source DIR (an image folder, "
                              "e.g. ../shared/datasets/djsmile/photos), --source VIDEO or --source camera")
    spec = str(spec).strip()
    if spec.lower() in PI_SPECS or spec.isdigit() or "://" in spec:  # a camera: opened as 'djsmile run' opens it
        try:
            return LiveStream(open_source(spec, cfg))
        except SourceError as e:
            if spec.lower() in PI_SPECS:
                raise type(e)(f"--source {spec}: {e}") from None
            raise
    p = Path(spec).expanduser()
    if p.is_dir():
        n = max(1, math.ceil(frames_needed / hold))
        images, desc = load_folder_images(p, cfg, min(n, MAX_IMAGES), one_face=one_face)
        return PhotoStream(images, cfg.camera.width, cfg.camera.height, hold, cfg.camera.fps,
                           name=f"{desc}, each held {hold} frames, {cfg.camera.width}x{cfg.camera.height}")
    if p.is_file():
        return VideoStream(str(p), cfg)
    raise SourceError(f"source {spec!r} not found: no such file or folder (use camera, an image folder or a video)")


# --------------------------------------------------------------------------- paced feed
class PacedFeed(Source):
    """``n`` frames from a feed iterator, frame ``i`` ready at ``start + i / fps``, like a camera.

    Each frame is stamped ``captured`` = the time it was due, so a feeder
    thread running late counts against the loop, as a camera's timestamp would.
    """

    finite = False
    name = "paced feed"

    def __init__(self, frames: Iterator[Frame], fps: float, n: int):
        self.frames, self.fps, self.n = frames, float(fps), int(n)
        self._stop = threading.Event()

    def __iter__(self) -> Iterator[Frame]:
        start = time.perf_counter()
        for i in range(self.n):
            fr = next(self.frames)
            due = start + i / self.fps
            delay = due - time.perf_counter()
            if delay > 0 and self._stop.wait(delay):
                return
            yield dataclasses.replace(fr, captured=due)

    def close(self) -> None:
        self._stop.set()


# --------------------------------------------------------------------------- variants
class BenchActions:
    """Stands in for :class:`djsmile.actions.Actions`: no GPIO, no photo, no speech; counts shots."""

    def __init__(self):
        self.shots = 0

    def update(self, result, frame) -> None:
        if result.fired:
            self.shots += 1

    def close(self, timeout: float = 2.0) -> None:
        pass


@dataclass
class Variant:
    name: str
    model_path: Path
    threads: int
    mode: str
    full_every: int
    model: object = None
    finder: FaceFinder = None
    trigger: object = None
    actions: BenchActions = None
    frames: Iterator[Frame] = None
    times: dict = field(default_factory=lambda: {s: [] for s in STAGES + ("decision",)})
    faces: int = 0
    frames_with_face: int = 0
    full_detections: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    measured: int = 0
    peak_rss_mb: float = 0.0
    cascade_load_ms: float = 0.0
    model_load_ms: float = 0.0
    model_rss_mb: float | None = None
    first_frame_ms: float = 0.0
    frame_size: list | None = None
    pace: float | None = None          # --pace FPS
    frames_due: int = 0                # paced: frames the feeder made ready
    dropped: int = 0                   # paced: of them, replaced before the loop took one
    late: int = 0                      # paced: decisions after the next frame was due
    setting: str = "config"            # "config" or the --compare-set override this variant runs with
    pipeline: Pipeline = None          # finder -> model -> trigger, as 'djsmile run' drives it
    marks: dict = field(default_factory=dict)   # the pipeline's timing hook: stage -> perf_counter

    def mark(self, stage: str, now: float, faces: int) -> None:
        self.marks[stage] = now

    def step(self, record: bool, frames: Iterator[Frame] | None = None) -> None:
        """One loop iteration: capture -> :meth:`Pipeline.process <djsmile.pipeline.Pipeline.process>`
        (detect -> classify -> trigger, timed through its hook) -> mocked actions."""
        pc = time.perf_counter
        t0 = pc()
        frame = next(self.frames if frames is None else frames)
        t1 = pc()
        result = self.pipeline.process(frame)
        self.actions.update(result, frame)
        t4 = pc()
        if not record:
            if self.frame_size is None:
                self.frame_size = [int(frame.gray.shape[1]), int(frame.gray.shape[0])]
            return
        t2, t3 = self.marks["detect"], self.marks["classify"]
        tm = self.times
        tm["capture"].append((t1 - t0) * 1e3)
        tm["detect"].append((t2 - t1) * 1e3)
        n = len(self.pipeline.boxes)
        if n:
            tm["classify"].append((t3 - t2) * 1e3 / n)
            self.faces += n
            self.frames_with_face += 1
        tm["trigger"].append((t4 - t3) * 1e3)   # Trigger.update plus the mocked actions
        if self.pace and frame.captured is not None:
            tm["frame"].append((t4 - t1) * 1e3)       # the work; capture was waiting for the frame
            decision = (t4 - frame.captured) * 1e3
            tm["decision"].append(decision)
            self.late += decision > 1e3 / self.pace
        else:
            tm["frame"].append((t4 - t0) * 1e3)
        self.full_detections += bool(self.finder.last_was_full)
        self.measured += 1

    def run_chunk(self, n: int) -> None:
        cv2.setNumThreads(self.threads)
        w0, c0 = time.perf_counter(), time.process_time()
        if self.pace:
            src = ThreadedSource(PacedFeed(self.frames, self.pace, n))
            it = iter(src)
            try:
                while True:
                    try:
                        self.step(True, it)
                    except StopIteration:
                        break
            finally:
                src.close()
            self.frames_due += src.captured
            self.dropped += src.dropped
        else:
            for _ in range(n):
                self.step(True)
        self.wall_s += time.perf_counter() - w0
        self.cpu_s += time.process_time() - c0
        self.peak_rss_mb = _peak_rss_mb()
        worker = getattr(self.finder, "worker", None)
        if worker is not None:  # let a detection under way finish before the next variant's turn
            end = time.perf_counter() + 1.0
            while not worker.idle and time.perf_counter() < end:
                time.sleep(0.001)


def _stats(values) -> dict:
    if not len(values):
        return {"p50": None, "p95": None, "p99": None, "mean": None}
    a = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"p50": round(float(p50), 4), "p95": round(float(p95), 4), "p99": round(float(p99), 4),
            "mean": round(float(a.mean()), 4)}


def variant_result(v: Variant, runtime_import_ms: float = 0.0) -> dict:
    d = {"name": v.name}
    d["fps"] = round(v.measured / v.wall_s, 2) if v.wall_s > 0 else 0.0
    st = {s: _stats(v.times[s]) for s in STAGES}
    d["frame_ms_p50"] = st["frame"]["p50"]
    d["frame_ms_p95"] = st["frame"]["p95"]
    d["detect_ms_p50"] = st["detect"]["p50"]
    d["classify_ms_p50"] = st["classify"]["p50"]
    d["cpu_percent"] = round(100.0 * v.cpu_s / v.wall_s, 1) if v.wall_s > 0 else 0.0
    d["peak_rss_mb"] = round(v.peak_rss_mb, 1)
    # more detail
    d.update({"model": str(v.model_path), "model_sha256": _sha256(v.model_path)[:16],
              "model_bytes": v.model_path.stat().st_size, "model_input": v.model.runtime.input_dtype.name,
              "threads": v.threads, "mode": v.mode, "setting": v.setting, "full_every": v.full_every,
              "tracker": v.finder.tracker if v.full_every > 1 else None, "frames": v.measured})
    for s in STAGES:
        for k, val in st[s].items():
            d.setdefault(f"{s}_ms_{k}", val)
    dec = _stats(v.times["decision"])
    d.update({  # --pace: None without one
        "pace_fps": v.pace,
        "frames_due": v.frames_due if v.pace else None,
        "dropped_frames": v.dropped if v.pace else None,
        "late_frames": v.late if v.pace else None,
        # late decisions and dropped frames (they never get one), over the frames the feeder made ready
        "late_frames_pct": (round(100.0 * (v.late + v.dropped) / v.frames_due, 2)
                            if v.pace and v.frames_due else None),
        "decision_ms_p50": dec["p50"] if v.pace else None,
        "decision_ms_p95": dec["p95"] if v.pace else None,
        "decision_ms_p99": dec["p99"] if v.pace else None,
        "async_full": getattr(v.finder, "async_full", None),
    })
    d.update({
        "faces_per_frame": round(v.faces / v.measured, 3) if v.measured else 0.0,
        "frames_with_face": v.frames_with_face,
        "full_detections": v.full_detections,
        "shots": v.actions.shots,
        # to the microsecond: frames / wall_s gives back fps even for a few fast frames
        "wall_s": round(v.wall_s, 6),
        "cpu_s": round(v.cpu_s, 6),
        # frames per second of process CPU time: what one free core would give a single-thread variant
        # (on a shared machine wall-clock fps falls with other programs' load; this much less)
        "fps_per_cpu": round(v.measured / v.cpu_s, 2) if v.cpu_s > 0 else None,
        "cascade_load_ms": round(v.cascade_load_ms, 2),
        "model_load_ms": round(v.model_load_ms, 2),
        "model_rss_mb": None if v.model_rss_mb is None else round(v.model_rss_mb, 2),
        "first_frame_ms": round(v.first_frame_ms, 2),
        # start-up as 'djsmile run' pays it once Python and OpenCV are imported (source opening apart)
        "startup_ms": round(runtime_import_ms + v.cascade_load_ms + v.model_load_ms + v.first_frame_ms, 1),
    })
    return d


def _sha256(path: Path) -> str:
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _label(paths: list[Path]) -> list[str]:
    labels = [p.stem for p in paths]
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        if labels.count(lab) > 1:
            seen[lab] = seen.get(lab, 0) + 1
            lab = f"{lab}#{seen[lab]}"
        out.append(lab)
    return out


def setting_configs(cfg, compare_sets) -> list[tuple[str, object]]:
    """``[("config", cfg), ("KEY=VALUE", cfg with that override), ...]`` (each checked like a file)."""
    from . import config as C
    out = [("config", cfg)]
    for item in compare_sets or []:
        c = copy.deepcopy(cfg)
        # several overrides in one setting: "detector.equalize=auto,detector.min_face_fraction=0.1"
        C.apply_sets(c, re.split(r",(?=\s*[A-Za-z_]+\.[A-Za-z_]+=)", item))
        C.validate(c)
        out.append((item.strip(), c))
    return out


def build_variants(cfg, model_paths: list[Path], threads: list[int], modes: list[str], feed,
                   pace: float | None = None, settings=None) -> list[Variant]:
    from .model import SmileModel
    from .trigger import Trigger

    variants = []
    labels = _label(model_paths)
    settings = settings or [("config", cfg)]
    for (path, label), t, mode, (setting, vcfg) in (
            (pl, t, m, s) for pl in zip(model_paths, labels) for t in threads for m in modes for s in settings):
        full_every = 1 if mode == "full" else int(vcfg.detector.full_every)
        name = f"{label}/t{t}/{mode}" + (f"/{setting}" if len(settings) > 1 else "")
        v = Variant(name, path, t, mode, full_every, pace=pace, setting=setting)
        t0 = time.perf_counter()
        # built as 'djsmile run' builds it, only full_every and async_full differ between the modes
        v.finder = FaceFinder.from_config(dataclasses.replace(
            vcfg.detector, full_every=full_every, async_full="on" if mode == "async" else "off"))
        v.cascade_load_ms = (time.perf_counter() - t0) * 1e3
        rss0 = _rss_mb_now()
        t0 = time.perf_counter()
        v.model = SmileModel(path, num_threads=t)
        v.model_load_ms = (time.perf_counter() - t0) * 1e3
        rss1 = _rss_mb_now()
        v.model_rss_mb = (rss1 - rss0) if rss0 is not None and rss1 is not None else None
        v.trigger = Trigger(vcfg.trigger, v.model.threshold)
        v.actions = BenchActions()
        v.pipeline = Pipeline(v.finder, v.model, v.trigger, timing=v.mark)
        v.frames = feed.iterator()
        variants.append(v)
    return variants


def run_variants(variants: list[Variant], frames: int, warmup: int, chunk: int) -> None:
    """Warm every variant up, then time them in round-robin chunks (rotating who goes first)."""
    for v in variants:
        cv2.setNumThreads(v.threads)
        t0 = time.perf_counter()
        v.step(False)  # the cold first frame (start-up cost)
        v.first_frame_ms = (time.perf_counter() - t0) * 1e3
        for _ in range(max(0, warmup - 1)):
            v.step(False)
    done = 0
    rnd = 0
    while done < frames:
        n = min(chunk, frames - done)
        k = rnd % len(variants)
        for v in variants[k:] + variants[:k]:
            v.run_chunk(n)
        done += n
        rnd += 1
        log.debug("timed %d/%d frames per variant", done, frames)


# --------------------------------------------------------------------------- ratios
def ratios(results: list[dict]) -> list[dict]:
    """For each factor (model, threads, mode): FPS of each level over the first level, other factors equal."""
    out = []
    keyf = {"model": lambda r: r["name"].split("/")[0], "threads": lambda r: r["threads"], "mode": lambda r: r["mode"],
            "setting": lambda r: r.get("setting", "config")}
    for factor, f in keyf.items():
        levels = list(dict.fromkeys(f(r) for r in results))
        if len(levels) < 2:
            continue
        base = levels[0]
        others = [g for g in keyf if g != factor]

        def rest(r):
            return tuple(keyf[g](r) for g in others)
        by_rest = {}
        for r in results:
            by_rest.setdefault(rest(r), {})[f(r)] = r
        for lev in levels[1:]:
            fps_r, p50_r = [], []
            for group in by_rest.values():
                a, b = group.get(lev), group.get(base)
                if a and b and b["fps"] and a["frame_ms_p50"] and b["frame_ms_p50"]:
                    fps_r.append(a["fps"] / b["fps"])
                    p50_r.append(a["frame_ms_p50"] / b["frame_ms_p50"])
            if fps_r:
                fmt = (lambda x: f"t{x}") if factor == "threads" else str
                out.append({"factor": factor, "a": fmt(lev), "b": fmt(base), "pairs": len(fps_r),
                            "fps_ratio": round(float(np.median(fps_r)), 3),
                            "fps_ratio_min": round(min(fps_r), 3), "fps_ratio_max": round(max(fps_r), 3),
                            "frame_ms_p50_ratio": round(float(np.median(p50_r)), 3)})
    return out


# --------------------------------------------------------------------------- detector study
def detector_study(cfg, feed, frames: int, chunk: int, threads: int) -> list[dict]:
    """Time Haar settings against each other on the same frames, interleaved."""
    det = cfg.detector
    W = feed.width or cfg.camera.width
    settings = [
        (f"{W} px wide, scale 1.1, no min size", dict(scale_factor=1.1, min_face_fraction=0.0, detect_width=0), {}),
        (f"{W} px wide, no min size", dict(min_face_fraction=0.0, detect_width=0), {}),
        (f"{W} px wide, min face {det.min_face_fraction:g}", dict(detect_width=0), {}),
        (f"{det.detect_width} px wide, no min size", dict(min_face_fraction=0.0), {}),
        (f"{det.detect_width} px wide, min face {det.min_face_fraction:g}", {}, {}),
    ]
    every = max(2, int(det.full_every))
    for tracker in ("template", "haar"):
        settings.append((f"{det.detect_width} px wide, min face {det.min_face_fraction:g}, {tracker} tracking "
                         f"(full every {every})", {}, {"full_every": every, "tracker": tracker}))
    base = dict(scale_factor=det.scale_factor, min_neighbors=det.min_neighbors,
                min_face_fraction=det.min_face_fraction, detect_width=det.detect_width, cascade=det.cascade)
    rows = []
    for name, over, track in settings:
        kw = dict(base, **over)
        fkw = dict(full_every=1, track_margin=det.track_margin, tracker=det.tracker,
                   min_score=det.track_min_score)
        fkw.update(track)
        finder = FaceFinder(HaarDetector(**kw), **fkw)
        rows.append({"name": name, "finder": finder, "it": feed.iterator(), "ms": [], "boxes": [],
                     "settings": {**{k: v for k, v in kw.items() if k != "cascade"},
                                  "full_every": fkw["full_every"],
                                  "tracker": fkw["tracker"] if fkw["full_every"] > 1 else None}})
    cv2.setNumThreads(threads)
    for r in rows:  # warm-up: 2 frames
        for _ in range(2):
            r["finder"].find(next(r["it"]).gray)
    done = 0
    while done < frames:
        n = min(chunk, frames - done)
        for r in rows:
            for _ in range(n):
                g = next(r["it"]).gray
                t0 = time.perf_counter()
                boxes = r["finder"].find(g)
                r["ms"].append((time.perf_counter() - t0) * 1e3)
                r["boxes"].append(boxes[0] if boxes else None)
        done += n
    ref = rows[0]
    ref_mean = float(np.mean(ref["ms"]))
    out = []
    for r in rows:
        st = _stats(r["ms"])
        found = sum(b is not None for b in r["boxes"])
        agree_n = [(a, b) for a, b in zip(ref["boxes"], r["boxes"]) if a is not None]
        agree = sum(b is not None and iou(a, b) >= 0.5 for a, b in agree_n)
        out.append({"name": r["name"], "settings": r["settings"], "frames": len(r["ms"]),
                    "detect_ms_p50": st["p50"], "detect_ms_p95": st["p95"], "detect_ms_mean": st["mean"],
                    # throughput: mean time (a tracking finder's median is a cheap tracked frame)
                    "speedup_vs_first": round(ref_mean / st["mean"], 2) if st["mean"] else None,
                    "frames_with_face": found,
                    "agrees_with_first": round(agree / len(agree_n), 3) if agree_n else None})
    return out


# --------------------------------------------------------------------------- output
def _f(v, nd=2, width=7) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:>{width}.{nd}f}"


def _first_per_model(results: list[dict]) -> list[dict]:
    seen: dict = {}
    for r in results:
        seen.setdefault(r["model"], r)
    return list(seen.values())


def format_table(report: dict) -> str:
    lines = []
    m, rt = report["machine"], report["runtime"]
    lines.append(f"djsmile bench {report['date']}: {report['source']}")
    lines.append(f"machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable)"
                 + (f", {m['board']}" if m.get("board") else "") + f"; {m['os']}; Python {m['python']}; "
                 f"OpenCV {m['opencv']}; runtime {rt['name']} {rt['version']}")
    lines.append(f"{report['frames']} timed frames per variant after {report['warmup']} warm-up, "
                 f"interleaved in chunks of {report['chunk']}; load average {m.get('loadavg_start')} -> "
                 f"{m.get('loadavg_end')}")
    lines.append("fps = timed frames / their wall time; fps/cpu = frames per second of process CPU time "
                 "(one free core); times in ms (median / p95 / p99); classify is per face; faces = faces per "
                 "frame; full% = frames with a full-frame detection; shots = trigger firings")
    if report.get("pace"):
        lines.append(f"paced at {report['pace']:g} fps like a camera: late% = frames decided after the next "
                     f"frame was due ({1e3 / report['pace']:.1f} ms), dropped ones included; drop = frames "
                     "dropped; decision = capture to trigger decision, ms; frame = the loop's work, capture "
                     "(waiting for the frame) excluded")
    w = max(len("variant"), *(len(v["name"]) for v in report["variants"]))
    head = (f"{'variant':<{w}} {'fps':>7} {'fps/cpu':>7} | {'frame p50':>9} {'p95':>6} {'p99':>6} | {'capture':>7} | "
            f"{'detect p50':>10} {'p95':>6} | {'classify':>8} {'p95':>6} | {'trigger':>7} | {'cpu%':>5} "
            f"{'rss MB':>6} | {'faces':>5} {'full%':>5} {'shots':>5}"
            + (f" | {'late%':>5} {'drop':>4} {'decision':>7} {'p95':>6} {'p99':>6}" if report.get("pace") else ""))
    lines.append(head)
    lines.append("-" * len(head))
    for v in report["variants"]:
        lines.append(
            f"{v['name']:<{w}} {v['fps']:>7.1f} {_f(v['fps_per_cpu'], 1, 7)} | {_f(v['frame_ms_p50'], 2, 9)} {_f(v['frame_ms_p95'], 2, 6)} "
            f"{_f(v['frame_ms_p99'], 2, 6)} | {_f(v['capture_ms_p50'], 3, 7)} | {_f(v['detect_ms_p50'], 2, 10)} "
            f"{_f(v['detect_ms_p95'], 2, 6)} | {_f(v['classify_ms_p50'], 3, 8)} {_f(v['classify_ms_p95'], 3, 6)} | "
            f"{_f(v['trigger_ms_p50'], 3, 7)} | {v['cpu_percent']:>5.0f} {v['peak_rss_mb']:>6.0f} | "
            f"{v['faces_per_frame']:>5.2f} {100.0 * v['full_detections'] / max(1, v['frames']):>5.0f} "
            f"{v['shots']:>5d}"
            + (f" | {v['late_frames_pct']:>5.1f} {v['dropped_frames']:>4d} {_f(v['decision_ms_p50'], 2, 7)} "
               f"{_f(v['decision_ms_p95'], 2, 6)} {_f(v['decision_ms_p99'], 2, 6)}" if v.get("pace_fps") else ""))
    lines.append(f"start-up: runtime import {report['runtime_import_ms']:.0f} ms, source open "
                 f"{report['source_open_ms']:.0f} ms; " + "; ".join(
                     f"{v['model']}: load {v['model_load_ms']:.1f} ms, +{v['model_rss_mb'] or 0:.1f} MB, "
                     f"first frame {v['first_frame_ms']:.1f} ms"
                     for v in _first_per_model(report["variants"])))
    if report.get("ratios"):
        lines.append("ratios (median over variant pairs that differ only in that factor):")
        for r in report["ratios"]:
            lines.append(f"  {r['a']} vs {r['b']}: {r['fps_ratio']:.2f}x fps "
                         f"(range {r['fps_ratio_min']:.2f}-{r['fps_ratio_max']:.2f}, {r['pairs']} pair{'s' if r['pairs'] > 1 else ''}), "
                         f"median frame time {r['frame_ms_p50_ratio']:.2f}x")
    if report.get("detector_study"):
        lines.append("")
        lines.append(f"detector study ({report['detector_study'][0]['frames']} frames each, "
                     f"{report['study_threads']} OpenCV thread(s)); faces = frames with a face; "
                     "agree = largest box matches the first row's (IoU >= 0.5); speed-up = first row's "
                     "mean time / this row's")
        w2 = max(len(r["name"]) for r in report["detector_study"])
        lines.append(f"{'setting':<{w2}} {'mean ms':>8} {'p50 ms':>8} {'p95 ms':>8} {'speed-up':>8} "
                     f"{'faces':>6} {'agree':>6}")
        for r in report["detector_study"]:
            lines.append(f"{r['name']:<{w2}} {_f(r['detect_ms_mean'], 2, 8)} {_f(r['detect_ms_p50'], 2, 8)} "
                         f"{_f(r['detect_ms_p95'], 2, 8)} "
                         f"{_f(r['speedup_vs_first'], 2, 7)}x {r['frames_with_face']:>6d} "
                         f"{_f(r['agrees_with_first'], 2, 6)}")
    return "\n".join(lines)


def write_plot(path, variants: list[Variant], title: str) -> bool:
    """Per-stage latency histograms, one panel per stage; False (and a log line) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plot written (pip install matplotlib)")
        return False
    path = Path(path)
    fig, axes = plt.subplots(len(STAGES), 1, figsize=(9, 2.3 * len(STAGES)))
    for ax, stage in zip(axes, STAGES):
        allv = np.concatenate([np.asarray(v.times[stage], float) for v in variants] or [np.zeros(0)])
        if allv.size == 0:
            ax.set_title(f"{stage}: no samples")
            continue
        lo = max(float(allv.min()), 1e-3)
        hi = max(float(allv.max()), lo * 1.01)
        bins = np.geomspace(lo, hi, 60)  # log bins: tracked frames and full detections differ 10-50x
        for v in variants:
            vals = np.clip(np.asarray(v.times[stage], float), lo, hi)
            if vals.size:
                ax.hist(vals, bins=bins, histtype="step", label=v.name)
        ax.set_xscale("log")
        ax.set_title(f"{stage}" + (" (per face)" if stage == "classify" else ""), fontsize=10)
        ax.set_xlabel("ms (log scale)")
        ax.set_ylabel("frames")
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=90)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    log.info("latency histograms written to %s", path)
    return True


# --------------------------------------------------------------------------- run
@dataclass
class Options:
    """What ``djsmile bench`` times (its flags, resolved by :mod:`djsmile.commands.bench`)."""
    source: str | None
    models: list
    threads: list
    modes: list
    frames: int = 300
    warmup: int = 30
    pace: float | None = None
    compare_sets: list = field(default_factory=list)
    chunk: int = 25
    hold: int = 10
    one_face: bool = False
    detector_study: bool = False
    study_frames: int = 60
    json_out: str | None = None
    plot_out: str | None = None
    command: str = "djsmile bench"


def run(cfg, opts: Options) -> int:
    """Time every variant, print the table, write ``--json`` / ``--plot``; returns the exit code."""
    started = datetime.now(timezone.utc)
    t_started = time.perf_counter()
    from .runtime import find_interpreter

    frames, warmup = int(opts.frames), int(opts.warmup)
    threads, modes, pace, model_paths = opts.threads, opts.modes, opts.pace, opts.models
    chunk, hold = int(opts.chunk), int(opts.hold)
    if "track" in modes and int(cfg.detector.full_every) == 1:
        log.warning("detector.full_every = 1: the 'track' mode is the same as 'full'")
    machine = machine_info()

    t0 = time.perf_counter()
    find_interpreter()  # the runtime's import, timed apart from model loading
    runtime_import_ms = (time.perf_counter() - t0) * 1e3

    t0 = time.perf_counter()
    feed = open_feed(opts.source, cfg, frames_needed=warmup + frames, hold=hold, one_face=opts.one_face)
    source_open_ms = (time.perf_counter() - t0) * 1e3
    variants: list[Variant] = []
    try:
        variants = build_variants(cfg, model_paths, threads, modes, feed, pace=pace,
                                  settings=setting_configs(cfg, opts.compare_sets))
        log.info("bench: %d variant(s) x %d frames (+%d warm-up) from %s",
                 len(variants), frames, warmup, feed.name)
        run_variants(variants, frames, warmup, chunk)
        study = None
        if opts.detector_study:
            log.info("detector study: %d frames per setting", opts.study_frames)
            study = detector_study(cfg, feed, int(opts.study_frames), chunk, threads[0])
    finally:
        feed.close()
        for v in variants:
            v.finder.close()

    rt = variants[0].model.runtime
    try:
        machine["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        machine["loadavg_end"] = None
    results = [variant_result(v, runtime_import_ms) for v in variants]
    sample = variants[0]
    report = {
        "djsmile": __version__,
        "date": started.isoformat(timespec="seconds"),   # when the bench started
        "duration_s": round(time.perf_counter() - t_started, 1),
        "command": opts.command,
        "source": feed.name,
        "frame_size": sample.frame_size,
        "frames": frames,
        "warmup": warmup,
        "chunk": chunk,
        "pace": pace,
        "runtime": {"name": rt.name, "version": rt.version},
        "machine": machine,
        "runtime_import_ms": round(runtime_import_ms, 1),
        "source_open_ms": round(source_open_ms, 1),
        # a folder stream's images are held in memory: part of every peak_rss_mb, not of the loop
        "stream_images_mb": round(getattr(feed, "nbytes", 0) / 1e6, 1),
        "config": {"detector": dict(vars(cfg.detector)), "trigger": dict(vars(cfg.trigger)),
                   "camera_fps": cfg.camera.fps},
        "variants": results,
        "ratios": ratios(results),
    }
    if study is not None:
        report["detector_study"] = study
        report["study_threads"] = threads[0]
    print(format_table(report))
    sys.stdout.flush()
    if opts.json_out:
        atomic_write(Path(opts.json_out), (json.dumps(report, indent=2) + "\n").encode())
        log.info("results written to %s", opts.json_out)
    if opts.plot_out:
        write_plot(opts.plot_out, variants, f"djsmile bench {report['date']} - {machine['cpu']}")
    return 0
