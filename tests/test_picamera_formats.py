"""The Pi camera's frame formats: what the camera actually configured, read back, converted, strides honoured.

libcamera may adjust a stream's format: its virtual camera gives NV12 for the RGB888 main stream asked for,
and a source trusting the format it asked for saved the NV12 buffer as a 1280x1080 gray photo. The buffers
here are laid out byte by byte as libcamera fills them (with padded strides) and shaped as picamera2's
``make_array`` shapes them.
"""

from __future__ import annotations

import sys
import types

import cv2
import numpy as np
import pytest

from djsmile.config import Config
from djsmile.errors import EX_UNAVAILABLE, SourceError
from djsmile.sources import PiCamera2Source, stream_to_bgr

from test_sources import FakePicamera2

PAD = 0xEE  # stride padding bytes: must never show in a picture


def scene(w, h, n=0):
    """A colour picture: 8x8 blocks of distinct colours (constant over 2x2 chroma blocks), B shifts with n."""
    yy, xx = np.mgrid[0:h, 0:w]
    bx, by = xx // 8, yy // 8
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (40 + 37 * bx + 5 * n) % 200 + 20
    img[..., 1] = (60 + 53 * by) % 200 + 20
    img[..., 2] = (90 + 29 * (bx + by)) % 200 + 20
    return img


def encode(bgr, fmt, stride):
    """``bgr`` as libcamera lays out a ``fmt`` frame: rows of ``stride`` bytes, padding PAD (one flat buffer)."""
    h, w = bgr.shape[:2]
    if fmt in ("RGB888", "BGR888", "XRGB8888", "XBGR8888"):
        px = {"RGB888": bgr, "BGR888": bgr[..., ::-1],
              "XRGB8888": np.dstack([bgr, np.full((h, w), 255, np.uint8)]),
              "XBGR8888": np.dstack([bgr[..., ::-1], np.full((h, w), 255, np.uint8)])}[fmt]
        rows = np.full((h, stride), PAD, np.uint8)
        rows[:, : px.shape[1] * px.shape[2]] = px.reshape(h, -1)
        return rows.reshape(-1)
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    y, u, v = i420[: w * h], i420[w * h: w * h * 5 // 4], i420[w * h * 5 // 4:]
    y = y.reshape(h, w)
    u, v = u.reshape(h // 2, w // 2), v.reshape(h // 2, w // 2)
    if fmt == "NV12":  # Y rows, then h/2 rows of interleaved U, V; all `stride` bytes
        out = np.full((h * 3 // 2, stride), PAD, np.uint8)
        out[:h, :w] = y
        out[h:, :w] = np.dstack([u, v]).reshape(h // 2, w)
        return out.reshape(-1)
    assert fmt == "YUV420"  # Y plane (stride), then U and V planes (stride / 2 a row)
    ys = np.full((h, stride), PAD, np.uint8)
    ys[:, :w] = y
    planes = [ys.reshape(-1)]
    for c in (u, v):
        cs = np.full((h // 2, stride // 2), PAD, np.uint8)
        cs[:, : w // 2] = c
        planes.append(cs.reshape(-1))
    return np.concatenate(planes)


def make_array(buf, fmt, size, stride):
    """picamera2 0.3.38's ``make_array`` shapes (request.py, ``_make_array_shared`` then a copy)."""
    w, h = size
    if fmt in ("RGB888", "BGR888", "XRGB8888", "XBGR8888"):
        bpp = 3 if fmt.endswith("888") and not fmt.startswith("X") else 4
        return np.ascontiguousarray(buf.reshape(h, stride)[:, : w * bpp].reshape(h, w, bpp))
    if fmt == "YUV420":
        return buf.reshape(h * 3 // 2, stride).copy()
    if fmt == "NV12":
        return np.ascontiguousarray(buf.reshape(h * 3 // 2, stride)[:, :w])
    raise RuntimeError("Format " + fmt + " not supported")


def assert_looks_like(got, want, fmt):
    assert got.shape == want.shape and got.dtype == np.uint8, (got.shape, want.shape)
    diff = np.abs(got.astype(int) - want.astype(int))
    if fmt in ("NV12", "YUV420"):   # one YUV round trip: a few grey levels
        assert diff.mean() < 2.0 and diff.max() <= 8, (fmt, diff.mean(), diff.max())
    else:
        assert diff.max() == 0, fmt


FORMATS = ["RGB888", "BGR888", "XRGB8888", "XBGR8888", "NV12", "YUV420"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("padded", [False, True])
def test_each_format_converts_to_the_picture_whatever_the_array_shape(fmt, padded):
    w, h = 200, 120                               # 200 px: not a multiple of 64
    bpp = {"RGB888": 3, "BGR888": 3, "XRGB8888": 4, "XBGR8888": 4}.get(fmt, 1)
    stride = (w * bpp + 63) // 64 * 64 if padded else w * bpp
    want = scene(w, h)
    buf = encode(want, fmt, stride)
    shapes = {"make_array": make_array(buf, fmt, (w, h), stride), "flat buffer": buf}
    if fmt == "NV12":                             # older picamera2: NV12 rows kept their padding
        shapes["uncut rows"] = buf.reshape(h * 3 // 2, stride)
    for how, arr in shapes.items():
        got = stream_to_bgr(arr, fmt, (w, h), stride)
        assert_looks_like(got, want, fmt)
        assert not (got == PAD).all(axis=2).any(), f"{fmt} {how}: padding bytes in the picture"


def test_an_unknown_format_is_refused_not_guessed():
    with pytest.raises(ValueError, match="YUYV"):
        stream_to_bgr(np.zeros(100 * 50 * 2, np.uint8), "YUYV", (100, 50), 200)


# --------------------------------------------------------------------------- the source on a camera that adjusts
class AdjustingPicamera2(FakePicamera2):
    """A camera that configures other formats than asked for (``give``), pads strides to 64 (main: +64
    more), fills buffers with ``scene`` byte by byte as libcamera does, and shapes them as picamera2
    0.3.38 does."""

    give: dict = {}
    cameras = [{"Model": "Virtual0", "Num": 0}]
    sensor_resolution = (1280, 720)

    @staticmethod
    def global_camera_info():
        return list(AdjustingPicamera2.cameras)

    def __init__(self, camera_num=0):
        super().__init__(camera_num)
        AdjustingPicamera2.opened.append(self)

    def configure(self, config):
        self.calls.append("configure")
        cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
        for name, fmt in self.give.items():
            cfg[name]["format"] = fmt
        for name in ("main", "lores"):
            c = cfg[name]
            w = c["size"][0]
            bpp = {"RGB888": 3, "BGR888": 3, "XRGB8888": 4, "XBGR8888": 4}.get(c["format"], 1)
            c["stride"] = (w * bpp + 63) // 64 * 64 + (64 if name == "main" else 0)
        self.config = cfg

    def _array(self, name, n):
        c = self.config[name]
        w, h = c["size"]
        return make_array(encode(scene(w, h, n), c["format"], c["stride"]), c["format"], (w, h), c["stride"])


@pytest.fixture
def adjusting_camera(monkeypatch):
    AdjustingPicamera2.opened = []
    mod = types.ModuleType("picamera2")
    mod.Picamera2 = AdjustingPicamera2
    monkeypatch.setitem(sys.modules, "picamera2", mod)
    yield AdjustingPicamera2
    AdjustingPicamera2.give = {}


def first_frames(src, n=2):
    """The first n frames; the iterator is kept on ``src`` so the last frame still holds its request."""
    src._test_it = iter(src)
    return [next(src._test_it) for _ in range(n)]


@pytest.mark.parametrize("main_fmt", FORMATS)
@pytest.mark.parametrize("lores_fmt", ["YUV420", "NV12"])
def test_photo_and_live_view_are_the_picture_in_colour_whatever_the_camera_gives(adjusting_camera, main_fmt,
                                                                                 lores_fmt):
    """The NV12 photo bug: libcamera's virtual camera turns the RGB888 main into NV12; the photo was the
    raw buffer as a 1280x1080 gray image. Now every format gives the main stream's picture, in colour."""
    adjusting_camera.give = {"main": main_fmt, "lores": lores_fmt}
    cfg = Config()
    cfg.camera.width, cfg.camera.height = 640, 360
    with PiCamera2Source(cfg, adjusting_camera) as src:
        f0, f1 = first_frames(src)
        still = f1.still()
        assert still.shape == (720, 1280, 3), "the photo is not the main stream's size"
        assert_looks_like(still, scene(1280, 720, 1), main_fmt)      # request 1's main buffer, in colour
        lores_scene = scene(640, 360, 1)
        y_plane = cv2.cvtColor(lores_scene, cv2.COLOR_BGR2YUV_I420)[:360]
        assert np.array_equal(f1.gray, y_plane), "the gray frame is not the lores Y plane"
        assert f1.gray.shape == (360, 640) and f1.gray.flags.c_contiguous
        colour = f1.color()                                           # the live view's colour frame
        assert colour.shape == (360, 640, 3)
        assert_looks_like(colour, lores_scene, lores_fmt)
    assert src.picam2.closed and not src.picam2.live


def test_a_still_asked_for_after_its_request_went_back_is_converted_too(adjusting_camera):
    adjusting_camera.give = {"main": "NV12", "lores": "NV12"}
    with PiCamera2Source(Config(), adjusting_camera) as src:
        f0, f1, f2 = first_frames(src, 3)        # f0's request is back with the camera
        still = f0.still()                       # so a fresh capture_array("main")
        assert "capture_array:main" in src.picam2.calls
        assert still.shape == (720, 1280, 3)
        assert_looks_like(still, scene(1280, 720, 3), "NV12")


def test_the_live_view_colour_of_a_padded_nv12_lores_is_not_shifted(adjusting_camera):
    adjusting_camera.give = {"main": "NV12", "lores": "NV12"}
    cfg = Config()
    cfg.camera.width, cfg.camera.height = 600, 338      # stride 640: 40 padding bytes a row
    with PiCamera2Source(cfg, adjusting_camera) as src:
        assert src.stride == 640 and src.width == 600
        (f,) = first_frames(src, 1)
        assert_looks_like(f.color(), scene(600, 338, 0), "NV12")


@pytest.mark.parametrize("give", [{"main": "YUYV"}, {"lores": "RGB888"}, {"main": "SRGGB10_CSI2P"}])
def test_a_format_it_cannot_read_is_one_clear_line_and_exit_69(adjusting_camera, give):
    adjusting_camera.give = give
    with pytest.raises(SourceError) as e:
        PiCamera2Source(Config(), adjusting_camera)
    msg = str(e.value)
    (name, fmt), = give.items()
    assert f"{name} stream '{fmt}'" in msg and "\n" not in msg
    from djsmile.cli import exit_code_for
    assert exit_code_for(e.value) == EX_UNAVAILABLE
    (cam,) = adjusting_camera.opened
    assert cam.closed and not cam.started, "the camera was left open"
