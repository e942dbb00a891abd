"""The Haar detector's size options, on a real face from the shared data."""

from djsmile.config import Config
from djsmile.faces import HaarDetector


def test_upscale_finds_faces_smaller_than_the_cascade_window(small_face_scene):
    scene = small_face_scene(16)   # below Haar's 24-px window
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


def test_min_confidence_drops_weak_detections_only(small_face_scene):
    scene = small_face_scene(40)
    kw = dict(min_face_fraction=0.0, min_neighbors=3)
    plain = HaarDetector(**kw).detect(scene)
    assert len(plain) >= 1
    # a low bar keeps exactly what the plain detector finds; an impossible one keeps nothing
    assert HaarDetector(min_confidence=1e-6, **kw).detect(scene) == plain
    assert HaarDetector(min_confidence=50.0, **kw).detect(scene) == []


def test_photos_detector_preset_loads_and_upscales():
    from pathlib import Path
    from djsmile import config
    cfg = config.load(Path(__file__).resolve().parents[1] / "training" / "photos-detector.toml")
    det = HaarDetector.from_config(cfg.detector)
    assert det.upscale == 2.0 and det.min_neighbors < Config().detector.min_neighbors
    assert cfg.camera == Config().camera        # only [detector] changes
