#!/usr/bin/env python3
"""Does MQTT slow detection? FPS of the real loop with MQTT off vs on (a real Mosquitto broker).

Runs ``djsmile.service.run`` (the loop of ``djsmile run``) over the same clip as
fast as it can (``--no-realtime``), with the real ``Actions`` (photos and
``events.jsonl`` in a temp folder), in back-to-back pairs of:

- ``off``: no MQTT,
- ``on``:  an ``MqttSink`` connected to the broker, publishing the state
  (each frame handed over, at most 2 a second sent), every event and every
  photo (``mqtt.photo = true``).

The trigger fires on every face (tiny thresholds, ``hold_frames = 1``,
``cooldown_s = 0.5`` of stream time, no re-arm): many more shots, hence
events and photos, than a real smile gives, so MQTT has the most to do.
Each pair gives a ratio on / off; their median (the issue asks for >= 0.95)
is robust to a machine whose load drifts. Exit status 1 when it is below.
It also reports CPU time per frame of the loop thread, the whole process and
the two MQTT threads alone (djsmile's worker, paho's loop): on a loaded
machine that last figure is the firmer measure of what MQTT costs.

Broker: ``--broker HOST:PORT``, else a Mosquitto started here on a free
127.0.0.1 port with its own config file (``mosquitto`` must be installed).

    .venv/bin/python scripts/bench_mqtt.py            # 7 pairs of 200-frame runs
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_web  # noqa: E402  (the same clip as the live-view benchmark)
from bench_web import make_clip  # noqa: E402

from djsmile import service  # noqa: E402
from djsmile.actions import Actions  # noqa: E402
from djsmile.config import Config  # noqa: E402
from djsmile.faces import FaceFinder  # noqa: E402
from djsmile.model import SmileModel, default_model_path  # noqa: E402
from djsmile.mqtt import MqttSink  # noqa: E402
from djsmile.sources import open_source  # noqa: E402


def start_mosquitto(folder: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = folder / "mosquitto.conf"
    conf.write_text(f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous true\n")
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("mosquitto did not start")


def mqtt_threads_cpu() -> float:
    """CPU seconds used so far by the MQTT threads: djsmile's worker and paho's network loop."""
    total = 0.0
    for t in threading.enumerate():
        if t.name.startswith(("djsmile-mqtt", "paho-mqtt")) and t.ident is not None:
            try:
                total += time.clock_gettime(time.pthread_getcpuclockid(t.ident))
            except OSError:
                pass
    return total


def one_run(kind: str, args, model, state: Path, host: str, port: int) -> dict:
    cfg = Config()
    cfg.camera.realtime = False
    cfg.jokes.on_smile = False
    for key in ("led_enabled", "shutter_enabled", "button_enabled"):
        setattr(cfg.gpio, key, False)
    t = cfg.trigger
    t.on_threshold, t.off_threshold, t.hold_frames, t.cooldown_s, t.rearm = 0.001, 0.0005, 1, 0.5, False
    cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.device_id = host, port, "bench"
    source = open_source(args.source, cfg)
    finder = FaceFinder.from_config(cfg.detector)
    sink = None
    if kind == "on":
        sink = MqttSink(cfg.mqtt, version="bench")
    actions = Actions(cfg.gpio, cfg.storage, state, on_event=sink.event if sink else None)
    if sink:
        sink.start()
        deadline = time.monotonic() + 10
        while not sink.connected and time.monotonic() < deadline:
            time.sleep(0.01)
    stats = service.LoopStats()
    t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
    try:
        service.run(cfg, source, service.LoopParts(model=model, finder=finder, actions=actions, stats=stats,
                                                  sinks=[sink]), max_frames=args.frames)
    finally:
        elapsed = time.perf_counter() - t0
        loop_cpu, proc_cpu = time.thread_time() - c0, time.process_time() - p0
        mqtt_cpu = mqtt_threads_cpu()   # since sink.start(), connection included: an upper bound
        source.close()
        actions.close(5.0)
        if sink:
            sink.close(2.0)
    return {"kind": kind, "fps": stats.frames / elapsed, "frames": stats.frames, "s": elapsed,
            "shots": stats.shots, "loop_ms": 1000 * loop_cpu / stats.frames,
            "proc_ms": 1000 * proc_cpu / stats.frames, "mqtt_ms": 1000 * mqtt_cpu / stats.frames,
            "events_sent": sink.events_sent if sink else 0, "states_sent": sink.states_sent if sink else 0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", help="video file or image folder (default: a clip made from the shared photos)")
    ap.add_argument("--model", default=str(default_model_path()), help="TFLite model (default: %(default)s)")
    ap.add_argument("--frames", type=int, default=200, help="frames per run (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=7, help="back-to-back off/on pairs (default: %(default)s)")
    ap.add_argument("--broker", metavar="HOST:PORT", help="an existing broker (default: start a Mosquitto)")
    args = ap.parse_args(argv)
    if os.environ.get("DJSMILE_SHARED"):  # where ../shared is, as for the tests
        bench_web.SHARED_PHOTOS = Path(os.environ["DJSMILE_SHARED"]) / "datasets" / "djsmile" / "photos"
    if not args.source:
        args.source = str(make_clip(ROOT / ".cache" / "bench_web" / "clip.avi", max(300, args.frames)))
    model = SmileModel(args.model, num_threads=1)
    started = datetime.datetime.now(datetime.timezone.utc)
    runs, ratios, cpu_ratios = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        proc = None
        if args.broker:
            host, port = args.broker.rsplit(":", 1)
            port = int(port)
        else:
            proc, port = start_mosquitto(Path(tmp))
            host = "127.0.0.1"
        try:
            one_run("off", args, model, Path(tmp) / "warm", host, port)   # warm-up; not counted
            for i in range(args.repeats):
                this = {}
                for kind in (("off", "on") if i % 2 == 0 else ("on", "off")):
                    r = one_run(kind, args, model, Path(tmp) / f"{kind}{i}", host, port)
                    runs.append(r)
                    this[kind] = r["fps"]
                    print(f"{kind:3s} {r['fps']:7.1f} fps  ({r['frames']} frames in {r['s']:.2f} s, "
                          f"{r['shots']} shots; CPU per frame: loop thread {r['loop_ms']:.2f} ms, process "
                          f"{r['proc_ms']:.2f} ms, MQTT threads {r['mqtt_ms']:.3f} ms; MQTT sent "
                          f"{r['events_sent']} events, {r['states_sent']} states)", flush=True)
                ratios.append(this["on"] / this["off"])
                cpu_ratios.append(runs[-1]["proc_ms"] / runs[-2]["proc_ms"] if runs[-1]["kind"] == "on"
                                  else runs[-2]["proc_ms"] / runs[-1]["proc_ms"])
                print(f"  pair {i + 1}: fps on/off = {ratios[-1]:.3f}; process CPU per frame on/off = "
                      f"{cpu_ratios[-1]:.3f}", flush=True)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(10)
    med = {k: statistics.median(r["fps"] for r in runs if r["kind"] == k) for k in ("off", "on")}
    loop = {k: statistics.median(r["loop_ms"] for r in runs if r["kind"] == k) for k in ("off", "on")}
    proc_ms = {k: statistics.median(r["proc_ms"] for r in runs if r["kind"] == k) for k in ("off", "on")}
    cpu_ratio = statistics.median(cpu_ratios)
    mqtt_ms = statistics.median(r["mqtt_ms"] for r in runs if r["kind"] == "on")
    ratio = statistics.median(ratios)
    ok = ratio >= 0.95
    print(f"\nmedian fps: off {med['off']:.1f}, on {med['on']:.1f}; median of paired on/off ratios = {ratio:.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}) -> {'OK' if ok else 'BELOW 0.95'}")
    print(f"median CPU per frame (loop thread / whole process, ms): off {loop['off']:.2f} / {proc_ms['off']:.2f}, "
          f"on {loop['on']:.2f} / {proc_ms['on']:.2f}; median of paired process-CPU ratios on/off = {cpu_ratio:.3f}; "
          f"the MQTT threads used {mqtt_ms:.3f} ms CPU per frame ({100 * mqtt_ms / proc_ms['off']:.2f}% of a frame's "
          f"process CPU without MQTT)")
    cpu = platform.processor() or platform.machine()
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"\n| {started:%Y-%m-%d %H:%M} UTC | {platform.node()} ({cpu}, {os.cpu_count()} CPUs, "
          f"load {load}) | {Path(args.source).name}, {args.frames} frames, {args.repeats} pairs | {med['off']:.1f} | "
          f"{med['on']:.1f} | {ratio:.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | "
          f"{loop['off']:.1f} vs {loop['on']:.1f} ms | {proc_ms['off']:.1f} vs {proc_ms['on']:.1f} ms "
          f"(x{cpu_ratio:.3f}) | {mqtt_ms:.3f} ms |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
