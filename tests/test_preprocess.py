"""Training and the device see the same pixels for the same image and box."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from djsmile import preprocess
from djsmile.training import data as D
from djsmile.training.augment import AugParams, augment, center_crops


def _photo(path: Path, seed: int = 0, shape=(213, 320)):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 2)
    cv2.circle(img, (150, 100), 40, (200, 180, 160), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


class _MetaOnly:
    """SmileModel.crop without a runtime: the same method on the same metadata."""

    def __init__(self, size, margin):
        from djsmile.model import ModelMeta
        self.meta = ModelMeta(input_size=size, crop_margin=margin)


@pytest.mark.parametrize("box,size,margin", [((100, 50, 90, 90), 48, -0.075), ((-20, 150, 80, 80), 48, 0.1),
                                             ((250, 10, 120, 100), 32, 0.0), ((5, 5, 20, 20), 64, -0.075)])
def test_training_crop_equals_device_crop(tmp_path, box, size, margin):
    from djsmile.model import SmileModel
    path = _photo(tmp_path / "p.jpg")
    # device: a colour frame -> gray -> SmileModel.crop (which is crop_face)
    frame = cv2.imread(str(path))
    device = SmileModel.crop(_MetaOnly(size, margin), preprocess.to_gray(frame), box)
    # training: the cached exact crop of a photo with that box
    train = D._crop_exact((str(path), "photos", box, size, margin))
    assert device.dtype == np.uint8 and device.shape == (size, size)
    assert np.array_equal(train, device)


def test_cached_crops_equal_device_crops_for_faces_and_photos(tmp_path):
    """Through the whole cache path (detector included) the crop is the device's crop."""
    from djsmile.detectors.haar import HaarDetector
    root = tmp_path / "data"
    faces = root / "faces"
    for c, v in (("smile", 1), ("no_smile", 2)):
        _photo(faces / c / f"{v}.jpg", seed=v, shape=(70, 70))
    roots = D.resolve_roots([str(faces)])
    assert roots[0].kind == "faces"
    items = D.list_items(roots)
    params = D.CropParams(input_size=48, crop_margin=-0.075, detector=D.detector_kwargs(
        __import__("djsmile.config", fromlist=["Config"]).Config().detector))
    crops = D.load_crops(items, params, cache_dir=tmp_path / "cache", workers=1, progress=False)
    for i, it in enumerate(items):
        g = preprocess.to_gray(cv2.imread(it.path))
        want = preprocess.crop_face(g, preprocess.whole_image_box(g), 48, 0.0)  # eval --mode faces
        assert np.array_equal(crops.crop[i], want)
    # second load comes from the cache and is identical
    again = D.load_crops(items, params, cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert np.array_equal(again.crop, crops.crop)
    # photos: the box is the detector's largest face, cropped with the model's margin
    det = HaarDetector(**params.detector)
    g = np.zeros((200, 300), np.uint8)
    assert det.detect(g) == []


def test_augment_without_jitter_is_the_model_crop():
    rng = np.random.default_rng(0)
    ctx = rng.integers(0, 256, (3, 77, 77), dtype=np.uint8)
    still = AugParams(shift=0, scale_min=1, scale_max=1, rotate_deg=0, flip=0, brightness=0, contrast=0,
                      gamma=0, blur_p=0, lowres_p=0, noise_p=0)
    a = augment(ctx, 48, 0.3, rng, still)
    b = center_crops(ctx, 48, 0.3).astype(np.float32) / 255.0
    assert a.shape == (3, 48, 48)
    assert np.abs(a - b).max() <= 1 / 255 + 1e-6
    jittered = augment(ctx, 48, 0.3, np.random.default_rng(1))
    assert jittered.min() >= 0.0 and jittered.max() <= 1.0 and not np.allclose(jittered, a)
