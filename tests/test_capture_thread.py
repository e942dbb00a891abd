"""The capture thread (``ThreadedSource``): the newest frame wins, stale frames are dropped and counted."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from djsmile.sources import Frame, Source, ThreadedSource
from helpers import FixedFinder, wait_until


class BlockingCamera(Source):
    """Each frame waits for the test's ``deliver()``, like a camera waiting for its sensor."""

    name = "fake camera"
    finite = False

    def __init__(self, fail_after=None):
        self.gate = threading.Semaphore(0)
        self.released = []
        self.fail_after = fail_after
        self.closed = False

    def deliver(self, n=1):
        for _ in range(n):
            self.gate.release()

    def __iter__(self):
        i = 0
        while not self.closed:
            if not self.gate.acquire(timeout=0.05):
                continue
            if self.fail_after is not None and i >= self.fail_after:
                raise OSError("camera unplugged")
            yield Frame(np.full((4, 4), i, np.uint8), i, i / 30.0,
                        release_fn=(lambda k=i: self.released.append(k)))
            i += 1

    def close(self):
        self.closed = True


@pytest.mark.slow
def test_the_loop_gets_the_newest_frame_and_stale_ones_are_dropped():
    cam = BlockingCamera()
    src = ThreadedSource(cam)
    it = iter(src)
    cam.deliver()
    first = next(it)
    assert first.index == 0 and first.captured is not None
    cam.deliver(3)                       # frames 1-3 arrive while the loop works on frame 0
    wait_until(lambda: src.captured == 4)
    second = next(it)
    assert second.index == 3             # not 1: no queue of stale frames
    assert src.dropped == 2
    assert sorted(cam.released) == [0, 1, 2]   # dropped frames and the finished one give buffers back
    cam.deliver()
    assert next(it).index == 4 and src.dropped == 2
    src.close()
    assert cam.closed and sorted(cam.released) == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_a_stuck_camera_does_not_hold_the_stop():
    cam = BlockingCamera()
    stop = threading.Event()
    src = ThreadedSource(cam, stop_event=stop)
    got = []

    def loop():
        for fr in src:
            got.append(fr.index)
    t = threading.Thread(target=loop)
    t.start()
    cam.deliver()
    wait_until(lambda: got == [0])
    t0 = time.monotonic()
    stop.set()                           # the camera delivers nothing more
    t.join(5.0)
    assert not t.is_alive() and time.monotonic() - t0 < 2.0
    src.close()


def test_a_camera_error_reaches_the_loop_after_the_frames_before_it():
    cam = BlockingCamera(fail_after=1)
    src = ThreadedSource(cam)
    it = iter(src)
    cam.deliver()
    assert next(it).index == 0
    cam.deliver()
    with pytest.raises(OSError, match="unplugged"):
        next(it)
    src.close()


def test_frames_carry_the_colour_image_at_the_analysis_size(tmp_path):
    import cv2
    from djsmile.config import Config
    from djsmile.sources import FolderSource, OpenCVSource
    img = np.zeros((120, 160, 3), np.uint8)
    img[:, :80] = (255, 0, 0)    # blue left half (BGR)
    img[:, 80:] = (0, 0, 255)    # red right half
    folder = tmp_path / "f"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), img)
    video = tmp_path / "v.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for _ in range(3):
        vw.write(img)
    vw.release()
    for src in (FolderSource(folder, Config()), OpenCVSource(str(video), Config())):
        fr = next(iter(src))
        c = fr.color()
        assert c.shape == (120, 160, 3) and c is fr.color()   # made once
        assert c[60, 20, 0] > 200 and c[60, 20, 2] < 60      # blue stays blue
        assert c[60, 140, 2] > 200 and c[60, 140, 0] < 60    # red stays red
        src.close()
    # a frame with no colour: the gray one as BGR
    g = Frame(np.full((4, 6), 77, np.uint8), 0, 0.0)
    assert g.color().shape == (4, 6, 3) and int(g.color()[0, 0, 2]) == 77


# --------------------------------------------------------------------------- the loop reads a camera on one thread
class _Model:
    threshold = 0.5

    def __init__(self, on_frame):
        self.on_frame = on_frame

    def predict(self, gray, boxes, landmarks=None):
        self.on_frame()
        return np.zeros(len(boxes), np.float32)


class PacedCamera(Source):
    """A camera giving a frame every 10 ms until closed."""

    name = "paced fake camera"
    finite = False

    def __init__(self):
        self.closed = False

    def __iter__(self):
        i = 0
        while not self.closed:
            time.sleep(0.01)
            yield Frame(np.full((4, 4), i % 256, np.uint8), i, i / 100.0)
            i += 1

    def close(self):
        self.closed = True


def test_a_camera_run_reads_on_one_thread():
    # djsmile run's wiring for a camera: ThreadedSource (camera.capture_thread) under the loop's reader.
    # The loop's own thread plus one reader: no second thread stacked on the capture thread.
    from djsmile import service
    from djsmile.config import Config
    before = set(threading.enumerate())
    seen = []

    def on_frame():
        seen.append(sorted(t.name for t in set(threading.enumerate()) - before))
    cam = PacedCamera()
    stop = threading.Event()
    src = ThreadedSource(cam, stop)
    try:
        parts = service.LoopParts(model=_Model(on_frame), finder=FixedFinder(boxes=[(0, 0, 4, 4)]), stop_event=stop)
        assert service.run(Config(), src, parts, max_frames=5) == 0
    finally:
        src.close()
    assert len(seen) == 5
    assert all(names == ["capture"] for names in seen), seen


def test_the_loop_stops_within_a_frame_when_the_camera_read_blocks():
    from djsmile import service
    from djsmile.config import Config
    cam = BlockingCamera()
    stop = threading.Event()
    src = ThreadedSource(cam, stop)
    frames = []
    out = {}
    parts = service.LoopParts(model=_Model(lambda: frames.append(1)), finder=FixedFinder(boxes=[(0, 0, 4, 4)]),
                              stop_event=stop)
    t = threading.Thread(target=lambda: out.setdefault("rc", service.run(Config(), src, parts)))
    t.start()
    for n in (1, 2, 3):                  # then the camera blocks: no frame comes
        cam.deliver()
        wait_until(lambda n=n: len(frames) == n)
    t0 = time.monotonic()
    stop.set()
    t.join(5.0)
    assert not t.is_alive() and time.monotonic() - t0 < 2.0 and out["rc"] == 0
    src.close()
    assert cam.closed and sorted(cam.released) == [0, 1, 2]   # every frame gave its buffer back
