"""``djsmile calibrate``: the command line of :mod:`djsmile.calibration.run`."""

from __future__ import annotations

from ..argtypes import real_number
from ..calibration.thresholds import DEFAULT_SECONDS

positive_seconds = real_number(lambda v: 0.5 <= v <= 600, "{s!r} must be between 0.5 and 600 seconds",
                               "{s!r} is not a number of seconds")


def add_arguments(p) -> None:
    p.add_argument("--source", metavar="SPEC",
                   help="'' = Pi camera, else webcam 0; a webcam index; a video file; an image folder "
                        "(default: camera.source). With a file, the first N seconds are the straight face")
    p.add_argument("--state-dir", metavar="DIR", help="where calibration.json goes (default: storage.state_dir)")
    p.add_argument("--seconds", type=positive_seconds, default=DEFAULT_SECONDS, metavar="N",
                   help=f"length of each phase in seconds (default: {DEFAULT_SECONDS:g})")
    p.add_argument("--json", metavar="OUT", help="also write the result to OUT ('-' = stdout)")
    p.add_argument("--reset", action="store_true", help="remove calibration.json and exit")


def apply_overrides(cfg, args) -> None:
    """``--source`` / ``--state-dir`` win over the config (the CLI applies them after ``--set``)."""
    if args.source is not None:
        cfg.set("camera.source", args.source)
    if args.state_dir is not None:
        cfg.set("storage.state_dir", args.state_dir)


def main(args, cfg) -> int:
    from ..calibration.run import calibrate
    return calibrate(cfg, seconds=args.seconds, json_out=args.json, reset=args.reset)
