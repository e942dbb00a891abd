"""A slowloris on the live view costs no photo: ``djsmile run --web`` under a 256-fd limit, 300 slow sockets.

Each attacking socket sends half a request (no token) and then one header line a second, as
long as the server lets it; one the server closes is opened again at once. Meanwhile a
clip of real faces plays in real time and fires a shot on every smile. Wanted: every shot
has its photo and its event line, the loop keeps its rate, the process does not spin on
"Too many open files", and a viewer with the token is served once the attack ends.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TOKEN = "s3cret-token"
PAIRS = 12          # straight face, then smile, each 1 s at 10 fps: one shot per smile
ATTACK_S = 12.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clip(path: Path, photos) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 480))
    assert vw.isOpened()
    for k in range(PAIRS):
        for label in ("no_smile", "smile"):
            g = photos[label][k % len(photos[label])]
            for _ in range(10):
                vw.write(cv2.cvtColor(g, cv2.COLOR_GRAY2BGR))
    vw.release()
    return path


class Slowloris:
    """``n`` sockets, each a half-finished ``GET /`` fed one header line a second; reopened when closed."""

    def __init__(self, port: int, n: int = 300):
        self.port, self.n = port, n
        self.stop = threading.Event()
        self.opened = 0
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self):
        s = socket.socket()
        s.settimeout(1.0)
        try:
            s.connect(("127.0.0.1", self.port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        except OSError:
            s.close()
            return None
        s.setblocking(False)
        self.opened += 1
        return s

    def _run(self):
        socks = []
        try:
            while not self.stop.is_set():
                while len(socks) < self.n and not self.stop.is_set():
                    s = self._open()
                    if s is None:
                        break
                    socks.append(s)
                self.peak = max(self.peak, len(socks))
                alive = []
                for s in socks:
                    try:
                        s.send(b"X-Slow: a\r\n")
                        alive.append(s)
                    except OSError:
                        s.close()
                socks = alive
                self.stop.wait(1.0)
        finally:
            for s in socks:
                s.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self._thread.join(30)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status(port: int, path: str = "/status.json"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", f"{path}?token={TOKEN}")
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
def test_slowloris_under_256_fds_costs_no_shot_and_the_viewer_gets_in_after(tmp_path, calib_photos):
    clip = _clip(tmp_path / "clip.avi", calib_photos)
    state = tmp_path / "state"
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("NOTIFY_SOCKET", None)
    cmd = ["prlimit", "--nofile=256:256", "--", PY, "-m", "djsmile", "run", "--source", str(clip),
           "--state-dir", str(state), "--no-gpio", "--web", f"127.0.0.1:{port}", "--realtime",
           "--set", f'web.token="{TOKEN}"', "--set", 'jokes.api_url=""', "--set", 'speech.engine="none"',
           "--no-jokes", "--set", "trigger.cooldown_s=0.5", "--set", 'detector.async_full="off"',
           "--log-level", "INFO"]
    log_path = tmp_path / "run.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while "running;" not in log_path.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.1)
        cpu0, wall0 = _cpu_s(proc.pid), time.monotonic()
        with Slowloris(port) as attack:
            time.sleep(ATTACK_S)
            cpu1, wall1 = _cpu_s(proc.pid), time.monotonic()
            os.kill(proc.pid, signal.SIGUSR1)      # the status line: the loop's rate under attack
            time.sleep(0.5)
        # the attack is over: a viewer with the token is served (within a generous deadline)
        served = None
        deadline = time.monotonic() + 20
        while served is None and time.monotonic() < deadline:
            try:
                code, body = _status(port)
                if code == 200:
                    served = json.loads(body)
            except OSError:
                time.sleep(0.2)
        assert served is not None, "no answer to a viewer with the token after the attack"
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = log_path.read_text()
    assert rc == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert attack.opened >= 300, f"the attack opened only {attack.opened} sockets"
    m = re.search(r"stopped after (\d+) frames: (\d+) shots?", log)
    assert m, log[-3000:]
    frames, shots = int(m.group(1)), int(m.group(2))
    assert frames == PAIRS * 20, log[-3000:]
    # every shot written: one event line each, each with its photo on disk
    lines = (state / "events.jsonl").read_text().splitlines() if (state / "events.jsonl").exists() else []
    events = [json.loads(ln) for ln in lines]
    assert shots == PAIRS, f"{shots} shots for {PAIRS} smiles\n" + log[-3000:]
    assert len(events) == shots, f"{shots} shots, {len(events)} event lines\n" + log[-3000:]
    assert all(e["photo"] and Path(e["photo"]).is_file() for e in events), events
    assert len(list((state / "photos").glob("*.jpg"))) == shots
    # the loop kept its rate; the process did not spin (a busy accept loop is a core's worth of CPU)
    fps = [float(x) for x in re.findall(r"([\d.]+) fps, \d+ faces?", log)]
    assert fps and fps[-1] >= 5.0, log[-3000:]
    cpu_share = (cpu1 - cpu0) / (wall1 - wall0)
    assert cpu_share < 0.9, f"the run used {cpu_share:.0%} of a core during the attack"
    assert "Too many open files" not in log
    web_lines = [ln for ln in log.splitlines() if "djsmile.web" in ln]
    assert len(web_lines) < 25, "\n".join(web_lines)      # a few lines per kind, then "K more suppressed"
