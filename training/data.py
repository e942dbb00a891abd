"""Class-folder datasets -> face crops (cached) -> a deterministic, duplicate-aware split.

A *data root* holds ``smile/`` and ``no_smile/`` folders of images (or is a
folder of such roots, e.g. ``../shared/datasets/djsmile`` with ``faces/`` and
``photos/``). Each root is one of two kinds:

- ``photos``: whole photos. The device's Haar detector (``djsmile.detectors.haar``) finds
  faces and the largest one is cropped with ``djsmile.preprocess.crop_face``
  (exactly what the device does). Photos with no face are counted and left out.
- ``faces``: images that already are face crops; the whole image is the face
  (``crop_face`` with the whole-image box and no margin: what ``djsmile eval
  --mode faces`` does).

The kind is guessed (square images -> faces) or given as ``PATH:faces`` /
``PATH:photos``.

Crops are cached under ``.cache/crops`` keyed by each file's SHA-1 and the
preprocessing parameters, so a second run only reads and hashes the files.

The split (train / val / test) is decided per *group* by a hash: a group joins
byte-identical files, near-duplicates (64-bit difference hash within
``NEAR_DUP_BITS``), and a face crop with the photo it was cut from (a
``faces`` root and a sibling ``photos`` root with the same ``class/name``),
so the held-out photos are exactly the photos of the held-out faces.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from djsmile import preprocess
from djsmile.errors import DataError
from djsmile.fsutil import atomic_open, atomic_write, file_digest
from djsmile.detectors.haar import HaarDetector
from djsmile.sources import IMAGE_EXTS  # one list: the images djsmile run reads from a folder

log = logging.getLogger(__name__)

CLASSES = ("no_smile", "smile")          # label index = position (smile = 1)
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
SPLIT_SALT = "djsmile-split-v1"
NEAR_DUP_BITS = 3                         # dHash Hamming distance that counts as "the same picture"
CACHE_VERSION = 2

#: The augmentation source: a square around the face box grown by CTX_MARGIN, at CTX_SIZE px.
CTX_SIZE = 112
CTX_MARGIN = 0.3

def _user_cache() -> Path:
    """``$DJSMILE_CACHE``, else ``$XDG_CACHE_HOME/djsmile``, else ``~/.cache/djsmile`` (never inside site-packages)."""
    import os
    if os.environ.get("DJSMILE_CACHE"):
        return Path(os.environ["DJSMILE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "djsmile"


DEFAULT_CACHE = _user_cache()


# --------------------------------------------------------------------- images
def load_gray(path) -> np.ndarray | None:
    """A file as a 2-D uint8 gray image, or None when it cannot be decoded.

    ``cv2.imread`` (colour) then :func:`djsmile.preprocess.to_gray`: the same
    conversion the device applies to a colour frame or photo.
    """
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        return None
    return preprocess.to_gray(img)


def dhash(gray: np.ndarray) -> int:
    """64-bit difference hash (rows of a 9x8 thumbnail): equal for re-encoded / resized copies."""
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def file_sha1(path) -> str:
    """SHA-1 of a file (the training data's key for an image or a model)."""
    return file_digest(path, "sha1")


def face_box(gray: np.ndarray):
    """The box used for an image that already is a face crop: the whole image."""
    return preprocess.whole_image_box(gray)


# ------------------------------------------------------------------- datasets
@dataclass
class Root:
    """One class-folder root and what kind of images it holds."""
    path: Path
    kind: str              # "photos" | "faces"
    name: str              # short id, e.g. "djsmile-faces"


@dataclass
class Item:
    path: str
    rel: str               # "smile/12.jpg"
    label: int
    root: str              # Root.name
    kind: str
    sha1: str = ""
    group: str = ""
    split: str = ""
    dropped: bool = False  # left out by a label fix (training/label_fixes.csv)


def _is_class_root(p: Path) -> bool:
    return any((p / c).is_dir() for c in CLASSES)


def _images(folder: Path):
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTS and f.is_file())


def check_class_root(p: Path) -> None:
    """Raise DataError (one line naming the path) when a class folder is missing or empty."""
    for c in CLASSES:
        d = p / c
        if not d.is_dir():
            raise DataError(f"class folder {d} is missing (a data folder needs smile/ and no_smile/)")
        if not _images(d):
            raise DataError(f"class folder {d} has no images ({', '.join(sorted(IMAGE_EXTS))})")


def _guess_kind(p: Path) -> str:
    n_sq = n = 0
    for c in CLASSES:
        for f in _images(p / c)[:10]:
            g = load_gray(f)
            if g is None:
                continue
            n += 1
            n_sq += abs(g.shape[0] - g.shape[1]) <= 1
    return "faces" if n and n_sq == n else "photos"


def root_name(p: Path) -> str:
    """A class-folder root's short name: ``djsmile-faces`` for .../djsmile/faces, else the folder's name."""
    parts = [x for x in p.resolve().parts if x not in ("/", "")]
    return "-".join(parts[-2:]) if p.name in ("faces", "photos") else parts[-1]


def resolve_roots(specs) -> list[Root]:
    """``PATH`` or ``PATH:faces|photos`` -> class-folder roots (a folder of roots is expanded)."""
    out: list[Root] = []
    for spec in specs:
        spec = str(spec)
        kind = None
        if spec.rsplit(":", 1)[-1] in ("faces", "photos") and ":" in spec:
            spec, kind = spec.rsplit(":", 1)
        p = Path(spec)
        if not p.is_dir():
            raise DataError(f"data folder {p} not found")
        if _is_class_root(p):
            cands = [p]
        else:
            cands = sorted(d for d in p.iterdir() if d.is_dir() and _is_class_root(d))
            if not cands:
                raise DataError(f"data folder {p} has no smile/ and no_smile/ class folders")
        for c in cands:
            check_class_root(c)
            out.append(Root(c, kind or _guess_kind(c), root_name(c)))
    names = [r.name for r in out]
    if len(set(names)) != len(names):
        raise DataError("two data folders have the same name: " + ", ".join(names))
    return out


def list_items(roots: list[Root]) -> list[Item]:
    items = []
    for r in roots:
        for label, c in enumerate(CLASSES):
            for f in _images(r.path / c):
                items.append(Item(str(f), f"{c}/{f.name}", label, r.name, r.kind))
    return items


# ---------------------------------------------------------------------- cache
@dataclass
class CropParams:
    """Everything that changes a cached crop."""
    input_size: int = 48
    crop_margin: float = 0.0
    detector: dict = field(default_factory=dict)   # HaarDetector kwargs (photos roots)
    ctx_size: int = CTX_SIZE
    ctx_margin: float = CTX_MARGIN
    crop: str = "box"                              # "box" (v2) | "aligned" (v3: eye-aligned, landmarks)
    landmarks: dict = field(default_factory=dict)  # aligned: the landmark detector's settings (blazeface kwargs)
    template: tuple = preprocess.ALIGN_TEMPLATE    # aligned: (eye_y, eye_distance, mouth_y) of the crop's side

    def key(self, kind: str) -> str:
        """Level-A cache key (the input size is added for level B)."""
        d = {"v": CACHE_VERSION, "kind": kind, "margin": round(self.crop_margin, 6) if kind == "photos" else 0.0,
             "ctx": [self.ctx_size, self.ctx_margin]}
        if kind == "photos":
            d["det"] = {k: v for k, v in self.detector.items() if not (k == "equalize" and v == "none")}
        if self.crop != "box":   # only then, so the box crops' cache keys stay what they were
            d["crop"] = self.crop
            d["landmarks"] = {k: v for k, v in self.landmarks.items() if k != "model"}   # the file by its SHA-1
            d["template"] = [*(float(v) for v in self.template), list(preprocess.BOX_EYES),
                             list(preprocess.FACE_CROP_EYES), preprocess.FACE_CROP_PAD]
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def landmark_settings(det_cfg) -> dict:
    """The landmark detector for aligned crops (BlazeFace, the default back-end, with the config's settings):
    its kwargs plus the model file's SHA-1, so a different model or threshold makes a different cache."""
    from djsmile.detectors.blazeface import shipped_model
    model = det_cfg.blazeface_model or shipped_model()
    return {"backend": "blazeface", "min_score": float(det_cfg.blazeface_min_score), "model": str(model),
            "model_sha1": file_sha1(model)}


def _landmark_detector(lm: dict):
    det = _WORKER.get("lm")
    if det is None or _WORKER.get("lm_kw") != lm:
        from djsmile.detectors.blazeface import BlazeFaceDetector
        det = _WORKER["lm"] = BlazeFaceDetector(min_score=lm["min_score"], model=lm["model"])
        _WORKER["lm_kw"] = lm
    return det


def _marks_array(landmarks) -> np.ndarray:
    return np.asarray([landmarks[k] for k in ("right_eye", "left_eye", "mouth")], np.float32)


def _marks_dict(arr) -> dict:
    return {k: (float(arr[i][0]), float(arr[i][1])) for i, k in enumerate(("right_eye", "left_eye", "mouth"))}


def _detect_aligned(path, kind, det_kw, lm, ctx_size, ctx_margin, template=preprocess.ALIGN_TEMPLATE):
    """Level A for aligned crops: landmarks from BlazeFace (photos: in the photo; face crops: in the padded crop),
    else eyes estimated from a box (photos: Haar's, as with ``detector.backend = "haar"``; face crops: the whole
    image). ``src`` 1 = landmarks, 0 = estimated from the box."""
    if kind == "photos":
        try:
            color = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_COLOR)
        except OSError:
            return None
        if color is None or color.size == 0:
            return None
        g = preprocess.to_gray(color)
        dets = _landmark_detector(lm).detect_faces(g, color)
        if dets and preprocess.has_eyes(dets[0].landmarks):
            box, marks, src = dets[0].box, dets[0].landmarks, 1
        else:
            boxes = _detector(det_kw).detect(g)
            if not boxes:
                return {"found": False, "dhash": dhash(g), "box": (0, 0, 0, 0), "src": 0,
                        "marks": np.zeros((3, 2), np.float32)}
            box, marks, src = boxes[0], preprocess.eyes_from_box(boxes[0], preprocess.BOX_EYES), 0
    else:
        g = load_gray(path)
        if g is None:
            return None
        box = face_box(g)
        marks = preprocess.face_crop_landmarks(g, _landmark_detector(lm))
        src = 1
        if marks is None:
            marks, src = preprocess.eyes_from_box(box, preprocess.FACE_CROP_EYES), 0
    marks = _marks_array(marks)
    ctx = preprocess.crop_aligned(g, _marks_dict(marks), ctx_size, ctx_margin, template)
    return {"found": True, "dhash": dhash(g), "box": tuple(int(v) for v in box), "ctx": ctx, "src": src,
            "marks": marks}


def detector_kwargs(det_cfg) -> dict:
    """HaarDetector kwargs from an ``djsmile.config.DetectorConfig``."""
    from djsmile.detectors.haar import find_cascade
    kw = {"scale_factor": det_cfg.scale_factor, "min_neighbors": det_cfg.min_neighbors,
          "min_face_fraction": det_cfg.min_face_fraction, "detect_width": det_cfg.detect_width,
          "cascade": find_cascade(det_cfg.cascade)}
    # only when set, so crop-cache keys made before these options stay valid
    if det_cfg.upscale != 1.0:
        kw["upscale"] = det_cfg.upscale
    if det_cfg.min_confidence != 0.0:
        kw["min_confidence"] = det_cfg.min_confidence
    # always explicit (HaarDetector's own default is the config's, "auto"); CropParams.key leaves
    # out "none", so the crop caches made before the option existed stay valid
    kw["equalize"] = det_cfg.equalize
    return kw


_WORKER = {}


def _detector(det_kw):
    det = _WORKER.get("det")
    if det is None or _WORKER.get("kw") != det_kw:
        det = _WORKER["det"] = HaarDetector(**det_kw)
        _WORKER["kw"] = det_kw
    return det


def _detect_one(args):
    """Level A (per file): decode, find the face box, dHash, augmentation context."""
    path, kind, margin, det_kw, ctx_size, ctx_margin = args[:6]
    if len(args) > 6 and args[6] is not None:
        return _detect_aligned(path, kind, det_kw, args[6], ctx_size, ctx_margin, *args[7:8])
    g = load_gray(path)
    if g is None:
        return None
    if kind == "photos":
        boxes = _detector(det_kw).detect(g)
        if not boxes:
            return {"found": False, "dhash": dhash(g), "box": (0, 0, 0, 0)}
        box, m = boxes[0], margin
    else:
        box, m = face_box(g), 0.0
    # the augmentation context: the model crop's square grown by ctx_margin
    x0, y0, side = preprocess.square_box(box, m)
    ctx = preprocess.crop_face(g, (x0, y0, side, side), ctx_size, ctx_margin)
    return {"found": True, "dhash": dhash(g), "box": tuple(int(v) for v in box), "ctx": ctx}


def _crop_exact(args):
    """Level B (per file and input size): exactly the device's crop_face for the cached box."""
    path, kind, box, size, margin = args[:5]
    g = load_gray(path)
    if g is None:
        return None
    if len(args) > 5 and args[5] is not None:   # aligned: the cached landmarks
        return preprocess.crop_aligned(g, _marks_dict(args[5]), size, template=args[6] if len(args) > 6 else
                                       preprocess.ALIGN_TEMPLATE)
    return preprocess.crop_face(g, tuple(int(v) for v in box), size, margin if kind == "photos" else 0.0)


def _atomic_savez(path: Path, **arrays) -> None:
    with atomic_open(path) as f:
        np.savez(f, **arrays)


def _read_npz(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # a broken cache is rebuilt
        log.warning("cache %s unreadable (%s); rebuilding it", path, e)
        return {}


@dataclass
class Crops:
    """The cached crops of a list of items, row-aligned with it."""
    items: list
    ok: np.ndarray          # decoded (False: corrupt / unreadable)
    found: np.ndarray       # a face was found (always True for decodable faces)
    box: np.ndarray         # (N, 4)
    dhash: np.ndarray       # (N,) uint64
    crop: np.ndarray        # (N, S, S) uint8, exactly crop_face(...) (or crop_aligned) at the model's size
    ctx: np.ndarray         # (N, C, C) uint8, augmentation context
    stats: dict
    marks: np.ndarray | None = None   # aligned: (N, 3, 2) eyes and mouth the crop was aligned on
    src: np.ndarray | None = None     # aligned: 1 = detector landmarks, 0 = estimated from the box


def _hash_index(cache_dir: Path):
    """(path, size, mtime_ns) -> sha1, so unchanged files are not re-hashed."""
    p = cache_dir / "sha1-index.json"
    try:
        return p, json.loads(p.read_text())
    except (OSError, ValueError):
        return p, {}


def hash_items(items, cache_dir: Path = DEFAULT_CACHE) -> None:
    idx_path, idx = _hash_index(cache_dir)
    changed = False
    for it in items:
        try:
            st = os.stat(it.path)
        except OSError:
            it.sha1 = "missing:" + it.path
            continue
        k = f"{os.path.realpath(it.path)}|{st.st_size}|{st.st_mtime_ns}"
        s = idx.get(k)
        if s is None:
            s = idx[k] = file_sha1(it.path)
            changed = True
        it.sha1 = s
    if changed:
        atomic_write(idx_path, json.dumps(idx).encode())


def load_crops(items, params: CropParams, cache_dir: Path = DEFAULT_CACHE, workers: int = 2,
               progress: bool = True) -> Crops:
    """Crops for ``items`` (hashing them first), from the cache or computed and cached.

    Two cache levels per kind: A (box, dHash, context; keyed by file SHA-1,
    detector settings, margin) and B (the exact model-size crop; A's key + size).
    """
    if items and not items[0].sha1:
        hash_items(items, cache_dir)
    S, C = params.input_size, params.ctx_size
    n = len(items)
    out = Crops(items, np.zeros(n, bool), np.zeros(n, bool), np.zeros((n, 4), np.int32),
                np.zeros(n, np.uint64), np.zeros((n, S, S), np.uint8), np.zeros((n, C, C), np.uint8), {})
    aligned = params.crop == "aligned"
    if aligned:
        out.marks = np.zeros((n, 3, 2), np.float32)
        out.src = np.zeros(n, np.int8)
    by_kind: dict = {}
    for i, it in enumerate(items):
        by_kind.setdefault(it.kind, []).append(i)
    for kind, idxs in by_kind.items():
        key_a = params.key(kind)
        apath = cache_dir / "crops" / f"{kind}-{key_a}.npz"
        bpath = cache_dir / "crops" / f"{kind}-{key_a}-s{S}.npz"
        # ---- level A
        A = _read_npz(apath)
        pos = {s: j for j, s in enumerate(A.get("sha1", []))}
        todo = list(dict.fromkeys(items[i].sha1 for i in idxs if items[i].sha1 not in pos))
        if todo:
            first = {}
            for i in idxs:
                first.setdefault(items[i].sha1, i)
            log.info("finding faces in %d %s images (%d cached) -> %s", len(todo), kind, len(idxs) - len(todo), apath)
            args = [(items[first[s]].path, kind, params.crop_margin, params.detector, C, params.ctx_margin,
                     params.landmarks if aligned else None, tuple(params.template)) for s in todo]
            res = _map(_detect_one, args, workers, progress, f"faces {kind}")
            sha = list(A.get("sha1", []))
            cols = {k: list(A.get(k, [])) for k in ("ok", "found", "box", "dhash", "ctx", "src", "marks")}
            for s, r in zip(todo, res):
                if aligned:
                    cols["src"].append(np.int8(r["src"] if r else 0))
                    cols["marks"].append(np.asarray(r["marks"] if r else np.zeros((3, 2)), np.float32))
                sha.append(s)
                cols["ok"].append(r is not None)
                cols["found"].append(bool(r and r["found"]))
                cols["box"].append(np.asarray(r["box"] if r else (0, 0, 0, 0), np.int32))
                cols["dhash"].append(np.uint64(r["dhash"] if r else 0))
                cols["ctx"].append(r["ctx"] if r and r["found"] else np.zeros((C, C), np.uint8))
            A = {"sha1": np.asarray(sha), "ok": np.asarray(cols["ok"], bool),
                 "found": np.asarray(cols["found"], bool),
                 "box": np.asarray(cols["box"], np.int32).reshape(-1, 4),
                 "dhash": np.asarray(cols["dhash"], np.uint64),
                 "ctx": np.asarray(cols["ctx"], np.uint8).reshape(-1, C, C)}
            if aligned:
                A["src"] = np.asarray(cols["src"], np.int8)
                A["marks"] = np.asarray(cols["marks"], np.float32).reshape(-1, 3, 2)
            _atomic_savez(apath, **A)
            pos = {s: j for j, s in enumerate(A["sha1"])}
        rows = np.array([pos[items[i].sha1] for i in idxs], np.int64)
        ii = np.array(idxs, np.int64)
        out.ok[ii] = A["ok"][rows]
        out.found[ii] = A["found"][rows]
        out.box[ii] = A["box"][rows]
        out.dhash[ii] = A["dhash"][rows]
        out.ctx[ii] = A["ctx"][rows]
        if aligned:
            out.marks[ii] = A["marks"][rows]
            out.src[ii] = A["src"][rows]
        # ---- level B
        B = _read_npz(bpath)
        posb = {s: j for j, s in enumerate(B.get("sha1", []))}
        need = list(dict.fromkeys(items[i].sha1 for i in idxs
                                  if out.ok[i] and out.found[i] and items[i].sha1 not in posb))
        if need:
            first = {}
            for i in idxs:
                first.setdefault(items[i].sha1, i)
            log.info("cropping %d %s faces at %d px -> %s", len(need), kind, S, bpath)
            args = [(items[first[s]].path, kind, tuple(out.box[first[s]]), S, params.crop_margin,
                     out.marks[first[s]] if aligned else None, tuple(params.template)) for s in need]
            res = _map(_crop_exact, args, workers, progress, f"crop {kind}")
            sha = list(B.get("sha1", [])) + need
            crop = list(B.get("crop", [])) + [r if r is not None else np.zeros((S, S), np.uint8) for r in res]
            B = {"sha1": np.asarray(sha), "crop": np.asarray(crop, np.uint8).reshape(-1, S, S)}
            _atomic_savez(bpath, **B)
            posb = {s: j for j, s in enumerate(B["sha1"])}
        for i in idxs:
            j = posb.get(items[i].sha1)
            if j is not None:
                out.crop[i] = B["crop"][j]
    # statistics per root
    for it_i, it in enumerate(items):
        st = out.stats.setdefault(it.root, {"kind": it.kind, "files": 0, "corrupt": 0, "no_face": 0, "used": 0})
        if aligned:
            st.setdefault("landmarks", 0)
            st.setdefault("box_estimate", 0)
        st["files"] += 1
        if not out.ok[it_i]:
            st["corrupt"] += 1
        elif not out.found[it_i]:
            st["no_face"] += 1
        else:
            st["used"] += 1
            if aligned:
                st["landmarks" if out.src[it_i] else "box_estimate"] += 1
    for name, st in out.stats.items():
        if st["corrupt"]:
            log.warning("%s: %d unreadable or corrupt image(s) skipped", name, st["corrupt"])
    return out


def _map(fn, args, workers: int, progress: bool, desc: str):
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(args), desc=desc, unit="img", leave=False)
        except ImportError:
            bar = None
    res = []
    if workers > 1 and len(args) > 50:
        import multiprocessing as mp
        ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context()
        with ctx.Pool(workers) as pool:
            for r in pool.imap(fn, args, chunksize=32):
                res.append(r)
                if bar:
                    bar.update(1)
    else:
        for a in args:
            res.append(fn(a))
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    return res


# ---------------------------------------------------------------------- split
class _UF:
    def __init__(self, n):
        self.p = list(range(n))

    def find(self, a):
        while self.p[a] != a:
            self.p[a] = self.p[self.p[a]]
            a = self.p[a]
        return a

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.p[max(ra, rb)] = min(ra, rb)


def split_of(key: str, fractions=SPLIT_FRACTIONS) -> str:
    """The split for a group key: a stable hash mapped onto the fractions."""
    u = int(hashlib.sha1((SPLIT_SALT + key).encode()).hexdigest()[:12], 16) / float(1 << 48)
    acc = 0.0
    for name, f in zip(SPLITS, fractions):
        acc += f
        if u < acc:
            return name
    return SPLITS[-1]


def near_duplicate_pairs(hashes: np.ndarray, max_bits: int = NEAR_DUP_BITS, valid=None):
    """Index pairs (i, j), i < j, whose 64-bit hashes differ in at most ``max_bits`` bits."""
    h = np.asarray(hashes, np.uint64)
    idx = np.arange(len(h)) if valid is None else np.flatnonzero(valid)
    hv = h[idx]
    pairs = []
    chunk = 512
    for s in range(0, len(hv), chunk):
        block = hv[s:s + chunk, None] ^ hv[None, :]
        d = np.bitwise_count(block)
        ii, jj = np.nonzero(d <= max_bits)
        gi = ii + s
        m = jj > gi
        pairs.extend(zip(idx[gi[m]].tolist(), idx[jj[m]].tolist()))
    return pairs


def assign_splits(items, crops: Crops | None = None, fractions=SPLIT_FRACTIONS,
                  max_bits: int = NEAR_DUP_BITS) -> dict:
    """Set ``item.group`` and ``item.split``; returns split statistics.

    Groups: same SHA-1; dHash within ``max_bits`` (needs ``crops``); a face
    crop and its photo (same ``class/name`` in sibling ``faces``/``photos`` roots).
    """
    n = len(items)
    uf = _UF(n)
    first = {}
    for i, it in enumerate(items):
        j = first.setdefault(it.sha1, i)
        if j != i:
            uf.union(i, j)
    # faces <-> photos: roots named "<parent>-faces" and "<parent>-photos"
    by_key = {}
    for i, it in enumerate(items):
        if it.root.endswith("-photos"):
            by_key[(it.root[: -len("-photos")], it.rel)] = i
    for i, it in enumerate(items):
        if it.root.endswith("-faces"):
            j = by_key.get((it.root[: -len("-faces")], it.rel))
            if j is not None:
                uf.union(i, j)
    n_near = 0
    if crops is not None and max_bits >= 0:
        valid = crops.ok.copy()
        # a near-constant image hashes to 0 or all-ones: not evidence of a duplicate
        valid &= (crops.dhash != 0) & (crops.dhash != np.uint64(0xFFFFFFFFFFFFFFFF))
        for i, j in near_duplicate_pairs(crops.dhash, max_bits, valid):
            if uf.find(i) != uf.find(j):
                n_near += 1
            uf.union(i, j)
    members = {}
    for i in range(n):
        members.setdefault(uf.find(i), []).append(i)
    for ms in members.values():
        # key on the photo when there is one, so a photo and its face always go together
        photo = [items[m].sha1 for m in ms if items[m].kind == "photos"]
        key = min(photo) if photo else min(items[m].sha1 for m in ms)
        sp = split_of(key, fractions)
        for m in ms:
            items[m].group = key
            items[m].split = sp
    sizes = [len(v) for v in members.values()]
    return {"groups": len(members), "largest_group": max(sizes) if sizes else 0,
            "merged_near_duplicates": n_near}


def split_counts(items, mask=None) -> dict:
    out = {}
    for i, it in enumerate(items):
        if mask is not None and not mask[i]:
            continue
        d = out.setdefault(it.root, {s: [0, 0] for s in SPLITS})
        d[it.split][it.label] += 1
    return {r: {s: {"no_smile": v[0], "smile": v[1]} for s, v in d.items()} for r, d in out.items()}


# --------------------------------------------------------------- export split
def export_split(items, out_dir, splits=("test",)) -> dict:
    """Symlink the chosen splits as ``OUT/<root>/<split>/<class>/<file>`` (for ``djsmile eval``).

    The class folder is the label the data gives (``orig_label`` when label fixes
    were applied), and items a fix drops are kept: ``djsmile eval`` applies
    ``training/label_fixes.csv`` itself and reports the original and the fixed
    labels side by side, which needs the data as it is.

    Exporting again over an earlier export replaces its links (a stale link
    left in the other class folder would count a face twice); other files are left alone.
    """
    out_dir = Path(out_dir)
    counts = {}
    for root in sorted({it.root for it in items}):
        for split in splits:
            for cls in CLASSES:
                d = out_dir / root / split / cls
                for f in (d.iterdir() if d.is_dir() else ()):
                    if f.is_symlink():
                        f.unlink()
    for it in items:
        if it.split not in splits:
            continue
        d = out_dir / it.root / it.split / CLASSES[getattr(it, "orig_label", it.label)]
        d.mkdir(parents=True, exist_ok=True)
        link = d / Path(it.rel).name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path(it.path).resolve())
        key = f"{it.root}/{it.split}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def prepare(specs, params: CropParams, cache_dir: Path = DEFAULT_CACHE, workers: int = 2,
            progress: bool = True, fractions=SPLIT_FRACTIONS):
    """Roots -> items (hashed, split) and their crops. The one entry point for train/convert."""
    roots = resolve_roots(specs)
    items = list_items(roots)
    if not items:
        raise DataError("no images found in " + ", ".join(str(r.path) for r in roots))
    hash_items(items, cache_dir)
    crops = load_crops(items, params, cache_dir, workers, progress)
    if not crops.ok.any():
        raise DataError("no readable images in " + ", ".join(str(r.path) for r in roots))
    split_stats = assign_splits(items, crops, fractions)
    return roots, items, crops, split_stats


def masks(items, crops: Crops):
    """Boolean row masks per split (usable rows only: decoded and a face found)."""
    use = crops.ok & crops.found & ~np.array([it.dropped for it in items], bool)
    sp = np.array([it.split for it in items])
    return {s: use & (sp == s) for s in SPLITS}
