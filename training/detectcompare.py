"""Face detector back-ends side by side on held-out photos placed in camera frames (issue 27).

::

    python -m djsmile.training.detectcompare .cache/split/djsmile-photos/val --limit 600 \\
        --yunet-model face_detection_yunet_2023mar.onnx --json .cache/detect-val.json

What it measures, for every back-end (``blazeface``, ``yunet`` if its model is
given, ``haar``; each with the device's ``[detector]`` settings):

* **found %** in three conditions. Each photo is placed in a 640x480 frame:
  ``clean`` (scaled to fill the frame, on a gray canvas), ``dim`` (the clean
  frame's pixels x ``--gain`` 0.45 plus Gaussian noise of sigma ``--noise`` 6,
  a living room at night), ``small`` (the photo scaled so the face is 35-75 px
  tall, placed at a random spot; with ``min_face_fraction = 0``, since the
  default 0.15 leaves out faces under 72 px on purpose). A face is found when a
  box overlaps the true box by IoU >= 0.3.
* **the true face**: photos in which at least two back-ends each find exactly
  one face on the clean frame (no face cut off) and agree (IoU >= 0.5); the
  true box is their mean. Photos only one back-end understands are left out,
  which favours no back-end but makes "clean" easier than the camera will be.
* **by face luminance** (``dimlight.LUMA_BINS``) and the **darkest quarter**
  of faces, clean and dim.
* **false detections** on face-free frames (``--empty N``): procedural
  textures (noise at several scales, stripes, checkers, gradients, in colour)
  and face-free corners of the photos blown up to 640x480, each also dimmed.
* **detection time** per full detection (median ms; one thread; the
  authoritative comparison is ``djsmile bench``).
* **box fit**: each back-end's own box against Haar's on the same face (width
  and height ratios, centre offsets in Haar box sides): what the box rules in
  ``djsmile.detectors.*.BOX_RULE`` are set from.
* **the smile model on each back-end's crops** (clean frames): accuracy on the
  faces every back-end found (paired) and on each back-end's own found faces,
  original labels and ``training/label_fixes.csv``'s.

Writes a table to stdout and everything to ``--json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from djsmile.boxes import iou
from djsmile.config import Config
from djsmile.detectors import make_detector
from djsmile.fsutil import atomic_write
from djsmile.training.dimlight import LUMA_BINS, face_luma, luma_bin

log = logging.getLogger(__name__)

W, H = 640, 480
MATCH_IOU = 0.3
AGREE_IOU = 0.5
CANVAS = 114


def list_photos(folder: Path, limit: int) -> list:
    """``(path, label)`` of the class folder's images, in a fixed order spread over both classes."""
    items = []
    for label, name in ((1, "smile"), (0, "no_smile")):
        for p in sorted((folder / name).glob("*")):
            if p.suffix.lower() in (".jpg", ".jpeg", ".png"):
                items.append((p, label))
    items.sort(key=lambda it: hashlib.sha1(it[0].name.encode() + bytes([it[1]])).hexdigest())
    return items[:limit] if limit else items


def place(img: np.ndarray, scale: float, x0: int, y0: int) -> tuple:
    """``img`` scaled by ``scale`` with its top-left at (x0, y0) on a 640x480 gray canvas: (frame, affine)."""
    M = np.float32([[scale, 0, x0], [0, scale, y0]])
    frame = cv2.warpAffine(img, M, (W, H), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(CANVAS, CANVAS, CANVAS))
    return frame, (scale, x0, y0)


def map_box(box, affine) -> tuple:
    s, x0, y0 = affine
    x, y, w, h = box
    return (x * s + x0, y * s + y0, w * s, h * s)


def dim(frame: np.ndarray, gain: float, noise: float, rng) -> np.ndarray:
    out = frame.astype(np.float32) * gain + rng.standard_normal(frame.shape).astype(np.float32) * noise
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def clean_frame(img: np.ndarray) -> tuple:
    h, w = img.shape[:2]
    s = min((W - 20) / w, (H - 20) / h)
    return place(img, s, int((W - w * s) / 2), int((H - h * s) / 2))


def textures(n: int, rng) -> list:
    """``n`` face-free colour frames: value noise at several scales, stripes, checkers, gradients."""
    out = []
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    for i in range(n):
        kind = i % 4
        if kind == 0:
            cell = int(rng.integers(4, 60))
            small = rng.random((H // cell + 2, W // cell + 2, 3)).astype(np.float32)
            img = cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC) * 255
        elif kind == 1:
            period, ang = float(rng.uniform(6, 80)), float(rng.uniform(0, np.pi))
            v = np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * 2 * np.pi / period)
            img = np.stack([v * a + b for a, b in rng.uniform(20, 120, (3, 2))], -1)
        elif kind == 2:
            c = int(rng.integers(8, 90))
            v = (((xx // c) + (yy // c)) % 2).astype(np.float32)
            img = np.stack([v * a + b for a, b in rng.uniform(30, 150, (3, 2))], -1)
        else:
            a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
            t = (xx / W * rng.uniform(-1, 1) + yy / H * rng.uniform(-1, 1))[..., None]
            img = a + (b - a) * (t - t.min()) / max(1e-6, float(np.ptp(t)))
            img = img + rng.standard_normal(img.shape) * 8
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def background_crop(img: np.ndarray, face, rng):
    """The largest corner of the photo clear of the face (grown by half its size), blown up to 640x480."""
    h, w = img.shape[:2]
    x, y, fw, fh = face
    gx0, gy0, gx1, gy1 = x - fw / 2, y - fh / 2, x + 1.5 * fw, y + 1.5 * fh
    cands = [(0, 0, max(0, gx0), h), (min(w, gx1), 0, w, h), (0, 0, w, max(0, gy0)), (0, min(h, gy1), w, h)]
    best = max(cands, key=lambda c: (c[2] - c[0]) * (c[3] - c[1]))
    x0, y0, x1, y1 = (int(v) for v in best)
    if x1 - x0 < 40 or y1 - y0 < 40:
        return None
    return cv2.resize(img[y0:y1, x0:x1], (W, H), interpolation=cv2.INTER_LINEAR)


class Timed:
    """A back-end with its detection times recorded."""

    def __init__(self, det):
        self.det = det
        self.ms = []

    def __call__(self, frame: np.ndarray):
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        t0 = time.perf_counter()
        dets = self.det.detect_faces(gray, frame)
        self.ms.append((time.perf_counter() - t0) * 1000.0)
        return dets


def pct(a) -> float:
    a = list(a)
    return round(100.0 * sum(a) / len(a), 1) if a else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m djsmile.training.detectcompare", description=__doc__.split("\n")[0])
    ap.add_argument("folder", help="a class folder of photos (smile/, no_smile/), e.g. the val split's djsmile-photos")
    ap.add_argument("--limit", type=int, default=600, help="photos to use (0 = all)")
    ap.add_argument("--backends", default="blazeface,yunet,haar",
                    help="variants to measure: a back-end name, optionally with overrides of its [detector] keys, "
                         "e.g. 'blazeface:blazeface_min_score=0.7' (the true faces always come from all three)")
    ap.add_argument("--min-face", type=float, default=80.0,
                    help="true faces smaller than this (pixels tall in the clean 640x480 frame) are left out: "
                         "a person in front of the camera (the device ignores faces under min_face_fraction)")
    ap.add_argument("--yunet-model", default="", help="face_detection_yunet_2023mar.onnx (yunet is skipped without it)")
    ap.add_argument("--gain", type=float, default=0.45)
    ap.add_argument("--noise", type=float, default=6.0)
    ap.add_argument("--empty", type=int, default=200, help="face-free frames (half textures, half photo corners)")
    ap.add_argument("--set", action="append", default=[], help="SECTION.KEY=VALUE applied to every back-end's config")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--model", default=None,
                    help="the smile model scored on each back-end's crops (default: the shipped "
                    "one); an eye-aligned model is cropped on each detection's landmarks (Haar: eyes from the box)")
    ap.add_argument("--seed", type=int, default=27)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from djsmile import config as config_mod
    from djsmile.model import SmileModel
    from djsmile.training import labelfix
    base = Config()
    config_mod.apply_sets(base, args.set)
    def variant(spec: str):
        name, _, over = spec.partition(":")
        d = dataclasses.replace(base.detector, backend=name, yunet_model=args.yunet_model if name == "yunet" else "")
        for kv in filter(None, over.split(";")):
            k, v = kv.split("=", 1)
            d = dataclasses.replace(d, **{k: type(getattr(d, k))(v)})
        return d

    truth_names = [b for b in ("blazeface", "yunet", "haar") if b != "yunet" or args.yunet_model]
    truth_dets = {b: Timed(make_detector(dataclasses.replace(variant(b), min_face_fraction=0.0)))
                  for b in truth_names}
    names = [b for b in args.backends.split(",") if b and (not b.startswith("yunet") or args.yunet_model)]
    dets, dets_small = {}, {}
    for b in names:
        dets[b] = Timed(make_detector(variant(b)))
        dets_small[b] = Timed(make_detector(dataclasses.replace(variant(b), min_face_fraction=0.0)))
    model = SmileModel(args.model)
    try:
        fixes = labelfix.load(labelfix.DEFAULT_PATH)
    except Exception as e:  # the fixed-label column is then left out
        log.warning("label fixes not loaded: %s", e)
        fixes = None

    rng = np.random.default_rng(args.seed)
    photos = list_photos(Path(args.folder), args.limit)
    rows, fits = [], {b: [] for b in ("blazeface", "yunet", "haar")}
    t_start = time.monotonic()
    for i, (path, label) in enumerate(photos):
        if i % 100 == 0:
            log.info("photo %d/%d (%.0f s)", i, len(photos), time.monotonic() - t_start)
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            continue
        frame, aff = clean_frame(img)
        found = {b: truth_dets[b](frame) for b in truth_names}
        ones = {b: r[0] for b, r in found.items() if len(r) == 1}
        agree = [b for b in ones if sum(iou(ones[b].box, ones[o].box) >= AGREE_IOU for o in ones if o != b) >= 1]
        if len(agree) < 2:
            continue
        truth = tuple(float(np.mean([ones[b].box[k] for b in agree])) for k in range(4))
        if truth[0] < 0 or truth[1] < 0 or truth[0] + truth[2] > W or truth[1] + truth[3] > H:
            continue
        if truth[3] < args.min_face:
            continue
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        row = {"file": path.name, "label": label, "luma": face_luma(gray, tuple(int(v) for v in truth)),
               "truth": [round(v, 1) for v in truth]}
        dataset = "djsmile-photos"
        rel = f"{('no_smile', 'smile')[label]}/{path.name}"
        fixed = labelfix.new_label(fixes, dataset, rel, label) if fixes else label
        row["label_fixed"] = fixed
        # clean (device defaults)
        clean = {b: dets[b](frame) for b in names}
        row["clean"] = {b: any(iou(d.box, truth) >= MATCH_IOU for d in clean[b]) for b in names}
        # the smile model on each back-end's crop of this face
        pr = {}
        for b in names:
            m = [d for d in clean[b] if iou(d.box, truth) >= MATCH_IOU]
            if m:
                pr[b] = float(model.predict(gray, [m[0].box], [m[0].landmarks])[0])
        row["p"] = pr
        # box fit against Haar
        if "haar" in ones and ones["haar"].box and iou(ones["haar"].box, truth) >= AGREE_IOU:
            hx, hy, hw, hh = ones["haar"].box
            for b in truth_names:
                if b != "haar" and b in ones and iou(ones[b].box, truth) >= AGREE_IOU:
                    rx, ry, rw, rh = ones[b].raw_box
                    fits[b].append((rw / hw, rh / hh, ((rx + rw / 2) - (hx + hw / 2)) / hw,
                                    ((ry + rh / 2) - (hy + hh / 2)) / hh))
        # dim
        dframe = dim(frame, args.gain, args.noise, rng)
        row["dim"] = {b: any(iou(d.box, truth) >= MATCH_IOU for d in dets[b](dframe)) for b in names}
        # small: the face 35-75 px tall somewhere in the frame
        target = float(rng.uniform(35, 75))
        s = aff[0] * target / truth[3]
        h, w = img.shape[:2]
        x0 = int(rng.integers(0, max(1, int(W - w * s)))) if W > w * s else int((W - w * s) / 2)
        y0 = int(rng.integers(0, max(1, int(H - h * s)))) if H > h * s else int((H - h * s) / 2)
        sframe, saff = place(img, s, x0, y0)
        sbox = map_box(map_box(truth, (1 / aff[0], -aff[1] / aff[0], -aff[2] / aff[0])), saff)
        row["small"] = {b: any(iou(d.box, sbox) >= MATCH_IOU for d in dets_small[b](sframe)) for b in names}
        row["bg"] = (path, [(v - o) / aff[0] for v, o in zip(truth, (aff[1], aff[2], 0, 0))])
        rows.append(row)

    # face-free frames
    empties = textures(args.empty // 2, rng)
    for row in rows:
        if len(empties) >= args.empty:
            break
        img = cv2.imread(str(row["bg"][0]), cv2.IMREAD_COLOR)
        crop = background_crop(img, row["bg"][1], rng)
        if crop is not None:
            empties.append(crop)
    false = {b: [] for b in names}
    for fr in empties:
        for variant in (fr, dim(fr, args.gain, args.noise, rng)):
            for b in names:
                false[b].append(len(dets[b](variant)))
    for row in rows:
        row.pop("bg")

    out = report(rows, names, fits, false, dets, len(empties), model)
    print(format_report(out, names))
    if args.json:
        atomic_write(args.json, json.dumps({"args": {k: v for k, v in vars(args).items()}, **out, "rows": rows},
                                           indent=1, default=str).encode())
        log.info("wrote %s", args.json)
    return 0


def report(rows, names, fits, false, dets, n_empty, model=None) -> dict:
    from djsmile.model import SmileModel
    model_thr = (model or SmileModel(None)).threshold
    out = {"n_faces": len(rows), "n_empty_frames": 2 * n_empty, "found": {}, "luma_bins": {}, "darkest_quarter": {},
           "false_detections": {}, "ms_median": {}, "box_fit": {}, "smile_accuracy": {}}
    lumas = np.array([r["luma"] for r in rows])
    q25 = float(np.quantile(lumas, 0.25)) if len(lumas) else float("nan")
    out["darkest_quarter_luma_below"] = round(q25, 1)
    for b in names:
        out["found"][b] = {c: pct(r[c][b] for r in rows) for c in ("clean", "dim", "small")}
        out["darkest_quarter"][b] = {c: pct(r[c][b] for r in rows if r["luma"] <= q25) for c in ("clean", "dim")}
        out["luma_bins"][b] = {name: {"n": sum(1 for r in rows if luma_bin(r["luma"]) == name),
                                      "clean": pct(r["clean"][b] for r in rows if luma_bin(r["luma"]) == name),
                                      "dim": pct(r["dim"][b] for r in rows if luma_bin(r["luma"]) == name)}
                               for _lo, _hi, name in LUMA_BINS}
        f = false[b]
        out["false_detections"][b] = {"boxes": int(sum(f)), "frames_with_any": int(sum(1 for v in f if v)),
                                      "frames": len(f)}
        out["ms_median"][b] = round(float(np.median(dets[b].ms)), 2) if dets[b].ms else None
        if fits.get(b):
            a = np.array(fits[b])
            out["box_fit"][b] = {"n": len(a), "w_ratio": round(float(np.median(a[:, 0])), 3),
                                 "h_ratio": round(float(np.median(a[:, 1])), 3),
                                 "dx": round(float(np.median(a[:, 2])), 3), "dy": round(float(np.median(a[:, 3])), 3)}
    paired = [r for r in rows if all(b in r["p"] for b in names)]
    for b in names:
        acc = {}
        for key in ("label", "label_fixed"):
            own = [r for r in rows if b in r["p"] and r[key] in (0, 1)]
            pr = [r for r in paired if r[key] in (0, 1)]
            acc[key] = {"own_n": len(own), "own": round(float(np.mean([(r["p"][b] >= model_thr) == (r[key] == 1)
                                                                         for r in own])), 4) if own else None,
                        "paired_n": len(pr), "paired": round(float(np.mean([(r["p"][b] >= model_thr) == (r[key] == 1)
                                                                             for r in pr])), 4) if pr else None}
        out["smile_accuracy"][b] = acc
        # the smile model's accuracy (fixed labels, every face this back-end found) by the face's luminance
        out.setdefault("smile_accuracy_by_luma", {})[b] = {
            name: _acc([r for r in rows if b in r["p"] and r["label_fixed"] in (0, 1) and luma_bin(r["luma"]) == name],
                       b, model_thr) for _lo, _hi, name in LUMA_BINS}
    return out


def _acc(rows, b, thr):
    if not rows:
        return {"n": 0, "accuracy": None}
    return {"n": len(rows), "accuracy": round(float(np.mean([(r["p"][b] >= thr) == (r["label_fixed"] == 1)
                                                            for r in rows])), 4)}


def format_report(out, names) -> str:
    lines = [f"{out['n_faces']} faces (val photos in 640x480 frames), {out['n_empty_frames']} face-free frames",
             f"{'back-end':<10} {'clean':>6} {'dim':>6} {'small':>6} {'dark q clean':>12} {'dark q dim':>10} "
             f"{'false':>6} {'ms':>6} {'acc paired':>10} {'acc fixed':>9}"]
    for b in names:
        f, d, fd = out["found"][b], out["darkest_quarter"][b], out["false_detections"][b]
        a = out["smile_accuracy"][b]
        lines.append(f"{b:<10} {f['clean']:>6} {f['dim']:>6} {f['small']:>6} {d['clean']:>12} {d['dim']:>10} "
                     f"{fd['boxes']:>6} {out['ms_median'][b]:>6} {a['label']['paired'] or 0:>10.4f} "
                     f"{a['label_fixed']['paired'] or 0:>9.4f}")
    for b, fit in out["box_fit"].items():
        lines.append(f"box fit {b} vs haar: {fit}")
    lines.append("found % by face luminance (clean / dim):")
    for b in names:
        lines.append(f"  {b:<10} " + "  ".join(f"{k} n={v['n']}: {v['clean']}/{v['dim']}"
                                                 for k, v in out["luma_bins"][b].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
