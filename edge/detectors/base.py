"""What every face detector back-end gives: :class:`Detection`, and the :class:`FaceDetector` interface.

A back-end takes one frame (the gray analysis frame, and the colour one for
back-ends that want colour) and returns :class:`Detection` objects, largest
first. ``box`` is what the rest of djsmile uses (tracking, the smile model's
crop, the trigger): each back-end maps its own box through its
:class:`BoxRule` onto the square, Haar-style box the smile model was trained
on. ``raw_box``, ``score`` and ``landmarks`` (eyes, nose, mouth where the
back-end has them) are kept for what comes later (eye-aligned crops).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..boxes import largest_first

#: landmark names, in the order back-ends fill them (image coordinates: "right_eye" is the person's right eye)
LANDMARKS = ("right_eye", "left_eye", "nose", "mouth")


@dataclass(frozen=True)
class BoxRule:
    """How a back-end's box becomes the Haar-style square the smile model learned.

    Measured against Haar on the same faces (val photos, ``python -m djsmile.training.detectcompare``):
    the Haar box is ``width / w_ratio`` wide and ``height / h_ratio`` tall (made
    square: the mean of the two), its centre ``dx`` Haar-box sides left of and
    ``dy`` above the back-end's centre (BlazeFace's centre sits lower).
    """
    w_ratio: float = 1.0
    h_ratio: float = 1.0
    dx: float = 0.0
    dy: float = 0.0

    def apply(self, raw_box) -> tuple:
        x, y, w, h = (float(v) for v in raw_box)
        side = 0.5 * (w / self.w_ratio + h / self.h_ratio)
        cx = x + w / 2.0 - self.dx * side
        cy = y + h / 2.0 - self.dy * side
        s = int(round(side))
        return (int(round(cx - s / 2.0)), int(round(cy - s / 2.0)), s, s)


@dataclass(frozen=True)
class Detection:
    """One face found by a back-end, in the analysis frame's pixels."""
    box: tuple                      # (x, y, w, h): the Haar-style box (tracking, the model's crop)
    score: float = 1.0              # the back-end's confidence (Haar: 1.0, or its level weight)
    raw_box: tuple = ()             # the back-end's own box
    landmarks: dict = field(default_factory=dict)   # name (LANDMARKS) -> (x, y) float pixels

    def clipped(self, width: int, height: int) -> "Detection":
        """The same detection with its box shifted / cut to lie inside a ``width`` x ``height`` frame."""
        x, y, w, h = self.box
        w, h = min(w, width), min(h, height)
        x = min(max(0, x), width - w)
        y = min(max(0, y), height - h)
        return Detection((x, y, w, h), self.score, self.raw_box, self.landmarks)


class FaceDetector:
    """A face detector back-end: one full-frame detection at a time.

    Subclasses set :attr:`name` and :attr:`wants_color`, and implement
    :meth:`detect_faces` and :meth:`clone` (one object per thread: OpenCV's and
    LiteRT's objects keep working buffers).
    """

    name = "base"
    #: ``True``: give :meth:`detect_faces` the BGR colour frame (the gray one is then copied to 3 channels)
    wants_color = False

    def detect_faces(self, gray: np.ndarray, color: np.ndarray | None = None) -> list[Detection]:
        raise NotImplementedError

    def detect(self, gray: np.ndarray, color: np.ndarray | None = None) -> list[tuple]:
        """Only the boxes of :meth:`detect_faces`, largest first."""
        return [d.box for d in self.detect_faces(gray, color)]

    def clone(self) -> "FaceDetector":
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


def finish(dets: list[Detection], width: int, height: int) -> list[Detection]:
    """Clip to the frame, drop degenerate boxes, largest first."""
    out = [d.clipped(width, height) for d in dets]
    return largest_first([d for d in out if d.box[2] >= 8 and d.box[3] >= 8], key=lambda d: d.box)


def color_input(gray: np.ndarray, color: np.ndarray | None) -> np.ndarray:
    """The BGR frame a colour back-end runs on: ``color``, or the gray frame copied to 3 channels."""
    if color is not None and color.ndim == 3 and color.shape[2] == 3:
        if color.shape[:2] != gray.shape[:2]:   # the colour frame at another size: bring it to the analysis size
            color = cv2.resize(color, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_AREA)
        return color
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
