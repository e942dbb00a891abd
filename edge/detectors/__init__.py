"""Face detector back-ends behind one interface (:class:`~.base.FaceDetector`).

``detector.backend`` picks one: ``"blazeface"`` (the default: MediaPipe's
short-range BlazeFace on the TFLite runtime), ``"yunet"`` (OpenCV's
``FaceDetectorYN``) or ``"haar"`` (OpenCV's Haar cascade, the original
detector). Each lives in its own module; :func:`make_detector` builds the one
a config asks for. Tracking between full detections and the detection worker
thread are the same for all of them (:mod:`djsmile.faces`).
"""

from __future__ import annotations

from .base import LANDMARKS, BoxRule, Detection, FaceDetector

BACKENDS = ("blazeface", "yunet", "haar")


def make_detector(det) -> FaceDetector:
    """The back-end named by ``det.backend`` (a ``DetectorConfig``), with its settings."""
    if det.backend == "haar":
        from .haar import HaarDetector
        return HaarDetector.from_config(det)
    if det.backend == "yunet":
        from .yunet import YuNetDetector
        return YuNetDetector(min_score=det.yunet_min_score, detect_width=det.detect_width, model=det.yunet_model,
                             min_face_fraction=det.min_face_fraction)
    if det.backend == "blazeface":
        from .blazeface import BlazeFaceDetector
        return BlazeFaceDetector(min_score=det.blazeface_min_score, model=det.blazeface_model,
                                 min_face_fraction=det.min_face_fraction, refine=det.blazeface_refine)
    raise ValueError(f"unknown detector.backend {det.backend!r}; choose from {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "LANDMARKS", "BoxRule", "Detection", "FaceDetector", "make_detector"]
