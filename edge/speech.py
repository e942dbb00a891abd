"""Text-to-speech behind one small interface: ``Espeak``, ``Piper``, ``Silent``.

Every engine offers the same calls:

* ``say(text) -> bool`` — speak (blocking, in the caller's thread; the
  :class:`~djsmile.teller.JokeTeller` calls it from its worker thread). One
  utterance at a time: while an engine speaks, another ``say`` is dropped at
  once (returns ``False``), never queued.
* ``render(text, path)`` — write the speech to a WAV file (tests, benchmarks).
* ``stop()`` — kill the utterance in progress (used on shutdown).

Safety: the text is cleaned first (control and format characters removed,
whitespace collapsed, length capped at ``speech.max_chars``) and reaches the
engine on its **stdin**, never through a shell and never as a command-line
argument (a joke starting with ``-`` cannot become an option). Audio goes from
the engine to ``aplay`` through a pipe between two processes.

Faults: a missing binary is reported once when the engine is made
(:func:`make_engine`) and the engine falls back to ``Silent``; an engine that
runs longer than ``speech.timeout_s`` is killed; an ``aplay`` failure (no
sound card, wrong ALSA device) is logged once as a warning, then quietly.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
import threading
import time
import unicodedata
import wave
from pathlib import Path
from typing import Callable, Optional, Sequence

from .errors import SpeechError
from .fsutil import atomic_open
from .logutil import LogLimiter

log = logging.getLogger(__name__)

#: Unicode categories removed from spoken / printed text: controls, format
#: characters (bidi overrides, zero-width), surrogates, private use, line/paragraph separators.
_DROP = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}


def clean_text(text: str, max_chars: int = 300) -> str:
    """``text`` without control/format characters, whitespace collapsed, at most ``max_chars`` long.

    Tabs and newlines become spaces; longer text is cut at the last word
    boundary before ``max_chars`` (or hard at ``max_chars`` for one huge word).
    Shell metacharacters are *kept*: the text is data, it never meets a shell.
    """
    if not isinstance(text, str):
        text = str(text)
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in _DROP:
            out.append(" " if ch in "\t\n\r\v\f\x1c\x1d\x1e\x1f\x85\u2028\u2029" else "")
        else:
            out.append(ch)
    s = " ".join("".join(out).split())
    if max_chars > 0 and len(s) > max_chars:
        cut = s.rfind(" ", 0, max_chars + 1)
        s = s[:cut] if cut >= max_chars // 2 else s[:max_chars]
        s = s.rstrip()
    return s


def _tail(f) -> str:
    """The last non-empty line of a captured stderr file (e.g. aplay's 'audio open error')."""
    try:
        f.seek(0)
        data = f.read()[-2000:]
    except (OSError, ValueError):
        return ""
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return clean_text(lines[-1], 200) if lines else ""


def _alsa_error(f) -> str:
    """The telling line of ALSA's errors on a captured stderr ('' if none): e.g. 'Unknown PCM default'."""
    try:
        f.seek(0)
        data = f.read()[-8000:].decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""
    lines = [ln.strip() for ln in data.splitlines() if ln.strip().startswith("ALSA lib")]
    if not lines:
        return ""
    best = next((ln for ln in reversed(lines) if "snd_pcm_open" in ln), lines[-1])
    return clean_text(best, 200)


class Engine:
    """Base engine (also the ``none`` engine's behaviour: log the text, make no sound)."""

    name = "none"

    def __init__(self, *, timeout_s: float = 20.0, max_chars: int = 300, warn: bool = True):
        self.timeout_s = float(timeout_s)
        self.max_chars = int(max_chars)
        self.warn = warn                       # False: failures only at DEBUG (the caller reports last_error)
        self.last_error = ""                   # why the last say() failed, in one line
        self._lock = threading.Lock()          # one utterance at a time
        self._procs_lock = threading.Lock()
        self._procs: list = []
        self._warned: set = set()
        self._logs = LogLimiter(log)            # what is said comes from outside (button, web, MQTT)
        self.spoken = 0                        # utterances finished without error
        self.dropped = 0                       # say() calls dropped because busy

    # -- public -----------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def say(self, text: str) -> bool:
        """Speak ``text`` (blocking). ``False`` if busy (dropped), empty, or the engine failed."""
        text = clean_text(text, self.max_chars)
        if not text:
            return False
        self.last_error = ""
        if not self._lock.acquire(blocking=False):
            self.dropped += 1
            self.last_error = "speech busy"
            self._logs.log("busy", logging.INFO, "speech busy: dropped %r", text[:60])
            return False
        try:
            ok = self._say(text)
            if ok:
                self.spoken += 1
            return ok
        finally:
            self._lock.release()

    def render(self, text: str, path) -> Path:
        """Write the speech for ``text`` to the WAV file ``path`` (``Silent``: an empty WAV)."""
        path = Path(path)
        _write_wav(path, b"", 22050)
        return path

    def stop(self) -> None:
        """Kill the utterance in progress, if any."""
        with self._procs_lock:
            procs = list(self._procs)
        for p in procs:
            _kill(p)

    close = stop

    # -- engine specific --------------------------------------------------
    def _say(self, text: str) -> bool:
        self._logs.log("said", logging.INFO, "joke (speech off): %s", text)
        return True

    # -- helpers ------------------------------------------------------------
    def _warn_once(self, key: str, msg: str, *args) -> None:
        self.last_error = msg % args if args else msg
        if key in self._warned or not self.warn:
            log.debug(msg, *args)
        else:
            self._warned.add(key)
            log.warning(msg, *args)

    def _run(self, synth: Sequence[str], text: str, player: Optional[Sequence[str]] = None,
             *, audio_tap: Optional[Callable[[bytes], None]] = None,
             capture: bool = False, plays_itself: bool = False) -> tuple[bool, bytes]:
        """Run ``synth`` with ``text`` on stdin, its stdout piped into ``player`` (if given).

        No shell anywhere. ``capture``: collect the synth's stdout instead of
        playing it. ``audio_tap``: the synth's stdout is pumped through this
        process (each chunk passed to the tap) on its way to the player.
        ``plays_itself``: the synth plays the audio (no player): ALSA errors on its stderr are a
        playback failure even when it exits 0.
        Returns (ok, captured bytes). Kills both processes after ``timeout_s``.
        """
        deadline = time.monotonic() + self.timeout_s
        err1 = tempfile.TemporaryFile()
        err2 = tempfile.TemporaryFile() if player else None
        procs: list = []
        captured: list[bytes] = []
        pump = None
        try:
            try:
                p1 = subprocess.Popen(list(synth), stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE if (player or capture) else subprocess.DEVNULL,
                                      stderr=err1, close_fds=True, start_new_session=True)
            except OSError as e:
                self._warn_once("spawn:" + synth[0], "speech engine %s cannot start: %s", synth[0], e)
                return False, b""
            procs.append(p1)
            p2 = None
            if player:
                try:
                    p2 = subprocess.Popen(list(player),
                                          stdin=subprocess.PIPE if audio_tap else p1.stdout,
                                          stdout=subprocess.DEVNULL, stderr=err2,
                                          close_fds=True, start_new_session=True)
                except OSError as e:
                    _kill(p1)
                    self._warn_once("spawn:" + player[0], "audio player %s cannot start: %s", player[0], e)
                    return False, b""
                procs.append(p2)
                if audio_tap:
                    pump = threading.Thread(target=_pump, args=(p1.stdout, p2.stdin, audio_tap),
                                            name="speech-pump", daemon=True)
                    pump.start()
                else:
                    p1.stdout.close()      # the player holds the pipe's read end now
            elif capture:
                pump = threading.Thread(target=_pump, args=(p1.stdout, None, captured.append),
                                        name="speech-capture", daemon=True)
                pump.start()
            with self._procs_lock:
                self._procs = procs
            try:
                p1.stdin.write(text.encode("utf-8"))
                p1.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            for p in procs:
                try:
                    p.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    for q in procs:
                        _kill(q)
                    self.last_error = (f"speech engine {synth[0]} ran longer than {self.timeout_s:.1f} s: "
                                       "killed (speech.timeout_s)")
                    (log.warning if self.warn else log.debug)("%s", self.last_error)
                    return False, b""
            if pump is not None:
                pump.join(timeout=max(0.1, deadline - time.monotonic()))
            rc1 = p1.returncode
            rc2 = p2.returncode if p2 is not None else 0
            if p2 is not None and rc2 != 0:
                if rc2 < 0 and rc2 != -13:      # killed by stop()
                    self.last_error = "speech stopped"
                    return False, b""
                self._warn_once("player", "audio playback failed (%s exit %s): %s; "
                                "is there a sound card / is speech.alsa_device right?",
                                player[0], rc2, _tail(err2) or "no message")
                return False, b""
            if rc1 != 0:
                if rc1 < 0:
                    self.last_error = "speech stopped"
                    return False, b""
                self._warn_once("synth", "speech engine %s failed (exit %s): %s",
                                synth[0], rc1, _tail(err1) or "no message")
                return False, b""
            if plays_itself:
                alsa = _alsa_error(err1)
                if alsa:   # espeak-ng playing to ALSA itself exits 0 when no sound device opens
                    self._warn_once("player", "audio playback failed (%s: %s); is there a sound card / is "
                                    "speech.alsa_device right?", synth[0], alsa)
                    return False, b""
            return True, b"".join(captured)
        finally:
            with self._procs_lock:
                self._procs = []
            for p in procs:
                if p.poll() is None:
                    _kill(p)
                for s in (p.stdin, p.stdout):
                    try:
                        if s:
                            s.close()
                    except OSError:
                        pass
            err1.close()
            if err2:
                err2.close()


class Silent(Engine):
    """``engine = "none"``: the joke is logged, nothing is played."""

    name = "none"


class Espeak(Engine):
    """espeak-ng: voice, speed and volume from config; audio through aplay or espeak-ng's own output."""

    name = "espeak-ng"

    def __init__(self, binary: str = "espeak-ng", *, voice: str = "en-us", speed: int = 160,
                 volume: int = 100, output: str = "aplay", device: str = "", aplay: str = "aplay",
                 timeout_s: float = 20.0, max_chars: int = 300,
                 audio_tap: Optional[Callable[[bytes], None]] = None, warn: bool = True):
        super().__init__(timeout_s=timeout_s, max_chars=max_chars, warn=warn)
        self.binary, self.voice, self.speed, self.volume = binary, voice, int(speed), int(volume)
        self.output, self.device, self.aplay = output, device, aplay
        self.audio_tap = audio_tap

    def _argv(self, *extra: str) -> list[str]:
        # --stdin: the text arrives on stdin, read at once; never on the command line.
        return [self.binary, "-v", self.voice, "-s", str(self.speed), "-a", str(self.volume),
                *extra, "--stdin"]

    def _say(self, text: str) -> bool:
        if self.output == "engine":
            extra = ("-d", self.device) if self.device else ()
            return self._run(self._argv(*extra), text, plays_itself=True)[0]
        player = [self.aplay, "-q"] + (["-D", self.device] if self.device else [])
        return self._run(self._argv("--stdout"), text, player, audio_tap=self.audio_tap)[0]

    def render(self, text: str, path) -> Path:
        path = Path(path)
        text = clean_text(text, self.max_chars)
        ok, _ = self._run(self._argv("-w", str(path)), text)
        if not ok:
            raise RuntimeError(f"{self.binary} could not render speech to {path}")
        return path


class Piper(Engine):
    """piper: neural voice from an .onnx model; raw 16-bit mono audio piped into aplay."""

    name = "piper"

    def __init__(self, binary: str = "piper", *, model: str, device: str = "", aplay: str = "aplay",
                 timeout_s: float = 20.0, max_chars: int = 300,
                 audio_tap: Optional[Callable[[bytes], None]] = None, warn: bool = True):
        super().__init__(timeout_s=timeout_s, max_chars=max_chars, warn=warn)
        self.binary, self.model, self.device, self.aplay = binary, model, device, aplay
        self.audio_tap = audio_tap
        self.rate = _piper_rate(model)

    def _argv(self) -> list[str]:
        return [self.binary, "--model", self.model, "--output-raw"]

    def _say(self, text: str) -> bool:
        player = [self.aplay, "-q", "-t", "raw", "-f", "S16_LE", "-c", "1", "-r", str(self.rate)]
        player += ["-D", self.device] if self.device else []
        return self._run(self._argv(), text, player, audio_tap=self.audio_tap)[0]

    def render(self, text: str, path) -> Path:
        path = Path(path)
        ok, raw = self._run(self._argv(), clean_text(text, self.max_chars), capture=True)
        if not ok:
            raise RuntimeError(f"{self.binary} could not render speech to {path}")
        _write_wav(path, raw, self.rate)
        return path


def _piper_rate(model: str) -> int:
    """Sample rate from the voice's ``.onnx.json`` (22050 Hz when unknown)."""
    try:
        meta = json.loads(Path(model + ".json").read_text("utf-8"))
        rate = int(meta.get("audio", {}).get("sample_rate", 22050))
        return rate if 4000 <= rate <= 192000 else 22050
    except (OSError, ValueError, TypeError, AttributeError):
        return 22050


def _pump(src, dst, tap) -> None:
    """Copy ``src`` to ``dst`` (may be None), handing every chunk to ``tap``."""
    try:
        while True:
            chunk = src.read1(4096) if hasattr(src, "read1") else src.read(4096)
            if not chunk:
                break
            try:
                tap(chunk)
            except Exception:  # a tap must never break playback
                log.debug("audio tap failed", exc_info=True)
            if dst is not None:
                dst.write(chunk)
                dst.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass
    finally:
        for f in (dst, src):      # closing src: an engine still writing gets SIGPIPE instead of hanging
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass


def _kill(p) -> None:
    try:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=2)
    except (OSError, subprocess.TimeoutExpired):
        pass


def _write_wav(path: Path, pcm: bytes, rate: int) -> None:
    """A mono 16-bit WAV file, written atomically."""
    with atomic_open(path) as f:
        with wave.open(f, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm)


def make_engine(scfg, *, audio_tap: Optional[Callable[[bytes], None]] = None, strict: bool = False) -> Engine:
    """The engine chosen by ``[speech] engine``.

    A missing binary or voice model: one clear message, then ``Silent`` (jokes
    are logged), or with ``strict`` (``djsmile joke --say``) a
    :class:`~djsmile.errors.SpeechError` (exit 69) carrying that message, and an
    engine whose failures the caller reports (``engine.last_error``) instead of logging them.
    """
    common = dict(timeout_s=scfg.timeout_s, max_chars=scfg.max_chars)

    def unusable(message: str) -> Engine:
        if strict:
            raise SpeechError(message)
        log.error("%s; jokes will only be logged", message)
        return Silent(**common)

    engine = scfg.engine
    if engine == "none":
        return Silent(**common)
    aplay = shutil.which("aplay")
    if engine == "espeak-ng":
        binary = shutil.which(scfg.espeak_binary)
        if not binary:
            return unusable(f"speech engine espeak-ng not found ({scfg.espeak_binary!r}): "
                            "install it with 'sudo apt install espeak-ng', set [speech] espeak_binary, "
                            "or set [speech] engine = \"none\"")
        output = scfg.output
        if output == "aplay" and not aplay:
            log.error("aplay not found: espeak-ng plays the audio itself. "
                      "Install it with 'sudo apt install alsa-utils'")
            output = "engine"
        return Espeak(binary, voice=scfg.voice, speed=scfg.speed, volume=scfg.volume, output=output,
                      device=scfg.alsa_device, aplay=aplay or "aplay", audio_tap=audio_tap, warn=not strict,
                      **common)
    if engine == "piper":
        binary = shutil.which(scfg.piper_binary)
        problem = None
        if not binary:
            problem = f"piper binary {scfg.piper_binary!r} not found (set [speech] piper_binary)"
        elif not scfg.piper_model or not Path(scfg.piper_model).is_file():
            problem = f"piper voice model {scfg.piper_model!r} not found (set [speech] piper_model to an .onnx file)"
        elif not aplay:
            problem = "aplay not found (install alsa-utils)"
        if problem:
            return unusable(f"speech engine piper unusable: {problem}")
        return Piper(binary, model=scfg.piper_model, device=scfg.alsa_device, aplay=aplay,
                     audio_tap=audio_tap, warn=not strict, **common)
    return unusable(f"unknown speech engine {engine!r} (set [speech] engine to espeak-ng, piper or none)")
