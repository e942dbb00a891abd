"""When does a smile fire the shutter? Per-face state over stream time.

Pure logic: no clocks, no I/O. Each call to :meth:`Trigger.update` gets one
frame's face boxes, their raw ``p_smile`` and the frame's stream timestamp,
and returns a :class:`TriggerResult`.

For each face (matched to the last frame's faces by box overlap, IoU):

1. **smoothing**: ``p_smooth = a * p + (1 - a) * p_smooth`` (``trigger.smoothing`` = a);
2. **hysteresis**: the face starts smiling when ``p_smooth >= on`` and stops
   when ``p_smooth < off`` (``off <= on``), so a score hovering at the
   threshold does not flicker; it also stops when its smile has clearly ended
   *relative to itself*: ``p_smooth`` falls ``trigger.rearm_drop`` of the way
   from the smile's peak down to ``off`` and stays there ``trigger.rearm_frames``
   frames (a resting face that the model scores half-smiling, 0.46-0.75 with
   off at 0.46, would otherwise stay "smiling" for ever and never re-arm);
3. **hold**: ``frames_smiling`` counts the consecutive frames it has smiled.

The **policy** decides whose smile counts: ``largest`` (the biggest face in
the frame), ``any`` face, or ``all`` faces (a group photo: every face being
tracked must hold its smile). The shot fires when the policy's smile has held
``hold_frames`` frames, the **cooldown** (stream seconds since the last shot)
is over and, with ``trigger.rearm``, the previous smile has ended first — so a
long smile gives one photo, not one every cooldown. A new smile that holds
while the cooldown runs is *held back*: ``TriggerResult.held_back`` on its
first such frame, counted in :attr:`Trigger.held_back` unless it fires once
the cooldown is over. Each image of a folder is a new scene (:meth:`Trigger.new_scene`):
the cooldown does not carry over to it unless ``trigger.cooldown_across_images``.

Latency: a face whose raw score jumps clearly above ``on`` is smiling on its
first frame (or, through the smoothing, its second) and fires ``hold_frames``
frames later, i.e. at most ``hold_frames + 1`` frames from the first frame of
the smile.

Sensitivity presets map to thresholds relative to the model's own threshold
``thr`` (from its metadata): ``slight`` on = 0.7 thr, ``normal`` on = thr,
``big`` on = thr + 0.5 (1 - thr); off = 0.7 on. ``trigger.on_threshold`` /
``trigger.off_threshold`` (non-zero) override them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .boxes import iou, largest_first

log = logging.getLogger(__name__)

#: sensitivity preset -> function of the model threshold giving the "on" threshold
PRESETS = {
    "slight": lambda thr: 0.7 * thr,
    "normal": lambda thr: thr,
    "big": lambda thr: thr + 0.5 * (1.0 - thr),
}
#: off threshold as a fraction of on (the hysteresis gap) when not set explicitly
OFF_RATIO = 0.7


def thresholds(tcfg, model_threshold: float = 0.5) -> tuple[float, float]:
    """``(on, off)`` thresholds for a trigger config and a model threshold."""
    thr = min(max(float(model_threshold), 0.01), 0.99)
    on = PRESETS[tcfg.sensitivity](thr) if tcfg.sensitivity in PRESETS else thr
    if tcfg.on_threshold:
        on = float(tcfg.on_threshold)
    on = min(max(on, 0.01), 0.999)
    off = float(tcfg.off_threshold) if tcfg.off_threshold else OFF_RATIO * on
    if off > on:
        log.warning("trigger.off_threshold %.3f is above the on threshold %.3f; using %.3f",
                    off, on, on)
        off = on
    return on, off


def policy_faces(policy: str, seen: list, tracked: list | None = None, hold_frames: int = 1) -> list:
    """The faces whose smile counts under ``policy`` (``seen``: this frame's faces, largest first).

    ``largest``: the biggest face; ``any``: the faces that held their smile
    ``hold_frames`` frames, else the biggest; ``all``: every face being
    tracked (``tracked``, a face missed for a frame still counts; default ``seen``).
    Works on anything with a ``frames_smiling`` attribute (tracks, :class:`TrackedFace`).
    """
    if not seen:
        return []
    if policy == "largest":
        return [seen[0]]
    if policy == "any":
        return [f for f in seen if f.frames_smiling >= hold_frames] or [seen[0]]
    return list(seen if tracked is None else tracked)


@dataclass
class TrackedFace:
    """One face in one frame, with its state carried over from earlier frames."""
    id: int
    box: tuple
    p_smile: float           # raw model output this frame
    p_smooth: float          # smoothed
    smiling: bool            # after hysteresis
    frames_smiling: int      # consecutive frames smiling (0 when not)

    def to_json(self, brief: bool = False) -> dict:
        """The face as every output writes it (photo sidecar, live view):
        ``{"id", "box": [x, y, w, h], "p_smile", "p_smooth", "smiling", "frames_smiling"}``;
        ``brief``: ``{"box", "p_smile"}`` only (an ``events.jsonl`` line and the MQTT ``event``)."""
        box, p = [int(v) for v in self.box], round(float(self.p_smile), 4)
        if brief:
            return {"box": box, "p_smile": p}
        return {"id": int(self.id), "box": box, "p_smile": p, "p_smooth": round(float(self.p_smooth), 4),
                "smiling": bool(self.smiling), "frames_smiling": int(self.frames_smiling)}


@dataclass
class TriggerResult:
    """One frame's decision: the one truth the outputs read (none recomputes whose face counts)."""
    frame: int
    t: float
    fired: bool               # True on the frame the shot fires
    state: str                # "watching" | "smiling" | "cooldown"
    faces: list = field(default_factory=list)   # TrackedFace, largest first
    holding: bool = False     # the policy's smile is currently held (LED "hold" mode follows this)
    held_back: bool = False   # True on the frame the cooldown first holds back a new smile
    cooldown_left: float = 0.0  # stream seconds of cooldown left (0 when none runs)
    smiling: bool = False     # the policy's smile this frame (before the hold): what "smiling" means everywhere
    face: TrackedFace | None = None  # the face whose smile the policy looks at (see :func:`chosen_face`)


def chosen_face(policy: str, faces: list):
    """The face the policy looks at (``faces`` largest first): ``largest`` the biggest, ``any`` the
    one smiling most (highest ``p_smooth``), ``all`` the one smiling least. None without faces."""
    if not faces:
        return None
    if policy == "any":
        return max(faces, key=lambda f: f.p_smooth)
    if policy == "all":
        return min(faces, key=lambda f: f.p_smooth)
    return faces[0]


@dataclass
class _Track:
    id: int
    box: tuple
    p_smile: float = 0.0
    p_smooth: float = 0.0
    smiling: bool = False
    frames_smiling: int = 0
    missed: int = 0
    peak: float = 0.0      # highest p_smooth of the current smile
    below: int = 0         # frames in a row under the smile's end level (rearm_drop)

    def view(self) -> TrackedFace:
        return TrackedFace(self.id, tuple(int(v) for v in self.box), float(self.p_smile),
                           float(self.p_smooth), self.smiling, self.frames_smiling)


class Trigger:
    """Smoothing, hysteresis, hold, cooldown and policy over a stream of frames.

    >>> trig = Trigger(cfg.trigger, model.threshold)
    >>> res = trig.update(frame.index, frame.t, boxes, probs)
    >>> if res.fired: take_photo()
    """

    def __init__(self, tcfg, model_threshold: float = 0.5):
        self.cfg = tcfg
        self.on_threshold, self.off_threshold = thresholds(tcfg, model_threshold)
        self.alpha = float(tcfg.smoothing)
        self.hold_frames = max(1, int(tcfg.hold_frames))
        self.cooldown_s = float(tcfg.cooldown_s)
        self.policy = tcfg.policy
        self.match_iou = float(tcfg.match_iou)
        self.forget_frames = int(tcfg.forget_frames)
        self.rearm = bool(tcfg.rearm)
        self.rearm_drop = float(tcfg.rearm_drop)
        self.rearm_frames = max(1, int(tcfg.rearm_frames))
        self.cooldown_across_images = bool(tcfg.cooldown_across_images)
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._last_fire_t: float | None = None
        self._armed = True
        self.shots = 0
        self._held_back_done = 0     # smiles the cooldown held back that ended without a shot
        self._holding_back = False   # the current smile is being held back by the cooldown

    @property
    def held_back(self) -> int:
        """Smiles the cooldown held back (a new smile held ``hold_frames`` during the cooldown,
        not fired; one still held back at this moment counts; one that fired once the cooldown
        ended does not)."""
        return self._held_back_done + int(self._holding_back)

    def _end_held_back(self) -> None:
        if self._holding_back:
            self._held_back_done += 1
            self._holding_back = False

    def describe(self) -> str:
        return (f"policy={self.policy} on={self.on_threshold:.3f} off={self.off_threshold:.3f} "
                f"hold={self.hold_frames} frames cooldown={self.cooldown_s:g}s")

    def new_scene(self) -> None:
        """A new scene (the next image of a folder): forget the faces, and end the cooldown
        (each image may fire) unless ``trigger.cooldown_across_images``."""
        self._tracks = []
        self._end_held_back()
        if not self.cooldown_across_images:
            self._last_fire_t = None

    def reset(self) -> None:
        self._tracks = []
        self._last_fire_t = None
        self._armed = True
        self._held_back_done = 0
        self._holding_back = False

    # -- matching ------------------------------------------------------------
    def _match(self, boxes) -> list:
        """Tracks for ``boxes`` (same order): greedy by IoU, new tracks for the unmatched."""
        pairs = []
        for bi, b in enumerate(boxes):
            for ti, tr in enumerate(self._tracks):
                o = iou(b, tr.box)
                if o >= self.match_iou and o > 0.0:
                    pairs.append((o, bi, ti))
        pairs.sort(key=lambda p: p[0], reverse=True)
        got: list = [None] * len(boxes)
        used = set()
        for _o, bi, ti in pairs:
            if got[bi] is None and ti not in used:
                got[bi] = self._tracks[ti]
                used.add(ti)
        for ti, tr in enumerate(self._tracks):
            if ti not in used:
                tr.missed += 1
        self._tracks = [tr for ti, tr in enumerate(self._tracks)
                        if ti in used or tr.missed <= self.forget_frames]
        for bi, b in enumerate(boxes):
            if got[bi] is None:
                tr = _Track(self._next_id, tuple(b))
                self._next_id += 1
                tr.missed = -1  # marks "new": its first p_smooth is the raw p
                self._tracks.append(tr)
                got[bi] = tr
        return got

    def _smile_ended(self, tr: _Track) -> bool:
        """Has this smiling face's smile ended relative to its own peak (``rearm_drop``)?"""
        if self.rearm_drop <= 0.0:
            return False
        tr.peak = max(tr.peak, tr.p_smooth)
        level = tr.peak - self.rearm_drop * (tr.peak - self.off_threshold)
        tr.below = tr.below + 1 if tr.p_smooth < level else 0
        if tr.below >= self.rearm_frames:
            log.debug("face #%d: smile ended (p %.2f, %d frames under %.2f, peak %.2f)",
                      tr.id, tr.p_smooth, tr.below, level, tr.peak)
            return True
        return False

    # -- per frame ---------------------------------------------------------
    def update(self, frame_index: int, t: float, boxes, probs) -> TriggerResult:
        boxes = [tuple(int(v) for v in b) for b in boxes]
        probs = [float(p) for p in probs]
        if len(boxes) != len(probs):
            raise ValueError(f"{len(boxes)} boxes but {len(probs)} probabilities")
        order = largest_first(range(len(boxes)), key=lambda i: boxes[i])
        boxes = [boxes[i] for i in order]
        probs = [probs[i] for i in order]

        seen = self._match(boxes)
        for tr, b, p in zip(seen, boxes, probs):
            if tr.missed == -1:
                tr.p_smooth = p
            else:
                tr.p_smooth = self.alpha * p + (1.0 - self.alpha) * tr.p_smooth
            tr.missed = 0
            tr.box = b
            tr.p_smile = p
            if tr.smiling:
                tr.smiling = tr.p_smooth >= self.off_threshold and not self._smile_ended(tr)
            else:
                tr.smiling = tr.p_smooth >= self.on_threshold
                tr.peak, tr.below = tr.p_smooth, 0
            tr.frames_smiling = tr.frames_smiling + 1 if tr.smiling else 0

        group = policy_faces(self.policy, seen, self._tracks, self.hold_frames)
        held = bool(group) and all(tr.frames_smiling >= self.hold_frames for tr in group)
        smiling = bool(group) and (any(tr.smiling for tr in seen) if self.policy == "any"
                                   else all(tr.smiling for tr in group))

        in_cooldown = False
        cooldown_left = 0.0
        if self._last_fire_t is not None:
            dt = t - self._last_fire_t
            in_cooldown = 0.0 <= dt < self.cooldown_s  # stream time went back: cooldown over
            cooldown_left = self.cooldown_s - dt if in_cooldown else 0.0
        if group and not held:  # the smile ended (a face lost for a frame or two is not an end)
            self._armed = True
            self._end_held_back()

        fired = False
        if held and not in_cooldown and (self._armed or not self.rearm):
            fired = True
            self._last_fire_t = t
            self._armed = False
            in_cooldown = self.cooldown_s > 0
            self.shots += 1
            self._holding_back = False  # a smile held back until the cooldown ended is not lost
            cooldown_left = self.cooldown_s
            log.debug("fire at frame %d t=%.3f: %s", frame_index, t,
                      ", ".join(f"#{tr.id} p={tr.p_smooth:.2f}" for tr in group))

        held_back = False
        if held and in_cooldown and not fired and self._armed and not self._holding_back:
            self._holding_back = held_back = True  # a new smile that would fire but for the cooldown

        state = "cooldown" if in_cooldown else ("smiling" if smiling else "watching")
        faces = [tr.view() for tr in seen]
        return TriggerResult(frame=int(frame_index), t=float(t), fired=fired, state=state,
                             faces=faces, holding=held, held_back=held_back,
                             cooldown_left=float(cooldown_left), smiling=smiling,
                             face=chosen_face(self.policy, faces))
