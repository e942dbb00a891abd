"""``djsmile bench``'s timed loop: the variants, each frame through :class:`djsmile.pipeline.Pipeline`'s timing hook.

Variants (model x threads x detector mode x ``--compare-set``) run in one
process, interleaved in round-robin chunks of ``--chunk`` frames so that noise
from other programs hits all of them alike; actions are mocked
(:class:`BenchActions`: no GPIO, photo or speech; shots counted). What each
stage and figure means: README (``djsmile bench``) and docs/BENCHMARKS.md
("What is measured").
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import cv2

from .. import __version__
from ..faces import FaceFinder
from ..fsutil import atomic_write
from ..pipeline import Pipeline
from ..signals import check_ctrl_c, ctrl_c_kept
from ..sources import Frame, ThreadedSource
from .feeds import PacedFeed, open_feed
from .machine import machine_info, peak_rss_mb, rss_mb_now
from .report import STAGES, format_table, ratios, variant_result, write_plot
from .study import detector_study

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 10.0   # a progress line at most this often while the variants are timed
MODES = ("full", "track", "async")
DEFAULT_MODES = ("full", "track")
PACED_MODES = ("track", "async")   # default with --pace: today's loop and the async one


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
        n = len(result.faces)
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
        self.peak_rss_mb = peak_rss_mb()
        worker = getattr(self.finder, "worker", None)
        if worker is not None:  # let a detection under way finish before the next variant's turn
            end = time.perf_counter() + 1.0
            while not worker.idle and time.perf_counter() < end:
                time.sleep(0.001)


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
    from .. import config as C
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
    from ..model import SmileModel
    from ..trigger import Trigger

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
        rss0 = rss_mb_now()
        t0 = time.perf_counter()
        v.model = SmileModel(path, num_threads=t, mirror=vcfg.model.mirror)
        v.model_load_ms = (time.perf_counter() - t0) * 1e3
        rss1 = rss_mb_now()
        v.model_rss_mb = (rss1 - rss0) if rss0 is not None and rss1 is not None else None
        v.trigger = Trigger(vcfg.trigger, v.model.threshold)
        v.actions = BenchActions()
        v.pipeline = Pipeline(v.finder, v.model, v.trigger, timing=v.mark)
        v.frames = feed.iterator()
        variants.append(v)
    return variants


def run_variants(variants: list[Variant], frames: int, warmup: int, chunk: int,
                 ctrl_c: threading.Event | None = None) -> None:
    """Warm every variant up, then time them in round-robin chunks (rotating who goes first).

    One line per variant as it warms up, then a progress line at most every ``PROGRESS_EVERY_S``.
    ``ctrl_c`` (from :func:`djsmile.signals.ctrl_c_kept`) is checked every warm-up frame and every chunk."""
    for i, v in enumerate(variants, 1):
        log.info("bench: variant %d/%d %s: warming up (%d frame%s)", i, len(variants), v.name, max(1, warmup),
                 "" if max(1, warmup) == 1 else "s")
        cv2.setNumThreads(v.threads)
        t0 = time.perf_counter()
        v.step(False)  # the cold first frame (start-up cost)
        v.first_frame_ms = (time.perf_counter() - t0) * 1e3
        for _ in range(max(0, warmup - 1)):
            check_ctrl_c(ctrl_c)
            v.step(False)
    done = 0
    rnd = 0
    log.info("bench: timing %d frames per variant, %d variant%s interleaved in chunks of %d", frames,
             len(variants), "" if len(variants) == 1 else "s", chunk)
    t_start = time.monotonic()
    next_line = t_start + PROGRESS_EVERY_S
    while done < frames:
        n = min(chunk, frames - done)
        k = rnd % len(variants)
        for v in variants[k:] + variants[:k]:
            check_ctrl_c(ctrl_c)
            v.run_chunk(n)
        done += n
        rnd += 1
        now = time.monotonic()
        if now >= next_line and done < frames:
            next_line = now + PROGRESS_EVERY_S
            left = (now - t_start) * (frames - done) / done
            log.info("bench: %d/%d frames per variant timed (%.0f%%), about %.0f s left",
                     done, frames, 100.0 * done / frames, left)
        else:
            log.debug("timed %d/%d frames per variant", done, frames)


# --------------------------------------------------------------------------- run
@dataclass
class Options:
    """What ``djsmile bench`` times: its flags, resolved by :mod:`djsmile.commands.bench` (defaults live there)."""
    source: str | None
    models: list
    threads: list
    modes: list
    frames: int
    warmup: int
    pace: float | None
    compare_sets: list
    chunk: int
    hold: int
    one_face: bool
    detector_study: bool
    study_frames: int
    json_out: str | None
    plot_out: str | None
    command: str


def run(cfg, opts: Options) -> int:
    """Time every variant, print the table, write ``--json`` / ``--plot``; returns the exit code."""
    started = datetime.now(timezone.utc)
    t_started = time.perf_counter()
    from ..runtime import find_interpreter

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
        with ctrl_c_kept() as ctrl_c:
            run_variants(variants, frames, warmup, chunk, ctrl_c)
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
