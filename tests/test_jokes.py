"""Joke source: a real HTTP server on 127.0.0.1 plays the API (good, slow, 500, HTML, garbage, huge)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from djsmile import jokes
from djsmile.config import Config
from djsmile.jokes import FetchError, JokeSource, fetch_joke
from djsmile.jokes_bundled import JOKES as BUNDLED

TIMEOUT = 0.6     # jokes.timeout_s used against the test server


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):  # quiet
        pass

    def _send(self, code, body: bytes, ctype="application/json", length=True):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:     # the client gave up (slow answers): expected
            pass

    def do_GET(self):
        srv = self.server
        srv.requests.append({"path": self.path, "headers": dict(self.headers)})
        path = self.path.split("?")[0]
        if path == "/ok":
            srv.count += 1
            n = srv.count
            self._send(200, json.dumps({"id": f"T{n}", "joke": f"Test joke number {n}: why did it pass?",
                                        "status": 200}).encode())
        elif path == "/same":
            self._send(200, json.dumps({"id": "S", "joke": "The one and only server joke.", "status": 200}).encode())
        elif path == "/evil":
            self._send(200, json.dumps({"id": "E", "joke": srv.evil, "status": 200}).encode())
        elif path == "/slow":
            time.sleep(5)
            self._send(200, json.dumps({"id": "L", "joke": "Too late to be funny.", "status": 200}).encode())
        elif path == "/trickle":            # headers at once, then one byte every 0.25 s
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            try:
                for b in b'{"joke": "' + b"x" * 40:
                    self.wfile.write(bytes([b]))
                    self.wfile.flush()
                    time.sleep(0.25)
            except OSError:
                pass
        elif path == "/500":
            self._send(500, b'{"message": "oops"}')
        elif path == "/html":
            self._send(200, b"<html><body><h1>Dad jokes!</h1></body></html>", "text/html")
        elif path == "/badjson":
            self._send(200, b'{"joke": "unterminated')
        elif path == "/wrongtype":
            self._send(200, b'{"joke": 42, "status": 200}')
        elif path == "/list":
            self._send(200, b'["a joke", "in a list"]')
        elif path == "/status":
            self._send(200, b'{"joke": "Not found joke", "status": 404}')
        elif path == "/deep":               # 8,000 nested lists: within the size cap, past Python's recursion limit
            self._send(200, b"[" * 8000 + b"]" * 8000)
        elif path == "/longjoke":
            self._send(200, json.dumps({"joke": "ha " * 2000, "status": 200}).encode())
        elif path == "/huge":                # 1 MB, with Content-Length
            self._send(200, json.dumps({"joke": "x" * 1_000_000, "status": 200}).encode())
        elif path == "/huge-nolength":       # 1 MB, no Content-Length (read until close)
            self._send(200, json.dumps({"joke": "y" * 1_000_000, "status": 200}).encode(), length=False)
        else:
            self._send(404, b"{}")


class JokeServer:
    def __init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.httpd.requests = []
        self.httpd.count = 0
        self.httpd.evil = ""
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    @property
    def requests(self):
        return self.httpd.requests

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    s = JokeServer()
    yield s
    s.close()


def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def jcfg(url: str, **kw):
    cfg = Config()
    cfg.set("jokes.api_url", url)
    cfg.set("jokes.timeout_s", TIMEOUT)
    for k, v in kw.items():
        cfg.set(f"jokes.{k}", v)
    return cfg.jokes


# --------------------------------------------------------------------------- the API client
def test_fetch_sends_accept_and_user_agent(server):
    jid, text = fetch_joke(server.url("/ok"), TIMEOUT)
    assert (jid, text) == ("T1", "Test joke number 1: why did it pass?")
    h = server.requests[-1]["headers"]
    assert h["Accept"] == "application/json"
    assert "djsmile" in h["User-Agent"] and jokes.PROJECT_URL in h["User-Agent"]


@pytest.mark.parametrize("path, words", [
    ("/slow", "within"),
    ("/trickle", "slow"),
    ("/500", "HTTP 500"),
    ("/html", "not JSON"),
    ("/badjson", "not JSON"),
    ("/wrongtype", "joke"),
    ("/list", "not an object"),
    ("/deep", "not JSON"),
    ("/status", "status"),
    ("/longjoke", "characters"),
    ("/huge", "too big"),
    ("/huge-nolength", "too big"),
])
def test_fetch_rejects_bad_answers_quickly(server, path, words):
    t0 = time.monotonic()
    with pytest.raises(FetchError, match=words):
        fetch_joke(server.url(path), TIMEOUT)
    assert time.monotonic() - t0 < TIMEOUT + 0.5


def test_fetch_unreachable():
    t0 = time.monotonic()
    with pytest.raises(FetchError, match="cannot connect"):
        fetch_joke(dead_url(), TIMEOUT)
    assert time.monotonic() - t0 < TIMEOUT + 0.5


# --------------------------------------------------------------------------- source: fallback, cache, no repeat
def test_fallback_goes_api_then_cache_then_bundled(server, tmp_path):
    # The device prefetches 3 jokes from a working API, then stops (restart).
    src = JokeSource(jcfg(server.url("/ok"), prefetch=3, no_repeat=20), tmp_path).start()
    assert src.wait_ready(3, timeout=5)
    first = src.next_joke()
    assert first.origin == "api" and first.text.startswith("Test joke number")
    src.close()
    cached = json.loads((tmp_path / "jokes_cache.json").read_text())
    assert len(cached["jokes"]) >= 3

    # After the restart the API answers 500: the two cached jokes not told yet, then the bundled list.
    src = JokeSource(jcfg(server.url("/500"), prefetch=0, no_repeat=20), tmp_path)
    told = [src.next_joke(wait_api=TIMEOUT) for _ in range(len(cached["jokes"]) + 1)]
    origins = [j.origin for j in told]
    assert origins == ["cache"] * (len(cached["jokes"]) - 1) + ["bundled", "bundled"]
    assert all(j.text.startswith("Test joke number") for j in told if j.origin == "cache")
    assert first.text not in [j.text for j in told]          # told before the restart: not repeated
    assert told[-1].text in BUNDLED
    assert "HTTP 500" in src.last_error
    src.close()


def test_no_repeat_over_many_jokes(tmp_path):
    n = 20
    src = JokeSource(jcfg("", no_repeat=n), tmp_path)
    told = [src.next_joke().text for _ in range(3 * len(BUNDLED))]
    for i in range(len(told)):
        window = told[max(0, i - n + 1): i + 1]
        assert len(set(window)) == len(window), f"repeat within {n} jokes at #{i}"


def test_no_repeat_survives_restart(tmp_path):
    cfg = jcfg("", no_repeat=len(BUNDLED) - 5)
    src = JokeSource(cfg, tmp_path)
    before = {src.next_joke().text for _ in range(10)}
    src.close()
    src = JokeSource(cfg, tmp_path)
    assert src.last_told in before
    after = {src.next_joke().text for _ in range(len(BUNDLED) - 15)}
    assert not before & after


def test_api_repeating_itself_is_not_repeated(server, tmp_path):
    src = JokeSource(jcfg(server.url("/same"), no_repeat=5, prefetch=0), tmp_path)
    a = src.next_joke(wait_api=TIMEOUT)
    b = src.next_joke(wait_api=TIMEOUT)
    assert a.origin == "api" and a.text == "The one and only server joke."
    assert b.text != a.text and b.origin == "bundled"


def test_prefetched_joke_is_ready_at_once(server, tmp_path):
    src = JokeSource(jcfg(server.url("/ok"), prefetch=2), tmp_path).start()
    try:
        assert src.wait_ready(2, timeout=5)
        t0 = time.perf_counter()
        j = src.next_joke()
        assert time.perf_counter() - t0 < 0.05
        assert j.origin == "api"
        assert src.wait_ready(2, timeout=5)             # refilled in the background
    finally:
        src.close()


def test_cache_is_bounded_and_written_atomically(server, tmp_path):
    src = JokeSource(jcfg(server.url("/ok"), cache_size=3, prefetch=0, no_repeat=0), tmp_path)
    for _ in range(6):
        assert src.next_joke(wait_api=TIMEOUT).origin == "api"
    src.close()
    data = json.loads((tmp_path / "jokes_cache.json").read_text())
    assert [e["joke"] for e in data["jokes"]] == [f"Test joke number {n}: why did it pass?" for n in (4, 5, 6)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jokes_cache.json"]   # no temp files left


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00garbage", b'["a", "list"]', b'{"jokes": 5}'])
def test_corrupt_cache_is_set_aside(tmp_path, caplog, content):
    (tmp_path / "jokes_cache.json").write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="djsmile.jokes"):
        src = JokeSource(jcfg("", no_repeat=3), tmp_path)
    assert "corrupt" in caplog.text
    j = src.next_joke()
    assert j.origin == "bundled"
    src.close()
    data = json.loads((tmp_path / "jokes_cache.json").read_text())
    assert data["recent"] == [j.text]
    assert (tmp_path / "jokes_cache.json.corrupt").read_bytes() == content


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("kind", ["nested 100,000 deep", "a folder", "jokes nested deep"])
def test_cache_that_cannot_load_is_set_aside_not_fatal(tmp_path, caplog, kind):
    cache = tmp_path / "jokes_cache.json"
    if kind == "a folder":
        cache.mkdir()
    elif kind == "jokes nested deep":
        cache.write_bytes(b'{"version": 1, "jokes": ' + DEEP + b', "recent": []}')
    else:
        cache.write_bytes(DEEP)
    with caplog.at_level(logging.WARNING, logger="djsmile.jokes"):
        src = JokeSource(jcfg("", no_repeat=3), tmp_path)
    assert "jokes_cache.json.corrupt" in caplog.text
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and lines[0].exc_info is None
    j = src.next_joke()
    src.close()
    assert json.loads(cache.read_text())["recent"] == [j.text]       # a fresh cache in its place
    assert (tmp_path / "jokes_cache.json.corrupt").exists()


def test_cli_joke_with_a_deeply_nested_cache_still_tells_a_joke(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "jokes_cache.json").write_bytes(DEEP)
    for _ in range(2):      # and the next start is clean
        r, _ = run_cli(tmp_path, "")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() in BUNDLED
        assert "Traceback" not in r.stderr
    assert (tmp_path / "state" / "jokes_cache.json.corrupt").read_bytes() == DEEP


def test_stale_temp_files_are_cleaned_at_start(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = [tmp_path / f".jokes_cache.json.{dead.stdout.strip()}.tmp", tmp_path / ".jokes_cache.json.4194305.tmp"]
    live = tmp_path / f".jokes_cache.json.{os.getppid()}.tmp"      # a process still writing it
    other = tmp_path / ".photo.jpg.123.tmp"                          # not ours
    for p in (*stale, live, other):
        p.write_bytes(b'{"version": 1, "jo')
    src = JokeSource(jcfg("", no_repeat=3), tmp_path)
    src.close()
    assert not any(p.exists() for p in stale)
    assert live.exists() and other.exists()


def test_cache_keeps_only_clean_text(tmp_path):
    (tmp_path / "jokes_cache.json").write_text(json.dumps(
        {"version": 1, "jokes": [{"id": "x", "joke": "Bell\x07 and\x1b[31m escape"}, {"joke": 7}], "recent": []}))
    src = JokeSource(jcfg("", no_repeat=0), tmp_path)
    assert src.cached() == ["Bell and[31m escape"]
    assert src.next_joke().origin == "cache"


def test_unwritable_state_dir_still_tells_jokes(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="djsmile.jokes"):
        src = JokeSource(jcfg("", no_repeat=3), blocker / "state")
        assert src.next_joke().text in BUNDLED
        src.close()
    assert "cannot be written" in caplog.text


# --------------------------------------------------------------------------- malformed answers (raw sockets)
_JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
_GOOD_BODY = json.dumps({"id": "G", "joke": "A good joke after the bad ones.", "status": 200}).encode()
MALFORMED = {   # name: (raw answer, seconds to keep the socket open after it, words the reason must hold)
    "short": (_JSON_HEAD + b"Content-Length: 100\r\n\r\n" + b'{"joke": "Why did the', 0.0, "cut short"),
    "stalled": (_JSON_HEAD + b"Content-Length: 100\r\n\r\n" + b'{"joke": "Why did the', 5.0, "stalled"),
    "bad-gzip": (_JSON_HEAD + b"Content-Encoding: gzip\r\nContent-Length: 20\r\n\r\nthis is not gzip!!!!",
                 0.0, "gzip"),
    "bad-chunking": (_JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + b'{"joke"' + b"\r\n0\r\n\r\n",
                     0.0, "chunked"),
}
GOOD = (_JSON_HEAD + b"Content-Length: %d\r\n\r\n" % len(_GOOD_BODY) + _GOOD_BODY, 0.0, "")


class RawServer:
    """A 127.0.0.1 socket server that answers each request with the next raw bytes from ``answers``
    (the last one repeats), so answers can break HTTP in ways http.server never would."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.times: list[float] = []
        self._stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/j"

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    more = conn.recv(4096)
                    if not more:
                        return
                    data += more
                self.times.append(time.monotonic())
                raw, hold, _ = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
                conn.sendall(raw)
                self._stop.wait(hold)
            except OSError:
                pass

    def close(self):
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def raw_server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    made = []

    def make(answers):
        made.append(RawServer(answers))
        return made[-1]

    yield make
    for s in made:
        s.close()


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_answer_is_a_fetch_error_with_its_true_reason(raw_server, name):
    srv = raw_server([MALFORMED[name]])
    t0 = time.monotonic()
    with pytest.raises(FetchError) as err:
        fetch_joke(srv.url, TIMEOUT)
    assert MALFORMED[name][2] in str(err.value)
    assert "no answer within" not in str(err.value)
    assert time.monotonic() - t0 < 3 * TIMEOUT + 1.0


@pytest.mark.slow
def test_prefetch_survives_malformed_answers_with_one_line_each_and_backoff(raw_server, tmp_path, caplog,
                                                                             monkeypatch):
    monkeypatch.setattr(jokes, "RETRY_MIN_S", 0.1)
    crashed = []
    monkeypatch.setattr(threading, "excepthook", crashed.append)
    srv = raw_server([*MALFORMED.values(), GOOD])
    with caplog.at_level(logging.INFO, logger="djsmile.jokes"):
        src = JokeSource(jcfg(srv.url, prefetch=1, no_repeat=0), tmp_path).start()
        try:
            assert src.wait_ready(1, timeout=20), f"prefetch gave up; log: {caplog.text}"
            assert src.prefetching
            joke = src.next_joke()
        finally:
            src.close()
    assert crashed == []
    assert (joke.origin, joke.text) == ("api", "A good joke after the bad ones.")
    failures = [r for r in caplog.records if r.name == "djsmile.jokes" and "next try in" in r.getMessage()]
    assert [w for *_, w in MALFORMED.values()] == [
        next((w for *_, w in MALFORMED.values() if w in r.getMessage()), r.getMessage()) for r in failures]
    for r in caplog.records:
        assert r.exc_info is None and "\n" not in r.getMessage(), r.getMessage()
    # backoff: each retry waits at least twice as long as the one before (0.1, 0.2, 0.4, 0.8 s)
    gaps = [b - a for a, b in zip(srv.times, srv.times[1:])][:len(MALFORMED)]
    assert len(gaps) == len(MALFORMED)
    for i, gap in enumerate(gaps):
        assert gap >= 0.1 * 2 ** i * 0.9, gaps


# --------------------------------------------------------------------------- `djsmile joke`
def run_cli(tmp_path, url, *extra, no_repeat=20, speech='engine = "none"'):
    cfg = tmp_path / "djsmile.toml"
    cfg.write_text(f'[jokes]\napi_url = "{url}"\nno_repeat = {no_repeat}\n[speech]\n{speech}\n')
    env = dict(os.environ, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "djsmile", "joke", "--config", str(cfg),
                        "--state-dir", str(tmp_path / "state"), *extra],
                       cwd=tmp_path, capture_output=True, text=True, timeout=30, env=env)
    return r, time.monotonic() - t0


def test_cli_joke_from_api(server, tmp_path):
    r, _ = run_cli(tmp_path, server.url("/ok"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Test joke number 1: why did it pass?"
    assert "unavailable" not in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("path", ["dead", "/slow", "/500", "/html", "/huge"])
def test_cli_joke_falls_back_within_5s(server, tmp_path, path):
    url = dead_url() if path == "dead" else server.url(path)
    r, dt = run_cli(tmp_path, url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in BUNDLED
    assert "bundled" in r.stderr
    assert dt < 5.0


def test_cli_uses_the_shared_cache(server, tmp_path):
    r, _ = run_cli(tmp_path, server.url("/ok"), no_repeat=0)
    assert r.returncode == 0
    r, dt = run_cli(tmp_path, dead_url(), "--say", no_repeat=0)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Test joke number 1: why did it pass?"
    assert "cache" in r.stderr and dt < 5.0


def fake_espeak(tmp_path, rc: int, message: str = "") -> str:
    exe = tmp_path / "fake-espeak"
    exe.write_text(f"#!/bin/sh\ncat > /dev/null\necho '{message}' >&2\nexit {rc}\n")
    exe.chmod(0o755)
    return f'engine = "espeak-ng"\nespeak_binary = "{exe}"\noutput = "engine"'


def test_cli_joke_say_without_piper_exits_69_with_one_line(tmp_path):
    r, _ = run_cli(tmp_path, "", "--say", speech=f'engine = "piper"\npiper_binary = "{tmp_path / "no-piper"}"')
    assert r.returncode == 69, r.stderr
    assert r.stdout.strip() in BUNDLED                        # the joke is still printed
    said = [line for line in r.stderr.splitlines() if "piper" in line]
    assert len(said) == 1 and "piper_binary" in said[0], r.stderr
    assert "Traceback" not in r.stderr


def test_cli_joke_say_exits_69_when_playback_fails(tmp_path):
    r, _ = run_cli(tmp_path, "", "--say", speech=fake_espeak(tmp_path, 1, "cannot open audio device hw:7"))
    assert r.returncode == 69, r.stderr
    assert r.stdout.strip() in BUNDLED
    said = [line for line in r.stderr.splitlines() if "audio device" in line]
    assert len(said) == 1, r.stderr
    assert "Traceback" not in r.stderr
    r, _ = run_cli(tmp_path, "", "--say", speech=fake_espeak(tmp_path, 0))
    assert r.returncode == 0, r.stderr


ALSA_NO_CARD = ("ALSA lib confmisc.c:855:(parse_card) cannot find card '0'\n"
                "ALSA lib pcm.c:2666:(snd_pcm_open_noupdate) Unknown PCM default\n"
                "error: No such file or directory")


def test_cli_joke_say_exits_69_when_the_engine_plays_itself_into_no_sound_card(tmp_path):
    """speech.output = "engine": espeak-ng exits 0 even when ALSA has no card; its stderr tells."""
    exe = tmp_path / "fake-espeak"
    exe.write_text("#!/bin/sh\ncat > /dev/null\nprintf '%s\\n' \"" + ALSA_NO_CARD.replace("\n", "\" \"") +
                   "\" >&2\nexit 0\n")
    exe.chmod(0o755)
    r, _ = run_cli(tmp_path, "", "--say",
                   speech=f'engine = "espeak-ng"\nespeak_binary = "{exe}"\noutput = "engine"')
    assert r.returncode == 69, r.stderr
    assert r.stdout.strip() in BUNDLED
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("ERROR")]
    assert len(errors) == 1 and "Unknown PCM default" in errors[0] and "sound card" in errors[0], r.stderr


def test_cli_joke_say_with_real_espeak_and_no_sound_card_is_not_silent(tmp_path):
    import shutil
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    if Path("/proc/asound/cards").exists() and "no soundcards" not in Path("/proc/asound/cards").read_text():
        pytest.skip("this machine has a sound card")
    r, _ = run_cli(tmp_path, "", "--say", speech='engine = "espeak-ng"\noutput = "engine"')
    assert r.returncode == 69, r.stderr
    assert r.stdout.strip() in BUNDLED
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("ERROR")]) == 1, r.stderr
