"""Crop a face box out of a frame into the model's input.

This is the one preprocessing function shared by training (``djsmile.training.data``)
and the device (``djsmile.model``), so the model sees the same pixels in both
places. Frames are 2-D uint8 gray images (the Pi's lores Y plane, or a photo
converted with :func:`to_gray`).
"""

from __future__ import annotations

import cv2
import numpy as np

#: Defaults; the model's metadata (``models/*.json``) is what really decides.
DEFAULT_SIZE = 48
DEFAULT_MARGIN = 0.0


def to_gray(image: np.ndarray) -> np.ndarray:
    """Return a 2-D uint8 gray image from gray, BGR or BGRA input."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"unsupported image shape {image.shape}")


def square_box(box, margin: float = DEFAULT_MARGIN):
    """Return the square (x, y, side) centred on ``box`` grown by ``margin``.

    ``box`` is ``(x, y, w, h)`` in pixels; ``margin`` is a fraction of the
    box's larger side added on each side (0.1 = 10% each way). The result
    may extend past the frame; :func:`crop_face` pads by edge replication.
    """
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    side_i = max(1, int(round(side)))
    x0 = int(round(cx - side_i / 2.0))
    y0 = int(round(cy - side_i / 2.0))
    return x0, y0, side_i


def crop_face(gray: np.ndarray, box, size: int = DEFAULT_SIZE,
              margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """Crop ``box`` (x, y, w, h) out of ``gray`` as a ``size`` x ``size`` uint8 image.

    The box is made square around its centre, grown by ``margin``; parts
    outside the frame are filled by replicating the edge; the square is
    resized with area interpolation (or linear when enlarging).
    """
    gray = to_gray(gray)
    H, W = gray.shape[:2]
    x0, y0, side = square_box(box, margin)
    x1, y1 = x0 + side, y0 + side
    pad_l, pad_t = max(0, -x0), max(0, -y0)
    pad_r, pad_b = max(0, x1 - W), max(0, y1 - H)
    patch = gray[max(0, y0):min(H, y1), max(0, x0):min(W, x1)]
    if patch.size == 0:
        return np.zeros((size, size), np.uint8)
    if pad_l or pad_t or pad_r or pad_b:
        patch = cv2.copyMakeBorder(patch, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_REPLICATE)
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
    out = cv2.resize(patch, (size, size), interpolation=interp)
    return np.ascontiguousarray(out, dtype=np.uint8)


def whole_image_box(gray: np.ndarray):
    """The box covering a whole image (for datasets that are already face crops)."""
    h, w = gray.shape[:2]
    return (0, 0, w, h)


def to_input(crops, scale: float = 1.0 / 255.0, offset: float = 0.0) -> np.ndarray:
    """Stack uint8 crops into the model's float input batch ``(N, size, size, 1)``.

    ``x = pixel * scale + offset`` (from the model metadata's ``normalize``).
    """
    arr = np.asarray(crops, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    return (arr * np.float32(scale) + np.float32(offset))[..., None]
