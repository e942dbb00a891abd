"""argparse value types, all of them: the subcommands' and training's (foundation: commands import it, not the CLI).

The factories take the words of the error so each flag keeps its own message.
"""

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


def real_number(ok, bad: str, not_a_number: str | None = None):
    """An argparse type: a float ``v`` with ``ok(v)``; else the message ``bad`` (``not_a_number`` when the
    text is no number, default ``bad``), with ``{s!r}`` the text given."""
    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError((not_a_number or bad).format(s=s)) from None
        if not ok(v):
            raise argparse.ArgumentTypeError(bad.format(s=s))
        return v
    return parse


def positive_int_list(empty: str):
    """An argparse type: comma-separated whole numbers >= 1, repeats dropped (``empty``: the message when
    none is given, ``{s!r}`` the text)."""
    def parse(s: str) -> list[int]:
        out = [positive_int(part) for part in s.split(",") if part.strip()]
        if not out:
            raise argparse.ArgumentTypeError(empty.format(s=s))
        return list(dict.fromkeys(out))
    return parse


def choice_list(choices, what: str):
    """An argparse type: comma-separated names out of ``choices`` (``what`` names them in the message),
    repeats dropped."""
    def parse(s: str) -> list[str]:
        out = [m.strip() for m in s.split(",") if m.strip()]
        if not out or any(m not in choices for m in out):
            raise argparse.ArgumentTypeError(f"{s!r}: {what} are {', '.join(choices)} (comma-separated)")
        return list(dict.fromkeys(out))
    return parse


def checked(fn):
    """An argparse type from a function that raises ``ValueError`` with the message to show."""
    def parse(s: str):
        try:
            return fn(s)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


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
