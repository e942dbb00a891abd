"""Find faces: OpenCV Haar cascade on a small gray frame, plus tracking.

:class:`HaarDetector` runs one detection on a whole gray frame (shrunk to
``detect_width``) and maps the boxes back to the frame's coordinates.
:class:`FaceFinder` adds the cheap path used between full detections:
search only a window around each face found last time. :class:`AsyncDetector`
runs the full detections on a worker thread (``detector.async_full``), so the
frame loop keeps tracking every frame while one runs.

Boxes are ``(x, y, w, h)`` tuples of ints in the analysis frame's pixels.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from .config import DetectorConfig as _D   # the [detector] defaults, written once there
from .errors import CascadeError, ConfigError

log = logging.getLogger(__name__)

CASCADE_NAME = "haarcascade_frontalface_default.xml"
CASCADE_DIRS = [
    getattr(getattr(cv2, "data", None), "haarcascades", ""),
    "/usr/share/opencv4/haarcascades",
    "/usr/share/opencv/haarcascades",
]


def find_cascade(path: str = "") -> str:
    """Return the Haar cascade XML to use: ``path`` if given, else the frontal-face default."""
    if path:
        if not os.path.isfile(path):
            raise CascadeError(f"detector.cascade = {path!r}: file not found")
        return path
    for d in CASCADE_DIRS:
        if d and os.path.isfile(os.path.join(d, CASCADE_NAME)):
            return os.path.join(d, CASCADE_NAME)
    raise CascadeError(f"no {CASCADE_NAME} found in {', '.join(d for d in CASCADE_DIRS if d)}; "
                      "install opencv-python-headless<5 or set detector.cascade")


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


#: ``detector.equalize`` values, and the CLAHE settings ("clahe")
EQUALIZE = ("none", "clahe", "hist", "auto")
CLAHE_CLIP = 2.0
CLAHE_TILES = (4, 4)
#: "auto": CLAHE only when the detection frame's mean gray level is below this (a dim frame); chosen on
#: val photos (training/dimlight.py): CLAHE on well-lit frames loses a few faces Haar finds without it
DIM_MEAN = 50.0


def equalize_frame(small: np.ndarray, method: str, clahe=None) -> np.ndarray:
    """The detection frame with its contrast equalized (``method`` from :data:`EQUALIZE`; "none": as it is).

    ``"clahe"``: contrast-limited adaptive histogram equalization, 4x4 tiles,
    clip limit 2 (dim, low-contrast frames get their faces' structure back
    without blowing up bright ones); ``"hist"``: one histogram for the whole frame;
    ``"auto"``: CLAHE when the frame is dim (mean below :data:`DIM_MEAN`), else as it is.
    """
    if method == "none":
        return small
    if method == "auto":
        if float(small.mean()) >= DIM_MEAN:
            return small
        method = "clahe"
    if method == "hist":
        return cv2.equalizeHist(small)
    if method == "clahe":
        return (clahe or cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_TILES)).apply(small)
    raise ValueError(f"unknown equalize method {method!r}; choose from {', '.join(EQUALIZE)}")


def _nms(boxes, thresh: float = 0.3):
    """Drop boxes overlapping a larger one by more than ``thresh`` IoU."""
    keep = []
    for b in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True):
        if all(iou(b, k) <= thresh for k in keep):
            keep.append(b)
    return keep


class HaarDetector:
    """One Haar frontal-face detection on a gray frame.

    :param scale_factor: pyramid step (1.1 = thorough and slow, 1.2+ = fast).
    :param min_neighbors: how many overlapping hits make a face.
    :param min_face_fraction: smallest face, as a fraction of the frame height.
    :param detect_width: shrink frames wider than this before detecting (0 = never).
    :param upscale: then enlarge the frame by this factor (finds faces smaller
        than the cascade's 24 px window, e.g. in small photos; costs about
        ``upscale**2`` the time).
    :param min_confidence: drop boxes whose Haar confidence (the cascade's
        last-stage score, OpenCV's ``levelWeights``) is below this; 0 = keep all.
        Weeds out the extra false faces that a low ``min_neighbors`` lets in.
    :param equalize: contrast equalization of the small detection frame only
        (the model still gets the original pixels): ``"none"``, ``"clahe"``
        (:func:`equalize_frame`; finds faces in dim, flat frames), ``"hist"``
        (global histogram equalization) or ``"auto"`` (CLAHE on dim frames only).
    """

    def __init__(self, scale_factor: float = _D.scale_factor, min_neighbors: int = _D.min_neighbors,
                 min_face_fraction: float = _D.min_face_fraction, detect_width: int = _D.detect_width,
                 cascade: str = _D.cascade, upscale: float = _D.upscale, min_confidence: float = _D.min_confidence,
                 equalize: str = _D.equalize):
        self.cascade_path = find_cascade(cascade)
        self.classifier = cv2.CascadeClassifier(self.cascade_path)   # cv2.CascadeClassifier (one per thread: see clone)
        if self.classifier.empty():
            raise CascadeError(f"detector.cascade: {self.cascade_path} is not a valid Haar cascade")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_face_fraction = min_face_fraction
        self.detect_width = detect_width
        self.upscale = float(upscale)
        self.min_confidence = float(min_confidence)
        if equalize not in EQUALIZE:
            raise ConfigError(f"config key detector.equalize = {equalize!r} is not valid: allowed are "
                              + ", ".join(repr(e) for e in EQUALIZE))
        self.equalize = equalize
        # cv2.CLAHE for "clahe"/"auto" (one per thread, like the cascade: see clone)
        self.clahe_op = (cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_TILES)
                         if equalize in ("clahe", "auto") else None)

    def clone(self) -> "HaarDetector":
        """The same settings with its own cascade (one cascade object is not shared between threads)."""
        twin = copy.copy(self)
        twin.classifier = cv2.CascadeClassifier(self.cascade_path)
        if self.clahe_op is not None:   # nor is a CLAHE object (it keeps working buffers)
            twin.clahe_op = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_TILES)
        return twin

    @classmethod
    def from_config(cls, det) -> "HaarDetector":
        return cls(scale_factor=det.scale_factor, min_neighbors=det.min_neighbors,
                   min_face_fraction=det.min_face_fraction, detect_width=det.detect_width,
                   cascade=det.cascade, upscale=det.upscale, min_confidence=det.min_confidence,
                   equalize=det.equalize)

    def _run(self, small: np.ndarray, min_px: int):
        min_px = max(20, int(min_px))  # the cascade's own window is 24 px
        if small.shape[0] < min_px or small.shape[1] < min_px:
            return []
        if self.min_confidence > 0:
            found, _levels, weights = self.classifier.detectMultiScale3(
                small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                minSize=(min_px, min_px), outputRejectLevels=True)
            weights = np.asarray(weights, np.float64).reshape(-1)
            found = [b for b, w in zip(found, weights) if w >= self.min_confidence]
        else:
            found = self.classifier.detectMultiScale(
                small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                minSize=(min_px, min_px))
        return [tuple(int(v) for v in b) for b in (found if len(found) else [])]

    def detect(self, gray: np.ndarray, frame_height: int | None = None):
        """Faces in ``gray`` (2-D uint8) as a list of boxes in ``gray``'s coordinates, largest first."""
        H, W = gray.shape[:2]
        scale = 1.0
        small = gray
        if self.detect_width and W > self.detect_width:
            scale = self.detect_width / W
        scale *= self.upscale
        if scale != 1.0:
            small = cv2.resize(gray, (max(1, int(round(W * scale))), max(1, int(round(H * scale)))),
                               interpolation=cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR)
        small = equalize_frame(small, self.equalize, self.clahe_op)
        ref_h = frame_height if frame_height else H
        min_px = self.min_face_fraction * ref_h * scale
        boxes = self._run(small, min_px)
        if scale != 1.0:
            inv = 1.0 / scale
            boxes = [(int(round(x * inv)), int(round(y * inv)), int(round(w * inv)), int(round(h * inv)))
                     for x, y, w, h in boxes]
        return sorted(_nms(boxes), key=lambda b: b[2] * b[3], reverse=True)


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

    def __init__(self, detector: HaarDetector, name: str = "face-detect", nice: int = 5):
        self.detector = detector.clone()   # its own cascade: the frame thread may use the other
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

    def post(self, tag, gray: np.ndarray) -> None:
        """Leave ``gray`` for the worker (replacing a frame it has not taken yet)."""
        with self._cond:
            if self._closed:
                raise RuntimeError("AsyncDetector is closed")
            if self._pending is not None:
                self.replaced += 1
            self._pending = (tag, gray)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def poll(self):
        """The newest finished detection ``(tag, gray, boxes)``, once; ``None`` if none is new."""
        with self._cond:
            res, self._result = self._result, None
        return self._unpack(res)

    def wait_result(self, timeout: float | None = None):
        """Wait until a detection has finished, then :meth:`poll` it (``None`` on timeout)."""
        with self._cond:
            self._cond.wait_for(lambda: self._result is not None or self._closed, timeout)
            res, self._result = self._result, None
        return self._unpack(res)

    def detect(self, gray: np.ndarray):
        """Detect on the worker and wait for it: the same boxes as ``detector.detect(gray)``."""
        tag = object()
        self.post(tag, gray)
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
        tag, gray, boxes, err = res
        if err is not None:
            raise err
        return tag, gray, boxes

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
                (tag, gray), self._pending = self._pending, None
                self._busy = True
            boxes, err = [], None
            try:
                boxes = self.detector.detect(gray)
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

    def __init__(self, detector: HaarDetector, full_every: int = 5, track_margin: float = _D.track_margin,
                 tracker: str = _D.tracker, template_width: int = 40, min_score: float = _D.track_min_score,
                 async_full: str = "off"):
        if async_full not in ("off", "wait", "on"):
            raise ValueError(f"async_full = {async_full!r}: 'off', 'wait' or 'on'")
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

    @classmethod
    def from_config(cls, det, paced: bool = False) -> "FaceFinder":
        """Built from the ``[detector]`` section; ``paced``: a camera, or a file played in real time."""
        return cls(HaarDetector.from_config(det), full_every=det.full_every,
                   track_margin=det.track_margin, tracker=det.tracker, min_score=det.track_min_score,
                   async_full=resolve_async_full(det.async_full, paced))

    def close(self) -> None:
        """Stop the detection worker, if any."""
        if self.worker is not None:
            self.worker.close()

    @property
    def _last(self) -> list:
        return [f.box for f in self._faces]

    def reset(self) -> None:
        self._faces = []
        self._since_full = 0
        self._recent.clear()
        self._ignore_upto = self._n

    def find(self, gray: np.ndarray):
        """Faces in this frame, largest first."""
        if self.async_full == "on":
            return self._find_async(gray)
        if self.full_every == 1 or not self._faces or self._since_full >= self.full_every - 1:
            return self._full(gray)
        faces = self._track_all(gray)
        self._since_full += 1
        self.last_was_full = False
        if not faces:  # lost everyone: look at the whole frame now
            return self._full(gray)
        self._faces = faces
        return [f.box for f in faces]

    # -- full detection ------------------------------------------------------
    def _full(self, gray: np.ndarray):
        dets = self.worker.detect(gray) if self.worker is not None else self.detector.detect(gray)
        self._since_full = 0
        self.last_was_full = True
        self.full_detections += 1
        faces = [self._new_face(gray, d) for d in dets]
        if self._keeps_missed():
            for f in self._faces:  # kept once through a full detection that missed it
                if f.missed_full >= 1 or any(iou(f.box, d) > 0.3 for d in dets):
                    continue
                box = self._match(gray, f)
                if box is not None and all(iou(box, d) <= 0.3 for d in dets):
                    faces.append(_Face(box, f.template, f.scale, f.missed_full + 1))
        faces.sort(key=lambda f: f.box[2] * f.box[3], reverse=True)
        self._faces = faces
        return [f.box for f in faces]

    def _keeps_missed(self) -> bool:
        return self.tracker == "template" and self.full_every > 1

    # -- full detection on the worker, tracking meanwhile ("on") ---------------
    def _find_async(self, gray: np.ndarray):
        self._n += 1
        n = self._n
        self._recent.append((n, gray))
        faces = self._track_all(gray) if self._faces else []
        self.last_was_full = False
        res = self.worker.poll()
        if res is not None and res[0] > self._ignore_upto:
            k, gray_k, dets = res
            fresh = self._forward(k, gray_k, dets, n)
            faces = self._merge(faces, fresh)
            self.last_was_full = True
            self.full_detections += 1
        self._faces = faces
        self._since_full += 1
        if not faces or self._since_full >= self.full_every:
            self.worker.post(n, gray)   # replaces a frame the worker has not taken yet
            self._since_full = 0
        return [f.box for f in faces]

    def _forward(self, k: int, gray_k: np.ndarray, dets, n: int) -> list:
        """Faces detected in frame ``k``, tracked frame by frame to frame ``n`` (lost = dropped)."""
        later = [(m, g) for m, g in self._recent if k < m <= n]
        out = []
        for d in dets:
            f = self._new_face(gray_k, d)
            for _m, g in later:
                box = self._haar_near(g, f.box) if self.tracker == "haar" else self._match(g, f)
                if box is None:
                    break
                f = _Face(box, f.template, f.scale, 0)
            else:
                out.append(f)
        return out

    def _merge(self, tracked: list, fresh: list) -> list:
        """A detection's faces (already at this frame) merged with the faces tracked to it."""
        faces = []
        for f in sorted(fresh, key=lambda f: f.box[2] * f.box[3], reverse=True):
            if all(iou(f.box, k.box) <= 0.3 for k in faces):  # two detections onto one face
                faces.append(f)
        if self._keeps_missed():
            for f in tracked:  # kept once through a full detection that missed it
                if f.missed_full >= 1 or any(iou(f.box, d.box) > 0.3 for d in faces):
                    continue
                faces.append(_Face(f.box, f.template, f.scale, f.missed_full + 1))
        faces.sort(key=lambda f: f.box[2] * f.box[3], reverse=True)
        return faces

    def _new_face(self, gray: np.ndarray, box) -> _Face:
        if self.tracker != "template":
            return _Face(tuple(box))
        x, y, w, h = box
        H, W = gray.shape[:2]
        x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
        scale = self.template_width / float(max(1, w))
        patch = gray[y0:y1, x0:x1]
        if patch.size == 0:
            return _Face(tuple(box))
        tw, th = max(1, int(round(patch.shape[1] * scale))), max(1, int(round(patch.shape[0] * scale)))
        tmpl = cv2.resize(patch, (tw, th), interpolation=cv2.INTER_AREA)
        if float(tmpl.std()) < 2.0:  # a flat patch cannot be matched
            tmpl = None
        return _Face((x0, y0, x1 - x0, y1 - y0), tmpl, scale)

    # -- tracking -----------------------------------------------------------
    def _track_all(self, gray: np.ndarray) -> list:
        if self.tracker == "haar":
            return [_Face(b) for b in self._track_haar(gray)]
        out = []
        for f in self._faces:
            box = self._match(gray, f)
            if box is not None:
                out.append(_Face(box, f.template, f.scale, f.missed_full))
        kept = []
        for f in sorted(out, key=lambda f: f.box[2] * f.box[3], reverse=True):
            if all(iou(f.box, k.box) <= 0.3 for k in kept):  # two tracks onto one face: keep one
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
        return sorted(_nms(found), key=lambda b: b[2] * b[3], reverse=True)

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
        bx, by, bw, bh = max(cand, key=lambda b: b[2] * b[3])
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
