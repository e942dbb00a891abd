"""``Frame``: one analysis frame as every source yields it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Frame:
    """One analysis frame."""
    gray: np.ndarray          # 2-D uint8 analysis image (Pi: lores Y plane, stride removed)
    index: int                # 0-based frame index from the start of the run
    t: float                  # stream time in seconds
    still_fn: Callable[[], np.ndarray] | None = None   # lazily returns the full-res BGR still
    color_fn: Callable[[], np.ndarray] | None = None   # lazily returns the BGR image (any size)
    captured: float | None = None   # time.perf_counter() when the frame was taken (capture thread, bench)
    release_fn: Callable[[], None] | None = None       # gives a held camera buffer back
    new_scene: bool = False   # nothing carries over from the frame before (a new image in a folder)
    _color: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)   # color(), once made

    def still(self) -> np.ndarray:
        """The full-resolution BGR uint8 still (falls back to the gray frame as BGR)."""
        if self.still_fn is not None:
            try:
                img = self.still_fn()
            except Exception as e:  # a failed still must not lose the shot
                log.warning("full-resolution still failed (%s); saving the analysis frame", e)
                img = None
            if img is not None:
                return _to_bgr(img)
        return cv2.cvtColor(self.gray, cv2.COLOR_GRAY2BGR)

    def color(self) -> np.ndarray:
        """The BGR uint8 image at the analysis size (made once, when first asked for).

        From ``color_fn`` (OpenCV sources: the frame as read; the Pi: the
        lores YUV420 frame converted), else the still scaled, else the gray
        frame as BGR.
        """
        if self._color is not None:
            return self._color
        img = None
        fn = self.color_fn or self.still_fn
        if fn is not None:
            try:
                img = fn()
            except Exception as e:
                log.debug("colour frame failed (%s); showing the gray one", e)
        if img is None:
            out = cv2.cvtColor(self.gray, cv2.COLOR_GRAY2BGR)
        else:
            out = _to_bgr(img)
            h, w = self.gray.shape[:2]
            if out.shape[:2] != (h, w):
                out = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)
        self._color = out
        return out

    def release(self) -> None:
        """Give a held camera buffer back (a no-op for most sources; idempotent)."""
        fn, self.release_fn = self.release_fn, None
        if fn is not None:
            try:
                fn()
            except Exception:  # pragma: no cover - a camera already stopped
                pass


def _to_bgr(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    return img
