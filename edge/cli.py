"""The ``djsmile`` command and its subcommands.

Each subcommand lives in the module that does its job; that module offers
``add_arguments(parser)`` and ``main(args) -> int``. The module is imported
only when its subcommand runs (``--help`` included), so ``djsmile run`` never
imports TensorFlow, and ``djsmile train`` without TensorFlow says how to get it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .errors import DjsmileError, MissingDependencyError

log = logging.getLogger("djsmile")

#: subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "run": ("djsmile.service", "run the smile detector (camera -> faces -> model -> trigger -> actions)"),
    "train": ("djsmile.training.train", "train the smile CNN on class-folder datasets (needs TensorFlow)"),
    "convert": ("djsmile.convert.tflite", "convert a trained Keras model to int8 / float32 TFLite (needs TensorFlow)"),
    "eval": ("djsmile.training.evaluate", "measure a model's accuracy on a smile/ no_smile folder"),
    "bench": ("djsmile.bench", "time the detector's stages on this machine"),
    "calibrate": ("djsmile.calibrate", "learn the smile thresholds from the person in front of the camera"),
    "joke": ("djsmile.jokes", "print (and --say) a dad joke"),
    "config": ("djsmile.config_cmd", "print the default config or check a config file"),
    "mqtt": ("djsmile.mqtt_cmd", "MQTT / Home Assistant: --forget removes this device's retained messages"),
}

TRAIN_HINT = "TensorFlow is not installed: pip install '.[train]'"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (it may be replaced after set-up, e.g. by pytest)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def setup_logging(level: str = "INFO") -> None:
    """Plain lines to stderr (journald adds timestamps)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    h = _StderrHandler()
    h.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(h)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


def int_at_least(lo: int):
    """An argparse type: a whole number >= ``lo`` (a clear message otherwise)."""
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s!r} is not a whole number") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"{s!r} must be at least {lo}")
        return v
    parse.__name__ = f"int>={lo}"
    return parse


positive_int = int_at_least(1)
nonneg_int = int_at_least(0)


def common_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", metavar="FILE", help="TOML config file (see 'djsmile config --default')")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   type=str.upper, help="log detail on stderr (default: INFO)")
    return p


def _import_for(name: str):
    modname = SUBCOMMANDS[name][0]
    try:
        return importlib.import_module(modname)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in ("tensorflow", "keras"):
            raise MissingDependencyError(TRAIN_HINT) from None
        raise


def build_parser(argv=None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="djsmile", description="A Raspberry Pi smile detector that answers smiles with dad jokes.")
    parser.add_argument("--version", action="version", version=f"djsmile {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parent = common_parent()
    # Only the chosen subcommand's module is imported (so e.g. 'run' never pulls TensorFlow).
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (modname, help_) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_, parents=[parent])
        if name == chosen:
            mod = _import_for(name)
            mod.add_arguments(sp)
            sp.set_defaults(_main=mod.main)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 64
        setup_logging(args.log_level)
        return int(args._main(args) or 0)
    except DjsmileError as e:
        if not logging.getLogger().handlers:
            setup_logging("INFO")
        log.error("%s", e)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


def load_config(args):
    """The config from ``--config`` (or defaults). Subcommands apply their own flag overrides."""
    from . import config
    return config.load(getattr(args, "config", None))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
