"""Shared fixtures: the mock GPIO pin factory and the shared datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
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
def shared_datasets() -> Path:
    """Path of ../shared/datasets, or skip with the reason."""
    if not (SHARED / "djsmile" / "faces" / "smile").is_dir():
        pytest.skip(f"needs the shared datasets at {SHARED} (absent on this machine)")
    return SHARED


@pytest.fixture(scope="session")
def _large_face():
    """A real, large, single djsmile face (gray patch with a margin), found once per session."""
    import cv2
    from djsmile.faces import HaarDetector
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
