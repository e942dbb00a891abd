"""Speech engines: text reaches the engine as data, one utterance at a time, timeouts, faults."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import sys
import threading
import time
import wave
from pathlib import Path

import pytest

from djsmile.config import Config
from djsmile.speech import Espeak, Piper, Silent, clean_text, make_engine

EVIL = [
    "$(touch pwned.txt); echo hi",
    "`touch pwned2.txt` && touch pwned3.txt | cat > pwned4.txt",
    "-w pwned5.wav this starts with an option",
    "'; touch pwned6.txt #",
]

# A stand-in for espeak-ng / piper / aplay: records its argv and stdin, then acts like the real thing.
FAKE = r'''#!{python}
import json, os, struct, sys, time
mode = {mode!r}
rec = {rec!r}
if mode == "hang":
    open(rec + ".pid", "w").write(str(os.getpid()))
    time.sleep(120)
if mode == "slow":
    time.sleep({slow})
data = sys.stdin.buffer.read()
with open(rec, "a") as f:
    f.write(json.dumps({{"argv": sys.argv, "stdin": data.decode("utf-8", "replace"), "n": len(data)}}) + "\n")
pcm = struct.pack("<4h", 0, 1000, -1000, 500)
wav = b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVEfmt " \
      + struct.pack("<IHHIIHH", 16, 1, 1, 22050, 44100, 2, 16) + b"data" + struct.pack("<I", len(pcm)) + pcm
if mode == "piper":
    sys.stdout.buffer.write(pcm * 100)
elif "--stdout" in sys.argv:
    sys.stdout.buffer.write(wav)
elif "-w" in sys.argv:
    open(sys.argv[sys.argv.index("-w") + 1], "wb").write(wav)
sys.exit(0)
'''


def fake(tmp_path: Path, name: str, mode: str = "record", slow: float = 1.0) -> tuple[Path, Path]:
    """A fake engine script and the file where it records each run."""
    exe = tmp_path / "bin" / name
    exe.parent.mkdir(exist_ok=True)
    rec = tmp_path / f"{name}.rec"
    exe.write_text(FAKE.format(python=sys.executable, mode=mode, rec=str(rec), slow=slow))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe, rec


def records(rec: Path) -> list[dict]:
    return [json.loads(line) for line in rec.read_text().splitlines()] if rec.exists() else []


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh current directory, to see that nothing is created in it."""
    d = tmp_path / "cwd"
    d.mkdir()
    monkeypatch.chdir(d)
    return d


def test_clean_text():
    assert clean_text("$(touch x); echo `hi` | 'a' \"b\" > c") == "$(touch x); echo `hi` | 'a' \"b\" > c"
    assert clean_text("Hi\x1b[2J\x00 there\nfriend\t!\u202e\u200b") == "Hi[2J there friend !"
    assert clean_text("word " * 100, 30) == ("word " * 6).strip()
    assert len(clean_text("x" * 500, 40)) == 40


@pytest.mark.parametrize("text", EVIL)
def test_text_reaches_engine_verbatim_as_data(tmp_path, workdir, text):
    exe, rec = fake(tmp_path, "espeak-ng")
    eng = Espeak(str(exe), output="engine", timeout_s=10)
    assert eng.say(text) is True
    [r] = records(rec)
    assert r["stdin"] == text                              # verbatim, on stdin
    assert text not in r["argv"] and not any("pwned" in a for a in r["argv"])
    assert list(workdir.iterdir()) == []                   # nothing ran: no pwned*.txt / .wav
    assert not list(tmp_path.rglob("pwned*"))


def test_control_characters_and_length_are_cut(tmp_path, workdir):
    exe, rec = fake(tmp_path, "espeak-ng")
    eng = Espeak(str(exe), output="engine", max_chars=40)
    eng.say("Knock\x07 knock\x1b]0;title\x07.\nWho's there? " + "Interrupting cow " * 10)
    [r] = records(rec)
    assert r["stdin"].startswith("Knock knock]0;title. Who's there?")
    assert len(r["stdin"]) <= 40
    assert not any(ord(c) < 32 for c in r["stdin"])


def test_espeak_options_and_aplay_pipe(tmp_path, workdir):
    exe, rec = fake(tmp_path, "espeak-ng")
    player, prec = fake(tmp_path, "aplay")
    eng = Espeak(str(exe), voice="en-gb", speed=200, volume=50, output="aplay", device="plughw:1,0",
                 aplay=str(player))
    assert eng.say("Hello there") is True
    [r] = records(rec)
    argv = r["argv"][1:]
    assert argv[argv.index("-v") + 1] == "en-gb" and argv[argv.index("-s") + 1] == "200"
    assert argv[argv.index("-a") + 1] == "50" and "--stdout" in argv and "--stdin" in argv
    [p] = records(prec)
    assert p["argv"][1:] == ["-q", "-D", "plughw:1,0"]
    assert p["n"] == 44 + 8                               # the engine's WAV arrived through the pipe


@pytest.mark.slow
def test_busy_engine_drops_second_utterance(tmp_path):
    exe, rec = fake(tmp_path, "espeak-ng", mode="slow", slow=1.0)
    eng = Espeak(str(exe), output="engine", timeout_s=10)
    results = []
    t = threading.Thread(target=lambda: results.append(eng.say("first joke")))
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    assert eng.say("second joke") is False                 # dropped, not queued
    assert time.monotonic() - t0 < 0.1
    t.join(10)
    assert results == [True]
    assert [r["stdin"] for r in records(rec)] == ["first joke"]
    assert eng.dropped == 1


@pytest.mark.slow
def test_hung_engine_is_killed_after_timeout(tmp_path, caplog):
    exe, rec = fake(tmp_path, "espeak-ng", mode="hang")
    eng = Espeak(str(exe), output="engine", timeout_s=1.0)
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="djsmile.speech"):
        assert eng.say("never ends") is False
    assert 0.9 < time.monotonic() - t0 < 3.0
    assert "killed" in caplog.text
    pid = int(Path(str(rec) + ".pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert eng.busy is False


def test_missing_binary_says_so_once_then_silent(tmp_path, caplog):
    cfg = Config()
    cfg.set("speech.espeak_binary", str(tmp_path / "no-such-espeak"))
    with caplog.at_level(logging.INFO, logger="djsmile.speech"):
        eng = make_engine(cfg.speech)
        assert isinstance(eng, Silent)
        assert eng.say("still works") is True
        assert eng.say("and again") is True
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "espeak-ng not found" in errors[0].getMessage()
    assert "apt install espeak-ng" in errors[0].getMessage()


def test_piper_needs_binary_and_model(tmp_path, caplog):
    cfg = Config()
    cfg.set("speech.engine", "piper")
    exe, _ = fake(tmp_path, "piper", mode="piper")
    cfg.set("speech.piper_binary", str(exe))
    with caplog.at_level(logging.ERROR, logger="djsmile.speech"):
        assert isinstance(make_engine(cfg.speech), Silent)
    assert "piper_model" in caplog.text
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"fake")
    (tmp_path / "voice.onnx.json").write_text('{"audio": {"sample_rate": 16000}}')
    cfg.set("speech.piper_model", str(model))
    if shutil.which("aplay"):
        eng = make_engine(cfg.speech)
        assert isinstance(eng, Piper) and eng.rate == 16000


def test_piper_renders_raw_audio_to_wav(tmp_path, workdir):
    exe, rec = fake(tmp_path, "piper", mode="piper")
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"fake")
    (tmp_path / "voice.onnx.json").write_text('{"audio": {"sample_rate": 16000}}')
    eng = Piper(str(exe), model=str(model))
    out = eng.render(EVIL[0], tmp_path / "p.wav")
    with wave.open(str(out)) as w:
        assert w.getframerate() == 16000 and w.getnframes() == 400
    [r] = records(rec)
    assert r["stdin"] == EVIL[0] and r["argv"][1:] == ["--model", str(model), "--output-raw"]
    assert list(workdir.iterdir()) == []


needs_espeak = pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed")


@needs_espeak
def test_espeak_renders_a_wav_with_speech(tmp_path):
    out = Espeak("espeak-ng").render("Why did the tripod get promoted? It was the most stable one.",
                                      tmp_path / "joke.wav")
    with wave.open(str(out)) as w:
        frames, rate = w.getnframes(), w.getframerate()
        pcm = w.readframes(frames)
    assert frames / rate > 1.0                             # seconds of speech
    assert max(abs(int.from_bytes(pcm[i:i + 2], "little", signed=True)) for i in range(0, len(pcm), 2)) > 1000


@needs_espeak
@pytest.mark.skipif(not shutil.which("aplay"), reason="aplay (alsa-utils) is not installed")
def test_no_audio_device_is_logged_once_no_crash(caplog):
    eng = Espeak("espeak-ng", device="djsmile_no_such_device", timeout_s=10)
    with caplog.at_level(logging.WARNING, logger="djsmile.speech"):
        assert eng.say("Is anybody listening?") is False
        assert eng.say("Hello?") is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "audio playback failed" in warnings[0].getMessage()
