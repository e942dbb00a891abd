"""The Haar detector's size options, on a real face from the shared data."""

import cv2
import numpy as np
import pytest

from edge.config import Config
from edge.faces import HaarDetector


def _small_face_scene(shared_datasets, face_px):
    """A 320x213 stock-photo-sized frame with one real djsmile face shrunk to ``face_px``."""
    det = HaarDetector(min_face_fraction=0.0, detect_width=0)
    for f in sorted((shared_datasets / "djsmile" / "photos" / "smile").glob("*.jpg"))[:200]:
        g = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        boxes = det.detect(g)
        if len(boxes) != 1 or boxes[0][2] < 60:
            continue
        x, y, w, h = boxes[0]
        m = w // 4
        face = g[max(0, y - m):y + h + m, max(0, x - m):x + w + m]
        k = face_px / w
        face = cv2.resize(face, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        scene = np.full((213, 320), int(np.median(g)), np.uint8)
        scene[90:90 + face.shape[0], 150:150 + face.shape[1]] = face
        return scene
    pytest.skip("no single large face in the first 200 shared smile photos")


def test_upscale_finds_faces_smaller_than_the_cascade_window(shared_datasets):
    scene = _small_face_scene(shared_datasets, face_px=16)   # below Haar's 24-px window
    plain = HaarDetector(min_face_fraction=0.0)
    assert plain.detect(scene) == []
    up = HaarDetector(min_face_fraction=0.0, upscale=2.0)
    boxes = up.detect(scene)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    # the box is in the frame's own pixels, on the pasted face
    assert 150 <= x + w / 2 <= 150 + 24 and 90 <= y + h / 2 <= 90 + 24
    assert 10 <= w <= 28


def test_upscale_comes_from_the_config_and_defaults_off():
    cfg = Config()
    assert cfg.detector.upscale == 1.0
    cfg.set("detector.upscale", 2.0)
    assert HaarDetector.from_config(cfg.detector).upscale == 2.0


def test_min_confidence_drops_weak_detections_only(shared_datasets):
    scene = _small_face_scene(shared_datasets, face_px=40)
    kw = dict(min_face_fraction=0.0, min_neighbors=3)
    plain = HaarDetector(**kw).detect(scene)
    assert len(plain) >= 1
    # a low bar keeps exactly what the plain detector finds; an impossible one keeps nothing
    assert HaarDetector(min_confidence=1e-6, **kw).detect(scene) == plain
    assert HaarDetector(min_confidence=50.0, **kw).detect(scene) == []


def test_photos_detector_preset_loads_and_upscales():
    from pathlib import Path
    from edge import config
    cfg = config.load(Path(__file__).resolve().parents[1] / "training" / "photos-detector.toml")
    det = HaarDetector.from_config(cfg.detector)
    assert det.upscale == 2.0 and det.min_neighbors < Config().detector.min_neighbors
    assert cfg.camera == Config().camera        # only [detector] changes
