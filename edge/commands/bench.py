"""``djsmile bench``: the command line of :mod:`djsmile.bench` (flags -> :class:`djsmile.bench.Options`)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..argtypes import choice_list, nonneg_int, positive_int, positive_int_list, real_number
from ..bench import DEFAULT_MODES, MODES, PACED_MODES, Options
from ..errors import ModelError, UsageError
from ..sources import PI_SPECS


_int_list = positive_int_list("{s!r}: give thread counts like 1 or 1,4")
_mode_list = choice_list(MODES, "modes")
_positive_float = real_number(lambda v: v > 0 and math.isfinite(v), "{s!r}: give frames per second, e.g. 30 or 75")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", metavar="camera|DIR|VIDEO", default=None,
                   help="frames to time: 'camera' (the Pi camera), an image folder (its images, or those of "
                        "its sub-folders, played as a 640x480 stream) or a video file; default: the Pi camera "
                        "if present, else an error")
    p.add_argument("--frames", type=positive_int, default=300, metavar="N",
                   help="frames timed per variant, after the warm-up (default: 300)")
    p.add_argument("--warmup", type=nonneg_int, default=30, metavar="N",
                   help="untimed frames per variant before timing (default: 30); the first frame is always "
                        "untimed: it is the start-up figure 'first frame'")
    p.add_argument("--threads", type=_int_list, default=None, metavar="T[,T...]",
                   help="thread counts to compare, e.g. 1,4: TFLite interpreter threads and OpenCV's "
                        "thread pool (default: model.num_threads from the config)")
    p.add_argument("--model", action="append", metavar="PATH",
                   help="a .tflite model with its .json sidecar; repeat to compare models "
                        "(default: model.path, i.e. the shipped models/smile_int8.tflite)")
    p.add_argument("--modes", type=_mode_list, default=None, metavar="full,track,async",
                   help="detector modes to compare: 'full' = a full Haar detection every frame, 'track' = "
                        "every detector.full_every frames and a search near the last faces in between, "
                        "'async' = as track with the full detections on a worker thread "
                        "(default: full,track; with --pace: track,async)")
    p.add_argument("--pace", type=_positive_float, default=None, metavar="FPS",
                   help="feed the folder or video at FPS frames a second like a camera (newest frame wins, "
                        "late frames dropped) and report late_frames_pct and decision_ms_p50/p95/p99")
    p.add_argument("--compare-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="also time the config with this override, e.g. detector.equalize=clahe "
                        "(several: comma-separated; repeatable: each adds a setting beside the config as loaded, "
                        "interleaved in the same run; the ratios compare each with the config)")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT")
    p.add_argument("--plot", metavar="OUT.png", help="write per-stage latency histograms (needs matplotlib)")
    p.add_argument("--chunk", type=positive_int, default=25, metavar="N",
                   help="frames per turn when interleaving the variants (default: 25)")
    p.add_argument("--hold", type=positive_int, default=10, metavar="N",
                   help="image folder: frames each image is shown for (default: 10)")
    p.add_argument("--one-face", action="store_true",
                   help="image folder: use only images in which the configured detector finds exactly one face")
    p.add_argument("--detector-study", action="store_true",
                   help="also time Haar settings against each other on the same frames (full resolution vs "
                        "detector.detect_width, with and without the minimum face size, tracking)")
    p.add_argument("--study-frames", type=positive_int, default=60, metavar="N",
                   help="frames per setting in --detector-study (default: 60)")


def command_line(args, threads, modes, model_paths) -> str:
    """The bench's options as one ``djsmile bench ...`` line (for the record)."""
    parts = ["djsmile", "bench"]
    if getattr(args, "config", None):
        parts += ["--config", str(args.config)]
    if args.source is not None:
        parts += ["--source", str(args.source)]
    parts += ["--frames", str(args.frames), "--warmup", str(args.warmup),
              "--threads", ",".join(str(t) for t in threads)]
    for p in model_paths:
        parts += ["--model", str(p)]
    parts += ["--modes", ",".join(modes)]
    if getattr(args, "pace", None):
        parts += ["--pace", f"{args.pace:g}"]
    for item in getattr(args, "compare_set", None) or []:
        parts += ["--compare-set", str(item)]
    for opt in ("chunk", "hold", "study_frames"):
        parts += [f"--{opt.replace('_', '-')}", str(getattr(args, opt))]
    for flag in ("one_face", "detector_study"):
        if getattr(args, flag, False):
            parts.append(f"--{flag.replace('_', '-')}")
    for opt in ("json", "plot"):
        if getattr(args, opt, None):
            parts += [f"--{opt}", str(getattr(args, opt))]
    return " ".join(parts)


def main(args, cfg) -> int:
    from ..bench.run import run
    from ..model import default_model_path

    threads = args.threads or [int(cfg.model.num_threads)]
    pace = args.pace
    modes = list(args.modes or (PACED_MODES if pace else DEFAULT_MODES))
    model_paths = [Path(p).expanduser() for p in (args.model or [cfg.model.path or default_model_path()])]
    for p in model_paths:  # fail before the (possibly slow) source opening
        if not p.is_file():
            raise ModelError(f"model file {p} not found; pass --model PATH or set model.path")
    spec = str(args.source or "").strip()
    if pace and (spec.lower() in PI_SPECS or spec == "" or spec.isdigit() or "://" in spec):
        raise UsageError("--pace plays an image folder or a video like a camera; a camera sets its own "
                         "pace (drop --pace, or pass --source DIR or VIDEO)")
    opts = Options(source=args.source, models=model_paths, threads=threads, modes=modes,
                         frames=int(args.frames), warmup=int(args.warmup), pace=pace,
                         compare_sets=list(args.compare_set or []), chunk=int(args.chunk), hold=int(args.hold),
                         one_face=bool(args.one_face), detector_study=bool(args.detector_study),
                         study_frames=int(args.study_frames), json_out=args.json, plot_out=args.plot,
                         command=command_line(args, threads, modes, model_paths))
    return run(cfg, opts)
