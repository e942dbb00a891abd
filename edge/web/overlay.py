"""What the live view draws on a frame: face boxes, "NN% smiling" and the state banner."""

from __future__ import annotations

import cv2
import numpy as np


def frame_image(frame) -> np.ndarray:
    """What the live view shows of a frame: its colour image (``Frame.color()``)."""
    return frame.color()


def render_overlay(gray: np.ndarray, result, fps: float) -> np.ndarray:
    """A BGR copy of ``gray`` (or of a BGR frame) with face boxes, "NN% smiling" and the state drawn on it."""
    img = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR) if gray.ndim == 2 else gray.copy()
    h, w = img.shape[:2]
    scale = max(0.4, min(w, h) / 600.0)
    thick = max(1, int(round(scale * 2)))
    for face in result.faces:
        x, y, bw, bh = (int(v) for v in face.box)
        p = float(face.p_smooth)
        color = (60, 200, 60) if face.smiling else (0, 165, 255)
        cv2.rectangle(img, (x, y), (x + bw, y + bh), color, thick)
        label = f"{round(100 * p):d}% smiling"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, thick)
        ty = y - 6 if y - th - base - 6 > 0 else min(h - base, y + bh + th + 6)
        cv2.rectangle(img, (x, ty - th - base), (x + tw + 4, ty + base), color, -1)
        cv2.putText(img, label, (x + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0),
                    thick, cv2.LINE_AA)
    state = result.state
    banner = f"{state}  {fps:.1f} fps" if state else f"{fps:.1f} fps"
    cv2.putText(img, banner, (8, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale,
                (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, banner, (8, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale,
                (255, 255, 255), thick, cv2.LINE_AA)
    return img
