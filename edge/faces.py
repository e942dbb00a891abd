"""Find faces: OpenCV Haar cascade on a small gray frame, plus tracking.

:class:`HaarDetector` runs one detection on a whole gray frame (shrunk to
``detect_width``) and maps the boxes back to the frame's coordinates.
:class:`FaceFinder` adds the cheap path used between full detections:
search only a window around each face found last time.

Boxes are ``(x, y, w, h)`` tuples of ints in the analysis frame's pixels.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from .errors import ConfigError

log = logging.getLogger(__name__)

CASCADE_NAME = "haarcascade_frontalface_default.xml"
CASCADE_DIRS = [
    getattr(getattr(cv2, "data", None), "haarcascades", ""),
    "/usr/share/opencv4/haarcascades",
    "/usr/share/opencv/haarcascades",
]


def find_cascade(path: str = "") -> str:
    """Return the Haar cascade XML to use: ``path`` if given, else the frontal-face default."""
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"detector.cascade = {path!r}: file not found")
        return path
    for d in CASCADE_DIRS:
        if d and os.path.isfile(os.path.join(d, CASCADE_NAME)):
            return os.path.join(d, CASCADE_NAME)
    raise ConfigError(f"no {CASCADE_NAME} found in {', '.join(d for d in CASCADE_DIRS if d)}; "
                      "install opencv-python-headless<5 or set detector.cascade")


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def _nms(boxes, thresh: float = 0.3):
    """Drop boxes overlapping a larger one by more than ``thresh`` IoU."""
    keep = []
    for b in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True):
        if all(iou(b, k) <= thresh for k in keep):
            keep.append(b)
    return keep


class HaarDetector:
    """One Haar frontal-face detection on a gray frame.

    :param scale_factor: pyramid step (1.1 = thorough and slow, 1.2+ = fast).
    :param min_neighbors: how many overlapping hits make a face.
    :param min_face_fraction: smallest face, as a fraction of the frame height.
    :param detect_width: shrink frames wider than this before detecting (0 = never).
    """

    def __init__(self, scale_factor: float = 1.15, min_neighbors: int = 5,
                 min_face_fraction: float = 0.15, detect_width: int = 320,
                 cascade: str = ""):
        self.cascade_path = find_cascade(cascade)
        self._cascade = cv2.CascadeClassifier(self.cascade_path)
        if self._cascade.empty():
            raise ConfigError(f"detector.cascade: {self.cascade_path} is not a valid Haar cascade")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_face_fraction = min_face_fraction
        self.detect_width = detect_width

    @classmethod
    def from_config(cls, det) -> "HaarDetector":
        return cls(scale_factor=det.scale_factor, min_neighbors=det.min_neighbors,
                   min_face_fraction=det.min_face_fraction, detect_width=det.detect_width,
                   cascade=det.cascade)

    def _run(self, small: np.ndarray, min_px: int):
        min_px = max(20, int(min_px))  # the cascade's own window is 24 px
        if small.shape[0] < min_px or small.shape[1] < min_px:
            return []
        found = self._cascade.detectMultiScale(
            small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(min_px, min_px))
        return [tuple(int(v) for v in b) for b in (found if len(found) else [])]

    def detect(self, gray: np.ndarray, frame_height: int | None = None):
        """Faces in ``gray`` (2-D uint8) as a list of boxes in ``gray``'s coordinates, largest first."""
        H, W = gray.shape[:2]
        scale = 1.0
        small = gray
        if self.detect_width and W > self.detect_width:
            scale = self.detect_width / W
            small = cv2.resize(gray, (self.detect_width, max(1, int(round(H * scale)))),
                               interpolation=cv2.INTER_AREA)
        ref_h = frame_height if frame_height else H
        min_px = self.min_face_fraction * ref_h * scale
        boxes = self._run(small, min_px)
        if scale != 1.0:
            inv = 1.0 / scale
            boxes = [(int(round(x * inv)), int(round(y * inv)), int(round(w * inv)), int(round(h * inv)))
                     for x, y, w, h in boxes]
        return sorted(_nms(boxes), key=lambda b: b[2] * b[3], reverse=True)


class FaceFinder:
    """Full detection every ``full_every`` frames; in between, search near the last faces.

    Searching a window of ``(1 + 2 * track_margin)`` times the last box is
    much cheaper than the whole frame. A face lost by tracking comes back at
    the next full detection (at once, if tracking found no face at all).
    """

    def __init__(self, detector: HaarDetector, full_every: int = 5, track_margin: float = 0.5):
        self.detector = detector
        self.full_every = max(1, int(full_every))
        self.track_margin = track_margin
        self._last: list = []
        self._since_full = 0
        self.last_was_full = False

    @classmethod
    def from_config(cls, det) -> "FaceFinder":
        return cls(HaarDetector.from_config(det), full_every=det.full_every,
                   track_margin=det.track_margin)

    def reset(self) -> None:
        self._last = []
        self._since_full = 0

    def find(self, gray: np.ndarray):
        """Faces in this frame, largest first."""
        if self.full_every == 1 or not self._last or self._since_full >= self.full_every - 1:
            boxes = self.detector.detect(gray)
            self._since_full = 0
            self.last_was_full = True
        else:
            boxes = self._track(gray)
            self._since_full += 1
            self.last_was_full = False
            if not boxes:  # lost everyone: look at the whole frame now
                boxes = self.detector.detect(gray)
                self._since_full = 0
                self.last_was_full = True
        self._last = boxes
        return boxes

    def _track(self, gray: np.ndarray):
        H, W = gray.shape[:2]
        found = []
        for (x, y, w, h) in self._last:
            m = self.track_margin
            x0, y0 = max(0, int(x - m * w)), max(0, int(y - m * h))
            x1, y1 = min(W, int(x + w + m * w)), min(H, int(y + h + m * h))
            roi = gray[y0:y1, x0:x1]
            if roi.size == 0:
                continue
            # faces between 0.7x and 1.4x the last size: a fast, narrow search
            det = self.detector
            rh, rw = roi.shape
            scale = 1.0
            target = 80.0  # detect tracked faces at about 80 px: plenty for Haar
            if w > target:
                scale = target / w
                roi = cv2.resize(roi, (max(1, int(rw * scale)), max(1, int(rh * scale))),
                                 interpolation=cv2.INTER_AREA)
            min_px = 0.7 * w * scale
            cand = det._cascade.detectMultiScale(
                roi, scaleFactor=det.scale_factor, minNeighbors=det.min_neighbors,
                minSize=(max(20, int(min_px)),) * 2, maxSize=(int(1.4 * w * scale) + 1,) * 2)
            if len(cand):
                bx, by, bw, bh = max(cand, key=lambda b: b[2] * b[3])
                inv = 1.0 / scale
                found.append((int(x0 + bx * inv), int(y0 + by * inv), int(bw * inv), int(bh * inv)))
        return sorted(_nms(found), key=lambda b: b[2] * b[3], reverse=True)
