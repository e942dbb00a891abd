"""Find faces: a detector back-end for full detections, tracking in between.

The back-ends (:mod:`djsmile.detectors`: BlazeFace, YuNet, Haar) run one
full-frame detection each. :class:`FaceFinder` adds the cheap path used
between full detections: search only a window around each face found last
time (template matching on the gray frame, the same for every back-end).
:class:`AsyncDetector` runs the full detections on a worker thread
(``detector.async_full``), so the frame loop keeps tracking every frame while
one runs.

Boxes are ``(x, y, w, h)`` tuples of ints in the analysis frame's pixels; the
last full detection's :class:`~djsmile.detectors.Detection` objects (with
scores and landmarks) are in :attr:`FaceFinder.detections`.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from .boxes import SAME_FACE_IOU, iou, largest_first, nms
from .config import DetectorConfig as _D   # the [detector] defaults, written once there
from .detectors import FaceDetector, make_detector
from .detectors.haar import HaarDetector
from .errors import ConfigError

log = logging.getLogger(__name__)

ASYNC_MODES = ("auto", "on", "off")


def resolve_async_full(setting: str, paced: bool) -> str:
    """What ``detector.async_full`` means for a source: ``'on'``, ``'wait'`` or ``'off'``.

    ``auto`` is ``'on'`` for cameras and sources played at their own rate
    (``paced``) and ``'wait'`` for a file or folder run flat out: the
    detection still runs on the worker, but the loop waits for it, so a
    recorded clip gives the same events as ``'off'`` however fast it runs.
    """
    if setting not in ASYNC_MODES:
        raise ConfigError(f"config key detector.async_full = {setting!r} is not valid: "
                          f"allowed are {', '.join(repr(m) for m in ASYNC_MODES)}")
    if setting == "auto":
        return "on" if paced else "wait"
    return setting


#: workers still alive; at interpreter exit each is closed and given time to finish its detection
_WORKERS: "weakref.WeakSet[AsyncDetector]" = weakref.WeakSet()
EXIT_JOIN_S = 10.0


@atexit.register
def _finish_workers() -> None:
    """Let a detection still running on a worker end before the interpreter tears down.

    A daemon thread inside LiteRT or OpenCV when the process exits can abort it ("terminate called without an
    active exception", exit -6 instead of 130 after Ctrl+C): on a loaded machine the niced worker may not have
    finished within :meth:`AsyncDetector.close`'s short wait.
    """
    for w in list(_WORKERS):
        w.close(timeout=EXIT_JOIN_S)


class AsyncDetector:
    """Full detections on a worker thread, fed through a one-slot mailbox.

    :meth:`post` leaves a frame for the worker; a frame still waiting is
    replaced by the newer one (counted in ``replaced``): the worker always
    takes the newest. :meth:`poll` returns the newest finished detection as
    ``(tag, gray, boxes)`` once, or ``None``; :meth:`detect` posts and waits
    (the deterministic path). The thread starts at the first post and ends
    with :meth:`close`; it runs ``nice`` levels below the frame loop, so on a
    busy machine the loop's tracked frames go first.
    """

    def __init__(self, detector: FaceDetector, name: str = "face-detect", nice: int = 5):
        self.detector = detector.clone()   # its own cascade / interpreter: the frame thread may use the other
        self.name = name
        self.nice = int(nice)
        self._cond = threading.Condition()
        self._pending = None     # (tag, gray) waiting for the worker
        self._result = None      # (tag, gray, boxes, error) newest finished, not yet polled
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.replaced = 0        # frames replaced in the mailbox before the worker took them
        self.detections = 0      # detections the worker finished

    @property
    def idle(self) -> bool:
        """Nothing waiting, nothing running."""
        with self._cond:
            return self._pending is None and not self._busy

    def post(self, tag, gray: np.ndarray, color: np.ndarray | None = None) -> None:
        """Leave ``gray`` (and the ``color`` frame, for back-ends that want it) for the worker
        (replacing a frame it has not taken yet)."""
        with self._cond:
            if self._closed:
                raise RuntimeError("AsyncDetector is closed")
            if self._pending is not None:
                self.replaced += 1
            self._pending = (tag, gray, color)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()
                _WORKERS.add(self)
            self._cond.notify_all()

    def poll(self):
        """The newest finished detection ``(tag, gray, detections)``, once; ``None`` if none is new."""
        with self._cond:
            res, self._result = self._result, None
        return self._unpack(res)

    def detect(self, gray: np.ndarray, color: np.ndarray | None = None):
        """Detect on the worker and wait for it: the same as ``detector.detect_faces(gray, color)``."""
        tag = object()
        self.post(tag, gray, color)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._result is not None or self._closed)
                if self._closed and self._result is None:
                    raise RuntimeError("AsyncDetector closed while detecting")
                res = self._result
                if res[0] is tag:
                    self._result = None
                    return self._unpack(res)[2]
                self._result = None  # an older frame's result: not the one waited for

    @staticmethod
    def _unpack(res):
        if res is None:
            return None
        tag, gray, dets, err = res
        if err is not None:
            raise err
        return tag, gray, dets

    def _work(self) -> None:
        if self.nice:
            try:  # Linux: a thread is a task; where cores are short, the frame loop goes first
                tid = threading.get_native_id()
                os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + self.nice)
            except (AttributeError, OSError):
                pass
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closed)
                if self._closed:
                    return
                (tag, gray, color), self._pending = self._pending, None
                self._busy = True
            boxes, err = [], None
            try:
                boxes = self.detector.detect_faces(gray, color)
            except Exception as e:  # handed to the frame loop, which logs it like any frame fault
                err = e
            with self._cond:
                self._busy = False
                self._result = (tag, gray, boxes, err)
                self.detections += 1
                self._cond.notify_all()

    def close(self, timeout: float = 1.0) -> None:
        """Stop the worker (a detection running finishes in the background)."""
        with self._cond:
            self._closed = True
            self._pending = None
            self._cond.notify_all()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)


@dataclass
class _Face:
    """A face being followed: its box and the template taken at its last full detection."""
    box: tuple
    template: np.ndarray | None = None   # gray patch of the face, ``template_width`` wide
    scale: float = 1.0                   # template pixels per frame pixel
    missed_full: int = 0                 # full detections in a row that did not find it
    landmarks: dict | None = None        # the detection's eyes / mouth (frame pixels), moved with the box since

    def moved(self, box, missed_full: int | None = None) -> "_Face":
        """The same face at ``box`` (tracked): its landmarks move and scale with the box."""
        return _Face(tuple(box), self.template, self.scale,
                     self.missed_full if missed_full is None else missed_full,
                     move_landmarks(self.landmarks, self.box, box))


def move_landmarks(landmarks, old_box, new_box):
    """Landmarks carried from ``old_box`` to ``new_box`` (the box's offset, and its scale if its size changed)."""
    if not landmarks:
        return landmarks
    ox, oy, ow, oh = (float(v) for v in old_box)
    nx, ny, nw, nh = (float(v) for v in new_box)
    sx, sy = (nw / ow if ow > 0 else 1.0), (nh / oh if oh > 0 else 1.0)
    return {k: (nx + (x - ox) * sx, ny + (y - oy) * sy) for k, (x, y) in landmarks.items()}


class FaceFinder:
    """Full detection every ``full_every`` frames; in between, search near the last faces.

    Two ways to search near a face (``tracker``):

    * ``"template"`` (default): the face's patch from its last full detection,
      shrunk to ``template_width`` px, is matched (normalised cross-correlation,
      ``cv2.matchTemplate``) in a window ``track_margin`` face sizes around the
      last box, shrunk the same way; sub-pixel peak. About 0.15 ms a face, and the
      box keeps the detector's size and alignment (what the model was trained on).
      A match scoring below ``min_score`` loses the face (it walked away or turned).
    * ``"haar"``: the Haar cascade on the same window for faces 0.7-1.4x the
      last size. Follows size changes, but costs 2-8 ms a face.

    A face lost by tracking comes back at the next full detection (at once, if
    no face is left). A face that one full detection misses but that tracking
    still finds is kept once (Haar misses single frames), so the loop does not
    see it vanish for a frame.

    Where the full detection runs (``async_full``):

    * ``"off"``: in :meth:`find`, on the frame that asks for it (that frame
      costs 20-30x a tracked one);
    * ``"wait"``: on an :class:`AsyncDetector` worker, and :meth:`find` waits
      for it: the same boxes as ``"off"`` (a recorded clip run flat out);
    * ``"on"``: on the worker while :meth:`find` goes on tracking. The frame
      it was given is kept; when its boxes arrive a few frames later, each is
      tracked forward frame by frame to the current one (lost on the way =
      dropped, so a person who left does not come back as a ghost), then
      merged as a full detection merges: a detected face replaces the tracked
      face it overlaps, a tracked face the detection missed is kept once. With
      no face to track, the newest frame is posted every frame.
    """

    RECENT = 12   # frames kept to track a late detection forward ("on")

    def __init__(self, detector: FaceDetector, full_every: int = 5, track_margin: float = _D.track_margin,
                 tracker: str = _D.tracker, template_width: int = 40, min_score: float = _D.track_min_score,
                 async_full: str = "off"):
        if async_full not in ("off", "wait", "on"):
            raise ValueError(f"async_full = {async_full!r}: 'off', 'wait' or 'on'")
        if tracker == "haar" and not isinstance(detector, HaarDetector):
            raise ConfigError("detector.tracker = 'haar' needs detector.backend = 'haar'")
        self.async_full = async_full
        self.worker = AsyncDetector(detector) if async_full != "off" else None
        self._n = 0                  # frames seen ("on": the worker's tags)
        self._ignore_upto = 0        # "on": results for frames up to this are stale (reset)
        self._recent: deque = deque(maxlen=self.RECENT)
        self.detector = detector
        self.full_every = max(1, int(full_every))
        self.track_margin = float(track_margin)
        self.tracker = tracker
        self.template_width = max(8, int(template_width))
        self.min_score = float(min_score)
        self._faces: list[_Face] = []
        self._since_full = 0
        self.last_was_full = False
        self.full_detections = 0   # how many full-frame detections ran (bench and tests read it)
        self.detections: list = []  # the last full detection's Detection objects (score, landmarks)

    @classmethod
    def from_config(cls, det, paced: bool = False) -> "FaceFinder":
        """Built from the ``[detector]`` section; ``paced``: a camera, or a file played in real time."""
        return cls(make_detector(det), full_every=det.full_every,
                   track_margin=det.track_margin, tracker=det.tracker, min_score=det.track_min_score,
                   async_full=resolve_async_full(det.async_full, paced))

    def close(self) -> None:
        """Stop the detection worker, if any."""
        if self.worker is not None:
            self.worker.close()

    @property
    def landmarks(self) -> list:
        """Per box :meth:`find` returned last: the detection's landmarks moved with the box by tracking since
        (None for a back-end without landmarks). What an eye-aligned smile model is cropped on."""
        return [f.landmarks for f in self._faces]

    @property
    def _last(self) -> list:
        return [f.box for f in self._faces]

    def reset(self) -> None:
        self._faces = []
        self._since_full = 0
        self._recent.clear()
        self._ignore_upto = self._n

    def find(self, gray: np.ndarray, color=None):
        """Faces in this frame, largest first.

        ``color``: the BGR frame at the same size, or a function returning it
        (asked for only when a full detection by a colour back-end runs).
        """
        if self.async_full == "on":
            return self._find_async(gray, color)
        if self.full_every == 1 or not self._faces or self._since_full >= self.full_every - 1:
            return self._full(gray, color)
        faces = self._track_all(gray)
        self._since_full += 1
        self.last_was_full = False
        if not faces:  # lost everyone: look at the whole frame now
            return self._full(gray, color)
        self._faces = faces
        return [f.box for f in faces]

    def _color_for(self, color):
        """The colour frame if the back-end wants it (calling a lazy ``color``), else None."""
        if not self.detector.wants_color or color is None:
            return None
        return color() if callable(color) else color

    # -- full detection ------------------------------------------------------
    def _full(self, gray: np.ndarray, color=None):
        c = self._color_for(color)
        dets = self.worker.detect(gray, c) if self.worker is not None else self.detector.detect_faces(gray, c)
        self.detections = list(dets)
        boxes = [d.box for d in dets]
        self._since_full = 0
        self.last_was_full = True
        self.full_detections += 1
        faces = [self._new_face(gray, d.box, d.landmarks) for d in dets]
        if self._keeps_missed():
            for f in self._faces:  # kept once through a full detection that missed it
                if f.missed_full >= 1 or any(iou(f.box, b) > SAME_FACE_IOU for b in boxes):
                    continue
                box = self._match(gray, f)
                if box is not None and all(iou(box, b) <= SAME_FACE_IOU for b in boxes):
                    faces.append(f.moved(box, f.missed_full + 1))
        faces = largest_first(faces, key=lambda f: f.box)
        self._faces = faces
        return [f.box for f in faces]

    def _keeps_missed(self) -> bool:
        return self.tracker == "template" and self.full_every > 1

    # -- full detection on the worker, tracking meanwhile ("on") ---------------
    def _find_async(self, gray: np.ndarray, color=None):
        self._n += 1
        n = self._n
        self._recent.append((n, gray))
        faces = self._track_all(gray) if self._faces else []
        self.last_was_full = False
        res = self.worker.poll()
        if res is not None and res[0] > self._ignore_upto:
            k, gray_k, dets = res
            self.detections = list(dets)
            fresh = self._forward(k, gray_k, dets, n)
            faces = self._merge(faces, fresh)
            self.last_was_full = True
            self.full_detections += 1
        self._faces = faces
        self._since_full += 1
        if not faces or self._since_full >= self.full_every:
            self.worker.post(n, gray, self._color_for(color))   # replaces a frame the worker has not taken yet
            self._since_full = 0
        return [f.box for f in faces]

    def _forward(self, k: int, gray_k: np.ndarray, dets, n: int) -> list:
        """Faces detected in frame ``k``, tracked frame by frame to frame ``n`` (lost = dropped)."""
        later = [(m, g) for m, g in self._recent if k < m <= n]
        out = []
        for d in dets:
            f = self._new_face(gray_k, d.box, d.landmarks)
            for _m, g in later:
                box = self._haar_near(g, f.box) if self.tracker == "haar" else self._match(g, f)
                if box is None:
                    break
                f = f.moved(box, 0)
            else:
                out.append(f)
        return out

    def _merge(self, tracked: list, fresh: list) -> list:
        """A detection's faces (already at this frame) merged with the faces tracked to it."""
        faces = []
        for f in largest_first(fresh, key=lambda f: f.box):
            if all(iou(f.box, k.box) <= SAME_FACE_IOU for k in faces):  # two detections onto one face
                faces.append(f)
        if self._keeps_missed():
            for f in tracked:  # kept once through a full detection that missed it
                if f.missed_full >= 1 or any(iou(f.box, d.box) > SAME_FACE_IOU for d in faces):
                    continue
                faces.append(f.moved(f.box, f.missed_full + 1))
        faces = largest_first(faces, key=lambda f: f.box)
        return faces

    def _new_face(self, gray: np.ndarray, box, landmarks=None) -> _Face:
        landmarks = dict(landmarks) if landmarks else None
        if self.tracker != "template":
            return _Face(tuple(box), landmarks=landmarks)
        x, y, w, h = box
        H, W = gray.shape[:2]
        x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
        scale = self.template_width / float(max(1, w))
        patch = gray[y0:y1, x0:x1]
        if patch.size == 0:
            return _Face(tuple(box), landmarks=landmarks)
        tw, th = max(1, int(round(patch.shape[1] * scale))), max(1, int(round(patch.shape[0] * scale)))
        tmpl = cv2.resize(patch, (tw, th), interpolation=cv2.INTER_AREA)
        if float(tmpl.std()) < 2.0:  # a flat patch cannot be matched
            tmpl = None
        return _Face((x0, y0, x1 - x0, y1 - y0), tmpl, scale, 0, landmarks)

    # -- tracking -----------------------------------------------------------
    def _track_all(self, gray: np.ndarray) -> list:
        if self.tracker == "haar":
            return [_Face(b) for b in self._track_haar(gray)]
        out = []
        for f in self._faces:
            box = self._match(gray, f)
            if box is not None:
                out.append(f.moved(box))
        kept = []
        for f in largest_first(out, key=lambda f: f.box):
            if all(iou(f.box, k.box) <= SAME_FACE_IOU for k in kept):  # two tracks onto one face: keep one
                kept.append(f)
        return kept

    def _match(self, gray: np.ndarray, face: _Face):
        """The face's new box near its last one by template matching, or None if lost."""
        if face.template is None:
            return None
        H, W = gray.shape[:2]
        x, y, w, h = face.box
        m = self.track_margin
        x0, y0 = max(0, int(x - m * w)), max(0, int(y - m * h))
        x1, y1 = min(W, int(round(x + w + m * w))), min(H, int(round(y + h + m * h)))
        s = face.scale
        th, tw = face.template.shape
        rw, rh = int(round((x1 - x0) * s)), int(round((y1 - y0) * s))
        if rw < tw or rh < th:
            return None
        roi = cv2.resize(gray[y0:y1, x0:x1], (rw, rh), interpolation=cv2.INTER_AREA)
        res = cv2.matchTemplate(roi, face.template, cv2.TM_CCOEFF_NORMED)
        _, score, _, (lx, ly) = cv2.minMaxLoc(res)
        if not np.isfinite(score) or score < self.min_score:
            return None
        fx, fy = lx + _subpixel(res, lx, ly, 1), ly + _subpixel(res, lx, ly, 0)
        # map back with the ROI's exact scale (its size was rounded)
        sx, sy = rw / float(x1 - x0), rh / float(y1 - y0)
        nx = int(round(x0 + fx / sx))
        ny = int(round(y0 + fy / sy))
        nx = min(max(0, nx), W - w)
        ny = min(max(0, ny), H - h)
        return (nx, ny, w, h)

    def _track_haar(self, gray: np.ndarray):
        found = [b for b in (self._haar_near(gray, box) for box in self._last) if b is not None]
        return nms(found)

    def _haar_near(self, gray: np.ndarray, box):
        """The largest Haar face 0.7-1.4x the size of ``box`` in a window around it, or None."""
        H, W = gray.shape[:2]
        x, y, w, h = box
        m = self.track_margin
        x0, y0 = max(0, int(x - m * w)), max(0, int(y - m * h))
        x1, y1 = min(W, int(x + w + m * w)), min(H, int(y + h + m * h))
        roi = gray[y0:y1, x0:x1]
        if roi.size == 0:
            return None
        # faces between 0.7x and 1.4x the last size: a fast, narrow search
        det = self.detector
        rh, rw = roi.shape
        scale = 1.0
        target = 80.0  # detect tracked faces at about 80 px: plenty for Haar
        if w > target:
            scale = target / w
            roi = cv2.resize(roi, (max(1, int(rw * scale)), max(1, int(rh * scale))),
                             interpolation=cv2.INTER_AREA)
        min_px = 0.7 * w * scale
        cand = det.classifier.detectMultiScale(
            roi, scaleFactor=det.scale_factor, minNeighbors=det.min_neighbors,
            minSize=(max(20, int(min_px)),) * 2, maxSize=(int(1.4 * w * scale) + 1,) * 2)
        if not len(cand):
            return None
        bx, by, bw, bh = largest_first(cand)[0]
        inv = 1.0 / scale
        return (int(x0 + bx * inv), int(y0 + by * inv), int(bw * inv), int(bh * inv))


def _subpixel(res: np.ndarray, x: int, y: int, axis: int) -> float:
    """Parabola through the peak and its two neighbours along ``axis`` (0 = rows): the offset."""
    if axis == 1:
        if x <= 0 or x >= res.shape[1] - 1:
            return 0.0
        a, b, c = res[y, x - 1], res[y, x], res[y, x + 1]
    else:
        if y <= 0 or y >= res.shape[0] - 1:
            return 0.0
        a, b, c = res[y - 1, x], res[y, x], res[y + 1, x]
    d = a - 2 * b + c
    if d >= 0:
        return 0.0
    return float(np.clip(0.5 * (a - c) / d, -0.5, 0.5))
