"""argparse value types shared by the subcommands (foundation: commands import it, not the CLI)."""

from __future__ import annotations

import argparse


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


def host_port(s: str) -> tuple:
    """An argparse type: ``HOST[:PORT]`` (``[::1]:1883`` for IPv6) -> ``(host, port or None)``."""
    host, port = s, None
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise argparse.ArgumentTypeError(f"{s!r}: expected HOST[:PORT], e.g. [::1]:1883")
            port = rest[1:]
    elif s.count(":") == 1:
        host, port = s.split(":")
    if not host:
        raise argparse.ArgumentTypeError(f"{s!r}: no host; expected HOST[:PORT], e.g. localhost:1883")
    if port is not None:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise argparse.ArgumentTypeError(f"{s!r}: the port must be a number from 1 to 65535")
        port = int(port)
    return host, port
