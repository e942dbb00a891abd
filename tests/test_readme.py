"""The README's command lines work as typed, after the README's own set-up lines (issue 24 item 2)."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def sh_blocks(text: str) -> list[tuple[str, list[str]]]:
    """``(heading, command lines)`` of each ```sh block: comments dropped, ``\\`` continuations joined."""
    out, heading, block = [], "", None
    for line in text.splitlines():
        if block is None:
            if line.startswith("#"):
                heading = line.lstrip("#").strip()
            elif line.strip() == "```sh":
                block = []
            continue
        if line.strip() == "```":
            cmds, cur = [], ""
            for ln in block:
                cur += ln.rstrip()
                if cur.endswith("\\"):
                    cur = cur[:-1] + " "
                    continue
                cmd = _strip_comment(cur).strip()
                if cmd:
                    cmds.append(re.sub(r"\s+", " ", cmd))
                cur = ""
            out.append((heading, cmds))
            block = None
        else:
            block.append(line)
    return out


def _strip_comment(line: str) -> str:
    """The line without its trailing ``# comment`` (a ``#`` inside quotes is kept)."""
    quote, out = None, []
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            break
        out.append(ch)
    return "".join(out)


BLOCKS = sh_blocks(README.read_text())
COMMANDS = [c for _h, cmds in BLOCKS for c in cmds]


def setup_lines() -> list[str]:
    """The Quick start lines that are not ``make`` (what a reader types once the venv exists)."""
    quick = [cmds for h, cmds in BLOCKS if h == "Quick start"]
    assert quick, "the README has no Quick start block"
    return [c for c in quick[0] if not c.startswith("make ")]


def djsmile_argv(cmd: str) -> list[str] | None:
    """The arguments of a ``djsmile ...`` line (redirections dropped), or None if it is not one."""
    words = shlex.split(cmd)
    while words and words[0] in ("sudo", "<"):
        words = words[2:] if words[0] == "<" else words[1:]
    if not words or not (words[0] == "djsmile" or words[0].endswith("/bin/djsmile")):
        return None
    argv = []
    skip = False
    for w in words[1:]:
        if skip:
            skip = False
            continue
        if w in (">", "<", "2>", ">>"):
            skip = True
            continue
        if w in ("|", "&&", ";"):
            break
        argv.append(w)
    return argv


def test_the_readme_has_djsmile_lines_for_every_subcommand():
    from djsmile.cli import SUBCOMMANDS
    named = {a[0] for a in map(djsmile_argv, COMMANDS) if a}
    assert named >= set(SUBCOMMANDS) - {"mqtt"} and "mqtt" in named, named


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if djsmile_argv(c) and "..." not in c])
def test_each_djsmile_line_parses_as_typed(cmd):
    """Every flag and subcommand a README line uses exists (parsed by the real CLI, nothing run)."""
    from djsmile.cli import build_parser
    argv = djsmile_argv(cmd)
    build_parser(argv).parse_args(argv)   # a mistyped flag raises UsageError


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if re.match(r"python3? -m ", c)])
def test_each_python_module_line_names_a_module_that_exists(cmd):
    module = shlex.split(cmd)[2]
    assert importlib.util.find_spec(module) is not None, cmd


@pytest.mark.slow
def test_cheap_readme_commands_work_as_typed_in_a_fresh_shell(tmp_path):
    """A new shell (no PATH but the system's) in a folder with the venv at .venv: the Quick start's
    set-up lines, then every subcommand's --help, `config --default > config.toml` and `joke`
    (offline: the API unreachable), exactly as the README types them."""
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").is_file():
        pytest.skip(f"the tests do not run in a venv ({venv}); the README's set-up makes one")
    (tmp_path / ".venv").symlink_to(venv)
    lines = list(setup_lines())
    assert lines, "no set-up line in the Quick start puts djsmile on the PATH"
    typed = [c for c in COMMANDS if c.startswith("djsmile ")]
    config_default = [c for c in typed if djsmile_argv(c) == ["config", "--default"]]
    joke = [c for c in typed if djsmile_argv(c) == ["joke"]]
    assert config_default and joke
    from djsmile.cli import SUBCOMMANDS
    script = "set -e\n" + "\n".join(
        [*lines, "command -v djsmile", "djsmile --help", *(f"djsmile {n} --help >/dev/null" for n in SUBCOMMANDS),
         config_default[0], "test -s config.toml", "djsmile config --check config.toml", joke[0]])
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}  # no joke API
    p = subprocess.run(["bash", "--noprofile", "--norc", "-c", script], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    assert p.stdout.splitlines()[0].endswith(".venv/bin/djsmile"), p.stdout[:500]
    assert "[trigger]" in (tmp_path / "config.toml").read_text()
    last = p.stdout.strip().splitlines()[-1]
    assert len(last) > 10, p.stdout[-500:]                      # the joke, from the bundled list
    assert "joke API unavailable" in p.stderr

