"""The live view (edge/web/): real HTTP requests to a server on 127.0.0.1 (ephemeral port)."""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from djsmile.config import WebConfig
from djsmile.errors import ConfigError
from djsmile.sources import Frame
from djsmile.trigger import TrackedFace, TriggerResult
from djsmile.web import BOUNDARY, WebServer, parse_listen
from helpers import wait_until


# ---------------------------------------------------------------- the loop's types, as the loop makes them

class FakeTeller:
    def __init__(self, joke="Why did the scarecrow win an award? He was outstanding in his field."):
        self.last_joke = joke
        self.calls = 0

    def tell(self) -> bool:
        self.calls += 1
        return True


def make_frame(i: int, w: int = 320, h: int = 240, color_fn=None) -> Frame:
    gray = np.full((h, w), 90, np.uint8)
    cv2.circle(gray, (w // 2, h // 2), h // 4, 220, -1)         # a bright "face"
    cv2.rectangle(gray, ((i * 7) % (w - 20), 5), ((i * 7) % (w - 20) + 15, 20), 255, -1)  # moves
    return Frame(gray, i, i / 30.0, color_fn=color_fn)


def make_result(i: int, p: float = 0.87) -> TriggerResult:
    face = TrackedFace(1, (110, 60, 100, 120), p, p, p >= 0.5, 1 if p >= 0.5 else 0)
    return TriggerResult(i, i / 30.0, False, "smiling" if p >= 0.5 else "watching", [face],
                         smiling=p >= 0.5, face=face)


def wcfg(**kw) -> WebConfig:
    c = WebConfig(listen="127.0.0.1:0")
    for k, v in kw.items():
        setattr(c, k, v)
    return c


class Publisher:
    """Publishes frames like the loop does, at ~rate fps, until stopped."""

    def __init__(self, web: WebServer, rate: float = 30.0):
        self.web, self.rate, self.n = web, rate, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.web.publish(make_frame(self.n), make_result(self.n), 29.5)
            self.n += 1
            self._stop.wait(1.0 / self.rate)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(2)


@pytest.fixture
def server(tmp_path):
    made = []

    def make(cfg=None, **kw):
        kw.setdefault("photo_dir", tmp_path / "photos")
        kw["photo_dir"].mkdir(exist_ok=True)
        web = WebServer(cfg or wcfg(), **kw)
        web.start()
        made.append(web)
        return web

    yield make
    for w in made:
        w.stop()


def request(web, method, path, headers=None, body=None, port=None):
    conn = http.client.HTTPConnection("127.0.0.1", port or web.port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r, data


def read_mjpeg_frames(resp, n: int, timeout: float = 10.0) -> list[bytes]:
    """Parse n parts out of a multipart/x-mixed-replace response."""
    frames, deadline = [], time.monotonic() + timeout
    while len(frames) < n:
        assert time.monotonic() < deadline, "stream too slow"
        line = resp.readline()
        assert line, "stream ended"
        if line.strip() != b"--" + BOUNDARY.encode():
            continue
        headers = {}
        while True:
            h = resp.readline().strip()
            if not h:
                break
            k, _, v = h.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        assert headers["content-type"] == "image/jpeg"
        frames.append(resp.read(int(headers["content-length"])))
    return frames


def open_stream(web, path="/stream.mjpg"):
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    conn.request("GET", path)
    return conn, conn.getresponse()


def save_photo(folder, when_ms: int = 0, size=(240, 320)) -> str:
    """A photo written the way `djsmile run` writes them (PhotoStore: JPEG + JSON sidecar); its name."""
    from datetime import datetime, timedelta

    from djsmile.storage import PhotoStore, photo_stem
    when = datetime(2026, 11, 25, 22, 15, 30) + timedelta(milliseconds=when_ms)
    path = PhotoStore(folder).save(np.full((*size, 3), 200, np.uint8), photo_stem(when, when_ms),
                                   {"time": when.isoformat(), "state": "smiling", "faces": []})
    return path.name


# ---------------------------------------------------------------- tests

def test_listen_parsing():
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen("0.0.0.0:0") == ("0.0.0.0", 0)
    for bad in ("8080", "host:", "host:abc", "h:70000"):
        with pytest.raises(ConfigError):
            parse_listen(bad)


def test_status_json_reports_the_loop(server):
    teller = FakeTeller()
    web = server(teller=teller, info={"model": "models/smile_int8.tflite", "runtime": "ai_edge_litert 1.2"})
    r, data = request(web, "GET", "/status.json")
    assert r.status == 200 and r.getheader("Content-Type") == "application/json"
    s = json.loads(data)
    assert s["state"] == "starting" and s["faces"] == []

    web.publish(make_frame(41), make_result(41, p=0.87), 12.34)
    web.event({"event": "shot", "frame": 41, "photo": "20240101-120000.jpg", "p": np.float32(0.9)})
    s = json.loads(request(web, "GET", "/status.json")[1])
    assert s["state"] == "smiling"
    assert s["fps"] == pytest.approx(12.34)
    assert s["frame"] == 41
    assert s["faces"] == [{"box": [110, 60, 100, 120], "p_smile": 0.87, "id": 1, "p_smooth": 0.87, "smiling": True,
                           "frames_smiling": 1}]
    assert s["smiling"] is True
    assert s["last_event"]["event"] == "shot" and s["last_event"]["p"] == pytest.approx(0.9)
    assert s["model"] == "models/smile_int8.tflite" and s["runtime"] == "ai_edge_litert 1.2"
    assert s["last_joke"] == teller.last_joke
    assert s["uptime_s"] >= 0
    assert set(s) >= {"fps", "faces", "state", "last_event", "uptime_s", "model", "runtime", "last_joke"}


def test_page_has_stream_joke_button_and_photos(server, tmp_path):
    web = server(teller=FakeTeller())
    names = [save_photo(tmp_path / "photos", i, (480, 640)) for i in (1, 0)]     # name order != age order
    for i, name in enumerate(names):
        os.utime(tmp_path / "photos" / name, (1_700_000_000 + i, 1_700_000_000 + i))
    old, new = names
    r, data = request(web, "GET", "/")
    page = data.decode()
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/html")
    assert '<img id="stream" src="/stream.mjpg"' in page
    assert "Next joke" in page and 'fetch("joke",{method:"POST"})' in page
    assert "status.json" in page
    s = json.loads(request(web, "GET", "/status.json")[1])
    assert s["photos"] == [new, old]                      # newest first
    r, thumb = request(web, "GET", f"/photos/{new}?thumb=1")
    assert r.status == 200 and r.getheader("Content-Type") == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(thumb, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[1] <= 200                             # a real thumbnail, not the full photo


def test_mjpeg_stream_gives_jpeg_frames_with_overlay(server):
    web = server(wcfg(stream_fps=20.0))
    with Publisher(web):
        conn, r = open_stream(web)
        assert r.status == 200
        assert r.getheader("Content-Type") == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        frames = read_mjpeg_frames(r, 3)
        r.close()
        conn.close()
    imgs = [cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR) for f in frames]
    assert all(im is not None and im.shape == (240, 320, 3) for im in imgs)
    assert any(not np.array_equal(imgs[0], im) for im in imgs[1:])        # the view moves
    # the source is gray: coloured pixels can only be the face box / "NN% smiling" label
    spread = imgs[-1].astype(int).max(axis=2) - imgs[-1].astype(int).min(axis=2)
    assert (spread > 80).sum() > 200


@pytest.mark.slow
def test_no_encoding_without_viewers_and_rate_cap(server):
    web = server(wcfg(stream_fps=5.0))
    for i in range(200):                      # the loop runs, nobody watches
        web.publish(make_frame(i), make_result(i), 30.0)
    time.sleep(0.3)
    assert web.frames_encoded == 0

    with Publisher(web, rate=60):
        conn, r = open_stream(web)
        read_mjpeg_frames(r, 1)
        t0, n0 = time.monotonic(), web.frames_encoded
        read_mjpeg_frames(r, 5)
        rate = (web.frames_encoded - n0) / (time.monotonic() - t0)
        assert rate <= 5.0 * 1.3, f"encoded {rate:.1f} fps with stream_fps = 5"
        r.close()
        conn.close()
        wait_until(lambda: web.clients == 0, what="no viewer left")
        time.sleep(0.5)
        stopped_at = web.frames_encoded
        time.sleep(0.6)                       # still publishing at 60 fps, no viewer
        assert web.frames_encoded == stopped_at


def test_token_required_off_localhost(tmp_path):
    # a config rule, checked at load (djsmile.config.validate), so 'config --check' finds it too
    from djsmile.config import Config, validate
    cfg = Config()
    cfg.web = WebConfig(enabled=True, listen="0.0.0.0:0", token="")
    with pytest.raises(ConfigError, match="web.token"):
        validate(cfg)

    web = WebServer(WebConfig(listen="0.0.0.0:0", token="s3cret-tok"), photo_dir=tmp_path)
    web.start()
    try:
        for path in ("/", "/status.json", "/stream.mjpg", "/photos/x.jpg", "/?token=wrong"):
            r, _ = request(web, "GET", path)
            assert r.status == 401, path
        r, _ = request(web, "POST", "/joke")
        assert r.status == 401
        r, _ = request(web, "GET", "/status.json", headers={"Authorization": "Bearer wrong"})
        assert r.status == 401

        r, _ = request(web, "GET", "/?token=s3cret-tok")
        assert r.status == 200
        cookie = r.getheader("Set-Cookie").split(";")[0]
        assert "s3cret-tok" not in cookie                      # the cookie does not carry the token itself
        r, _ = request(web, "GET", "/status.json", headers={"Cookie": cookie})
        assert r.status == 200
        r, _ = request(web, "GET", "/status.json", headers={"Authorization": "Bearer s3cret-tok"})
        assert r.status == 200
        r, _ = request(web, "GET", "/status.json", headers={"Cookie": "djsmile_token=forged"})
        assert r.status == 401
    finally:
        web.stop()


def test_photos_only_from_photo_dir(server, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "shot 1.jpg").write_bytes(b"JPEGDATA")
    (photos / "shot 1.json").write_text('{"photo": "shot 1.jpg"}')       # its sidecar, as djsmile writes
    (photos / "sub").mkdir()
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    os.symlink(tmp_path / "secret.txt", photos / "link_out.jpg")
    os.symlink("../secret.txt", photos / "rel_out.jpg")
    os.mkfifo(photos / "pipe.jpg")
    web = server(photo_dir=photos)

    r, data = request(web, "GET", "/photos/shot%201.jpg")
    assert r.status == 200 and data == b"JPEGDATA" and r.getheader("Content-Type") == "image/jpeg"

    for path in ("/photos/../secret.txt", "/photos/%2e%2e/secret.txt", "/photos/%2E%2E%2Fsecret.txt",
                 "/photos/..%2fsecret.txt", "/photos/%252e%252e%252fsecret.txt",
                 "/photos//etc/passwd", "/photos/%2Fetc%2Fpasswd", "/photos/" + str(tmp_path / "secret.txt"),
                 "/photos/link_out.jpg", "/photos/rel_out.jpg", "/photos/sub", "/photos/sub/..",
                 "/photos/pipe.jpg", "/photos/", "/photos/.", "/photos/missing.jpg"):
        r, data = request(web, "GET", path)
        assert r.status in (403, 404), path
        assert b"SECRET" not in data and b"root:" not in data, path


@pytest.mark.slow
def test_joke_button_is_rate_limited(server):
    teller = FakeTeller()
    web = server(wcfg(joke_interval_s=0.5), teller=teller)
    r, data = request(web, "POST", "/joke")
    assert r.status == 200 and json.loads(data)["ok"] is True and teller.calls == 1
    r, data = request(web, "POST", "/joke")
    assert r.status == 429 and int(r.getheader("Retry-After")) >= 1
    assert json.loads(data)["retry_after_s"] > 0
    assert teller.calls == 1                              # the teller was not asked again
    time.sleep(0.6)
    r, _ = request(web, "POST", "/joke")
    assert r.status == 200 and teller.calls == 2
    time.sleep(0.6)
    r, _ = request(web, "POST", "/joke", headers={"Origin": "http://evil.example"})
    assert r.status == 403 and teller.calls == 2          # another site's page cannot press it
    r, _ = request(web, "GET", "/status.json", headers={"Host": "evil.example"})
    assert r.status == 403                                # DNS-rebinding guard on localhost


def test_joke_without_teller_is_503(server):
    web = server()
    r, _ = request(web, "POST", "/joke")
    assert r.status == 503


def test_stop_ends_streams_and_frees_the_port(tmp_path):
    web = WebServer(wcfg(), photo_dir=tmp_path)
    web.start()
    port = web.port
    web.publish(make_frame(0), make_result(0), 1.0)
    conn, r = open_stream(web)
    read_mjpeg_frames(r, 1)
    t0 = time.monotonic()
    web.stop()
    assert time.monotonic() - t0 < 3.0
    r.close()
    conn.close()
    with pytest.raises(OSError):
        request(web, "GET", "/status.json", port=port)
    web.stop()   # twice is fine


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's 'chromium' package is not installed (apt-get install chromium)")
def test_chromium_screenshot_shows_stream_and_joke(server, tmp_path):
    out = tmp_path / "page.png"
    photos = tmp_path / "photos"
    photos.mkdir()
    save_photo(photos)
    teller = FakeTeller("I'm reading a book about anti-gravity. It's impossible to put down!")
    web = server(wcfg(stream_fps=10.0), teller=teller, photo_dir=photos,
                 info={"model": "smile_int8.tflite", "runtime": "test"})
    keep = os.environ.get("DJSMILE_SCREENSHOT")          # set to a path to keep the PNG
    with Publisher(web, rate=15):
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'chrome'}", f"--screenshot={out}", "--window-size=1000,800",
               "--virtual-time-budget=3000", f"http://127.0.0.1:{web.port}/"]
        proc = subprocess.run(cmd, capture_output=True, timeout=120)
    assert out.exists(), proc.stderr.decode(errors="replace")[-2000:]
    if keep:
        shutil.copy(out, keep)
    img = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[:2] == (800, 1000)
    assert img.std() > 10                                   # not a blank page
    # the stream is the upper left of the page; our frames are bright (90..255) on a dark page
    view = img[80:420, 20:560]
    assert (view.mean(axis=2) > 80).mean() > 0.5, "the stream image is not shown"
    # a coloured overlay (face box / label) drawn on the gray frame is visible
    spread = view.astype(int).max(axis=2) - view.astype(int).min(axis=2)
    assert (spread > 80).sum() > 100
    assert web.frames_encoded >= 1


# ---------------------------------------------------------------- hostile clients (issue 12, item 13)

def test_resets_on_the_401_path_log_one_short_line_at_most(server, capfd, caplog):
    import socket
    import struct
    web = server(wcfg(token="s3cret-token"))
    n = 60
    with caplog.at_level(logging.INFO, logger="djsmile"):      # what `djsmile run` logs by default
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", web.port), timeout=5)
            s.sendall(b"GET /status.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()                                           # RST, before or while the 401 is written
        r, _ = request(web, "GET", "/status.json", headers={"Authorization": "Bearer s3cret-token"})
        assert r.status == 200                                  # still serving
        time.sleep(0.3)                                         # let the last handler threads finish
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err[:2000]
    for rec in caplog.records:
        assert rec.exc_info is None and "\n" not in rec.getMessage(), rec.getMessage()
    assert len(caplog.records) + len(err.splitlines()) <= n


@pytest.mark.parametrize("origin", ["null", "http://evil.example", "garbage"])
def test_joke_from_a_foreign_or_null_origin_is_refused(server, origin):
    teller = FakeTeller()
    web = server(teller=teller)
    r, data = request(web, "POST", "/joke", headers={"Origin": origin})
    assert r.status == 403 and teller.calls == 0
    r, _ = request(web, "POST", "/joke", headers={"Origin": f"http://127.0.0.1:{web.port}"})
    assert r.status == 200 and teller.calls == 1                # the page itself still can


def test_only_photos_djsmile_wrote_are_served(server, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    real = save_photo(photos, 1)
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    linked = "20261125-221530-999_f000999.jpg"                  # a photo's name, a hard link to another file
    os.link(secret, photos / linked)
    (photos / linked).with_suffix(".json").write_text(json.dumps({"photo": linked}))
    (photos / "stray.jpg").write_bytes(b"not written by djsmile")        # no sidecar
    web = server(photo_dir=photos)
    r, data = request(web, "GET", f"/photos/{real}")
    assert r.status == 200 and data[:2] == b"\xff\xd8"
    for name in (linked, "stray.jpg", real[:-4] + ".json"):
        r, data = request(web, "GET", f"/photos/{name}")
        assert r.status in (403, 404), name
        assert b"root:" not in data
    assert json.loads(request(web, "GET", "/status.json")[1])["photos"] == [real]


def test_head_is_answered_like_get_without_a_body(server, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    name = save_photo(photos)
    web = server(photo_dir=photos)
    for path, ctype in (("/", "text/html"), ("/status.json", "application/json"), (f"/photos/{name}", "image/jpeg"),
                        ("/stream.mjpg", "multipart/x-mixed-replace")):
        r, data = request(web, "HEAD", path)
        assert r.status == 200 and r.getheader("Content-Type").startswith(ctype), path
        assert data == b""
    r, _ = request(web, "HEAD", f"/photos/{name}")
    assert int(r.getheader("Content-Length")) == (photos / name).stat().st_size
    assert web.clients == 0                                     # HEAD holds no viewer slot


@pytest.mark.parametrize("length, code", [("abc", 400), ("-5", 400), ("1e3", 400), ("99999999999", 413)])
def test_garbage_content_length_is_refused_cleanly(server, capfd, length, code):
    import socket
    teller = FakeTeller()
    web = server(teller=teller)
    with socket.create_connection(("127.0.0.1", web.port), timeout=5) as s:
        s.sendall(f"POST /joke HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\r\n".encode())
        answer = b""
        while b"\r\n" not in answer:
            more = s.recv(4096)
            if not more:
                break
            answer += more
    assert answer.split(b"\r\n")[0].split()[1:2] == [str(code).encode()], answer[:200]
    assert teller.calls == 0
    r, _ = request(web, "GET", "/status.json")
    assert r.status == 200
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.slow
def test_viewers_that_stop_reading_do_not_lock_new_viewers_out(server):
    import socket
    web = server(wcfg(stream_fps=20.0, max_viewers=4, stream_quality=95))
    stalled = []
    with Publisher(web, rate=30):
        try:
            for _ in range(4):                                  # connect, then never read again
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.connect(("127.0.0.1", web.port))
                s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                stalled.append(s)
            wait_until(lambda: web.clients == 4, what="4 viewers")
            t0 = time.monotonic()
            while True:                                         # a browser retrying after 503
                conn, r = open_stream(web)
                if r.status == 200:
                    break
                r.read()
                conn.close()
                assert time.monotonic() - t0 < 10.0, "new viewers locked out for over 10 s"
                time.sleep(0.25)
            frames = read_mjpeg_frames(r, 3, timeout=10.0)
            assert len(frames) == 3 and time.monotonic() - t0 < 15.0
            assert web.clients <= 4
            r.close()
            conn.close()
        finally:
            for s in stalled:
                s.close()


def colour_image(h: int = 240, w: int = 320) -> np.ndarray:
    """A colour image, as sources give: blue left half, red right half (BGR)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (230, 60, 30)
    img[:, w // 2:] = (30, 60, 230)
    return img


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's 'chromium' package is not installed (apt-get install chromium)")
def test_chromium_screenshot_shows_the_colour_stream(server, tmp_path):
    out = tmp_path / "colour.png"
    web = server(wcfg(stream_fps=10.0), info={"model": "m", "runtime": "test"})
    stop = threading.Event()

    def publish():
        i = 0
        while not stop.is_set():
            web.publish(make_frame(i, color_fn=colour_image), make_result(i), 29.5)
            i += 1
            stop.wait(1 / 15)
    t = threading.Thread(target=publish, daemon=True)
    t.start()
    try:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'chrome'}", f"--screenshot={out}", "--window-size=1000,800",
               "--virtual-time-budget=3000", f"http://127.0.0.1:{web.port}/"]
        proc = subprocess.run(cmd, capture_output=True, timeout=120)
    finally:
        stop.set()
        t.join(2)
    assert out.exists(), proc.stderr.decode(errors="replace")[-2000:]
    img = cv2.imread(str(out), cv2.IMREAD_COLOR).astype(int)
    b, r = img[..., 0], img[..., 2]
    blue = np.argwhere(b - r > 100)       # where the source is blue, the page is blue ...
    red = np.argwhere(r - b > 100)        # ... and where it is red, red
    assert len(blue) > 2000 and len(red) > 2000, "no colour stream on the page"
    assert np.median(blue[:, 1]) < np.median(red[:, 1])   # blue on the left, red on the right
    assert web.frames_encoded >= 1


def test_broadcaster_gives_each_viewer_the_newest_frame_and_wakes_them_at_close():
    from djsmile.web.stream import Broadcaster
    b = Broadcaster(max_viewers=2)
    assert b.wait_newer(-1, timeout=0.05) is None               # nothing published yet
    for seq in (1, 2, 3):                                       # published while the viewer was busy
        b.publish(b"jpeg%d" % seq, seq)
    assert b.wait_newer(-1, timeout=1.0) == (3, b"jpeg3")       # the newest only: 1 and 2 are skipped
    assert b.wait_newer(3, timeout=0.05) is None                # nothing newer than what it has
    got = []
    waiter = threading.Thread(target=lambda: got.append(b.wait_newer(3, timeout=30.0)))
    waiter.start()
    b.close()
    waiter.join(5.0)
    assert not waiter.is_alive() and got == [None] and b.closed  # a stop does not wait out the timeout
    assert b.join(object()) is not None and b.join(object()) is not None
    assert b.join(object()) is None and b.viewers == 2           # slots: the third is refused (none stalled)


# ---------------------------------------------------------------- slow and many clients

def _slow_client(port):
    import socket
    s = socket.socket()
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /status.json HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    return s


def _closed_by_server(s, within: float) -> bool:
    """True when the server closes ``s`` within ``within`` s (EOF or reset), while we keep sending."""
    import socket
    end = time.monotonic() + within
    s.settimeout(0.2)
    while time.monotonic() < end:
        try:
            s.sendall(b"X-Slow: a\r\n")
            if s.recv(1024) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


@pytest.mark.slow
def test_a_request_header_that_trickles_in_is_cut_off_at_its_deadline(server, monkeypatch):
    from djsmile.web import handler
    monkeypatch.setattr(handler, "HEADER_DEADLINE_S", 1.0)
    web = server()
    s = _slow_client(web.port)
    try:
        t0 = time.monotonic()
        # a header line every 0.2 s: each read is quick, the whole header never ends
        assert _closed_by_server(s, within=8.0), "a trickling header held its connection for 8 s"
        assert time.monotonic() - t0 >= 0.9
    finally:
        s.close()
    r, _ = request(web, "GET", "/status.json")        # a normal request is served as before
    assert r.status == 200


def test_connections_beyond_the_cap_are_closed_at_once_and_a_viewer_gets_in_after(server):
    web = server(wcfg(max_viewers=1))
    cap = web._httpd.max_connections
    assert cap == 1 + 16
    held = [_slow_client(web.port) for _ in range(cap)]
    try:
        wait_until(lambda: web._httpd.open_connections == cap, what=f"{cap} open connections")
        extra = _slow_client(web.port)
        try:
            assert _closed_by_server(extra, within=3.0), "a connection beyond the cap was kept"
        finally:
            extra.close()
        assert web._httpd.open_connections == cap
    finally:
        for s in held:
            s.close()
    wait_until(lambda: web._httpd.open_connections == 0, what="every connection closed")
    r, _ = request(web, "GET", "/status.json")
    assert r.status == 200


def test_the_connection_cap_keeps_descriptors_for_shots():
    from djsmile.web.server import EXTRA_CONNECTIONS, RESERVE_FDS, connection_cap
    assert connection_cap(4, 100000, 50) == 4 + EXTRA_CONNECTIONS
    cap = connection_cap(4, 256, 160)            # a 256-fd limit with 160 in use
    assert 1 <= cap < 4 + EXTRA_CONNECTIONS and 160 + 2 * cap + RESERVE_FDS <= 256
    assert connection_cap(4, 100, 90) == 1       # never none at all


# ---------------------------------------------------------------- the page's "Last event" (issue 24 item 8)
def _noted_event(web, photos: Path) -> str:
    name = save_photo(photos)
    web.event({"time": "2026-12-06T11:23:52.748123+00:00", "frame": 42,
                    "faces": [{"box": [10, 20, 30, 30], "p_smile": 0.91}], "photo": str(photos / name)})
    return name


def test_status_json_names_the_last_photo_not_its_server_path(server, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    web = server(wcfg(), photo_dir=photos)
    name = _noted_event(web, photos)
    r, body = request(web, "GET", "/status.json")
    ev = json.loads(body)["last_event"]
    assert ev["photo"] == name and str(tmp_path) not in body.decode()
    r, _ = request(web, "GET", "/photos/" + ev["photo"])   # the name is what the page links to
    assert r.status == 200


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's 'chromium' package is not installed (apt-get install chromium)")
def test_page_shows_the_last_event_as_a_local_time_and_a_photo_link(server, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    web = server(wcfg(), photo_dir=photos)
    name = _noted_event(web, photos)
    with Publisher(web, rate=10):
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=3000", "--dump-dom",
               f"http://127.0.0.1:{web.port}/"]
        proc = subprocess.run(cmd, capture_output=True, timeout=120)
    dom = proc.stdout.decode(errors="replace")
    m = re.search(r'<div id="event">(.*?)</div>', dom, flags=re.S)
    assert m, dom[-3000:]
    shown = m.group(1)
    assert ".748123" not in shown and "2026-12-06T" not in shown and str(tmp_path) not in shown, shown
    assert re.search(r"\d{1,2}:\d{2}:\d{2}", shown) and "frame 42" in shown and "91%" in shown, shown
    assert f'href="photos/{name}"' in shown, shown


@pytest.mark.parametrize("referer, want", [("http://evil.example/page", 403), ("null", 403),
                                           ("http://127.0.0.1:{port}/", 200), (None, 200)])
def test_a_post_without_origin_is_judged_by_its_referer(server, referer, want):
    teller = FakeTeller()
    web = server(teller=teller)
    headers = {} if referer is None else {"Referer": referer.format(port=web.port)}
    r, _ = request(web, "POST", "/joke", headers=headers)      # no Origin header (older browsers, some forms)
    assert r.status == want and teller.calls == (want == 200)


@pytest.mark.slow
def test_out_of_file_descriptors_the_listener_pauses_instead_of_spinning(server, monkeypatch):
    import errno
    import socket
    web = server()
    calls = {"n": 0}

    def no_fds(self):
        calls["n"] += 1
        raise OSError(errno.EMFILE, "Too many open files")
    monkeypatch.setattr(socket.socket, "accept", no_fds)
    c = socket.create_connection(("127.0.0.1", web.port), timeout=5)   # waits in the backlog: always "readable"
    try:
        time.sleep(1.0)
        n = calls["n"]
    finally:
        monkeypatch.undo()
        c.close()
    assert 1 <= n <= 10, f"accept() tried {n} times in 1 s"
    r, _ = request(web, "GET", "/status.json")         # descriptors back: served again
    assert r.status == 200
