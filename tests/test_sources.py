"""Frame sources: image folders, video files, and the Pi camera (against a fake Picamera2)."""

from __future__ import annotations

import sys
import time
import types

import cv2
import numpy as np
import pytest

from djsmile import sources
from djsmile.config import Config
from djsmile.errors import EX_UNAVAILABLE, NoCameraError, SourceError
from djsmile.sources import FolderSource, Frame, OpenCVSource, PiCamera2Source, open_source


# --------------------------------------------------------------------------- fake picamera2
class FakeRequest:
    def __init__(self, cam, n):
        self.cam, self.n, self.released = cam, n, False

    def make_array(self, name):
        assert not self.released, "array made from a released request"
        return self.cam._array(name, self.n)

    def get_metadata(self):
        return {"SensorTimestamp": 5_000_000_000 + self.n * 33_333_333, "FrameDuration": 33333}

    def release(self):
        assert not self.released, "request released twice"
        self.released = True
        self.cam.live.discard(self)


class FakePicamera2:
    """Behaves like picamera2.Picamera2 for what the source uses.

    YUV420 arrays are ``(h * 3 // 2, stride)`` with the stride rounded up to 64
    bytes (as on a Pi 5), padding columns filled with 255.
    """

    instances: list = []
    cameras = [{"Model": "imx708", "Location": 2, "Rotation": 180, "Id": "/base/i2c@88000/imx708@1a", "Num": 0}]
    sensor_resolution = (4608, 2592)

    @staticmethod
    def global_camera_info():
        return list(FakePicamera2.cameras)

    def __init__(self, camera_num=0):
        self.camera_num = camera_num
        self.calls = []
        self.config = None
        self.started = False
        self.closed = False
        self.n = 0
        self.live = set()
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main=None, lores=None, raw=None, controls=None, buffer_count=6, **kw):
        self.calls.append("create_video_configuration")
        main = dict(main or {})
        main.setdefault("size", (1280, 720))
        main.setdefault("format", "XBGR8888")
        return {"use_case": "video", "main": main, "lores": dict(lores) if lores else None,
                "controls": dict(controls or {}), "buffer_count": buffer_count}

    def configure(self, config):
        self.calls.append("configure")
        lo, main = config["lores"], config["main"]
        assert lo["format"] == "YUV420"
        assert lo["size"][0] <= main["size"][0] and lo["size"][1] <= main["size"][1], "lores bigger than main"
        cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
        cfg["lores"]["stride"] = (lo["size"][0] + 63) // 64 * 64
        bpp = {"RGB888": 3, "BGR888": 3, "XBGR8888": 4, "XRGB8888": 4}[main["format"]]
        cfg["main"]["stride"] = main["size"][0] * bpp
        self.config = cfg

    def camera_configuration(self):
        return self.config

    def start(self):
        assert self.config is not None, "started before configure"
        self.calls.append("start")
        self.started = True

    def stop(self):
        self.calls.append("stop")
        self.started = False

    def close(self):
        self.calls.append("close")
        self.closed = True

    def capture_request(self):
        assert self.started, "capture before start"
        self.calls.append("capture_request")
        req = FakeRequest(self, self.n)
        self.n += 1
        self.live.add(req)
        return req

    def capture_array(self, name="main"):
        assert self.started
        self.calls.append(f"capture_array:{name}")
        arr = self._array(name, self.n)
        self.n += 1
        return arr

    def _array(self, name, n):
        c = self.config[name]
        w, h = c["size"]
        if name == "lores":
            arr = np.full((h * 3 // 2, c["stride"]), 255, np.uint8)  # padding = 255
            arr[h:, :w] = 128  # U, V
            arr[:h, :w] = self.y_plane(w, h, n)
            return arr
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0] = n % 256
        return img

    @staticmethod
    def y_plane(w, h, n):
        yy, xx = np.mgrid[0:h, 0:w]
        return ((xx + yy + n) % 200).astype(np.uint8)


@pytest.fixture
def fake_picamera2(monkeypatch):
    FakePicamera2.instances = []
    FakePicamera2.cameras = [{"Model": "imx708", "Num": 0}]
    mod = types.ModuleType("picamera2")
    mod.Picamera2 = FakePicamera2
    monkeypatch.setitem(sys.modules, "picamera2", mod)
    return FakePicamera2


def test_picamera2_lores_y_plane_without_stride_padding(fake_picamera2):
    cfg = Config()
    cfg.camera.width, cfg.camera.height = 600, 338  # 600 is not a multiple of 64: padded rows
    src = open_source("", cfg)  # the Pi camera is found first
    assert isinstance(src, PiCamera2Source) and not src.finite
    cam = fake_picamera2.instances[0]
    conf = cam.camera_configuration()
    assert conf["lores"] == {"size": (600, 338), "format": "YUV420", "stride": 640}
    assert conf["main"]["size"] == (4608, 2592)  # stills at the sensor's full resolution
    assert conf["main"]["format"] == "RGB888"
    frames = []
    for f in src:
        frames.append(f)
        if len(frames) == 3:
            break
    for i, f in enumerate(frames):
        assert f.gray.shape == (338, 600) and f.gray.dtype == np.uint8
        assert f.gray.max() < 255, "stride padding leaked into the gray frame"
        assert np.array_equal(f.gray, FakePicamera2.y_plane(600, 338, i))
        assert f.index == i
    assert [round(f.t, 4) for f in frames] == [0.0, 0.0333, 0.0667]  # sensor timestamps
    src.close()
    assert cam.calls[-2:] == ["stop", "close"] and not cam.live, "camera or a request not released"


def test_picamera2_still_is_the_same_exposure_from_main(fake_picamera2):
    cfg = Config()
    cfg.camera.still_width, cfg.camera.still_height = 1920, 1080
    with PiCamera2Source(cfg, fake_picamera2) as src:
        it = iter(src)
        next(it)
        f1 = next(it)
        still = f1.still()
        assert still.shape == (1080, 1920, 3) and still.dtype == np.uint8
        assert still[0, 0, 0] == 1  # request 1's main buffer, not a later capture
        assert "capture_array:main" not in src.picam2.calls
        assert len(src.picam2.live) == 1  # only the current frame's request is held
        next(it)
        assert len(src.picam2.live) == 1
        later = f1.still()  # after its request went back: a fresh capture from main
        assert later.shape == (1080, 1920, 3)
        assert "capture_array:main" in src.picam2.calls
    assert src.picam2.closed


def test_picamera2_analysis_frames_keep_the_stills_shape(fake_picamera2):
    cfg = Config()  # 640x480 analysis, 16:9 sensor: 640x360 so faces are not squashed
    with PiCamera2Source(cfg, fake_picamera2) as src:
        assert src.picam2.camera_configuration()["lores"]["size"] == (640, 360)
        assert next(iter(src)).gray.shape == (360, 640)
    cfg.camera.still_width, cfg.camera.still_height = 2028, 1520  # 4:3 stills keep 640x480
    with PiCamera2Source(cfg, fake_picamera2) as src:
        assert src.picam2.camera_configuration()["lores"]["size"] == (640, 480)


def test_picamera2_absent_or_no_camera(monkeypatch, fake_picamera2):
    fake_picamera2.cameras = []
    with pytest.raises(NoCameraError):
        PiCamera2Source(Config(), fake_picamera2)
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails: not installed
    with pytest.raises(SourceError, match="picamera2"):
        open_source("pi", Config())


def test_no_camera_at_all_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    monkeypatch.setattr("djsmile.sources.choose.webcam_present", lambda idx=0: False)
    with pytest.raises(NoCameraError, match="--source") as e:
        open_source("", Config())
    from djsmile.cli import exit_code_for
    assert exit_code_for(e.value) == EX_UNAVAILABLE


# --------------------------------------------------------------------------- folder
def _write(path, value, size=(40, 30), colour=True):
    img = np.full((size[1], size[0], 3) if colour else (size[1], size[0]), value, np.uint8)
    cv2.imwrite(str(path), img)


def test_folder_sorted_by_name_with_nominal_fps_timestamps(tmp_path):
    for name, v in [("10.jpg", 100), ("2.png", 20), ("1.jpg", 10), ("b_03.png", 3)]:
        _write(tmp_path / name, v)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    cfg = Config()
    cfg.camera.fps = 20.0
    src = open_source(str(tmp_path), cfg)
    assert isinstance(src, FolderSource) and src.finite
    frames = list(src)
    assert [int(round(f.gray.mean())) for f in frames] == [10, 20, 100, 3]  # 1, 2, 10, b_03
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [f.t for f in frames] == pytest.approx([0.0, 0.05, 0.10, 0.15])
    assert frames[0].gray.ndim == 2 and frames[0].still().shape == (30, 40, 3)


def test_folder_gray_images_still_falls_back_to_bgr(tmp_path):
    _write(tmp_path / "a.png", 77, colour=False)
    f = next(iter(FolderSource(tmp_path, Config())))
    assert f.gray.shape == (30, 40)
    assert f.still().shape == (30, 40, 3) and f.still()[0, 0].tolist() == [77, 77, 77]


def test_empty_folder_and_missing_path_are_named(tmp_path):
    with pytest.raises(SourceError, match="has no images"):
        open_source(str(tmp_path), Config())
    missing = tmp_path / "nope.mp4"
    with pytest.raises(SourceError, match="nope.mp4"):
        open_source(str(missing), Config())


def test_run_and_bench_share_one_rule_for_an_image_folder(tmp_path):
    """A folder of image folders (photos/smile, photos/no_smile) is an image folder for run too."""
    from djsmile.bench import feeds
    for sub, vals in (("smile", (10, 20)), ("no_smile", (30,))):
        (tmp_path / sub).mkdir()
        for i, v in enumerate(vals):
            _write(tmp_path / sub / f"{i}.jpg", v)
    (tmp_path / "README.txt").write_text("not an image")
    src = open_source(str(tmp_path), Config())
    assert [p.parent.name + "/" + p.name for p in src.files] == ["no_smile/0.jpg", "smile/0.jpg", "smile/1.jpg"]
    assert len(list(src)) == 3
    images, _ = feeds.load_folder_images(tmp_path, Config(), 10)
    assert len(images) == 3


def test_each_image_of_a_folder_is_a_new_scene(tmp_path):
    for i in range(3):
        _write(tmp_path / f"{i}.png", 50 * i)
    assert [f.new_scene for f in FolderSource(tmp_path, Config())] == [True, True, True]


def test_folder_of_only_unreadable_images_is_bad_data_with_a_summary(tmp_path):
    from djsmile.errors import EX_DATAERR, DataError
    (tmp_path / "a.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"none of its 2 images could be read \(a.jpg, b.png\)") as e:
        list(open_source(str(tmp_path), Config()))
    from djsmile.cli import exit_code_for
    assert exit_code_for(e.value) == EX_DATAERR


def test_one_corrupt_jpg_as_source_is_bad_data(tmp_path):
    from djsmile.errors import DataError
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(DataError, match="photo.jpg"):
        list(open_source(str(bad), Config()))
    good = tmp_path / "ok.jpg"
    _write(good, 60)
    (frame,) = list(open_source(str(good), Config()))
    assert int(round(frame.gray.mean())) == 60


def test_a_text_file_is_not_a_video(tmp_path):
    from djsmile.errors import DataError
    txt = tmp_path / "notes.txt"
    txt.write_text("hello, this is not a video\n" * 200)
    with pytest.raises(DataError, match="notes.txt.*not a video"):
        open_source(str(txt), Config())


HUGE_PNG_SCRIPT = """
import struct, sys, zlib
from pathlib import Path
folder, name, damage = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
def chunk(kind, data, bad=False):
    crc = zlib.crc32(kind + data) ^ (0xFFFF if bad else 0)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
w = h = 20000                                   # 400 Mpixel, gray, all zero: a few hundred KB on disk
z = zlib.compressobj(9)
row = bytes(w + 1)
idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
# an ancillary chunk with a wrong CRC: Pillow refuses the header ("broken PNG file"), OpenCV decodes it
text = chunk(b"tEXt", b"Comment\\x00hello", bad=(damage == "badcrc"))
png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + text
       + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
(folder / name).write_bytes(png)
import cv2, numpy as np
cv2.imwrite(str(folder / "1_small.png"), np.full((48, 64, 3), 80, np.uint8))
from djsmile.config import Config
from djsmile.sources import FolderSource
frames = list(FolderSource(folder, Config()))
# VmHWM: this process's own peak (getrusage's ru_maxrss keeps the parent's across fork + exec)
hwm = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
print(len(frames), (folder / name).stat().st_size, hwm // 1024)
"""


@pytest.mark.slow
@pytest.mark.parametrize("name,damage", [("0_huge.png", "ok"), ("0_huge.png", "badcrc"),
                                         ("0_huge.jpg", "badcrc"), ("0_huge.jpg", "ok")])
def test_huge_image_in_a_folder_is_refused_before_decoding(tmp_path, name, damage):
    # the size comes from the file's content, whatever its name (a PNG named .jpg) or damage
    import subprocess
    p = subprocess.run([sys.executable, "-c", HUGE_PNG_SCRIPT, str(tmp_path), name, damage],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    frames, size, peak_mb = map(int, p.stdout.split())
    assert frames == 1 and size < 2_000_000      # the small one plays; the huge one is small on disk
    assert peak_mb < 150, f"peak memory {peak_mb} MB"  # decoding it would take 400 MB (gray) to 1.2 GB
    warned = [ln for ln in p.stderr.splitlines() if name in ln]
    assert len(warned) == 1 and "20000x20000" in warned[0] and "skipped" in warned[0], p.stderr


def test_jpeg_above_the_pixel_cap_is_read_reduced(tmp_path, monkeypatch, caplog):
    import logging
    monkeypatch.setattr("djsmile.sources.folder.MAX_IMAGE_PIXELS", 100_000)
    yy, xx = np.mgrid[0:400, 0:600]
    cv2.imwrite(str(tmp_path / "big.jpg"), np.dstack([xx % 256, yy % 256, (xx + yy) % 256]).astype(np.uint8))
    with caplog.at_level(logging.WARNING):
        (frame,) = list(FolderSource(tmp_path, Config()))
    assert frame.gray.shape == (200, 300)  # 1/2: 60,000 pixels, under the cap
    assert sum("big.jpg" in r.getMessage() and "600x400" in r.getMessage() for r in caplog.records) == 1


def test_frame_still_without_fn_is_gray_as_bgr():
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    f = Frame(g, 0, 0.0)
    assert f.still().shape == (3, 4, 3) and np.array_equal(f.still()[..., 1], g)


# --------------------------------------------------------------------------- video file
def test_video_file_uses_its_own_timestamps(tmp_path):
    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(6):
        w.write(np.full((48, 64, 3), 20 * i, np.uint8))
    w.release()
    cfg = Config()
    cfg.camera.fps = 30.0  # the file's own 10 fps wins
    src = open_source(str(path), cfg)
    assert isinstance(src, OpenCVSource) and src.finite
    frames = list(src)
    src.close()
    assert len(frames) == 6
    assert [f.t for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], abs=1e-3)
    assert frames[3].gray.shape == (48, 64) and frames[3].still().shape == (48, 64, 3)


def test_each_source_declares_what_it_can_do_and_a_looped_one_keeps_it(tmp_path, fake_picamera2):
    # what run and the reader act on (pacing, new scenes, held buffers, closing during a read) is
    # declared by each source, and a looped file or folder plays with its source's
    for i in range(2):
        _write(tmp_path / f"{i}.jpg", 50)
    clip = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(3):
        w.write(np.full((48, 64, 3), 20 * i, np.uint8))
    w.release()
    cfg = Config()
    cfg.camera.fps = 20.0
    cfg.camera.loop = True
    folder, video, cam = open_source(str(tmp_path), cfg), open_source(str(clip), cfg), open_source("camera", cfg)
    try:
        got = {name: (s.finite, s.still_images, s.fps, s.holds_requests, s.closes_during_read)
               for name, s in (("folder", folder), ("video", video), ("camera", cam))}
        assert got == {"folder": (True, True, 20.0, False, False),
                       "video": (True, False, pytest.approx(10.0), False, True),
                       "camera": (False, False, None, True, False)}
        assert type(folder).__name__ == "LoopSource" and type(video).__name__ == "LoopSource"
        assert not cam.frames_hold_requests   # until a reader that keeps frames asks for it
        sources.ThreadedSource(cam).close()
        assert cam.frames_hold_requests
    finally:
        for s in (folder, video, cam):
            s.close()


def test_picamera2_on_the_capture_thread_holds_only_the_frames_in_use(fake_picamera2):
    # the camera delivers every 2 ms, the loop takes 10 ms a frame: most frames are dropped, and
    # each dropped or finished frame gives its buffer back; the frame in use keeps its exposure
    import time

    class PacedCam(FakePicamera2):
        def capture_request(self):
            time.sleep(0.002)
            return super().capture_request()
    mod = sys.modules["picamera2"]
    mod.Picamera2 = PacedCam
    cfg = Config()
    src = sources.ThreadedSource(PiCamera2Source(cfg))
    cam = PacedCam.instances[-1]
    most_live, taken = 0, []
    for fr in src:
        most_live = max(most_live, len(cam.live))
        still = fr.still()
        n = int(still[0, 0, 0])           # the fake's main array carries its request number
        assert fr.gray[0, 1] == (1 + n) % 200   # ... the same exposure as the gray frame
        assert fr.color().shape == fr.gray.shape + (3,)
        taken.append(fr.index)
        time.sleep(0.01)
        if len(taken) == 8:
            break
    assert src.dropped > 0 and taken == sorted(taken) and len(set(taken)) == 8
    assert "capture_array:main" not in cam.calls   # never a later exposure for a still
    assert most_live <= 3
    src.close()
    assert not cam.live, "requests still held after close"


def test_picamera2_colour_frame_from_the_lores_yuv420_with_stride(fake_picamera2):
    cfg = Config()
    cfg.camera.width = 600            # stride 640: padded rows, chroma rows of 320 bytes
    src = PiCamera2Source(cfg)
    w, h = src.width, src.height
    stride = src.stride
    assert stride > w
    bgr = np.zeros((h, w, 3), np.uint8)
    bgr[:, : w // 2] = (255, 0, 0)    # blue | red
    bgr[:, w // 2:] = (0, 0, 255)
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    y, u, v = i420[: w * h], i420[w * h: w * h * 5 // 4], i420[w * h * 5 // 4:]
    arr = np.full((h * 3 // 2, stride), 255, np.uint8)   # as picamera2 lays it out
    arr[:h, :w] = y.reshape(h, w)
    cw, ch = stride // 2, h // 2
    planes = np.full((2, ch, cw), 255, np.uint8)
    planes[0, :, : w // 2] = u.reshape(ch, w // 2)
    planes[1, :, : w // 2] = v.reshape(ch, w // 2)
    arr[h:] = planes.reshape(h // 2, stride)
    out = src.bgr_from_lores(arr)
    assert out.shape == (h, w, 3)
    assert np.abs(out.astype(int) - bgr.astype(int)).max(axis=2)[:, 4:w // 2 - 4].max() < 40
    assert np.abs(out.astype(int) - bgr.astype(int)).max(axis=2)[:, w // 2 + 4:-4].max() < 40
    fr = next(iter(src))
    assert fr.color().shape == (h, w, 3)      # frames carry it, made when asked for
    src.close()


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".webp", ".tiff", ".ppm", ".pgm", ".pfm", ".ras", ".hdr"])
def test_image_header_tells_format_and_size_from_the_content_under_any_name(tmp_path, ext):
    img = np.zeros((37, 53, 3), np.uint8)
    if ext in (".pfm", ".hdr"):
        img = img.astype(np.float32)
    real = tmp_path / f"real{ext}"
    assert cv2.imwrite(str(real), img[..., 0] if ext == ".pgm" else img)
    misnamed = tmp_path / "misnamed.jpg"          # its name says JPEG, its content does not (or does)
    misnamed.write_bytes(real.read_bytes())
    for p in (real, misnamed):
        kind, size = sources.image_header(p)
        assert size == (53, 37), (ext, kind)
        assert (kind == "jpeg") == (ext == ".jpg")


def test_a_jpeg_with_big_metadata_and_a_cut_tail_still_tells_its_size(tmp_path):
    ok, buf = cv2.imencode(".jpg", np.zeros((30, 70, 3), np.uint8))
    data = buf.tobytes()
    app = b"\xff\xe1" + (65000).to_bytes(2, "big") + bytes(64998)      # 3 big metadata segments first
    cut = data[:2] + app * 3 + data[2:len(data) // 2]
    (tmp_path / "cut.jpg").write_bytes(cut)
    assert sources.image_header(tmp_path / "cut.jpg") == ("jpeg", (70, 30))


def test_a_text_file_named_like_an_image_is_not_decoded(tmp_path):
    (tmp_path / "notes.png").write_text("not an image\n" * 50)
    assert sources.image_header(tmp_path / "notes.png") == (None, None)
    assert sources.read_image(tmp_path / "notes.png", sources.MAX_IMAGE_PIXELS) is None


class _MjpegServer:
    """An HTTP MJPEG stream (multipart/x-mixed-replace, no timestamps) at ``fps`` frames a second, for real."""

    def __init__(self, fps: float = 15.0):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        ok, buf = cv2.imencode(".jpg", np.full((120, 160, 3), 90, np.uint8))
        jpeg = buf.tobytes()
        self.stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                t0 = time.monotonic()
                i = 0
                try:
                    while not outer.stop.is_set():
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                        self.wfile.flush()
                        i += 1
                        time.sleep(max(0.0, t0 + i / fps - time.monotonic()))
                except OSError:
                    pass

            def log_message(self, *a):
                pass
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.slow
def test_a_live_mjpeg_stream_without_timestamps_runs_on_the_monotonic_clock():
    """FFmpeg gives such a stream 25 fps: at 15 fps a 3-s cooldown would last 5 s. Stream time is real time."""
    server = _MjpegServer(fps=15.0)
    src = None
    try:
        src = OpenCVSource(server.url, Config())
        stamps = []
        for frame in src:
            stamps.append((frame.t, time.monotonic()))
            if len(stamps) == 46:
                break
    finally:
        if src is not None:
            src.close()
        server.close()
    (t_first, wall_first), (t_last, wall_last) = stamps[1], stamps[-1]   # the first may wait for the opening
    stream_span, wall_span = t_last - t_first, wall_last - wall_first
    assert wall_span > 2.0, wall_span
    assert abs(stream_span - wall_span) < 0.25 * wall_span, (stream_span, wall_span)
    assert all(b[0] > a[0] for a, b in zip(stamps, stamps[1:]))


@pytest.mark.slow
def test_credentials_in_a_stream_url_are_never_logged_nor_served(tmp_path):
    """``http://user:pass@host/...``: the run's log and /status.json show the URL without them."""
    import json
    import os
    import socket
    import subprocess
    import urllib.request
    server = _MjpegServer(fps=15.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = server.url.replace("http://", "http://viewer:hunter2pw@")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen([sys.executable, "-m", "djsmile", "run", "--source", url, "--state-dir",
                             str(tmp_path / "s"), "--no-gpio", "--no-jokes", "--set", 'jokes.api_url=""',
                             "--set", 'speech.engine="none"', "--web", f"127.0.0.1:{port}", "--max-frames", "75"],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        status = None
        deadline = time.monotonic() + 60
        while status is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=5) as r:
                    status = r.read().decode()
            except OSError:
                time.sleep(0.2)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        server.close()
    assert proc.returncode == 0, err[-3000:]
    assert status is not None and "127.0.0.1" in json.loads(status)["source"], status
    assert "hunter2pw" not in status and "hunter2pw" not in err, err[-3000:]
    # and when it cannot be opened
    with pytest.raises(SourceError) as e:
        OpenCVSource(f"http://viewer:hunter2pw@127.0.0.1:{port}/none.mjpg", Config())
    assert "hunter2pw" not in str(e.value) and "127.0.0.1" in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_a_truncated_image_is_said_and_skipped_not_played_as_if_whole(tmp_path, ext):
    import subprocess
    yy, xx = np.mgrid[0:240, 0:320]
    img = np.dstack([xx % 256, yy % 256, (xx + yy) % 256]).astype(np.uint8)
    ok, buf = cv2.imencode(ext, img)
    data = buf.tobytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[:int(len(data) * 0.6)])                  # a copy stopped at 60 %
    run = [sys.executable, "-m", "djsmile", "run", "--state-dir", str(tmp_path / "s"), "--no-gpio", "--no-jokes",
           "--set", 'jokes.api_url=""', "--set", 'speech.engine="none"']
    p = subprocess.run([*run, "--source", str(cut)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 65, p.stderr[-3000:]
    said = [ln for ln in p.stderr.splitlines() if cut.name in ln and "truncated" in ln]
    assert said, p.stderr[-3000:]
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / f"0_cut{ext}").write_bytes(cut.read_bytes())
    cv2.imwrite(str(folder / "1_whole.png"), img)
    p = subprocess.run([*run, "--source", str(folder)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "stopped after 1 frame" in p.stderr
    warned = [ln for ln in p.stderr.splitlines() if f"0_cut{ext}" in ln and "WARNING" in ln]
    assert len(warned) == 1 and "truncated" in warned[0], p.stderr[-3000:]
