"""Full detection on a worker thread (``detector.async_full``): the hand-over to tracking."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from djsmile.config import Config
from djsmile.errors import ConfigError
from djsmile.boxes import iou
from djsmile.detectors.haar import HaarDetector
from djsmile.faces import AsyncDetector, FaceFinder, resolve_async_full
from helpers import wait_until

W, H = 640, 480


class GatedDetector:
    """A real detector whose every detection waits for the test to ``release()`` it."""

    def __init__(self, real):
        self.real = real
        self.gate = threading.Semaphore(0)
        self.open = False
        self.calls = []          # the frames it was given (by their marker pixel)

    def clone(self):
        return self

    def release(self, n: int = 1):
        for _ in range(n):
            self.gate.release()

    wants_color = False

    def detect_faces(self, gray, color=None):
        self.calls.append(int(gray[0, 0]))
        if not self.open:
            assert self.gate.acquire(timeout=20), "the test never released the detection"
        return self.real.detect_faces(gray)


@pytest.fixture
def scene(_large_face):
    """``frame(i)``: 640x480 with the real face (~150 px) 7 px further each frame (back after frame 40)
    or none; and its true box."""
    face, w, bg = _large_face
    k = 150 / w
    patch = cv2.resize(face, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    det = HaarDetector(min_face_fraction=0.0, detect_width=0)
    ref = np.full((H, W), bg, np.uint8)
    ref[100:100 + patch.shape[0], 60:60 + patch.shape[1]] = patch
    (bx, by, bw, bh), = det.detect(ref)
    bx -= 60

    def frame(i, face_on=True):
        g = np.full((H, W), bg, np.uint8)
        x = 60 + 7 * (i if i <= 40 else max(0, 80 - i))
        if face_on:
            g[100:100 + patch.shape[0], x:x + patch.shape[1]] = patch
        g[0, 0] = i % 256   # a marker: which frame the detector was given
        return g, (x + bx, by, bw, bh)
    return frame


def test_a_late_detection_is_tracked_forward_and_merged_without_double_or_ghost_faces(scene):
    gated = GatedDetector(HaarDetector())
    finder = FaceFinder(gated, full_every=5, async_full="on")
    try:
        # frame 0: no face known yet -> posted to the worker; frames 1-3 go on while it runs
        for i in range(4):
            g, _ = scene(i)
            assert finder.find(g) == []
            if i == 0:
                wait_until(lambda: gated.calls == [0])
        gated.release()
        wait_until(lambda: finder.worker.detections >= 1)
        # frame 4: the face detected in frame 0 is used where it is now (28 px further), once
        g, truth = scene(4)
        found = finder.find(g)
        assert len(found) == 1
        assert iou(found[0], truth) > 0.8
        assert iou(found[0], truth) > iou(found[0], scene(0)[1]) + 0.1
        assert finder.last_was_full
        # later detections hand over to the tracked face: always exactly one face, on the truth
        gated.open = True
        gated.release(5)
        merged = 0
        for i in range(5, 40):
            g, truth = scene(i)
            found = finder.find(g)
            merged += finder.last_was_full
            assert len(found) == 1, f"frame {i}: {found}"
            assert iou(found[0], truth) > 0.6, f"frame {i}"
            if i % 5 == 0:  # let the worker finish between the scheduled detections
                wait_until(lambda: finder.worker.idle)
        assert merged >= 3
        # a detection of a frame with the face arrives after the person left: no ghost
        wait_until(lambda: finder.worker.idle)
        gated.open = False
        n0 = len(gated.calls)
        i = 40
        while len(gated.calls) == n0:
            g, _ = scene(i)
            assert len(finder.find(g)) == 1
            # a posted frame is taken by the worker (which then waits at the gate) before the next
            wait_until(lambda: len(gated.calls) > n0 or finder.worker.idle)
            i += 1
            assert i <= 60, "no detection posted within 20 frames"
        for j in range(3):
            g, _ = scene(i + j, face_on=False)
            assert finder.find(g) == []          # the face is dropped at once, as without the worker
        done = finder.worker.detections
        gated.release(1)                         # only the detection of the frame with the face
        wait_until(lambda: finder.worker.detections > done)
        for j in range(3, 8):
            g, _ = scene(i + j, face_on=False)
            assert finder.find(g) == [], "a face that left came back from a late detection"
            if j == 3:
                assert finder.last_was_full   # that detection was merged here, with no face left
    finally:
        gated.open = True
        gated.release(10)
        finder.close()


def test_newest_frame_wins_in_the_mailbox():
    gated = GatedDetector(HaarDetector())
    worker = AsyncDetector(gated)
    try:
        frames = [np.full((48, 64), v, np.uint8) for v in (1, 2, 3, 4)]
        worker.post(1, frames[0])
        wait_until(lambda: gated.calls == [1])
        for k in (2, 3, 4):       # the worker is busy: each replaces the last
            worker.post(k, frames[k - 1])
        assert worker.replaced == 2
        gated.open = True
        gated.release()
        wait_until(lambda: worker.detections == 2)
        assert gated.calls == [1, 4]
        tag, gray, boxes = worker.poll()
        assert tag == 4 and gray is frames[3] and boxes == []
        assert worker.poll() is None
    finally:
        worker.close()


def test_a_worker_fault_reaches_the_frame_loop():
    class Broken:
        wants_color = False

        def clone(self):
            return self

        def detect_faces(self, gray, color=None):
            raise RuntimeError("cascade exploded")
    finder = FaceFinder(Broken(), async_full="wait")
    try:
        with pytest.raises(RuntimeError, match="cascade exploded"):
            finder.find(np.zeros((48, 64), np.uint8))
    finally:
        finder.close()


def test_wait_mode_gives_the_boxes_of_the_frame_loop(scene):
    sync = FaceFinder(HaarDetector(), full_every=3)
    wait = FaceFinder(HaarDetector(), full_every=3, async_full="wait")
    try:
        for i in range(30):
            g, _ = scene(i, face_on=(i % 13) < 9)
            assert wait.find(g) == sync.find(g)
        assert wait.full_detections == sync.full_detections and wait.worker.detections == wait.full_detections
    finally:
        wait.close()


def test_async_full_setting():
    cfg = Config()
    assert cfg.detector.async_full == "auto"
    assert resolve_async_full("auto", paced=True) == "on"
    assert resolve_async_full("auto", paced=False) == "wait"
    assert resolve_async_full("off", paced=True) == "off"
    assert resolve_async_full("on", paced=False) == "on"
    with pytest.raises(ConfigError, match="detector.async_full"):
        cfg.set("detector.async_full", "sometimes")
    f = FaceFinder.from_config(cfg.detector, paced=True)
    try:
        assert f.async_full == "on"
    finally:
        f.close()


@pytest.mark.slow
def test_a_detection_still_running_at_exit_ends_before_the_process_does(tmp_path):
    # A daemon worker inside LiteRT / OpenCV when the interpreter tears down can abort the process (exit -6 after
    # Ctrl+C on a loaded machine); the worker's detection must end first, even past close()'s short wait.
    import subprocess
    import sys
    done = tmp_path / "done"
    code = f"""
import time, numpy as np
from djsmile.faces import FaceFinder
class Slow:
    wants_color = False
    def clone(self): return self
    def detect_faces(self, gray, color=None):
        time.sleep(2.0)
        open({str(done)!r}, "w").write("finished")
        return []
f = FaceFinder(Slow(), async_full="on")
f.find(np.zeros((48, 64), np.uint8))   # posts the frame; the worker starts its 2 s detection
time.sleep(0.2)
f.close()                               # waits 1 s, the detection is still running
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert done.read_text() == "finished"
