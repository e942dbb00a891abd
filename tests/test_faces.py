"""The Haar detector's size options, on a real face from the shared data."""

from djsmile.config import Config
from djsmile.detectors.haar import HaarDetector


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


def test_equalize_defaults_to_auto_and_rejects_unknown_methods():
    import pytest
    from djsmile.errors import ConfigError
    cfg = Config()
    assert cfg.detector.equalize == "auto"                            # the device equalizes dim frames
    assert HaarDetector().equalize == "auto"                          # the class takes the same default
    det = HaarDetector(equalize="clahe")
    assert det.clone().clahe_op is not det.clahe_op                  # one CLAHE per thread, like the cascade
    with pytest.raises(ConfigError, match="detector.equalize"):
        cfg.set("detector.equalize", "retinex")
    with pytest.raises(ConfigError, match="detector.equalize"):
        HaarDetector(equalize="retinex")
    cfg.set("detector.equalize", "clahe")
    assert HaarDetector.from_config(cfg.detector).equalize == "clahe"


def test_equalize_stretches_a_dim_flat_frame_and_keeps_none_untouched():
    import numpy as np
    from djsmile.detectors.haar import equalize_frame
    rng = np.random.default_rng(0)
    dim = rng.integers(5, 25, size=(120, 160)).astype(np.uint8)     # a dark room: 20 gray levels used
    assert equalize_frame(dim, "none") is dim
    for method in ("clahe", "hist"):
        out = equalize_frame(dim, method)
        assert out.shape == dim.shape and out.dtype == np.uint8
        assert int(np.ptp(out)) >= 2 * int(np.ptp(dim))              # contrast spread out
    # global equalization keeps the order of gray levels (darker stays darker)
    out = equalize_frame(dim, "hist").ravel()
    order = np.argsort(dim.ravel(), kind="stable")
    assert np.all(np.diff(out[order].astype(int)) >= 0)


def test_clahe_finds_a_face_in_a_dim_noisy_frame_that_plain_haar_misses(small_face_scene):
    import numpy as np
    from djsmile.training.dimlight import Degradation
    scene = small_face_scene(60)
    dim = Degradation(gamma=2.2, exposure=0.12, read_noise=1.5).apply(scene, np.random.default_rng(1))
    kw = dict(min_face_fraction=0.1)
    assert HaarDetector(equalize="none", **kw).detect(scene)         # found in good light
    assert HaarDetector(equalize="none", **kw).detect(dim) == []
    boxes = HaarDetector(equalize="clahe", **kw).detect(dim)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    assert 150 <= x + w / 2 <= 210 and 90 <= y + h / 2 <= 150        # on the pasted face


def test_auto_equalizes_dim_frames_only(small_face_scene):
    import numpy as np
    from djsmile.detectors.haar import DIM_MEAN, equalize_frame
    from djsmile.training.dimlight import Degradation
    scene = small_face_scene(60)
    assert scene.mean() >= DIM_MEAN
    assert equalize_frame(scene, "auto") is scene                    # a well-lit frame is left alone
    dim = Degradation(gamma=2.2, exposure=0.12, read_noise=1.5).apply(scene, np.random.default_rng(1))
    assert dim.mean() < DIM_MEAN
    assert np.array_equal(equalize_frame(dim, "auto"), equalize_frame(dim, "clahe"))
    assert len(HaarDetector(equalize="auto", min_face_fraction=0.1).detect(dim)) == 1
