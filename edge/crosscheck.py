"""Cross-architecture agreement: score every frame of an image folder, compare two such runs.

Used by ``scripts/check-pi-emulated.sh`` to hold an emulated Raspberry Pi (arm) run of
djsmile against the same run on x86::

    python -m djsmile.crosscheck score PHOTOS --out arm.jsonl        # on each machine
    python -m djsmile.crosscheck compare x86.jsonl arm.jsonl --tolerance 0.06 \\
        --events x86/events.jsonl arm/events.jsonl

``score`` runs the device's own loop (folder source, then :class:`~djsmile.pipeline.Pipeline`:
face finder, smile model, trigger; the default config unless ``--config``) and writes one JSON line per frame:
``frame``, ``file``, ``gray_sha256`` (the decoded gray frame), ``boxes``, ``scores`` (the detector back-end's,
on a full detection), ``crop_sha256`` (each model input crop) and ``p_smile``. ``compare``
says whether two runs agree: the same frames, the same boxes (a CNN back-end's float
arithmetic may differ between CPUs: each coordinate within ``--box-tolerance`` pixels),
every ``|p_smile|`` difference within the tolerance, the same shots (the ``frame`` values
in two ``events.jsonl``). Exit 0 when they agree, 1 when not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import config as config_mod
from .faces import FaceFinder
from .fsutil import atomic_write
from .model import SmileModel
from .pipeline import Pipeline
from .sources import FolderSource
from .trigger import Trigger


def _sha(a) -> str:
    """A short hash of an array's bytes (a paired model's crop, a tuple of arrays: of all of them in order)."""
    h = hashlib.sha256()
    for part in (a if isinstance(a, tuple) else (a,)):
        h.update(memoryview(part).tobytes())
    return h.hexdigest()[:16]


class _Seen:
    """The smile model as :class:`~djsmile.pipeline.Pipeline` calls it, keeping the frame's boxes and crops."""

    def __init__(self, model):
        self.model = model
        self.boxes: list = []
        self.crops: list = []
        self.probs = []

    def predict(self, gray, boxes, landmarks):
        self.boxes = [tuple(int(v) for v in b) for b in boxes]
        self.crops = [self.model.crop(gray, b, m) for b, m in zip(self.boxes, landmarks)]
        self.probs = self.model.predict_crops(self.crops) if self.crops else []
        return self.probs


def score_folder(folder, cfg=None):
    """Yield one dict per frame of the image folder, as ``djsmile run`` would see it."""
    cfg = cfg or config_mod.Config()
    source = FolderSource(folder, cfg)
    finder = FaceFinder.from_config(cfg.detector)
    model = SmileModel.from_config(cfg.model)
    seen = _Seen(model)
    pipeline = Pipeline(finder, seen, Trigger(cfg.trigger, model.threshold))
    names = [p.name for p in source.files]
    for frame in source:
        seen.boxes, seen.crops, seen.probs = [], [], []   # a frame with no face does not call the model
        pipeline.process(frame)   # as djsmile run does: each image starts afresh
        boxes, crops = seen.boxes, seen.crops
        yield {
            "frame": frame.index,
            "file": names[frame.index] if frame.index < len(names) else "",
            "gray_sha256": _sha(frame.gray),
            "boxes": [list(b) for b in boxes],
            "detector": finder.detector.name,
            "scores": [round(float(d.score), 4) for d in finder.detections] if finder.last_was_full else [],
            "crop_sha256": [_sha(c) for c in crops],
            # box crops from a square smaller than the model input are enlarged with INTER_LINEAR (an aligned
            # crop is integer arithmetic throughout: never "enlarged", always compared bit for bit)
            "enlarged": [model.enlarges(b) for b in boxes],
            "p_smile": [round(float(p), 6) for p in seen.probs],
        }


@dataclass
class Agreement:
    """How two per-frame runs (and optionally their shots) compare."""
    tolerance: float
    box_tolerance: int = 0
    enlarged_tolerance: float | None = None   # for an enlarged crop that differs (None: ``tolerance``)
    frames: int = 0
    faces: int = 0
    boxes_equal: int = 0             # faces whose box is identical
    max_box_diff: int = 0            # largest coordinate difference (pixels) of a face's box
    max_score_diff: float = 0.0      # largest difference of the detector's score
    p_equal: int = 0                 # faces whose p_smile is exactly equal
    crops_equal: int = 0             # faces whose model input crop is bit-identical
    enlarged: int = 0                # faces whose crop was enlarged (INTER_LINEAR) in run A
    enlarged_differ: int = 0         # ...of which the crop differs between the runs
    max_diff: float = 0.0
    worst: str = ""                  # where max_diff is
    shots_a: list = field(default_factory=list)
    shots_b: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def _enlarged_note(self) -> str:
        if self.enlarged_tolerance is None or self.enlarged_tolerance == self.tolerance:
            return ""
        return f" ({self.enlarged_tolerance:g} for an enlarged crop that differs)"

    def summary(self) -> str:
        return (f"{self.frames} frames, {self.faces} faces: boxes identical on {self.boxes_equal}/{self.faces} "
                f"(max coordinate diff {self.max_box_diff} px, tolerance {self.box_tolerance}; max detector score "
                f"diff {self.max_score_diff:.4f}), p_smile equal on {self.p_equal}/{self.faces}, "
                f"crops bit-identical on {self.crops_equal}/{self.faces} (enlarged: {self.enlarged}, "
                f"{self.enlarged_differ} of them differ), max |diff| {self.max_diff:.4f}"
                f"{' (' + self.worst + ')' if self.worst else ''}, tolerance {self.tolerance:g}"
                f"{self._enlarged_note()}; shots {len(self.shots_a)} vs {len(self.shots_b)}")


def compare(rows_a, rows_b, tolerance: float, events_a=None, events_b=None, box_tolerance: int = 0,
            enlarged_tolerance: float | None = None) -> Agreement:
    """Compare per-frame rows of run A (reference) and run B; events lists are optional.

    A face whose crop run A enlarged (INTER_LINEAR, not bit-identical between OpenCV's x86 and arm
    builds) and whose crops differ is held to ``enlarged_tolerance`` (default: ``tolerance``); every
    other face, whose model input is the same bytes on both, to ``tolerance``."""
    ag = Agreement(tolerance=tolerance, box_tolerance=int(box_tolerance), enlarged_tolerance=enlarged_tolerance)
    a = {r["frame"]: r for r in rows_a}
    b = {r["frame"]: r for r in rows_b}
    if sorted(a) != sorted(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        ag.problems.append(f"different frames: only in A {only_a[:5]}, only in B {only_b[:5]}")
    for i in sorted(set(a) & set(b)):
        ra, rb = a[i], b[i]
        ag.frames += 1
        where = f"frame {i}" + (f" {ra['file']}" if ra.get("file") else "")
        if ra.get("gray_sha256") != rb.get("gray_sha256"):
            ag.problems.append(f"{where}: gray frames differ")
        if len(ra["boxes"]) != len(rb["boxes"]):
            ag.problems.append(f"{where}: boxes differ: {ra['boxes']} vs {rb['boxes']}")
            continue
        diffs = [max(abs(x - y) for x, y in zip(ba, bb)) for ba, bb in zip(ra["boxes"], rb["boxes"])]
        if any(d > ag.box_tolerance for d in diffs):
            ag.problems.append(f"{where}: boxes differ by up to {max(diffs)} px (tolerance {ag.box_tolerance}): "
                               f"{ra['boxes']} vs {rb['boxes']}")
            continue
        ag.faces += len(ra["boxes"])
        ag.boxes_equal += sum(d == 0 for d in diffs)
        ag.max_box_diff = max([ag.max_box_diff, *diffs])
        for sa, sb in zip(ra.get("scores", []), rb.get("scores", [])):
            ag.max_score_diff = max(ag.max_score_diff, abs(sa - sb))
        same = [x == y for x, y in zip(ra.get("crop_sha256", []), rb.get("crop_sha256", []))]
        ag.crops_equal += sum(same)
        resized_apart = []   # per face: enlarged in A and the crops differ
        for up, eq in zip(ra.get("enlarged", []), same):
            ag.enlarged += bool(up)
            ag.enlarged_differ += bool(up) and not eq
            resized_apart.append(bool(up) and not eq)
        for k, (pa, pb) in enumerate(zip(ra["p_smile"], rb["p_smile"])):
            d = abs(pa - pb)
            ag.p_equal += d == 0
            if d > ag.max_diff:
                ag.max_diff, ag.worst = d, f"{where} face {k}: {pa:.4f} vs {pb:.4f}"
            apart = k < len(resized_apart) and resized_apart[k] and enlarged_tolerance is not None
            tol = enlarged_tolerance if apart else tolerance
            if d > tol:
                ag.problems.append(f"{where} face {k}: p_smile {pa:.4f} vs {pb:.4f}, |diff| {d:.4f} > "
                                   f"{'enlarged-crop ' if apart else ''}tolerance {tol:g}")
    if events_a is not None and events_b is not None:
        ag.shots_a = [e["frame"] for e in events_a]
        ag.shots_b = [e["frame"] for e in events_b]
        if ag.shots_a != ag.shots_b:
            ag.problems.append(f"different shots: frames {ag.shots_a} vs {ag.shots_b}")
    return ag


def read_jsonl(path) -> list:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m djsmile.crosscheck", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score", help="score every frame of an image folder (JSON lines)")
    s.add_argument("folder")
    s.add_argument("--out", required=True, help="JSON lines file to write")
    s.add_argument("--config", metavar="FILE", help="TOML config (default: the built-in defaults)")
    c = sub.add_parser("compare", help="compare two 'score' outputs (A = reference)")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--tolerance", type=float, required=True, help="largest allowed |p_smile| difference")
    c.add_argument("--box-tolerance", type=int, default=2,
                   help="largest allowed difference of a box coordinate in pixels (default 2: a CNN detector's "
                        "float arithmetic differs a little between CPUs)")
    c.add_argument("--enlarged-tolerance", type=float, metavar="P",
                   help="largest allowed |p_smile| difference for a face whose crop A enlarged and whose crops "
                        "differ (INTER_LINEAR is not bit-identical between OpenCV builds; default: --tolerance)")
    c.add_argument("--events", nargs=2, metavar=("A_EVENTS", "B_EVENTS"), help="two events.jsonl files")
    c.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    args = p.parse_args(argv)
    if args.cmd == "score":
        cfg = config_mod.load(args.config)
        text = "".join(json.dumps(r) + "\n" for r in score_folder(args.folder, cfg))
        atomic_write(Path(args.out), text.encode())
        return 0
    ev = (read_jsonl(args.events[0]), read_jsonl(args.events[1])) if args.events else (None, None)
    ag = compare(read_jsonl(args.a), read_jsonl(args.b), args.tolerance, *ev, box_tolerance=args.box_tolerance,
                 enlarged_tolerance=args.enlarged_tolerance)
    print(("agree: " if ag.ok else "DISAGREE: ") + ag.summary())
    for line in ag.problems[:20]:
        print("  " + line)
    if len(ag.problems) > 20:
        print(f"  ... and {len(ag.problems) - 20} more")
    if args.json:
        figures = {k: getattr(ag, k) for k in ("tolerance", "enlarged_tolerance", "box_tolerance", "boxes_equal",
                                               "max_box_diff", "max_score_diff", "frames", "faces", "p_equal",
                                               "crops_equal", "enlarged", "enlarged_differ", "max_diff", "worst",
                                               "shots_a", "shots_b", "problems")}
        figures["ok"] = ag.ok
        atomic_write(Path(args.json), (json.dumps(figures, indent=1) + "\n").encode())
    return 0 if ag.ok else 1


if __name__ == "__main__":
    sys.exit(main())
