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


# ----------------------------------------------------------------- eye-aligned crops (smile model v3, issue 28)
#: Where the aligned crop puts the face, in fractions of the crop's side (x right, y down): the eyes' midpoint at
#: (0.5, ALIGN_EYE_Y), the eyes ALIGN_EYE_DIST apart, the mouth ALIGN_MOUTH_Y down. Between the framings of the
#: training sets (BlazeFace's landmarks on val: djsmile faces eyes 0.30 / distance 0.42 / mouth 0.75, SMILEsmileD
#: 0.27 / 0.48 / 0.78, v2's crop of the Haar-style box 0.39 / 0.42 / 0.85), with the mouth clear of the edge.
ALIGN_EYE_Y = 0.32
ALIGN_EYE_DIST = 0.40
ALIGN_MOUTH_Y = 0.76
#: the default template ``(eye_y, eye_distance, mouth_y)``; a model's sidecar may name another (``"template"``)
ALIGN_TEMPLATE = (ALIGN_EYE_Y, ALIGN_EYE_DIST, ALIGN_MOUTH_Y)
#: Where the eyes and mouth sit in a box when a back-end gives no landmarks, as (eye_y, eye_distance, mouth_y) in
#: fractions of the box's side (the square around it, no margin), medians of BlazeFace's landmarks on 353 val photos:
#: the Haar-style box every back-end gives (``Detection.box``), and a whole image that already is a face crop
#: (djsmile faces: the dlib box; 197 val faces).
BOX_EYES = (0.4065, 0.3596, 0.7967)
FACE_CROP_EYES = (0.305, 0.42, 0.746)
#: fixed-point fraction bits of the bilinear sampling (1/32 px, as OpenCV's INTER_LINEAR)
_QBITS = 5
#: crop modes a model's metadata may name (``"crop"`` in the sidecar; absent = ``"box"``, v2)
CROP_MODES = ("box", "aligned")
#: a face-crop image is padded by this share of its side (its median gray) before the detector looks for landmarks
FACE_CROP_PAD = 0.5


def eyes_from_box(box, geometry=BOX_EYES) -> dict:
    """Landmarks estimated from a face box (a back-end without landmarks, or an image that is already a face crop).

    ``geometry`` = (eye_y, eye_distance, mouth_y) in fractions of the square around ``box``: :data:`BOX_EYES` for
    a detector's Haar-style box, :data:`FACE_CROP_EYES` for a whole face-crop image. Level eyes, centred.
    """
    x0, y0, side = square_box(box, 0.0)
    ey, ed, my = geometry
    cx = x0 + 0.5 * side
    return {"right_eye": (cx - 0.5 * ed * side, y0 + ey * side),
            "left_eye": (cx + 0.5 * ed * side, y0 + ey * side),
            "mouth": (cx, y0 + my * side)}


def check_template(template) -> tuple:
    """``template`` as a tuple of three floats ``(eye_y, eye_distance, mouth_y)`` in fractions of the crop's side,
    or ValueError naming what is wrong (0 < eye_y < mouth_y <= 1, 0 < eye_distance <= 1)."""
    try:
        t = tuple(float(v) for v in template)
    except (TypeError, ValueError):
        raise ValueError(f"template {template!r} is not three numbers (eye_y, eye_distance, mouth_y)") from None
    if len(t) != 3 or not all(np.isfinite(t)):
        raise ValueError(f"template {template!r} is not three numbers (eye_y, eye_distance, mouth_y)")
    ey, ed, my = t
    if not (0.0 < ey < my <= 1.0 and 0.0 < ed <= 1.0):
        raise ValueError(f"template {t}: needs 0 < eye_y < mouth_y <= 1 and 0 < eye_distance <= 1")
    return t


def has_eyes(landmarks) -> bool:
    """Do ``landmarks`` hold two distinct eyes (what :func:`crop_aligned` needs)?"""
    if not landmarks or "right_eye" not in landmarks or "left_eye" not in landmarks:
        return False
    (ax, ay), (bx, by) = landmarks["right_eye"], landmarks["left_eye"]
    return bool(np.isfinite([ax, ay, bx, by]).all() and np.hypot(bx - ax, by - ay) > 1e-3)


def align_params(landmarks, template=ALIGN_TEMPLATE):
    """``(cos, sin, k, eye_mid)`` of the similarity that levels the eyes (``k``: crop sides per frame pixel).

    Rotation: the eye line made horizontal. Scale: the eye distance and the eyes-to-mouth height together
    (``hypot`` of both against the template's), so a turned head (eyes closer) or a nod (mouth closer) does not
    zoom the crop; with no mouth, the eye distance alone. ``template``: ``(eye_y, eye_distance, mouth_y)``.
    """
    eye_y, eye_dist, mouth_y = template
    re = np.asarray(landmarks["right_eye"], np.float64)
    le = np.asarray(landmarks["left_eye"], np.float64)
    v = le - re
    iod = float(np.hypot(v[0], v[1]))
    c, s = float(v[0] / iod), float(v[1] / iod)
    mid = (re + le) / 2.0
    mouth = landmarks.get("mouth")
    if mouth is not None:
        m = np.asarray(mouth, np.float64) - mid
        emd = abs(float(-s * m[0] + c * m[1]))       # the mouth's height below the eye line
        k = float(np.hypot(eye_dist, mouth_y - eye_y) / max(float(np.hypot(iod, emd)), 1e-6))
    else:
        k = eye_dist / iod
    return c, s, k, mid


def crop_aligned(gray: np.ndarray, landmarks, size: int = DEFAULT_SIZE, context: float = 0.0,
                 template=ALIGN_TEMPLATE) -> np.ndarray:
    """The eye-aligned ``size`` x ``size`` uint8 crop: eyes level at fixed places, scaled by the face (v3's input).

    ``landmarks``: ``{"right_eye": (x, y), "left_eye": (x, y), "mouth": (x, y)}`` in frame pixels (a detection's,
    or :func:`eyes_from_box`'s). ``context``: grow the crop by this share of its side on each side (training's
    augmentation source). ``template``: where the eyes and mouth go, ``(eye_y, eye_distance, mouth_y)`` in fractions
    of the side (the eyes' midpoint at x = 0.5; a model's sidecar ``"template"``, default :data:`ALIGN_TEMPLATE`).
    Parts outside the frame are filled by replicating the edge.

    Interpolation, chosen to be bit-identical on arm64 and x86 (the emulated Pi check compares crops): the sample
    positions are computed with separate float64 numpy operations (no fused multiply-add) and rounded to 1/32 px;
    a face shrunk by 1.5x or more is first box-averaged by an integer factor (integer sums, rounded); the samples
    are bilinear with integer weights and integer rounding. No OpenCV call whose SIMD path could differ.
    """
    gray = to_gray(gray)
    H, W = gray.shape[:2]
    c, s, k, mid = align_params(landmarks, template)
    # output pixel centres in template units (fractions of the model crop's side), relative to the eyes' midpoint
    t = (np.arange(size, dtype=np.float64) + 0.5) / size * (1.0 + 2.0 * context) - context
    u, v = t - 0.5, t - template[0]
    inv = 1.0 / k
    X = mid[0] + ((c * u)[None, :] - (s * v)[:, None]) * inv - 0.5       # frame pixel centres sit at integers
    Y = mid[1] + ((s * u)[None, :] + (c * v)[:, None]) * inv - 0.5
    step = (1.0 + 2.0 * context) * inv / size       # frame pixels per output pixel
    f = max(1, int(round(step))) if step >= 1.5 else 1
    x0 = int(np.floor(X.min())) - 2 * f
    y0 = int(np.floor(Y.min())) - 2 * f
    w = (int(np.ceil(X.max())) + 2 * f - x0 + f) // f * f
    h = (int(np.ceil(Y.max())) + 2 * f - y0 + f) // f * f
    if x0 >= 0 and y0 >= 0 and x0 + w <= W and y0 + h <= H:
        roi = gray[y0:y0 + h, x0:x0 + w]           # the usual case: a view, no copy
    else:                                          # out of the frame: the edge replicated
        roi = gray[np.clip(np.arange(y0, y0 + h), 0, H - 1)[:, None], np.clip(np.arange(x0, x0 + w), 0, W - 1)[None, :]]
    if f > 1:
        sums = np.zeros((h // f, w // f), np.int32)
        for dy in range(f):          # f x f strided views added: faster than a reshaped sum, the same integers
            for dx in range(f):
                sums += roi[dy::f, dx::f]
        roi = (sums + (f * f) // 2) // (f * f)
        X = (X - x0 - 0.5 * (f - 1)) / f
        Y = (Y - y0 - 0.5 * (f - 1)) / f
    else:
        roi = roi.astype(np.int32)
        X = X - x0
        Y = Y - y0
    q = 1 << _QBITS
    rh, rw = roi.shape
    xi = np.floor(X * q + 0.5).astype(np.int32)
    yi = np.floor(Y * q + 0.5).astype(np.int32)
    ix = np.minimum(np.maximum(xi >> _QBITS, 0), rw - 2)
    iy = np.minimum(np.maximum(yi >> _QBITS, 0), rh - 2)
    fx = np.minimum(np.maximum(xi - (ix << _QBITS), 0), q)
    fy = np.minimum(np.maximum(yi - (iy << _QBITS), 0), q)
    flat = roi.ravel()
    i00 = iy * rw + ix
    a, b = flat[i00], flat[i00 + 1]
    c_, d = flat[i00 + rw], flat[i00 + rw + 1]
    top = a * (q - fx) + b * fx
    bot = c_ * (q - fx) + d * fx
    out = (top * (q - fy) + bot * fy + (1 << (2 * _QBITS - 1))) >> (2 * _QBITS)
    return out.astype(np.uint8)     # bilinear weights sum to one: already 0..255


def face_crop_landmarks(gray: np.ndarray, detector):
    """Landmarks in an image that already is a face crop, from ``detector`` (a
    :class:`djsmile.detectors.FaceDetector` with landmarks, e.g. BlazeFace), or None when it finds none.

    The crop is padded by :data:`FACE_CROP_PAD` of its side with its median gray first: a detector wants some
    background around a face (unpadded, BlazeFace finds 67% of SMILEsmileD's 64x64 faces; padded, 99-100%).
    """
    gray = to_gray(gray)
    p = int(round(FACE_CROP_PAD * max(gray.shape[:2])))
    padded = cv2.copyMakeBorder(gray, p, p, p, p, cv2.BORDER_CONSTANT, value=int(np.median(gray)))
    dets = detector.detect_faces(padded, None)
    if not dets or not has_eyes(dets[0].landmarks):
        return None
    return {n: (float(x) - p, float(y) - p) for n, (x, y) in dets[0].landmarks.items()}


def crop_for(mode: str, gray: np.ndarray, box, size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN,
             landmarks=None, geometry=BOX_EYES, template=ALIGN_TEMPLATE) -> np.ndarray:
    """The model's crop by its metadata's crop mode: ``"box"`` (v2: :func:`crop_face` of ``box`` with ``margin``)
    or ``"aligned"`` (:func:`crop_aligned` on ``landmarks``, else on eyes estimated from ``box``, to ``template``)."""
    if mode == "aligned":
        return crop_aligned(gray, landmarks if has_eyes(landmarks) else eyes_from_box(box, geometry), size,
                            template=template)
    return crop_face(gray, box, size, margin)
