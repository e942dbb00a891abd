"""The YuNet back-end (``detector.backend = "yunet"``): OpenCV's ``cv2.FaceDetectorYN``.

A small CNN (face_detection_yunet_2023mar.onnx, 232,589 bytes, MIT) run by
OpenCV itself (>= 4.8, kept in OpenCV 5). It wants the colour frame: on gray
copied to 3 channels it loses faces in dim light. The frame is shrunk to
``detector.detect_width`` (320 = 320x240 for a 4:3 frame) before detecting.
Best of the three on small faces. The model file is not shipped in the
package yet (see ``models/README.md``): ``detector.yunet_model`` names it.
"""

from __future__ import annotations

import os
from importlib import resources

import cv2
import numpy as np

from ..boxes import SAME_FACE_IOU
from ..config import DetectorConfig as _D
from ..errors import ModelError, UnavailableError
from .base import BoxRule, Detection, FaceDetector, color_input, finish

MODEL_FILE = "face_detection_yunet_2023mar.onnx"
#: YuNet's box -> the Haar-style box: its median geometry against Haar on the same 804 val faces
#: (``python -m djsmile.training.detectcompare``: 0.79x as wide, 1.04x as tall, the centre 0.016 sides lower)
BOX_RULE = BoxRule(w_ratio=0.79, h_ratio=1.043, dx=0.008, dy=0.016)


def find_model(path: str = "") -> str:
    """The YuNet ONNX file: ``path``, else one shipped in the package; a clear error if neither."""
    if path:
        if not os.path.isfile(path):
            raise ModelError(f"detector.yunet_model = {path!r}: file not found")
        return path
    ref = resources.files("djsmile.models").joinpath(MODEL_FILE)
    if ref.is_file():
        return str(ref)
    raise ModelError(f"detector.backend = 'yunet' needs {MODEL_FILE} (OpenCV Zoo, MIT): set detector.yunet_model "
                     "to its path, or use detector.backend = 'blazeface' (shipped)")


class YuNetDetector(FaceDetector):
    """OpenCV's YuNet on the colour frame shrunk to ``detect_width``.

    :param min_score: lowest face score kept (``detector.min_score``; 0.9, the demo default, loses dim faces).
    :param detect_width: detection frame width (``detector.detect_width``; 160 is 3x faster, ~1 point fewer found).
    """

    name = "yunet"
    wants_color = True

    def __init__(self, min_score: float = _D.yunet_min_score, detect_width: int = _D.detect_width, model: str = "",
                 min_face_fraction: float = 0.0):
        if not hasattr(cv2, "FaceDetectorYN"):
            raise UnavailableError(f"detector.backend = 'yunet' needs OpenCV >= 4.8 (cv2.FaceDetectorYN); "
                                   f"this is OpenCV {cv2.__version__}")
        self.model_path = find_model(model)
        self.min_score = float(min_score)
        self.detect_width = int(detect_width)
        self.min_face_fraction = float(min_face_fraction)
        try:
            self.net = cv2.FaceDetectorYN.create(self.model_path, "", (320, 240), self.min_score, SAME_FACE_IOU, 50)
        except cv2.error as e:
            raise ModelError(f"{self.model_path}: not a YuNet model OpenCV can load ({str(e).strip()[:120]})") from None
        self._size = (320, 240)

    def clone(self) -> "YuNetDetector":
        return YuNetDetector(self.min_score, self.detect_width, self.model_path, self.min_face_fraction)

    def describe(self) -> str:
        return f"yunet ({self.detect_width} px wide, score >= {self.min_score:g})"

    def detect_faces(self, gray: np.ndarray, color: np.ndarray | None = None) -> list[Detection]:
        H, W = gray.shape[:2]
        bgr = color_input(gray, color)
        s = self.detect_width / float(W) if self.detect_width and W > self.detect_width else 1.0
        if s != 1.0:
            bgr = cv2.resize(bgr, (max(1, int(round(W * s))), max(1, int(round(H * s)))), interpolation=cv2.INTER_AREA)
        size = (bgr.shape[1], bgr.shape[0])
        if size != self._size:
            self.net.setInputSize(size)
            self._size = size
        _, faces = self.net.detect(bgr)
        if faces is None:
            return []
        inv = 1.0 / s
        min_px = self.min_face_fraction * H
        dets = []
        for f in np.asarray(faces, np.float64):
            raw = tuple(float(v) * inv for v in f[:4])
            p = f[4:14].reshape(5, 2) * inv
            marks = {"right_eye": tuple(p[0]), "left_eye": tuple(p[1]), "nose": tuple(p[2]),
                     "mouth": tuple((p[3] + p[4]) / 2.0), "mouth_right": tuple(p[3]), "mouth_left": tuple(p[4])}
            dets.append(Detection(BOX_RULE.apply(raw), float(f[14]), tuple(int(round(v)) for v in raw),
                                  {k: (float(v[0]), float(v[1])) for k, v in marks.items()}))
        return [d for d in finish(dets, W, H) if d.box[3] >= min_px]
