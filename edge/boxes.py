"""Face boxes: overlap and suppression, written once.

Boxes are ``(x, y, w, h)`` in pixels. No OpenCV here, so the trigger and the
web view can use them without pulling in the detectors.
"""

from __future__ import annotations

#: two boxes overlapping more than this (IoU) are one face (detection merging, tracking, NMS)
SAME_FACE_IOU = 0.3


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def area(box) -> float:
    return float(box[2]) * float(box[3])


def largest_first(items, key=lambda b: b):
    """``items`` sorted by the area of their box (``key(item)``), largest first."""
    return sorted(items, key=lambda it: area(key(it)), reverse=True)


def nms(boxes, thresh: float = SAME_FACE_IOU, key=lambda b: b):
    """Keep the largest of boxes overlapping by more than ``thresh`` IoU (largest first)."""
    keep = []
    for b in largest_first(boxes, key):
        if all(iou(key(b), key(k)) <= thresh for k in keep):
            keep.append(b)
    return keep
