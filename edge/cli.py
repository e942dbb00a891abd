"""The ``djsmile`` command and its subcommands.

Each subcommand has a thin module in :mod:`djsmile.commands` (train, eval and
convert: their module in training/convert); that module offers
``add_arguments(parser)``, ``main(args, cfg) -> int`` and, if its flags change
config keys, ``apply_overrides(cfg, args)``. The CLI parses the command line,
loads the config once (``--config FILE``, then ``--set``, then the command's
flags, then every cross-field rule: :func:`djsmile.config.load`) and hands it
to the command; commands never import this module. Exceptions become exit
codes through one table, :data:`EXIT_CODES`.

A module is imported only when its subcommand runs (``--help`` included), so
``djsmile run`` never imports TensorFlow, and ``djsmile train`` without
TensorFlow says how to get it.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import os
import sys

from . import __version__, config
from .errors import (EX_CANTCREAT, EX_CONFIG, EX_DATAERR, EX_INTERRUPTED, EX_NOINPUT, EX_SOFTWARE, EX_TEMPFAIL,
                     EX_UNAVAILABLE, EX_USAGE, CantCreateError, ConfigError, DataError, DjsmileError,
                     MissingDependencyError, NoInputError, TempFailError, UnavailableError, UsageError)

log = logging.getLogger("djsmile")

#: subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "run": ("djsmile.commands.run", "run the smile detector (camera -> faces -> model -> trigger -> actions)"),
    "train": ("djsmile.training.train", "train the smile CNN on class-folder datasets (needs TensorFlow)"),
    "convert": ("djsmile.convert.tflite", "convert a trained Keras model to int8 / float32 TFLite (needs TensorFlow)"),
    "eval": ("djsmile.training.evaluate", "measure a model's accuracy on a smile/ no_smile folder"),
    "bench": ("djsmile.commands.bench", "time the detector's stages on this machine"),
    "calibrate": ("djsmile.commands.calibrate", "learn the smile thresholds from the person in front of the camera"),
    "joke": ("djsmile.commands.joke", "print (and --say) a dad joke"),
    "config": ("djsmile.commands.config", "print the default config or check a config file"),
    "mqtt": ("djsmile.commands.mqtt", "MQTT / Home Assistant: --forget removes this device's retained messages"),
}

TRAIN_HINT = "TensorFlow is not installed: pip install '.[train]'"

#: The one table of exit codes: exception type -> code (README "Exit codes" shows the same).
#: An exception takes the code of the first class in its MRO found here.
EXIT_CODES: dict[type, int] = {
    UsageError: EX_USAGE,              # 64 bad command line (a mistyped flag)
    DataError: EX_DATAERR,             # 65 bad input data
    NoInputError: EX_NOINPUT,          # 66 missing input: model, --source file or folder
    UnavailableError: EX_UNAVAILABLE,  # 69 no camera, no TFLite runtime, GPIO busy, no cascade
    DjsmileError: EX_SOFTWARE,         # 70 internal error
    CantCreateError: EX_CANTCREAT,     # 73 state folder not writable
    TempFailError: EX_TEMPFAIL,        # 75 port in use: try again later
    ConfigError: EX_CONFIG,            # 78 wrong config text (systemd does not restart)
    KeyboardInterrupt: EX_INTERRUPTED,  # 130 Ctrl+C
}


def exit_code_for(exc: BaseException) -> int:
    """The exit code for an exception, from :data:`EXIT_CODES`."""
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EX_SOFTWARE


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error prints THIS (sub)command's usage and exits 64, not 2."""

    subcommands = None  #: the subparsers action, once added

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message}", usage=self.format_usage())

    def add_subparsers(self, **kwargs):
        self.subcommands = super().add_subparsers(**kwargs)
        return self.subcommands

    def parse_known_args(self, args=None, namespace=None):
        ns, extras = super().parse_known_args(args, namespace)
        if extras and self.subcommands is not None:
            # argparse reports a subcommand's unknown flags at the top level: report them at the subcommand
            sub = self.subcommands.choices.get(getattr(ns, self.subcommands.dest, None))
            if sub is not None:
                sub.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras


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


def common_parent() -> argparse.ArgumentParser:
    p = Parser(add_help=False)
    p.add_argument("--config", metavar="FILE", help="TOML config file (see 'djsmile config --default')")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config key (repeatable), e.g. --set trigger.hold_frames=5")
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
    parser = Parser(
        prog="djsmile", description="A Raspberry Pi smile detector that answers smiles with dad jokes.")
    parser.add_argument("--version", action="version", version=f"djsmile {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parent = common_parent()
    # Only the chosen subcommand's module is imported (so e.g. 'run' never pulls TensorFlow).
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (_modname, help_) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_, parents=[parent])
        if name == chosen:
            mod = _import_for(name)
            mod.add_arguments(sp)
            sp.set_defaults(handler=functools.partial(run_command, mod))
    return parser


def load_config(mod, args) -> "config.Config":
    """The config a command runs with: ``--config``, ``--set``, the command's flags; every rule checked."""
    overrides = getattr(mod, "apply_overrides", None)
    return config.load(getattr(args, "config", None), sets=getattr(args, "set", None) or (),
                       adjust=(lambda cfg: overrides(cfg, args)) if overrides is not None else None)


def config_for(args) -> "config.Config":
    """:func:`load_config` for parsed ``args`` of any subcommand (tests, embedding programs)."""
    return load_config(_import_for(args.command), args)


def run_command(mod, args) -> int:
    """Load and check the config once, then run the command with it."""
    return mod.main(args, load_config(mod, args))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return EX_USAGE
        setup_logging(args.log_level)
        return int(args.handler(args) or 0)
    except UsageError as e:
        if e.usage:  # from argparse: the (sub)command's usage, then argparse's one line
            sys.stderr.write(f"{e.usage}{e}\n")
            return exit_code_for(e)
        if not logging.getLogger().handlers:
            setup_logging("INFO")
        log.error("%s", e)
        return exit_code_for(e)
    except (DjsmileError, KeyboardInterrupt) as e:
        if not logging.getLogger().handlers:
            setup_logging("INFO")
        if isinstance(e, DjsmileError):
            log.error("%s", e)
        else:
            cmd = next((a for a in argv if not a.startswith("-")), "")
            log.warning("%s interrupted (Ctrl+C); nothing more was done", f"djsmile {cmd}".strip())
        return exit_code_for(e)


def entry() -> None:
    """The ``djsmile`` command (console script and ``python -m djsmile``): :func:`main`, then exit.

    After Ctrl+C (exit 130) the process ends with ``os._exit`` once the logs are flushed: the run is over and
    said so, and the interpreter's teardown can abort the process ("terminate called without an active
    exception", exit -6) when a daemon thread of LiteRT or OpenCV is still inside native code (seen once in
    seven full test runs on a loaded machine, after ``djsmile bench`` had printed its "interrupted" line).
    """
    code = main()
    if code == EX_INTERRUPTED:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
