"""``djsmile joke``: print (and ``--say``) one dad joke: the API, else the cache, else the bundled list."""

from __future__ import annotations

import sys

from ..jokes import CLI_API_WAIT_S, MAX_JOKE_CHARS, JokeSource
from ..speech import clean_text


def add_arguments(p) -> None:
    p.add_argument("--say", action="store_true", help="also speak the joke with the [speech] engine")
    p.add_argument("--state-dir", metavar="DIR",
                   help="folder holding the joke cache (default: [storage] state_dir, the one 'djsmile run' uses)")


def apply_overrides(cfg, args) -> None:
    """``--state-dir`` wins over the config (the CLI applies it, after ``--set``)."""
    if getattr(args, "state_dir", None):
        cfg.set("storage.state_dir", args.state_dir)


def main(args, cfg) -> int:
    source = JokeSource(cfg.jokes, cfg.state_dir(), warn=False)
    joke = source.next_joke(wait_api=min(cfg.jokes.timeout_s, CLI_API_WAIT_S))
    source.close()
    print(clean_text(joke.text, MAX_JOKE_CHARS), flush=True)
    if joke.origin != "api":
        where = "the local joke cache" if joke.origin == "cache" else "the bundled joke list"
        reason = source.last_error or "no answer"
        print(f"djsmile: joke API unavailable ({reason}); this joke is from {where}",
              file=sys.stderr, flush=True)
    if getattr(args, "say", False):
        from ..errors import SpeechError
        from ..speech import make_engine
        engine = make_engine(cfg.speech, strict=True)      # unavailable: SpeechError, exit 69, one line
        try:
            spoken = engine.say(joke.text)
        finally:
            engine.stop()
        if not spoken:
            raise SpeechError(f"the joke was not spoken: {engine.last_error or 'speech failed'}")
    return 0
