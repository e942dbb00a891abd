"""``djsmile config``: print the default config, check a file, or show the effective config."""

from __future__ import annotations

import sys

from .. import config


def add_arguments(p) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--default", action="store_true", help="print a commented default config file")
    g.add_argument("--check", metavar="FILE", help="validate FILE; exit 78 naming the bad key")
    g.add_argument("--show", action="store_true",
                   help="print the effective config (--config FILE, --set, defaults) as TOML; secrets show as <set>")


def main(args, cfg) -> int:
    if args.default:
        sys.stdout.write(config.default_toml())
        return 0
    if args.check:
        config.load(args.check)
        print(f"{args.check}: OK")
        return 0
    used = _run_thresholds(cfg)
    for sec, table in cfg.to_display_dict().items():
        print(f"[{sec}]")
        for k, v in table.items():
            note = used.get(k) if sec == "trigger" else None
            print(f"{k} = {config.toml_value(v)}" + (f"   # {note}" if note else ""))
        print()
    return 0


def _run_thresholds(cfg) -> dict:
    """Comments for trigger.on_threshold / off_threshold: the values ``djsmile run`` will use and where from."""
    from ..calibration.file import run_thresholds
    from ..errors import DjsmileError
    try:
        on, off, origin = run_thresholds(cfg)
    except (DjsmileError, OSError) as e:
        return {"on_threshold": f"djsmile run cannot tell: {e}"}
    return {"on_threshold": f"djsmile run uses {on:.3f} (from {origin})",
            "off_threshold": f"djsmile run uses {off:.3f} (from {origin})"}
