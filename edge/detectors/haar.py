"""The Haar cascade back-end (``detector.backend = "haar"``): OpenCV's frontal-face cascade on a small gray frame.

The design card's detector, kept selectable and tested. It needs OpenCV 4.x
(``cv2.CascadeClassifier`` and the cascade XMLs are gone in OpenCV 5). Its box
is the one the smile model was trained on, so its :class:`~.base.BoxRule` is
the identity.
"""

from __future__ import annotations

import copy
import os

import cv2
import numpy as np

from ..config import DetectorConfig as _D   # the [detector] defaults, written once there
from ..errors import CascadeError, ConfigError
from ..boxes import nms
from .base import Detection, FaceDetector

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
            raise CascadeError(f"detector.cascade = {path!r}: file not found")
        return path
    for d in CASCADE_DIRS:
        if d and os.path.isfile(os.path.join(d, CASCADE_NAME)):
            return os.path.join(d, CASCADE_NAME)
    raise CascadeError(f"no {CASCADE_NAME} found in {', '.join(d for d in CASCADE_DIRS if d)}; "
                      "install opencv-python-headless<5 or set detector.cascade")


#: ``detector.equalize`` values, and the CLAHE settings ("clahe")
EQUALIZE = ("none", "clahe", "hist", "auto")
CLAHE_CLIP = 2.0
CLAHE_TILES = (4, 4)
#: "auto": CLAHE only when the detection frame's mean gray level is below this (a dim frame); chosen on
#: val photos (training/dimlight.py): CLAHE on well-lit frames loses a few faces Haar finds without it
DIM_MEAN = 50.0


def equalize_frame(small: np.ndarray, method: str, clahe=None) -> np.ndarray:
    """The detection frame with its contrast equalized (``method`` from :data:`EQUALIZE`; "none": as it is).

    ``"clahe"``: contrast-limited adaptive histogram equalization, 4x4 tiles,
    clip limit 2 (dim, low-contrast frames get their faces' structure back
    without blowing up bright ones); ``"hist"``: one histogram for the whole frame;
    ``"auto"``: CLAHE when the frame is dim (mean below :data:`DIM_MEAN`), else as it is.
    """
    if method == "none":
        return small
    if method == "auto":
        if float(small.mean()) >= DIM_MEAN:
            return small
        method = "clahe"
    if method == "hist":
        return cv2.equalizeHist(small)
    if method == "clahe":
        return (clahe or cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_TILES)).apply(small)
    raise ValueError(f"unknown equalize method {method!r}; choose from {', '.join(EQUALIZE)}")


class HaarDetector(FaceDetector):
    """One Haar frontal-face detection on a gray frame (the design card's detector; ``detector.backend = "haar"``).

    :param scale_factor: pyramid step (1.1 = thorough and slow, 1.2+ = fast).
    :param min_neighbors: how many overlapping hits make a face.
    :param min_face_fraction: smallest face, as a fraction of the frame height.
    :param detect_width: shrink frames wider than this before detecting (0 = never).
    :param upscale: then enlarge the frame by this factor (finds faces smaller
        than the cascade's 24 px window, e.g. in small photos; costs about
        ``upscale**2`` the time).
    :param min_confidence: drop boxes whose Haar confidence (the cascade's
        last-stage score, OpenCV's ``levelWeights``) is below this; 0 = keep all.
        Weeds out the extra false faces that a low ``min_neighbors`` lets in.
    :param equalize: contrast equalization of the small detection frame only
        (the model still gets the original pixels): ``"none"``, ``"clahe"``
        (:func:`equalize_frame`; finds faces in dim, flat frames), ``"hist"``
        (global histogram equalization) or ``"auto"`` (CLAHE on dim frames only).
    """

    name = "haar"
    wants_color = False

    def __init__(self, scale_factor: float = _D.scale_factor, min_neighbors: int = _D.min_neighbors,
                 min_face_fraction: float = _D.min_face_fraction, detect_width: int = _D.detect_width,
                 cascade: str = _D.cascade, upscale: float = _D.upscale, min_confidence: float = _D.min_confidence,
                 equalize: str = _D.equalize):
        self.cascade_path = find_cascade(cascade)
        self.classifier = cv2.CascadeClassifier(self.cascade_path)   # cv2.CascadeClassifier (one per thread: see clone)
        if self.classifier.empty():
            raise CascadeError(f"detector.cascade: {self.cascade_path} is not a valid Haar cascade")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_face_fraction = min_face_fraction
        self.detect_width = detect_width
        self.upscale = float(upscale)
        self.min_confidence = float(min_confidence)
        if equalize not in EQUALIZE:
            raise ConfigError(f"config key detector.equalize = {equalize!r} is not valid: allowed are "
                              + ", ".join(repr(e) for e in EQUALIZE))
        self.equalize = equalize
        # cv2.CLAHE for "clahe"/"auto" (one per thread, like the cascade: see clone)
        self.clahe_op = (cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_TILES)
                         if equalize in ("clahe", "auto") else None)

    def clone(self) -> "HaarDetector":
        """The same settings with its own cascade (one cascade object is not shared between threads)."""
        twin = copy.copy(self)
        twin.classifier = cv2.CascadeClassifier(self.cascade_path)
        if self.clahe_op is not None:   # nor is a CLAHE object (it keeps working buffers)
            twin.clahe_op = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_TILES)
        return twin

    def describe(self) -> str:
        return f"haar ({self.detect_width or 'full'} px wide, equalize {self.equalize})"

    @classmethod
    def from_config(cls, det) -> "HaarDetector":
        return cls(scale_factor=det.scale_factor, min_neighbors=det.min_neighbors,
                   min_face_fraction=det.min_face_fraction, detect_width=det.detect_width,
                   cascade=det.cascade, upscale=det.upscale, min_confidence=det.min_confidence,
                   equalize=det.equalize)

    def _run(self, small: np.ndarray, min_px: int):
        min_px = max(20, int(min_px))  # the cascade's own window is 24 px
        if small.shape[0] < min_px or small.shape[1] < min_px:
            return []
        if self.min_confidence > 0:
            found, _levels, weights = self.classifier.detectMultiScale3(
                small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                minSize=(min_px, min_px), outputRejectLevels=True)
            weights = np.asarray(weights, np.float64).reshape(-1)
            found = [b for b, w in zip(found, weights) if w >= self.min_confidence]
        else:
            found = self.classifier.detectMultiScale(
                small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                minSize=(min_px, min_px))
        return [tuple(int(v) for v in b) for b in (found if len(found) else [])]

    def detect_faces(self, gray: np.ndarray, color: np.ndarray | None = None) -> list[Detection]:
        """Faces in ``gray`` (2-D uint8), largest first; ``color`` is not used (Haar runs on gray)."""
        H, W = gray.shape[:2]
        scale = 1.0
        small = gray
        if self.detect_width and W > self.detect_width:
            scale = self.detect_width / W
        scale *= self.upscale
        if scale != 1.0:
            small = cv2.resize(gray, (max(1, int(round(W * scale))), max(1, int(round(H * scale)))),
                               interpolation=cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR)
        small = equalize_frame(small, self.equalize, self.clahe_op)
        min_px = self.min_face_fraction * H * scale
        boxes = self._run(small, min_px)
        if scale != 1.0:
            inv = 1.0 / scale
            boxes = [(int(round(x * inv)), int(round(y * inv)), int(round(w * inv)), int(round(h * inv)))
                     for x, y, w, h in boxes]
        return [Detection(b, 1.0, b) for b in nms(boxes)]

