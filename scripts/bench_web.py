#!/usr/bin/env python3
"""Does a live-view viewer slow detection? FPS of the real loop with no viewer vs one MJPEG viewer.

Runs ``djsmile.service.run`` (the loop of ``djsmile run``) over the same clip as
fast as it can (``--no-realtime``, the harder case: with ``--realtime`` a clip
plays at its own rate anyway), in back-to-back pairs of:

- ``none``:   the web server running, nobody watching (the encoder must sleep),
- ``viewer``: one client reading ``/stream.mjpg`` the whole time,
- (``--noweb``: also runs without any web server.)

Each pair gives a ratio viewer / none; the median of those ratios (the issue
asks for >= 0.90) is robust to a machine whose load drifts. It also prints
CPU time per frame of the loop thread and of the whole process, and a line
for docs/BENCHMARKS.md. Exit status 1 when the ratio is below 0.90.

Default clip: 300 frames at 640x480 made once from the shared photos
(``../shared/datasets/djsmile/photos``) into ``.cache/bench_web/clip.avi``
(a cache, never committed). Or pass ``--source`` (a video or image folder).

    .venv/bin/python scripts/bench_web.py            # 7 pairs of 200-frame runs
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from djsmile import service  # noqa: E402
from djsmile.config import Config  # noqa: E402
from djsmile.faces import FaceFinder  # noqa: E402
from djsmile.model import SmileModel, default_model_path  # noqa: E402
from djsmile.sources import open_source  # noqa: E402
from djsmile.web import BOUNDARY, WebServer  # noqa: E402

SHARED_PHOTOS = ROOT.parent / "shared" / "datasets" / "djsmile" / "photos"


def make_clip(path: Path, frames: int, size=(640, 480)) -> Path:
    """A 640x480 MJPG clip of shared photos (alternating smile / no_smile), made once."""
    if path.exists():
        return path
    dirs = [SHARED_PHOTOS / "smile", SHARED_PHOTOS / "no_smile"]
    if not all(d.is_dir() for d in dirs):
        sys.exit(f"no --source given and the shared photos are absent ({SHARED_PHOTOS})")
    files = [sorted(d.glob("*.jpg"))[:frames] for d in dirs]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.avi")
    vw = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
    n = 0
    for i in range(frames):
        f = files[i % 2][(i // 2) % len(files[i % 2])]
        img = cv2.imread(str(f))
        if img is None:
            continue
        h, w = img.shape[:2]
        s = min(size[0] / w, size[1] / h)
        img = cv2.resize(img, (int(w * s), int(h * s)))
        canvas = np.zeros((size[1], size[0], 3), np.uint8)
        y, x = (size[1] - img.shape[0]) // 2, (size[0] - img.shape[1]) // 2
        canvas[y:y + img.shape[0], x:x + img.shape[1]] = img
        vw.write(canvas)
        n += 1
    vw.release()
    tmp.replace(path)
    print(f"made {path} ({n} frames)", file=sys.stderr)
    return path


class Viewer(threading.Thread):
    """Reads /stream.mjpg like a browser would, counting JPEG parts."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port, self.parts, self.stop = port, 0, threading.Event()
        self.connected = threading.Event()

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", "/stream.mjpg")
        r = conn.getresponse()
        self.connected.set()
        marker = b"--" + BOUNDARY.encode()
        try:
            while not self.stop.is_set():
                line = r.readline()
                if not line:
                    break
                if line.strip() == marker:
                    length = 0
                    while True:
                        h = r.readline().strip()
                        if not h:
                            break
                        if h.lower().startswith(b"content-length:"):
                            length = int(h.split(b":")[1])
                    r.read(length)
                    self.parts += 1
        except OSError:
            pass
        finally:
            r.close()
            conn.close()


def one_run(kind: str, args, model, photo_dir: Path) -> dict:
    cfg = Config()
    cfg.camera.realtime = False
    cfg.jokes.on_smile = False
    cfg.storage.save_photos = False
    cfg.web.listen = "127.0.0.1:0"
    cfg.web.stream_fps = args.stream_fps
    source = open_source(args.source, cfg)
    finder = FaceFinder.from_config(cfg.detector)
    web = viewer = None
    published = [0]
    if kind != "noweb":
        web = WebServer(cfg.web, photo_dir=photo_dir, info={"model": str(args.model)})
        orig = web.publish

        def counting_publish(frame, result, fps):
            published[0] += 1
            orig(frame, result, fps)
        web.publish = counting_publish
        web.start()
        if kind == "viewer":
            viewer = Viewer(web.port)
            viewer.start()
            viewer.connected.wait(10)
            deadline = time.monotonic() + 5
            while web.clients == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
    t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
    try:
        service.run(cfg, source, service.LoopParts(model=model, finder=finder, sinks=[web]), max_frames=args.frames)
    finally:
        elapsed = time.perf_counter() - t0
        loop_cpu, proc_cpu = time.thread_time() - c0, time.process_time() - p0
        source.close()
        if viewer:
            viewer.stop.set()
        if web:
            web.stop()
        if viewer:
            viewer.join(5)
    frames = published[0] if web else args.frames
    return {"kind": kind, "fps": frames / elapsed, "frames": frames, "s": elapsed,
            "loop_ms": 1000 * loop_cpu / frames, "proc_ms": 1000 * proc_cpu / frames,
            "encoded": web.frames_encoded if web else 0, "received": viewer.parts if viewer else 0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", help="video file or image folder (default: a clip made from the shared photos)")
    ap.add_argument("--model", default=str(default_model_path()), help="TFLite model (default: %(default)s)")
    ap.add_argument("--frames", type=int, default=200, help="frames per run (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=7, help="back-to-back none/viewer pairs (default: %(default)s)")
    ap.add_argument("--stream-fps", type=float, default=10.0, help="web.stream_fps (default: %(default)s)")
    ap.add_argument("--noweb", action="store_true", help="also time runs without any web server")
    ap.add_argument("--threads", type=int, default=1, help="model.num_threads (default: %(default)s)")
    args = ap.parse_args(argv)
    if not args.source:
        args.source = str(make_clip(ROOT / ".cache" / "bench_web" / "clip.avi", max(300, args.frames)))
    model = SmileModel(args.model, num_threads=args.threads)
    kinds = ("none", "viewer") + (("noweb",) if args.noweb else ())
    runs, pair_ratios = [], []
    with tempfile.TemporaryDirectory() as tmp:
        one_run("none", args, model, Path(tmp))          # warm-up (caches, lazy imports); not counted
        for i in range(args.repeats):
            order = kinds if i % 2 == 0 else tuple(reversed(kinds))
            this = {}
            for kind in order:
                r = one_run(kind, args, model, Path(tmp))
                runs.append(r)
                this[kind] = r["fps"]
                print(f"{kind:7s} {r['fps']:7.1f} fps  ({r['frames']} frames in {r['s']:.2f} s; CPU per frame: "
                      f"loop thread {r['loop_ms']:.2f} ms, whole process {r['proc_ms']:.2f} ms; "
                      f"{r['encoded']} JPEGs encoded, {r['received']} received)", flush=True)
            pair_ratios.append(this["viewer"] / this["none"])
            print(f"  pair {i + 1}: viewer/none = {pair_ratios[-1]:.3f}", flush=True)
    med = {k: statistics.median(r["fps"] for r in runs if r["kind"] == k) for k in kinds}
    cpu_ms = {k: (statistics.median(r["loop_ms"] for r in runs if r["kind"] == k),
                  statistics.median(r["proc_ms"] for r in runs if r["kind"] == k)) for k in kinds}
    ratio = statistics.median(pair_ratios)
    print("\nmedian fps: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items())
          + f"; median of paired viewer/none ratios = {ratio:.3f} (min {min(pair_ratios):.3f}, "
          f"max {max(pair_ratios):.3f}) -> {'OK' if ratio >= 0.9 else 'BELOW 0.90'}")
    print("median CPU per frame (loop thread / whole process, ms): " + ", ".join(
        f"{k} {a:.2f} / {b:.2f}" for k, (a, b) in cpu_ms.items()))
    cpu = platform.processor() or platform.machine()
    print(f"\n| {datetime.date.today()} | {platform.node()} ({cpu}, {os.cpu_count()} CPUs) | "
          f"{Path(args.source).name}, {args.frames} frames, --no-realtime, stream_fps {args.stream_fps:g}, "
          f"{args.repeats} pairs | {med['none']:.1f} | {med['viewer']:.1f} | {ratio:.2f} | "
          f"loop CPU/frame {cpu_ms['none'][0]:.1f} vs {cpu_ms['viewer'][0]:.1f} ms; "
          f"process {cpu_ms['none'][1]:.1f} vs {cpu_ms['viewer'][1]:.1f} ms |")
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
