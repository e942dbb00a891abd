"""Shared fixtures: the mock GPIO pin factory, a folder of frames, the shared datasets (plain helpers: helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT, write_frames

SHARED = Path(os.environ.get("DJSMILE_SHARED", ROOT.parent / "shared")) / "datasets"


@pytest.fixture
def mock_factory():
    """gpiozero's MockFactory as the pin factory; pins are read back in tests."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    saved = Device.pin_factory
    Device.pin_factory = MockFactory()
    try:
        yield Device.pin_factory
    finally:
        Device.pin_factory.reset()
        Device.pin_factory = saved


@pytest.fixture
def frames(tmp_path) -> Path:
    """An image folder of three plain 160x120 PNG frames: a finite source that ends at once."""
    return write_frames(tmp_path / "frames")


@pytest.fixture
def shared_datasets() -> Path:
    """Path of ../shared/datasets, or skip with the reason."""
    if not (SHARED / "djsmile" / "faces" / "smile").is_dir():
        pytest.skip(f"needs the shared datasets at {SHARED} (absent on this machine)")
    return SHARED


@pytest.fixture(scope="session")
def _large_face():
    """A real, large, single djsmile face (gray patch with a margin), found once per session."""
    import cv2
    from djsmile.detectors.haar import HaarDetector
    shared = SHARED
    if not (shared / "djsmile" / "photos" / "smile").is_dir():
        pytest.skip(f"needs the shared datasets at {SHARED} (absent on this machine)")
    det = HaarDetector(min_face_fraction=0.0, detect_width=0)
    for f in sorted((shared / "djsmile" / "photos" / "smile").glob("*.jpg"))[:200]:
        g = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        boxes = det.detect(g)
        if len(boxes) != 1 or boxes[0][2] < 60:
            continue
        x, y, w, h = boxes[0]
        m = w // 4
        return g[max(0, y - m):y + h + m, max(0, x - m):x + w + m], w, int(np.median(g))
    pytest.skip("no single large face in the first 200 shared smile photos")


@pytest.fixture
def small_face_scene(_large_face):
    """``make(face_px)``: a 320x213 stock-photo-sized frame with the real face shrunk to ``face_px`` at (150, 90)."""
    import cv2
    face, w, bg = _large_face

    def make(face_px):
        k = face_px / w
        small = cv2.resize(face, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        scene = np.full((213, 320), bg, np.uint8)
        scene[90:90 + small.shape[0], 150:150 + small.shape[1]] = small
        return scene
    return make


# --------------------------------------------------------------------------- calibration clips
CALIB_FPS = 10.0
CALIB_HOLD = 2          # frames each photo is shown in a clip
CALIB_PER_CLASS = 5     # photos per class -> 10 frames = 1 s of stream time


def _calib_frame(img):
    """A 640x480 gray frame with the (about 320x213) photo scaled to the full width."""
    import cv2
    h, w = img.shape[:2]
    img = cv2.resize(img, (640, int(round(h * 640 / w))))[:480]
    out = np.full((480, 640), 128, np.uint8)
    out[:img.shape[0]] = img
    return out


@pytest.fixture(scope="session")
def calib_photos():
    """Test-split shared photos as 640x480 frames: one person each, whom the device finds and reads right.

    ``{"smile": [...], "no_smile": [...]}``, ``CALIB_PER_CLASS`` frames each (the split rule
    is the training one, so none of them was trained on).
    """
    import hashlib
    import cv2
    from djsmile.config import Config
    from djsmile.detectors import make_detector
    from djsmile.model import SmileModel
    from djsmile.training.data import split_of

    root = SHARED / "djsmile" / "photos"
    if not (root / "smile").is_dir():
        pytest.skip(f"needs the shared datasets at {SHARED} (absent on this machine)")
    det = make_detector(Config().detector)   # the device's default back-end, as djsmile run will see them
    model = SmileModel()
    out = {}
    for cls, ok in (("no_smile", lambda p: p < 0.3), ("smile", lambda p: p > 0.7)):
        got = []
        for f in sorted((root / cls).glob("*.jpg"), key=lambda p: int(p.stem)):
            if split_of(hashlib.sha1(f.read_bytes()).hexdigest()) != "test":
                continue
            g = _calib_frame(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE))
            boxes = det.detect(g)
            if len(boxes) == 1 and ok(float(model.predict(g, boxes)[0])):
                got.append(g)
            if len(got) == CALIB_PER_CLASS:
                break
        out[cls] = got
    return out


@pytest.fixture
def clip_writer():
    """``write(path, frames)``: an MJPG .avi at 10 fps, each gray frame shown ``CALIB_HOLD`` times."""
    def write(path, frames):
        import cv2
        vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), CALIB_FPS, (640, 480))
        assert vw.isOpened()
        for g in frames:
            for _ in range(CALIB_HOLD):
                vw.write(cv2.cvtColor(g, cv2.COLOR_GRAY2BGR))
        vw.release()
        return path
    return write
