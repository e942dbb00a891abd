"""How often the device's Haar detector still finds a face in dim, noisy, blurred, distant frames.

::

    python -m djsmile.training.dimlight .cache/split/djsmile-photos/val --limit 400 --json .cache/dim-val.json

Takes photos (a ``smile/`` + ``no_smile/`` folder), keeps those in which the
*reference* detector (the device config: ``djsmile.detectors.haar.HaarDetector`` from
``[detector]``, as ``djsmile eval --mode photos`` runs it) finds a face in the
clean photo, and degrades each one like a cheap living-room camera would
(:class:`Degradation`: zoom out, lens blur, underexposure with a gamma, sensor
noise, 8-bit quantization). Each detector *variant* (the reference settings
plus overrides, e.g. ``equalize=none``) then looks for the face again; it
counts as found when a box overlaps the reference box (moved with the zoom)
by IoU >= ``MATCH_IOU``. Found rates are reported per bin of the face's
luminance in the clean photo (``LUMA_BINS``: dark to bright), so a change that
helps bright faces only shows.

On the clean photos the reference variant finds every face by construction;
"gap" below is ``1 - found`` of the reference variant under a degradation, and
a variant's "gain" is its found rate minus the reference's on the same photos.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from djsmile.boxes import iou
from djsmile.detectors.haar import HaarDetector

log = logging.getLogger(__name__)

MATCH_IOU = 0.3
#: face luminance bins (mean gray level of the clean face box's central part): upper edges
LUMA_BINS = ((0, 80, "dark <80"), (80, 110, "80-110"), (110, 140, "110-140"), (140, 256, "bright >=140"))


@dataclass(frozen=True)
class Degradation:
    """A camera-like degradation of a gray photo; the identity with the defaults.

    Applied in the order light meets a camera: ``zoom`` (< 1: the scene shrinks
    by this factor around the centre, as if the person stood further away; the
    border is filled with the photo's median gray), ``blur`` (Gaussian sigma in
    pixels of the output), exposure (``exposure`` x linear intensity, after
    ``gamma`` > 1 darkens the mid-tones), sensor noise (Gaussian, sigma
    ``read_noise`` + shot noise ``sqrt(shot_noise * level)``, in gray levels),
    then rounding to 8 bits.
    """
    zoom: float = 1.0
    blur: float = 0.0
    gamma: float = 1.0
    exposure: float = 1.0
    read_noise: float = 0.0
    shot_noise: float = 0.0

    def apply(self, gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        img = gray.astype(np.float32)
        if self.zoom != 1.0:
            img = zoom_out(img, self.zoom)
        if self.blur > 0:
            img = cv2.GaussianBlur(img, (0, 0), self.blur)
        if self.gamma != 1.0 or self.exposure != 1.0:
            img = 255.0 * self.exposure * np.power(np.clip(img, 0, 255) / 255.0, self.gamma)
        if self.read_noise > 0 or self.shot_noise > 0:
            sigma = np.sqrt(self.read_noise ** 2 + self.shot_noise * np.clip(img, 0, 255))
            img = img + rng.standard_normal(img.shape).astype(np.float32) * sigma
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)

    def map_box(self, box, shape) -> tuple:
        """Where a box of the clean photo lies in the degraded one (only the zoom moves it)."""
        if self.zoom == 1.0:
            return tuple(box)
        H, W = shape[:2]
        x, y, w, h = box
        z = self.zoom
        cx, cy = W / 2.0, H / 2.0
        return (int(round(cx + (x - cx) * z)), int(round(cy + (y - cy) * z)),
                int(round(w * z)), int(round(h * z)))


def zoom_out(img: np.ndarray, z: float) -> np.ndarray:
    """``img`` shrunk by ``z`` (0 < z <= 1) about its centre, on a canvas of the same size filled with its median."""
    if not 0 < z <= 1:
        raise ValueError(f"zoom must be in (0, 1], got {z}")
    H, W = img.shape[:2]
    M = np.float32([[z, 0, (1 - z) * W / 2.0], [0, z, (1 - z) * H / 2.0]])
    return cv2.warpAffine(img, M, (W, H), flags=cv2.INTER_AREA if img.dtype == np.uint8 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=float(np.median(img)))


#: the conditions reported (name -> degradation); "dim camera" is all of them at once
CONDITIONS = {
    "clean": Degradation(),
    "dark": Degradation(gamma=1.8, exposure=0.35),
    "dark+noise": Degradation(gamma=1.8, exposure=0.35, read_noise=3.0, shot_noise=0.6),
    "dark+noise+blur": Degradation(blur=1.2, gamma=1.8, exposure=0.35, read_noise=3.0, shot_noise=0.6),
    "zoom 0.6": Degradation(zoom=0.6),
    "dim camera": Degradation(zoom=0.6, blur=1.2, gamma=1.8, exposure=0.35, read_noise=3.0, shot_noise=0.6),
}


def face_luma(gray: np.ndarray, box) -> float:
    """Mean gray level of the central half (by side) of a face box: skin, not hair or background."""
    x, y, w, h = box
    H, W = gray.shape[:2]
    x0, y0 = max(0, x + w // 4), max(0, y + h // 4)
    x1, y1 = min(W, x + w - w // 4), min(H, y + h - h // 4)
    patch = gray[y0:y1, x0:x1]
    return float(patch.mean()) if patch.size else float("nan")


def luma_bin(v: float) -> str:
    for lo, hi, name in LUMA_BINS:
        if lo <= v < hi:
            return name
    return LUMA_BINS[-1][2]


def found(boxes, ref_box, min_iou: float = MATCH_IOU) -> bool:
    """True when one of ``boxes`` overlaps ``ref_box`` by at least ``min_iou``."""
    return any(iou(b, ref_box) >= min_iou for b in boxes)


def detector_kwargs(det) -> dict:
    """``HaarDetector`` keyword arguments from a ``DetectorConfig``."""
    return {k: getattr(det, k) for k in ("scale_factor", "min_neighbors", "min_face_fraction", "detect_width",
                                         "cascade", "upscale", "min_confidence", "equalize")}


def parse_variant(text: str, base: dict) -> tuple[str, dict]:
    """``NAME:key=value,key=value`` -> (name, detector kwargs = base + overrides) (values as in TOML)."""
    from djsmile.config import DetectorConfig, parse_value
    name, _, rest = text.partition(":")
    kw = dict(base)
    known = set(DetectorConfig.__dataclass_fields__)
    for part in filter(None, (p.strip() for p in rest.split(","))):
        k, sep, v = part.partition("=")
        if not sep or k.strip() not in known:
            raise argparse.ArgumentTypeError(f"variant {text!r}: expected NAME:key=value,... with detector keys "
                                             f"({', '.join(sorted(known))})")
        kw[k.strip()] = parse_value(v.strip())
    return name.strip() or text, kw


def summarize(rows: list[dict], variants: list[str], conditions: list[str]) -> dict:
    """Found rates per condition x variant, overall and per luminance bin, with n."""
    out: dict = {}
    bins = [b[2] for b in LUMA_BINS]
    for c in conditions:
        out[c] = {}
        for v in variants:
            hits = [r for r in rows if (c, v) in r["found"]]
            per = {}
            for b in bins + ["all"]:
                sel = [r["found"][(c, v)] for r in hits if b == "all" or r["bin"] == b]
                per[b] = {"n": len(sel), "found": round(float(np.mean(sel)), 4) if sel else None}
            out[c][v] = per
    return out


def measure(photos: list[Path], conditions: dict, variants: dict, ref_kw: dict, seed: int = 0,
            load=None) -> tuple[list[dict], dict]:
    """Run every variant on every degraded photo that the reference finds a face in (clean).

    Returns per-photo rows and per-variant detection times (ms, list)."""
    load = load or (lambda p: cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))
    ref = HaarDetector(**ref_kw)
    dets = {name: HaarDetector(**kw) for name, kw in variants.items()}
    rows, times = [], {name: [] for name in variants}
    for i, p in enumerate(photos):
        g = load(p)
        if g is None:
            continue
        boxes = ref.detect(g)
        if not boxes:
            continue
        box = boxes[0]
        row = {"file": str(p), "luma": face_luma(g, box), "found": {}}
        row["bin"] = luma_bin(row["luma"])
        for cname, deg in conditions.items():
            rng = np.random.default_rng([seed, i])
            d = deg.apply(g, rng)
            rbox = deg.map_box(box, g.shape)
            for vname, det in dets.items():
                t0 = time.perf_counter()
                b = det.detect(d)
                times[vname].append((time.perf_counter() - t0) * 1e3)
                row["found"][(cname, vname)] = found(b, rbox)
        rows.append(row)
    return rows, times


def format_report(summary: dict, variants: list[str]) -> str:
    bins = [b[2] for b in LUMA_BINS] + ["all"]
    lines = []
    for c, per_v in summary.items():
        lines.append(f"{c}")
        ns = per_v[variants[0]]
        lines.append(f"  {'variant':28s}" + "".join(f"{b:>14s}" for b in bins))
        lines.append(f"  {'n':28s}" + "".join(f"{ns[b]['n']:14d}" for b in bins))
        for v in variants:
            cells = []
            for b in bins:
                f = per_v[v][b]["found"]
                cells.append(f"{'-':>14s}" if f is None else f"{f:14.3f}")
            lines.append(f"  {v:28s}" + "".join(cells))
    return "\n".join(lines)


def main(argv=None) -> int:
    from djsmile import config as C
    from djsmile.fsutil import atomic_write
    from djsmile.training.data import CLASSES, IMAGE_EXTS
    ap = argparse.ArgumentParser(prog="python -m djsmile.training.dimlight", description=__doc__.split("\n")[0])
    ap.add_argument("photos", help="folder with smile/ and no_smile/ photos (e.g. an exported val or test split)")
    ap.add_argument("--config", help="config file whose [detector] is the reference (default: the device defaults)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a key of the reference config (repeatable), e.g. --set detector.equalize=none")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:key=v,...",
                    help="a detector variant: the reference plus these [detector] overrides (repeatable; "
                         "default: none, clahe, hist, clahe with min_face_fraction 0.1)")
    ap.add_argument("--conditions", default=",".join(CONDITIONS),
                    help="comma-separated, from: " + ", ".join(CONDITIONS))
    ap.add_argument("--limit", type=int, default=0, help="use the first N photos (every k-th, evenly spread)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="OUT", help="write the summary and per-photo rows as JSON")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = C.load(args.config, sets=args.set)
    d = cfg.detector
    ref_kw = detector_kwargs(d)
    specs = args.variant or ["none:equalize=none", "clahe:equalize=clahe", "hist:equalize=hist",
                             "clahe mff0.10:equalize=clahe,min_face_fraction=0.1"]
    variants = dict(parse_variant(s, ref_kw) for s in specs)
    conds = {c: CONDITIONS[c] for c in (x.strip() for x in args.conditions.split(",")) if c}
    root = Path(args.photos)
    photos = sorted(f for c in CLASSES for f in (root / c).iterdir() if f.suffix.lower() in IMAGE_EXTS)
    if not photos:
        print(f"no photos in {root}/smile or {root}/no_smile", file=sys.stderr)
        return 66
    if args.limit and len(photos) > args.limit:
        photos = [photos[i] for i in np.linspace(0, len(photos) - 1, args.limit).round().astype(int)]
    t0 = time.time()
    rows, times = measure(photos, conds, variants, ref_kw, args.seed)
    summ = summarize(rows, list(variants), list(conds))
    print(f"{len(photos)} photos, {len(rows)} with a reference face; {time.time() - t0:.0f} s")
    print(format_report(summ, list(variants)))
    for v, t in times.items():
        print(f"  {v:28s} detect mean {np.mean(t):.2f} ms (all conditions, under load)")
    if args.json:
        out = {"photos": str(root), "n_photos": len(photos), "n_reference": len(rows),
               "reference": {k: v for k, v in ref_kw.items() if k != "cascade"},
               "variants": {k: {kk: vv for kk, vv in v.items() if kk != "cascade"} for k, v in variants.items()},
               "conditions": {k: asdict(v) for k, v in conds.items()}, "luma_bins": LUMA_BINS,
               "summary": summ, "detect_ms_mean": {v: float(np.mean(t)) for v, t in times.items()},
               "rows": [{**r, "found": {f"{c}|{v}": b for (c, v), b in r["found"].items()}} for r in rows]}
        atomic_write(args.json, json.dumps(out, indent=1).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
