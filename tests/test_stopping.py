"""``djsmile run`` stops within 2 s on SIGTERM / SIGINT / SIGHUP, LED off, whatever the source does.

The stalling sources are real: a local HTTP server (127.0.0.1, a free port)
that sends the first part of an MJPG AVI and then holds the connection
open, and one that accepts the connection and never answers. OpenCV's own
timeout for both is 30 s.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import PY, QUIET, ROOT, SHIPPED, djsmile_env, read_until

# every face counts as smiling at once, so the LED (GPIO17, hold mode) is lit while a face is seen
# (full detection in the loop: the face is found on the first frame however loaded the machine is)
ALWAYS_SMILING = ["--set", "trigger.on_threshold=0.001", "--set", "trigger.off_threshold=0.0005",
                  "--set", "trigger.hold_frames=1", "--set", 'detector.async_full="off"']
# the stalled stream must not end by itself (OpenCV's time-out) before the test signals it, however slow the machine
NO_STREAM_TIMEOUT = ["--set", "camera.stream_timeout_s=600"]
STOP_BOUND_S = 4.0  # the promise is 2 s; the bound leaves room for a loaded test machine

# Runs `djsmile ...` in-process and reports the LED pin: LED-ON once lit, LED-AFTER 0|1 at the end.
STOP_SCRIPT = textwrap.dedent("""
    import sys, threading, time
    from gpiozero import Device
    from djsmile import cli
    def led():
        f = Device.pin_factory
        for info, pin in list(getattr(f, "pins", {}).items()):
            if "GPIO17" in info.names:
                return pin
    def watch():
        while True:
            pin = led()
            if pin is not None and pin.state:
                print("LED-ON", flush=True)
                return
            time.sleep(0.01)
    threading.Thread(target=watch, daemon=True).start()
    rc = cli.main(sys.argv[1:])
    pin = led()
    print("LED-AFTER", int(bool(pin.state)) if pin is not None else "none", flush=True)
    sys.exit(rc)
""")


@pytest.fixture(scope="module")
def model():
    if not SHIPPED.is_file():
        pytest.skip(f"needs the shipped model {SHIPPED}")
    return SHIPPED


def _face_clip(path: Path, face_patch, n: int) -> Path:
    """An MJPG AVI (640x480, 30 fps, ``n`` frames) of one real face, 160 px wide."""
    face, w, bg = face_patch
    k = 160 / w
    face = cv2.resize(face, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640), bg, np.uint8)
    y, x = (480 - face.shape[0]) // 2, (640 - face.shape[1]) // 2
    canvas[y:y + face.shape[0], x:x + face.shape[1]] = face
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 480))
    bgr = cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)
    for _ in range(n):
        wr.write(bgr)
    wr.release()
    return path


@pytest.fixture(scope="module")
def face_avi(tmp_path_factory, _large_face) -> bytes:
    """3 s of one real face as an AVI's bytes (the stalling server sends its first second)."""
    return _face_clip(tmp_path_factory.mktemp("avi") / "face.avi", _large_face, 90).read_bytes()


@pytest.fixture(scope="module")
def long_face_clip(tmp_path_factory, _large_face) -> Path:
    """15 s of one real face, a local file played in real time."""
    return _face_clip(tmp_path_factory.mktemp("avi") / "long.avi", _large_face, 450)


class StallingServer:
    """``mode="midway"``: 200 + the first third of ``body``, then silence; ``mode="open"``: never answers."""

    def __init__(self, body: bytes, mode: str):
        self.release = threading.Event()
        self.connected = threading.Event()
        self.mode = mode
        if mode == "open":
            self.sock = socket.create_server(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
            self.conns = []

            def accept():
                while not self.release.is_set():
                    try:
                        c, _ = self.sock.accept()
                    except OSError:
                        return
                    self.conns.append(c)
                    self.connected.set()
            self.thread = threading.Thread(target=accept, daemon=True)
        else:
            outer = self

            class Handler(BaseHTTPRequestHandler):
                def do_GET(self):
                    self.send_response(200)
                    self.send_header("Content-Type", "video/x-msvideo")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 3])
                    self.wfile.flush()
                    outer.connected.set()
                    outer.release.wait(120)

                def log_message(self, *a):
                    pass
            self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            self.httpd.daemon_threads = True
            self.port = self.httpd.server_address[1]
            self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.avi"

    def close(self):
        self.release.set()
        if self.mode == "open":
            self.sock.close()
            for c in self.conns:
                c.close()
        else:
            self.httpd.shutdown()
            self.httpd.server_close()


def _stop(proc, sig) -> tuple[float, float | None, str, str]:
    """Send ``sig``; return (seconds to the process's end, seconds to its LED-AFTER line or None, out, err)."""
    t0 = time.monotonic()
    proc.send_signal(sig)
    out, cleaned = [], None
    try:
        for line in proc.stdout:  # LED-AFTER is printed once djsmile's own cleanup is done
            out.append(line)
            if line.startswith("LED-AFTER") and cleaned is None:
                cleaned = time.monotonic() - t0
        rest, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return time.monotonic() - t0, cleaned, "".join(out) + rest, err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_signal_stops_a_file_within_2s_with_the_led_off(tmp_path, model, long_face_clip, sig):
    cmd = [PY, "-c", STOP_SCRIPT, "run", "--source", str(long_face_clip), "--model", str(model),
           "--state-dir", str(tmp_path / "state"), "--realtime", *QUIET, "--set", 'gpio.pin_factory="mock"',
           *ALWAYS_SMILING]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=djsmile_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        assert "LED-ON" in line, "the LED never lit: " + proc.communicate(timeout=40)[1][-3000:]
        took, cleaned, out, err = _stop(proc, sig)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"{signal.Signals(sig).name} while a file plays: cleaned up in {cleaned:.2f} s, exited in {took:.2f} s")
    assert took < STOP_BOUND_S, f"took {took:.2f} s to stop: {err[-3000:]}"
    # Ctrl+C is 130 with a line saying so (the README's table); systemctl stop / a closed terminal is 0
    assert proc.returncode == (130 if sig == signal.SIGINT else 0), err[-3000:]
    assert ("interrupted (Ctrl+C)" in err) == (sig == signal.SIGINT), err[-3000:]
    assert "LED-AFTER 0" in out
    assert "stopped after" in err and "LED off" in err
    assert not list((tmp_path / "state" / "photos").glob("*.tmp"))


def test_sigusr1_logs_the_status_line_and_the_run_goes_on(tmp_path, model, long_face_clip):
    cmd = [PY, "-m", "djsmile", "run", "--source", str(long_face_clip), "--model", str(model),
           "--state-dir", str(tmp_path / "state"), "--realtime", "--no-gpio", *QUIET]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=djsmile_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        read_until(proc.stderr, "running;")
        proc.send_signal(signal.SIGUSR1)
        status = read_until(proc.stderr, " fps, ", 30)[-1]
        assert "shot" in status, status
        assert proc.poll() is None  # still running
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "stopped after" in err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_stream_that_stalls_midway_stops_within_2s_led_off(tmp_path, model, face_avi, sig):
    server = StallingServer(face_avi, "midway")
    cmd = [PY, "-c", STOP_SCRIPT, "run", "--source", server.url, "--model", str(model),
           "--state-dir", str(tmp_path / "state"), *QUIET, "--set", 'gpio.pin_factory="mock"', *ALWAYS_SMILING,
           *NO_STREAM_TIMEOUT]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=djsmile_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()  # LED-ON, or "" if it ended first
        assert "LED-ON" in line, "the LED never lit: " + proc.communicate(timeout=40)[1][-3000:]
        assert server.connected.wait(30)
        time.sleep(2.0)  # the 30 frames sent are long processed: the loop now waits on the stalled stream
        assert proc.poll() is None, "it ended by itself: " + proc.communicate()[1][-3000:]
        took, cleaned, out, err = _stop(proc, sig)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.close()
    print(f"{signal.Signals(sig).name} while the stream stalls: cleaned up in {cleaned:.2f} s, exited in {took:.2f} s")
    assert took < STOP_BOUND_S, f"took {took:.2f} s to stop: {err[-3000:]}"
    assert proc.returncode == 0, err[-3000:]
    assert "LED-AFTER 0" in out
    assert "stopped after" in err and "LED off" in err
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_stream_that_hangs_on_open_stops_within_2s(tmp_path, model, sig):
    server = StallingServer(b"", "open")
    cmd = [PY, "-m", "djsmile", "run", "--source", server.url, "--model", str(model),
           "--state-dir", str(tmp_path / "state"), *QUIET, "--set", 'gpio.pin_factory="mock"', *NO_STREAM_TIMEOUT]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=djsmile_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert server.connected.wait(60), "djsmile never connected"
        time.sleep(0.3)  # inside OpenCV's open now
        took, _, out, err = _stop(proc, sig)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.close()
    print(f"{signal.Signals(sig).name} while the stream opens: exited in {took:.2f} s")
    assert took < STOP_BOUND_S, f"took {took:.2f} s to stop: {err[-3000:]}"
    assert proc.returncode == 0, err[-3000:]
    assert "stopped after 0 frames" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_stream_silent_past_camera_stream_timeout_s_ends_the_run_with_69(tmp_path, model, face_avi):
    """camera.stream_timeout_s replaces OpenCV's fixed 30 s: a stalled stream ends the run, and systemd restarts it."""
    server = StallingServer(face_avi, "midway")
    cmd = [PY, "-m", "djsmile", "run", "--source", server.url, "--model", str(model),
           "--state-dir", str(tmp_path / "state"), *QUIET, "--no-gpio", "--set", "camera.stream_timeout_s=2"]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=djsmile_env(), capture_output=True, text=True, timeout=60)
    finally:
        server.close()
    took = time.monotonic() - t0
    assert p.returncode == 69, p.stderr[-3000:]
    assert took < 25, f"the stalled stream took {took:.1f} s to end the run (OpenCV's default is 30 s)"
    assert "Traceback" not in p.stderr
