"""What the live view draws on a frame: face boxes, "NN% smiling" and the state banner."""

from __future__ import annotations

import cv2
import numpy as np


def frame_image(frame) -> np.ndarray:
    """What the live view shows of a frame: its colour image (``Frame.color()``), else its gray one."""
    color = getattr(frame, "color", None)
    return color() if callable(color) else frame.gray


def render_overlay(gray: np.ndarray, result, fps: float) -> np.ndarray:
    """A BGR copy of ``gray`` (or of a BGR frame) with face boxes, "NN% smiling" and the state drawn on it."""
    img = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR) if gray.ndim == 2 else gray.copy()
    h, w = img.shape[:2]
    scale = max(0.4, min(w, h) / 600.0)
    thick = max(1, int(round(scale * 2)))
    for face in list(getattr(result, "faces", None) or []):
        x, y, bw, bh = (int(v) for v in face.box)
        p = float(getattr(face, "p_smooth", None) if getattr(face, "p_smooth", None) is not None
                  else face.p_smile)
        color = (60, 200, 60) if getattr(face, "smiling", False) else (0, 165, 255)
        cv2.rectangle(img, (x, y), (x + bw, y + bh), color, thick)
        label = f"{round(100 * p):d}% smiling"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, thick)
        ty = y - 6 if y - th - base - 6 > 0 else min(h - base, y + bh + th + 6)
        cv2.rectangle(img, (x, ty - th - base), (x + tw + 4, ty + base), color, -1)
        cv2.putText(img, label, (x + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0),
                    thick, cv2.LINE_AA)
    state = getattr(result, "state", "") or ""
    banner = f"{state}  {fps:.1f} fps" if state else f"{fps:.1f} fps"
    cv2.putText(img, banner, (8, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale,
                (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, banner, (8, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale,
                (255, 255, 255), thick, cv2.LINE_AA)
    return img
