#!/usr/bin/env python3
"""Joke latency: button release (or tell()) -> first non-silent audio sample from espeak-ng.

The joke is prefetched (a local HTTP server on 127.0.0.1 plays the joke API,
so no network is needed and the prefetch path is the one measured). The button
is a gpiozero MockFactory pin; a short press acts on release, so the clock
starts at the release. espeak-ng's audio is pumped through this process on its
way to ``aplay`` (``-D null`` by default, so no sound card is needed); the
clock stops at the first sample whose magnitude exceeds --threshold.

    .venv/bin/python scripts/bench_joke_latency.py [-n 30] [--device null] [--trigger button|tell]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from djsmile.config import Config  # noqa: E402
from djsmile.gpio import attach_button  # noqa: E402
from djsmile.jokes_bundled import JOKES  # noqa: E402
from djsmile.speech import Espeak  # noqa: E402
from djsmile.teller import JokeTeller  # noqa: E402


class _Api(BaseHTTPRequestHandler):
    n = 0

    def log_message(self, *a):
        pass

    def do_GET(self):
        _Api.n += 1
        body = json.dumps({"id": str(_Api.n), "joke": JOKES[_Api.n % len(JOKES)] + f" ({_Api.n})",
                           "status": 200}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FirstSound:
    """Audio tap: notes when the first sample louder than ``threshold`` goes by."""

    def __init__(self, threshold: int):
        self.threshold = threshold
        self.reset()

    def reset(self):
        self.seen = 0
        self.t = None
        self.done = threading.Event()

    def __call__(self, chunk: bytes):
        if self.t is not None:
            return
        start = max(0, 44 - self.seen)          # skip the WAV header espeak-ng writes first
        self.seen += len(chunk)
        body = chunk[start:]
        for i in range(0, len(body) - 1, 2):
            if abs(int.from_bytes(body[i:i + 2], "little", signed=True)) > self.threshold:
                self.t = time.perf_counter()
                self.done.set()
                return


def machine() -> str:
    model = ""
    for p in ("/proc/device-tree/model",):
        try:
            model = Path(p).read_text().strip("\x00\n")
        except OSError:
            pass
    if not model:
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    import os
    return (f"{model or platform.processor()} ({platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=30, help="presses to time (default 30)")
    ap.add_argument("--device", default="null", help="ALSA device for aplay (default 'null': no sound card needed)")
    ap.add_argument("--trigger", choices=("button", "tell"), default="button",
                    help="start the clock at a MockFactory button release, or at teller.tell()")
    ap.add_argument("--threshold", type=int, default=100, help="first sample louder than this counts (of 32767)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    a = ap.parse_args()

    if not shutil.which("espeak-ng"):
        print("espeak-ng is not installed", file=sys.stderr)
        return 69
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    cfg = Config()
    cfg.set("jokes.api_url", f"http://127.0.0.1:{httpd.server_address[1]}/")
    cfg.set("jokes.prefetch", 3)
    cfg.set("gpio.button_bounce_ms", 0)
    tap = FirstSound(a.threshold)
    engine = Espeak("espeak-ng", voice=cfg.speech.voice, speed=cfg.speech.speed, volume=cfg.speech.volume,
                    output="aplay", device=a.device, aplay=shutil.which("aplay") or "aplay",
                    timeout_s=cfg.speech.timeout_s, max_chars=cfg.speech.max_chars, audio_tap=tap)

    pin = button = None
    if a.trigger == "button":
        from gpiozero import Device
        from gpiozero.pins.mock import MockFactory
        Device.pin_factory = MockFactory()
        pin = Device.pin_factory.pin(cfg.gpio.button_pin)

    lat, origins = [], []
    with tempfile.TemporaryDirectory() as state:
        teller = JokeTeller(cfg.jokes, cfg.speech, Path(state), engine=engine)
        if pin is not None:
            button = attach_button(cfg.gpio, teller)
        try:
            for i in range(a.n + 1):                       # the first run warms caches; not counted
                if not teller.source.wait_ready(1, timeout=5):
                    print("no prefetched joke ready", file=sys.stderr)
                    return 1
                tap.reset()
                if pin is not None:
                    pin.drive_low()
                    time.sleep(0.05)
                    t0 = time.perf_counter()
                    pin.drive_high()                       # short press acts on release
                else:
                    t0 = time.perf_counter()
                    teller.tell()
                ok = tap.done.wait(10)
                teller.wait_idle(30)
                if not ok:
                    print(f"run {i}: no audio", file=sys.stderr)
                    continue
                if i:
                    lat.append((tap.t - t0) * 1000.0)
                    origins.append(teller.last_origin)
                time.sleep(0.1)
        finally:
            if button is not None:
                button.close()
            teller.close()
            httpd.shutdown()

    if not lat:
        print("no measurements", file=sys.stderr)
        return 1
    lat_sorted = sorted(lat)
    p95 = lat_sorted[min(len(lat_sorted) - 1, int(round(0.95 * (len(lat_sorted) - 1))))]
    espeak_out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    espeak_ver = espeak_out.split(":")[1].split()[0]
    res = {
        "date": dt.date.today().isoformat(), "machine": machine(), "espeak_ng": espeak_ver,
        "trigger": a.trigger, "device": a.device, "n": len(lat),
        "median_ms": round(statistics.median(lat), 1), "p95_ms": round(p95, 1),
        "min_ms": round(lat_sorted[0], 1), "max_ms": round(lat_sorted[-1], 1),
        "prefetched": origins.count("api"), "played_ok": engine.spoken,
    }
    if a.json:
        print(json.dumps(res))
    else:
        print(f"{res['date']}  {res['machine']}  espeak-ng {espeak_ver}")
        print(f"trigger={a.trigger} aplay -D {a.device}  n={res['n']} (prefetched API jokes: {res['prefetched']}, "
              f"aplay finished OK: {engine.spoken})")
        print(f"press -> first audio sample: median {res['median_ms']} ms, p95 {res['p95_ms']} ms "
              f"(min {res['min_ms']}, max {res['max_ms']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
