"""Shared fixtures: the mock GPIO pin factory and the shared datasets."""

from __future__ import annotations

import os
from pathlib import Path

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
