"""Augmentation that looks like what the device sees (numpy + OpenCV, no TensorFlow).

Every training face comes with a *context* square (``djsmile.training.data.CTX_MARGIN``
around the model crop). From it we cut a jittered crop: Haar boxes wander
from frame to frame and are looser and higher than dlib's (measured: dlib's
side is 0.85 of Haar's, its centre 6.6% of the side lower), so the box is
shifted, scaled and rotated; then flip, brightness / contrast / gamma, blur
and sensor noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, asdict

import cv2
import numpy as np


@dataclass
class AugParams:
    shift: float = 0.06          # std of the box centre shift, fraction of the side (clipped at 2 std)
    scale_min: float = 0.85      # crop side multiplier range (log-uniform)
    scale_max: float = 1.20
    rotate_deg: float = 10.0     # uniform +-
    flip: float = 0.5
    brightness: float = 0.15     # uniform +- (of 1.0 = white)
    contrast: float = 0.3        # factor in [1 - c, 1 + c]
    gamma: float = 0.35          # gamma in exp(+-g)
    blur_p: float = 0.2          # probability of a Gaussian blur with sigma in (0.3, 1.3)
    lowres_p: float = 0.1       # probability of a down-up resize (small faces in big frames)
    noise_p: float = 0.2         # probability of Gaussian noise with std in (0, noise_std)
    noise_std: float = 0.04

    def to_dict(self):
        return asdict(self)


def resize_ctx(ctx: np.ndarray, input_size: int, ctx_margin: float) -> np.ndarray:
    """Shrink cached contexts so the model crop inside them is about ``input_size`` px (less aliasing)."""
    side = int(round(input_size * (1.0 + 2.0 * ctx_margin)))
    if ctx.shape[1] == side:
        return ctx
    interp = cv2.INTER_AREA if ctx.shape[1] > side else cv2.INTER_LINEAR
    return np.stack([cv2.resize(c, (side, side), interpolation=interp) for c in ctx])


def center_crops(ctx: np.ndarray, input_size: int, ctx_margin: float) -> np.ndarray:
    """The un-jittered model crop from each context (for tests and previews)."""
    C = ctx.shape[1]
    s = C / (1.0 + 2.0 * ctx_margin)
    x0 = (C - s) / 2.0
    out = []
    for c in ctx:
        M = np.float32([[s / input_size, 0, x0 + 0.5 * s / input_size - 0.5],
                        [0, s / input_size, x0 + 0.5 * s / input_size - 0.5]])
        out.append(cv2.warpAffine(c, M, (input_size, input_size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REPLICATE))
    return np.stack(out)


def augment(ctx: np.ndarray, input_size: int, ctx_margin: float, rng: np.random.Generator,
            p: AugParams | None = None) -> np.ndarray:
    """Jittered crops ``(N, S, S)`` float32 in [0, 1] from contexts ``(N, C, C)`` uint8."""
    p = p or AugParams()
    n, C = ctx.shape[0], ctx.shape[1]
    S = input_size
    base = C / (1.0 + 2.0 * ctx_margin)     # the model crop's side in context pixels
    out = np.empty((n, S, S), np.float32)
    k = np.exp(rng.uniform(math.log(p.scale_min), math.log(p.scale_max), n))
    sh = np.clip(rng.normal(0.0, p.shift, (n, 2)), -2 * p.shift, 2 * p.shift)
    th = np.deg2rad(rng.uniform(-p.rotate_deg, p.rotate_deg, n))
    fl = rng.random(n) < p.flip
    for i in range(n):
        side = base * k[i]
        a = side / S
        c, s = math.cos(th[i]) * a, math.sin(th[i]) * a
        fx = -1.0 if fl[i] else 1.0
        cx = C / 2.0 + sh[i, 0] * base
        cy = C / 2.0 + sh[i, 1] * base
        # output pixel centre (u, v) -> context: centre + R * (u - S/2 + 0.5, v - S/2 + 0.5) * a
        M = np.float32([[c * fx, -s, 0.0], [s * fx, c, 0.0]])
        off = np.array([S / 2.0 - 0.5, S / 2.0 - 0.5], np.float32)
        t = np.array([cx - 0.5, cy - 0.5], np.float32) - M[:, :2] @ off
        M[:, 2] = t
        img = cv2.warpAffine(ctx[i], M, (S, S), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REPLICATE)
        if rng.random() < p.lowres_p:
            f = rng.uniform(0.35, 0.7)
            m = max(8, int(S * f))
            img = cv2.resize(cv2.resize(img, (m, m), interpolation=cv2.INTER_AREA), (S, S),
                             interpolation=cv2.INTER_LINEAR)
        if rng.random() < p.blur_p:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.3))
        out[i] = img
    out *= np.float32(1.0 / 255.0)
    # photometric, vectorised
    g = np.exp(rng.uniform(-p.gamma, p.gamma, n)).astype(np.float32)[:, None, None]
    np.power(np.clip(out, 0.0, 1.0), g, out=out)
    mean = out.mean(axis=(1, 2), keepdims=True)
    cf = rng.uniform(1 - p.contrast, 1 + p.contrast, n).astype(np.float32)[:, None, None]
    out = (out - mean) * cf + mean
    out += rng.uniform(-p.brightness, p.brightness, n).astype(np.float32)[:, None, None]
    noisy = rng.random(n) < p.noise_p
    if noisy.any():
        std = rng.uniform(0, p.noise_std, int(noisy.sum())).astype(np.float32)[:, None, None]
        out[noisy] += rng.standard_normal((int(noisy.sum()), S, S)).astype(np.float32) * std
    np.clip(out, 0.0, 1.0, out=out)
    # quantise like a real uint8 frame
    return np.round(out * 255.0) * np.float32(1.0 / 255.0)
