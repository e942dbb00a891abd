#!/usr/bin/env python3
"""Measure what `djsmile calibrate` buys on faces the global threshold gets wrong.

    python scripts/calibration_effect.py SPLIT_DIR/djsmile-photos/test --work .cache/calib-effect

SPLIT_DIR comes from `djsmile train ... --export-split SPLIT_DIR` (the held-out test
split: none of these photos was trained on or used for model selection). Each test
photo is shown as a 640x480 frame (scaled to the full width, as a camera would see a
person); the device's own detector and model score it. Two populations the global
threshold (the model's, ``sensitivity = normal``) gets wrong:

- ``resting``: straight faces that score at or above the threshold but below 0.85
  (they fire with no smile), with smiles that score 0.9 or more;
- ``subtle``: smiles that score 0.2 or more but below the threshold (they never
  fire), with straight faces that score below 0.1.

Each population's photos are split in two halves (alternately, by file name): one
half makes a calibration clip (5 s straight faces, then 5 s smiles, as a person
follows the prompts), the other an evaluation clip (each photo 2 s, then 1 s with no
face). `djsmile run` plays the evaluation clip with the global thresholds, then with
the calibration: recall = smile photos with a shot / smile photos; false triggers =
shots during straight-face photos. Same config both times (``trigger.cooldown_s = 0``
so that photos 3 s apart are independent; everything else default).
Prints a JSON summary; writes clips and state under --work (not committed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

FPS = 10
SHOW_S, GAP_S = 2.0, 1.0
CALIB_S = 5.0


def frame_of(path: Path) -> np.ndarray:
    g = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    h, w = g.shape[:2]
    g = cv2.resize(g, (640, int(round(h * 640 / w))))[:480]
    out = np.full((480, 640), 128, np.uint8)
    out[:g.shape[0]] = g
    return out


def score_all(test_dir: Path):
    from djsmile.config import Config
    from djsmile.detectors.haar import HaarDetector
    from djsmile.model import SmileModel
    det = HaarDetector.from_config(Config().detector)
    model = SmileModel()
    rows = []
    for cls in ("no_smile", "smile"):
        for f in sorted((test_dir / cls).glob("*.jpg"), key=lambda p: p.name):
            g = frame_of(f)
            boxes = det.detect(g)
            if len(boxes) != 1:
                continue
            rows.append({"path": str(f), "cls": cls, "p": float(model.predict(g, boxes)[0])})
    return rows, model.threshold


def write_clip(path: Path, segments, gap_s: float = 0.0):
    """segments: [(frame, seconds)]; a mid-gray no-face gap of gap_s after each. Returns [(start, end, i)] frames."""
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (640, 480))
    blank = cv2.cvtColor(np.full((480, 640), 128, np.uint8), cv2.COLOR_GRAY2BGR)
    spans, n = [], 0
    for i, (g, secs) in enumerate(segments):
        bgr = cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)
        k = int(round(secs * FPS))
        for _ in range(k):
            vw.write(bgr)
        spans.append((n, n + k, i))
        n += k
        for _ in range(int(round(gap_s * FPS))):
            vw.write(blank)
            n += 1
    vw.release()
    return spans, n


def djsmile(*args, check=True):
    cmd = [sys.executable, "-m", "djsmile", *args]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} -> {p.returncode}\n{p.stderr[-3000:]}")
    return p


def evaluate(work: Path, name: str, clip: Path, spans, labels, state: Path, conf: Path):
    ev = state / "events.jsonl"
    if ev.exists():
        ev.unlink()
    p = djsmile("run", "--source", str(clip), "--state-dir", str(state), "--config", str(conf),
                "--no-gpio", "--no-jokes", "--set", "storage.save_photos=false")
    line = next(ln for ln in p.stderr.splitlines() if "trigger: policy=" in ln)
    frames = [json.loads(ln)["frame"] for ln in ev.read_text().splitlines()] if ev.exists() else []
    hit = set()
    false = 0
    for fr in frames:
        seg = next((i for (a, b, i) in spans if a <= fr < b + GAP_S * FPS), None)
        if seg is None:
            continue
        if labels[seg] == "smile":
            hit.add(seg)
        else:
            false += 1
    n_smile = sum(1 for lb in labels if lb == "smile")
    n_neutral = len(labels) - n_smile
    return {"run": name, "trigger": line.split("trigger: ", 1)[1], "shots": len(frames),
            "smiles": n_smile, "smiles_fired": len(hit), "recall": round(len(hit) / n_smile, 3) if n_smile else None,
            "straight_faces": n_neutral, "false_triggers": false}


def scenario(work: Path, name: str, neutral, smile, conf: Path):
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    state = d / "state"
    cal_n, ev_n = neutral[0::2], neutral[1::2]
    cal_s, ev_s = smile[0::2], smile[1::2]
    # calibration clip: 5 s of straight faces, then 5 s of smiles (the photos shared out evenly)
    segs = [(frame_of(Path(r["path"])), CALIB_S / len(cal_n)) for r in cal_n] + \
           [(frame_of(Path(r["path"])), CALIB_S / len(cal_s)) for r in cal_s]
    write_clip(d / "calibrate.avi", segs)
    # evaluation clip: the other halves, interleaved, each 2 s then 1 s without a face
    order = [r for pair in zip(ev_n, ev_s) for r in pair] + ev_n[len(ev_s):] + ev_s[len(ev_n):]
    spans, n = write_clip(d / "eval.avi", [(frame_of(Path(r["path"])), SHOW_S) for r in order], GAP_S)
    labels = [r["cls"] for r in order]
    djsmile("calibrate", "--reset", "--state-dir", str(state), "--config", str(conf))
    before = evaluate(work, "global threshold", d / "eval.avi", spans, labels, state, conf)
    p = djsmile("calibrate", "--source", str(d / "calibrate.avi"), "--state-dir", str(state), "--config", str(conf),
                check=False)
    calib = json.loads((state / "calibration.json").read_text()) if p.returncode == 0 else None
    after = evaluate(work, "calibrated", d / "eval.avi", spans, labels, state, conf) if calib else None
    return {"scenario": name, "calibration_photos": {"straight": len(cal_n), "smile": len(cal_s)},
            "eval_photos": {"straight": len(ev_n), "smile": len(ev_s)}, "eval_frames": n,
            "calibrate_exit": p.returncode,
            "calibrate_stderr": p.stderr.strip().splitlines()[-1:] if p.returncode else [],
            "calibration": calib, "before": before, "after": after}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("test_dir", type=Path, help="the exported test split of djsmile-photos (smile/, no_smile/)")
    ap.add_argument("--work", type=Path, default=Path(".cache/calib-effect"))
    ap.add_argument("--max-per-class", type=int, default=16)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    conf = a.work / "djsmile.toml"
    conf.write_text('[speech]\nengine = "none"\n[jokes]\napi_url = ""\n[trigger]\ncooldown_s = 0.0\n')
    rows, thr = score_all(a.test_dir)
    neutral = [r for r in rows if r["cls"] == "no_smile"]
    smile = [r for r in rows if r["cls"] == "smile"]
    out = {"threshold": thr, "test_faces_found": {"straight": len(neutral), "smile": len(smile)}, "scenarios": []}
    # resting smile faces: straight faces that fire (thr <= p < 0.85), with clear smiles (p >= 0.9)
    rest_n = sorted([r for r in neutral if thr <= r["p"] < 0.85], key=lambda r: r["path"])
    rest_s = sorted([r for r in smile if r["p"] >= 0.9], key=lambda r: r["path"])
    # subtle smiles: smiles that never fire (0.2 <= p < thr), with clear straight faces (p < 0.1)
    sub_s = sorted([r for r in smile if 0.2 <= r["p"] < thr], key=lambda r: r["path"])
    sub_n = sorted([r for r in neutral if r["p"] < 0.1], key=lambda r: r["path"])
    out["global_errors"] = {"straight_at_or_above_threshold": sum(r["p"] >= thr for r in neutral),
                            "smile_below_threshold": sum(r["p"] < thr for r in smile)}
    k = a.max_per_class
    for name, n_, s_ in (("resting", rest_n, rest_s), ("subtle", sub_n, sub_s)):
        out["pool_" + name] = {"straight": len(n_), "smile": len(s_)}
        n_, s_ = n_[:: max(1, len(n_) // k)][:k], s_[:: max(1, len(s_) // k)][:k]
        if len(n_) < 4 or len(s_) < 4:
            out["scenarios"].append({"scenario": name, "skipped": f"{len(n_)} straight / {len(s_)} smile photos"})
            continue
        out["scenarios"].append(scenario(a.work, name, n_, s_, conf))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
