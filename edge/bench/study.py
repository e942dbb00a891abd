"""``--detector-study``: Haar settings timed against each other on the same frames, outside the timed loop."""

from __future__ import annotations

import time

import cv2
import numpy as np

from ..boxes import iou
from ..detectors.haar import HaarDetector
from ..faces import FaceFinder
from .report import stats


def detector_study(cfg, feed, frames: int, chunk: int, threads: int) -> list[dict]:
    """Time Haar settings against each other on the same frames, interleaved."""
    det = cfg.detector
    W = feed.width or cfg.camera.width
    settings = [
        (f"{W} px wide, scale 1.1, no min size", dict(scale_factor=1.1, min_face_fraction=0.0, detect_width=0), {}),
        (f"{W} px wide, no min size", dict(min_face_fraction=0.0, detect_width=0), {}),
        (f"{W} px wide, min face {det.min_face_fraction:g}", dict(detect_width=0), {}),
        (f"{det.detect_width} px wide, no min size", dict(min_face_fraction=0.0), {}),
        (f"{det.detect_width} px wide, min face {det.min_face_fraction:g}", {}, {}),
    ]
    every = max(2, int(det.full_every))
    for tracker in ("template", "haar"):
        settings.append((f"{det.detect_width} px wide, min face {det.min_face_fraction:g}, {tracker} tracking "
                         f"(full every {every})", {}, {"full_every": every, "tracker": tracker}))
    base = dict(scale_factor=det.scale_factor, min_neighbors=det.min_neighbors,
                min_face_fraction=det.min_face_fraction, detect_width=det.detect_width, cascade=det.cascade)
    rows = []
    for name, over, track in settings:
        kw = dict(base, **over)
        fkw = dict(full_every=1, track_margin=det.track_margin, tracker=det.tracker,
                   min_score=det.track_min_score)
        fkw.update(track)
        finder = FaceFinder(HaarDetector(**kw), **fkw)
        rows.append({"name": name, "finder": finder, "it": feed.iterator(), "ms": [], "boxes": [],
                     "settings": {**{k: v for k, v in kw.items() if k != "cascade"},
                                  "full_every": fkw["full_every"],
                                  "tracker": fkw["tracker"] if fkw["full_every"] > 1 else None}})
    cv2.setNumThreads(threads)
    for r in rows:  # warm-up: 2 frames
        for _ in range(2):
            r["finder"].find(next(r["it"]).gray)
    done = 0
    while done < frames:
        n = min(chunk, frames - done)
        for r in rows:
            for _ in range(n):
                g = next(r["it"]).gray
                t0 = time.perf_counter()
                boxes = r["finder"].find(g)
                r["ms"].append((time.perf_counter() - t0) * 1e3)
                r["boxes"].append(boxes[0] if boxes else None)
        done += n
    ref = rows[0]
    ref_mean = float(np.mean(ref["ms"]))
    out = []
    for r in rows:
        st = stats(r["ms"])
        found = sum(b is not None for b in r["boxes"])
        agree_n = [(a, b) for a, b in zip(ref["boxes"], r["boxes"]) if a is not None]
        agree = sum(b is not None and iou(a, b) >= 0.5 for a, b in agree_n)
        out.append({"name": r["name"], "settings": r["settings"], "frames": len(r["ms"]),
                    "detect_ms_p50": st["p50"], "detect_ms_p95": st["p95"], "detect_ms_mean": st["mean"],
                    # throughput: mean time (a tracking finder's median is a cheap tracked frame)
                    "speedup_vs_first": round(ref_mean / st["mean"], 2) if st["mean"] else None,
                    "frames_with_face": found,
                    "agrees_with_first": round(agree / len(agree_n), 3) if agree_n else None})
    return out
