"""Calibration's logic: the trigger's thresholds learnt from p_smile samples of two phases.

Pure logic; no camera, no clock, no file (that is :mod:`.file`). A
:class:`Collector` gets each frame's stream time and the trigger's faces; the
first ``seconds`` of stream time are the straight face (``neutral``), the
next ``seconds`` the smile. Per frame it keeps the ``p_smile`` of the face
the trigger's policy picks (:func:`djsmile.trigger.policy_faces`); a frame
with no face or several faces is skipped and counted.

:func:`summarize` turns the two phases into the file's content, or refuses
(:class:`CalibrationRefused`, exit 65) when a phase has too few face frames
(< 50 %) or the distributions do not separate (smile p10 <= neutral p90 + 0.05).
Thresholds sit between the distributions: ``on`` at the midpoint of neutral
p90 and smile p10, ``off`` halfway between neutral p90 and ``on`` (the
hysteresis gap kept), both clamped to [0.2, 0.9].
"""

from __future__ import annotations

from datetime import datetime, timezone

from ..errors import DataError
from ..stats import percentiles
from ..trigger import policy_faces

PHASES = ("neutral", "smile")
PROMPTS = {
    "neutral": "look at the camera with a straight face",
    "smile": "now smile",
}
REFUSAL = "could not tell your smile from your straight face"   # how a refusal for overlap starts
PHASE_NAMES = {"neutral": "straight-face", "smile": "smile"}
#: p_smile on the model's scale: a straight face at or above it looks like a smile, a smile below it like none
MIDDLE = 0.5
DEFAULT_SECONDS = 5.0
MIN_FACE_FRACTION = 0.5    # of a phase's frames must show exactly one face
MIN_SEPARATION = 0.05      # smile p10 must exceed neutral p90 by more than this
CLAMP = (0.2, 0.9)


class CalibrationRefused(DataError):
    """The two phases could not be told apart (or one showed too few faces). Exit code 65.

    The message names the phase that failed, why, and what to do; ``detail`` has the figures."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail or message


class Collector:
    """Per-frame ``p_smile`` samples for the two phases, in stream time.

    >>> col = Collector(seconds=5)
    >>> phase = col.add(frame.t, result.faces)   # "neutral", "smile" or "done"
    """

    def __init__(self, seconds: float = DEFAULT_SECONDS, policy: str = "largest"):
        if not seconds > 0:
            raise ValueError(f"seconds must be positive, got {seconds!r}")
        self.seconds = float(seconds)
        self.policy = policy
        self.t0: float | None = None
        self.samples = {ph: [] for ph in PHASES}
        self.skipped = {ph: 0 for ph in PHASES}
        self.several = {ph: 0 for ph in PHASES}   # of the skipped: frames with more than one face

    def phase_at(self, t: float) -> str:
        if self.t0 is None:
            return PHASES[0]
        dt = t - self.t0
        if dt < self.seconds:
            return "neutral"
        if dt < 2 * self.seconds:
            return "smile"
        return "done"

    def add(self, t: float, faces) -> str:
        """One frame: ``faces`` as the trigger reports them (largest first, each with ``p_smile``).

        Returns the phase the frame belongs to; a frame of the ``done`` phase is not kept.
        """
        if self.t0 is None:
            self.t0 = float(t)
        phase = self.phase_at(float(t))
        if phase == "done":
            return phase
        faces = list(faces)
        if len(faces) != 1:
            self.skipped[phase] += 1
            self.several[phase] += len(faces) > 1
            return phase
        face = policy_faces(self.policy, faces)[0]
        self.samples[phase].append(float(face.p_smile))
        return phase

    def frames(self, phase: str) -> int:
        return len(self.samples[phase]) + self.skipped[phase]

    @property
    def frames_skipped(self) -> int:
        return sum(self.skipped.values())


def stats(values) -> dict:
    """``n``, ``median``, ``p10``, ``p90`` of the samples (``None`` figures when empty)."""
    values = list(values)
    f = percentiles(values, (10, 50, 90))
    return {"n": len(values), "median": f["p50"], "p10": f["p10"], "p90": f["p90"]}


def choose_thresholds(neutral: dict, smile: dict) -> tuple[float, float]:
    """``(on, off)`` between the two distributions (see the module docstring)."""
    lo, hi = float(neutral["p90"]), float(smile["p10"])
    on = (lo + hi) / 2.0
    off = (lo + on) / 2.0
    on = min(max(on, CLAMP[0]), CLAMP[1])
    off = min(max(off, CLAMP[0]), CLAMP[1], on)
    return round(on, 4), round(off, 4)


def check(col: Collector) -> None:
    """Raise :class:`CalibrationRefused` unless both phases have enough faces and separate."""
    for ph in PHASES:
        total = col.frames(ph)
        n = len(col.samples[ph])
        if total == 0 or n < MIN_FACE_FRACTION * total:
            several = col.several[ph]
            none = col.skipped[ph] - several
            why = ", ".join(w for w in (f"{none} with no face" if none else "",
                                        f"{several} with several faces" if several else "") if w)
            advice = ("make sure only one person is in view" if several > none else
                      "face the camera from closer, in more light")
            raise CalibrationRefused(
                f"could not calibrate: in the {PHASE_NAMES[ph]} phase only {n} of {total} frames showed one face"
                f"{f' ({why})' if why else ''}, it needs {MIN_FACE_FRACTION:.0%}; {advice}, and calibrate again")
    s_neu, s_smi = stats(col.samples["neutral"]), stats(col.samples["smile"])
    neu, smi = s_neu["p90"], s_smi["p10"]
    if smi <= neu + MIN_SEPARATION:
        figures = f"straight face p90 {neu:.2f}, smile p10 {smi:.2f}"
        neutral_bad, smile_bad = neu >= MIDDLE, smi < MIDDLE
        if neutral_bad and smile_bad:
            why = (f"the straight face scored high and the smile low ({figures}); light your face evenly "
                   "from the front, relax your mouth for the first phase and smile bigger for the second")
        elif neutral_bad:
            why = (f"the straight face already scored like a smile ({figures}); relax your mouth for the "
                   "first phase (lips closed), and light your face evenly: shadows can read as a smile")
        elif smile_bad:
            why = (f"the smile scored too low ({figures}); give a bigger smile (teeth showing) for the "
                   "second phase, facing the camera, in more light")
        else:
            why = (f"the two are too close ({figures}; the smile needs {MIN_SEPARATION} more); keep a "
                   "straighter face for the first phase and a bigger smile for the second")
        raise CalibrationRefused(f"{REFUSAL}: {why}",
                                 detail=f"smile p10 {smi:.3f} is not above straight face p90 {neu:.3f} "
                                        f"+ {MIN_SEPARATION}")


def summarize(col: Collector, model_sha256: str, now: datetime | None = None) -> dict:
    """The content of ``calibration.json``, or :class:`CalibrationRefused`."""
    check(col)
    neutral, smile = stats(col.samples["neutral"]), stats(col.samples["smile"])
    on, off = choose_thresholds(neutral, smile)
    now = now or datetime.now(timezone.utc)
    return {"created": now.isoformat(timespec="seconds"), "neutral": neutral, "smile": smile,
            "on_threshold": on, "off_threshold": off, "model_sha256": model_sha256,
            "frames_skipped": col.frames_skipped}
