"""The BlazeFace back-end (``detector.backend = "blazeface"``): MediaPipe's short-range face detector.

A 128x128 colour CNN (229,714 bytes, Apache-2.0, from the ``mediapipe==0.10.18``
wheel; origin and licence in ``models/README.md``) run by the same TFLite
runtime as the smile model: no MediaPipe at run time. The frame is letterboxed
to a square (aspect kept, black bars), scaled to [-1, 1]; the 896 SSD anchors
(strides 8 and 16: 16x16x2 + 8x8x6) decode into boxes and 6 keypoints (eyes,
nose tip, mouth, ear tragions); scores are sigmoids; overlapping boxes are
blended by score (MediaPipe's weighted suppression). Two djsmile additions,
chosen on val: an underexposed frame is stretched before detection (a dim
room), and weak detections must look like a face (keypoints in place, not
half the frame: BlazeFace sees faces in stripes and colour noise). Best of the three
back-ends in dim light and at booth distance; faces below about a tenth of the
frame height are its weak spot (it is the "short range" model).
"""

from __future__ import annotations

import dataclasses

from importlib import resources

import cv2
import numpy as np

from ..boxes import SAME_FACE_IOU, iou
from ..config import DetectorConfig as _D
from ..errors import ModelError
from ..runtime import Runtime
from .base import BoxRule, Detection, FaceDetector, color_input, finish

MODEL_FILE = "face_detection_short_range.tflite"
#: SSD anchor layout of the short-range model (MediaPipe's face_detection_short_range graph)
STRIDES = (8, 16, 16, 16)
#: keypoint order in the model's output -> djsmile's landmark names (image coordinates)
KEYPOINTS = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")
#: a letterboxed input whose 99th percentile is below this is stretched (x at most MAX_GAIN) before detection
DIM_TOP = 180.0
MAX_GAIN = 4.0
#: detections scoring below VERIFY_BELOW must have face-like keypoints (:func:`plausible`)
VERIFY_BELOW = 0.7
MAX_TILT = 0.6
MIN_MOUTH_DROP = 0.85
#: a detection taller than BIG_FRACTION of the frame must score BIG_MIN_SCORE or more: BlazeFace's false faces on
#: textures are large (median 304 px of 480) and score 0.5-0.65, while val faces scoring under 0.65 are small
#: (median 93 px, 98% under 0.4 of the frame); 6 of 1,113 val faces (clean and dim) are lost to the two checks
BIG_FRACTION = 0.4
BIG_MIN_SCORE = 0.65
#: BlazeFace's box -> the Haar-style box (the median geometry against Haar on val photos; used only when a
#: detection's keypoints are unusable): 0.888x Haar's size, its centre 0.108 Haar sides lower
BOX_RULE = BoxRule(w_ratio=0.888, h_ratio=0.888, dx=0.009, dy=0.108)


def haar_box(raw, pts) -> tuple:
    """The Haar-style square from BlazeFace's box and keypoints (eyes, nose, mouth pin the face better than the box).

    Least squares against Haar's box on the same 841 val faces, written to move and scale with the face
    (no pixel offsets): the centre is the eyes' midpoint plus fixed shares of the way to the mouth, the nose
    and the box centre; the side a mix of the eye distance, the eyes-to-mouth distance and the box width.
    Mean error against Haar: 4.3 px across, 3.9 px down, 11 px in size (box rule alone: 8.9 / 5.9 / 12.2).
    """
    x, y, w, h = raw
    re, le, nose, mouth = (np.asarray(pts[i], np.float64) for i in (0, 1, 2, 3))
    em = (re + le) / 2.0
    ed, emd = float(np.hypot(*(le - re))), float(np.hypot(*(mouth - em)))
    if not (ed > 0 and emd > 0):
        return BOX_RULE.apply(raw)
    centre = np.array([x + w / 2.0, y + h / 2.0])
    cx = em[0] + 0.2423 * (mouth[0] - em[0]) + 0.0303 * (nose[0] - em[0]) + 0.1322 * (centre[0] - em[0])
    cy = em[1] - 0.3354 * (mouth[1] - em[1]) + 0.5707 * (nose[1] - em[1]) + 0.5308 * (centre[1] - em[1])
    side = int(round(0.8272 * ed + 0.3213 * emd + 0.6386 * w))
    return (int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side, side)


def anchors(size: int = 128, strides=STRIDES) -> np.ndarray:
    """``(N, 2)`` anchor centres in [0, 1] (fixed anchor size 1): two a cell per layer, layers of one stride merged."""
    out = []
    i = 0
    while i < len(strides):
        stride = strides[i]
        per_cell = 0
        while i < len(strides) and strides[i] == stride:
            per_cell += 2   # aspect ratio 1.0 plus the interpolated scale
            i += 1
        g = int(np.ceil(size / stride))
        ys, xs = np.mgrid[0:g, 0:g]
        centres = np.stack([(xs + 0.5) / g, (ys + 0.5) / g], axis=-1).reshape(-1, 2)
        out.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


def shipped_model() -> str:
    """Path of the BlazeFace model shipped as package data."""
    ref = resources.files("djsmile.models").joinpath(MODEL_FILE)
    if not ref.is_file():
        raise ModelError(f"the BlazeFace model {MODEL_FILE} is missing from the djsmile package; "
                         "reinstall djsmile or set detector.blazeface_model")
    return str(ref)


class BlazeFaceDetector(FaceDetector):
    """MediaPipe BlazeFace (short range) on the colour frame.

    :param min_score: lowest face score kept (``detector.min_score``).
    :param model: the ``.tflite`` file ('' = the shipped one).
    :param min_face_fraction: drop faces smaller than this fraction of the frame height.
    :param refine: > 0: look again at a square ``refine`` face sides wide around each face found and take its
        landmarks from that closer view (``detector.blazeface_refine``); 0: off.
    """

    name = "blazeface"
    wants_color = True

    def __init__(self, min_score: float = _D.blazeface_min_score, model: str = "", min_face_fraction: float = 0.0,
                 num_threads: int = 1, stretch_dim: bool = True, verify_below: float = VERIFY_BELOW,
                 refine: float = 0.0):
        self.model_path = model or shipped_model()
        self.refine = float(refine)
        self.min_score = float(min_score)
        self.stretch_dim = bool(stretch_dim)
        self.verify_below = float(verify_below)
        self.min_face_fraction = float(min_face_fraction)
        self.num_threads = int(num_threads)
        self.runtime = Runtime(self.model_path, num_threads=self.num_threads, quiet=True)
        shape = self.runtime.input_shape
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
            raise ModelError(f"{self.model_path}: not a BlazeFace model (input {list(shape)}, want [1, N, N, 3])")
        self.size = int(shape[1])
        self.anchors = anchors(self.size)
        n = self.anchors.shape[0]
        outs = self.runtime.output_shapes
        if sorted(tuple(o[1:]) for o in outs) != sorted([(n, 16), (n, 1)]):
            raise ModelError(f"{self.model_path}: outputs {outs} do not match {n} BlazeFace anchors")

    def clone(self) -> "BlazeFaceDetector":
        return BlazeFaceDetector(self.min_score, self.model_path, self.min_face_fraction, self.num_threads,
                                 self.stretch_dim, self.verify_below, self.refine)

    def describe(self) -> str:
        more = f", landmarks refined at {self.refine:g}x the face" if self.refine else ""
        return f"blazeface (short range {self.size}x{self.size}, score >= {self.min_score:g}{more})"

    def _letterbox(self, bgr: np.ndarray):
        H, W = bgr.shape[:2]
        s = self.size / float(max(H, W))
        nw, nh = max(1, int(round(W * s))), max(1, int(round(H * s)))
        small = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        px, py = (self.size - nw) // 2, (self.size - nh) // 2
        canvas = np.zeros((self.size, self.size, 3), np.uint8)
        canvas[py:py + nh, px:px + nw] = small
        rgb = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB).astype(np.float32)
        if self.stretch_dim:   # an underexposed frame: stretch it as a camera's auto-exposure would
            top = float(np.percentile(small, 99))
            if top < DIM_TOP:
                rgb *= np.float32(min(MAX_GAIN, 255.0 / max(top, 1.0)))
        x = np.minimum(rgb, 255.0) * np.float32(1.0 / 127.5) - np.float32(1.0)
        return x[None], s, px, py

    def detect_faces(self, gray: np.ndarray, color: np.ndarray | None = None) -> list[Detection]:
        dets = self._detect(gray, color)
        if self.refine and dets:
            img = color_input(gray, color)
            dets = [self._refined(img, d) for d in dets]
        return dets

    def _refined(self, img: np.ndarray, d: Detection) -> Detection:
        """``d`` with its landmarks from a second look at a square ``refine`` face sides wide around it (BlazeFace
        sees a small face at 128 px in the whole frame; in the square it fills ~1/refine of the view). The box is
        kept; the landmarks too when the second look finds no face near the square's centre."""
        x, y, w, h = d.raw_box or d.box
        side = max(8, int(round(self.refine * max(w, h))))
        x0, y0 = int(round(x + w / 2.0 - side / 2.0)), int(round(y + h / 2.0 - side / 2.0))
        H, W = img.shape[:2]
        pad = ((max(0, -y0), max(0, y0 + side - H)), (max(0, -x0), max(0, x0 + side - W)), (0, 0))
        crop = img[max(0, y0):y0 + side, max(0, x0):x0 + side]
        if any(a or b for a, b in pad):   # a face near the frame's edge: the square's outside repeats the edge
            crop = np.pad(crop, pad, mode="edge")
        best, best_dist = None, 0.25 * side
        for s in self._detect(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), crop):
            bx, by, bw, bh = s.raw_box or s.box
            dist = float(np.hypot(bx + bw / 2.0 - side / 2.0, by + bh / 2.0 - side / 2.0))
            if s.landmarks and dist < best_dist:
                best, best_dist = s, dist
        if best is None:
            return d
        marks = {k: (float(v[0]) + x0, float(v[1]) + y0) for k, v in best.landmarks.items()}
        return dataclasses.replace(d, landmarks=marks)

    def _detect(self, gray: np.ndarray, color: np.ndarray | None = None) -> list[Detection]:
        H, W = gray.shape[:2]
        x, s, px, py = self._letterbox(color_input(gray, color))
        outs = self.runtime.run_all(x)
        reg, cls = (outs[0], outs[1]) if outs[0].shape[-1] == 16 else (outs[1], outs[0])
        reg, logits = reg[0], cls[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100.0, 100.0)))
        keep = np.nonzero(scores >= self.min_score)[0]
        if keep.size == 0:
            return []
        size = float(self.size)
        a = self.anchors[keep]
        r = reg[keep] / size
        cx, cy = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1]
        bw, bh = r[:, 2], r[:, 3]
        kp = r[:, 4:].reshape(-1, 6, 2) + a[:, None, :]

        def to_px(ux, uy):   # letterboxed unit square -> frame pixels
            return (ux * size - px) / s, (uy * size - py) / s

        x0, y0 = to_px(cx - bw / 2, cy - bh / 2)
        x1, y1 = to_px(cx + bw / 2, cy + bh / 2)
        kx, ky = to_px(kp[..., 0], kp[..., 1])
        cand = [(float(scores[k]), (float(x0[j]), float(y0[j]), float(x1[j] - x0[j]), float(y1[j] - y0[j])),
                 np.stack([kx[j], ky[j]], axis=-1)) for j, k in enumerate(keep)]
        min_px = self.min_face_fraction * H
        dets = []
        for score, raw, pts in weighted_nms(cand):
            if score < self.verify_below and not plausible(pts):
                continue
            if score < BIG_MIN_SCORE and raw[3] > BIG_FRACTION * H:   # a face that close scores high
                continue
            rb = tuple(int(round(v)) for v in raw)
            marks = {name: (float(p[0]), float(p[1])) for name, p in zip(KEYPOINTS, pts)}
            dets.append(Detection(haar_box(raw, pts), score, rb, marks))
        return [d for d in finish(dets, W, H) if d.box[3] >= min_px]


def plausible(pts) -> bool:
    """Do a detection's keypoints look like a face: eyes roughly level, the mouth well below them?

    BlazeFace gives colour noise and stripes faces of score 0.5-0.7 whose
    keypoints are scattered; on val faces (clean and dim) the mouth lies 0.87
    eye distances or more below the eyes (1st percentile) and the eyes tilt by
    less than 0.6 eye distances in 98% of them.
    """
    re, le, mouth = pts[0], pts[1], pts[3]
    ed = float(np.hypot(*(le - re)))
    if ed <= 1e-6:
        return False
    mid = (re + le) / 2.0
    return abs(float(le[1] - re[1])) <= MAX_TILT * ed and float(mouth[1] - mid[1]) >= MIN_MOUTH_DROP * ed


def weighted_nms(cand, thresh: float = SAME_FACE_IOU):
    """MediaPipe's weighted suppression: each group of boxes overlapping the best one (IoU > ``thresh``)
    becomes one, its box and keypoints the score-weighted mean of the group, its score the best one's."""
    cand = sorted(cand, key=lambda c: c[0], reverse=True)
    out = []
    while cand:
        best = cand[0]
        group = [c for c in cand if iou(best[1], c[1]) > thresh]
        rest = [c for c in cand if iou(best[1], c[1]) <= thresh]
        w = np.array([c[0] for c in group], np.float64)
        box = tuple(float(v) for v in (np.array([c[1] for c in group]) * w[:, None]).sum(0) / w.sum())
        pts = (np.array([c[2] for c in group]) * w[:, None, None]).sum(0) / w.sum()
        out.append((best[0], box, pts))
        cand = rest
    return out
