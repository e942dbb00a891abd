"""The checks of scripts/check-camera-chroot.sh, run by the chroot venv's python (djsmile, cv2, numpy there).

    python vcam_check.py prepare PHOTOS OUT     faces for the virtual camera: OUT/{smile,straight}/ and faces.json
    python vcam_check.py frames OUT SET:N...    OUT/play/: N images of each set, in order
    python vcam_check.py shots STATE OUT --min 1 | --max 0   the run's shots: count, photo size, colour, box
    python vcam_check.py bench JSON --frames N  each variant of djsmile bench timed N frames and saw the faces
    python vcam_check.py stream URL N --faces D N frames of /stream.mjpg decode: a face of D, in its colours

Exit 0 when the check holds, 1 when not (one line saying why).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.request
from pathlib import Path

import cv2
import numpy as np

from djsmile.boxes import iou

W, H = 1280, 720          # the virtual camera's main stream (virtual.yaml lists it)
LORES = (640, 360)        # the analysis size djsmile asks for (camera.width 640, 16:9 stills)


def fail(msg: str) -> None:
    print(f"FAIL: {msg}")
    sys.exit(1)


def natural(p: Path):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p.name)]


def normalise(img: np.ndarray) -> np.ndarray:
    """Fit into 1280x720 (even sizes: libcamera's image generator overflows on odd ones), grey padding."""
    h, w = img.shape[:2]
    k = min(W / w, H / h)
    nw, nh = max(2, int(w * k)) & ~1, max(2, int(h * k)) & ~1
    out = np.full((H, W, 3), 96, np.uint8)
    x, y = (W - nw) // 2 & ~1, (H - nh) // 2 & ~1
    out[y: y + nh, x: x + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def colourful(img: np.ndarray) -> float:
    """Mean absolute difference between the colour channels (0 for a gray image)."""
    b, g, r = (img[..., i].astype(np.int16) for i in range(3))
    return float((np.abs(b - g) + np.abs(g - r) + np.abs(r - b)).mean() / 3)


def cmd_prepare(a) -> None:
    """Pick faces the device's own finder and model call clearly (one face; p_smile > 0.8 or < 0.2),
    at the analysis size the camera gives, so the check tests the camera path, not the model."""
    from djsmile.config import Config
    from djsmile.faces import FaceFinder
    from djsmile.model import SmileModel

    cfg = Config()
    finder = FaceFinder.from_config(cfg.detector)
    model = SmileModel.from_config(cfg.model)
    out = Path(a.out)
    faces = {}
    for kind, sub, want in (("smile", "smile", lambda p: p > 0.8), ("straight", "no_smile", lambda p: p < 0.2)):
        d = out / kind
        d.mkdir(parents=True, exist_ok=True)
        picked = []
        for src in sorted(Path(a.photos, sub).glob("*.jpg"), key=natural)[: a.scan]:
            img = cv2.imread(str(src), cv2.IMREAD_COLOR)
            if img is None or colourful(img) < 4:       # gray photos cannot show a colour bug
                continue
            big = normalise(img)
            gray = cv2.cvtColor(cv2.resize(big, LORES, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
            finder.reset()
            boxes = [tuple(int(v) for v in b) for b in finder.find(gray)]
            if len(boxes) != 1 or boxes[0][3] < 0.25 * LORES[1]:
                continue
            p = float(model.predict_crops([model.crop(gray, boxes[0])])[0])
            if not want(p):
                continue
            name = f"{len(picked)}.jpg"
            cv2.imwrite(str(d / name), big, [cv2.IMWRITE_JPEG_QUALITY, 92])
            picked.append({"file": name, "source": str(src), "box_lores": list(boxes[0]), "p_smile": round(p, 3)})
            if len(picked) == a.count:
                break
        if len(picked) < a.count:
            fail(f"only {len(picked)} of {a.count} clear {kind} faces in the first {a.scan} of {a.photos}/{sub}")
        faces[kind] = picked
    (out / "blank").mkdir(exist_ok=True)                 # no face: between the calibration's phases
    cv2.imwrite(str(out / "blank" / "0.jpg"), np.full((H, W, 3), (60, 110, 150), np.uint8))
    (out / "faces.json").write_text(json.dumps(faces, indent=1))
    print(f"faces: {a.count} smiling, {a.count} straight ({out})")


def cmd_frames(a) -> None:
    """OUT/play/: for each SET:N, N images of the set in order (its faces in equal runs; hard links), as
    0.jpg, 1.jpg, ... (the virtual camera plays them in that order, each for 4 frames, then loops)."""
    out = Path(a.out)
    play = out / "play"
    if play.exists():
        for p in play.iterdir():
            p.unlink()
    play.mkdir(exist_ok=True)
    n = 0
    for spec in a.sets:
        kind, count = spec.split(":")
        files = sorted((out / kind).glob("*.jpg"), key=natural)
        for i in range(int(count)):
            os.link(files[i * len(files) // int(count)], play / f"{n}.jpg")
            n += 1
    print(f"play: {n} images ({' '.join(a.sets)})")


def cmd_shots(a) -> None:
    state = Path(a.state)
    ev = state / "events.jsonl"
    events = [json.loads(line) for line in ev.read_text().splitlines() if line.strip()] if ev.exists() else []
    if a.max is not None and len(events) > a.max:
        fail(f"{len(events)} shots (at most {a.max} expected): {[e.get('frame') for e in events]}")
    if len(events) < a.min:
        fail(f"{len(events)} shots (at least {a.min} expected)")
    faces = json.loads((Path(a.out) / "faces.json").read_text())
    originals = [cv2.imread(str(Path(a.out) / "smile" / f["file"])) for f in faces["smile"]]
    for e in events:
        photo = Path(e["photo"]) if e.get("photo") else None
        if photo is None or not photo.is_absolute():
            photo = state / "photos" / Path(e.get("photo") or "").name
        img = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        if img is None:
            fail(f"shot at frame {e.get('frame')}: no readable photo {photo}")
        if img.shape[:2] != (H, W):
            fail(f"photo {photo.name} is {img.shape[1]}x{img.shape[0]}, not the main stream's {W}x{H}")
        # the picture the camera played: the closest of the smiling faces (JPEG twice: a few levels)
        err = [float(np.abs(img.astype(np.int16) - o.astype(np.int16)).mean()) for o in originals]
        best = int(np.argmin(err))
        if err[best] > 12:
            fail(f"photo {photo.name} is none of the faces played (closest mean difference {err[best]:.1f} levels)")
        c_photo, c_face = colourful(img), colourful(originals[best])
        if c_photo < 0.5 * c_face:
            fail(f"photo {photo.name} has lost its colour (channel difference {c_photo:.1f}, the face's {c_face:.1f})")
        side = json.loads(photo.with_suffix(".json").read_text())
        k = W / LORES[0]
        want = faces["smile"][best]["box_lores"]
        got = side["faces"][0]["box"] if side.get("faces") else None
        if got is None or iou(got, want) < 0.4:
            fail(f"sidecar box {got} (analysis frame) is not on the face {want} of {faces['smile'][best]['source']}")
        print(f"shot: frame {e['frame']}: {photo.name} {img.shape[1]}x{img.shape[0]} colour "
              f"{c_photo:.1f} (face {c_face:.1f}), = face {best} within {err[best]:.1f} levels, "
              f"box {got} ~ {want} (x{k:g} in the photo), IoU {iou(got, want):.2f}")
    print(f"shots: {len(events)}")


def cmd_stream(a) -> None:
    """Read N JPEG frames of a multipart MJPEG stream; each must decode to a colour picture."""
    import time
    deadline = time.monotonic() + a.wait
    while True:   # the server starts after the camera and the model
        try:
            r = urllib.request.urlopen(a.url, timeout=a.timeout)
            break
        except OSError as e:
            if time.monotonic() > deadline:
                fail(f"{a.url}: {e} for {a.wait:g} s")
            time.sleep(0.2)
    got = []
    buf = b""
    with r:
        while len(got) < a.n:
            chunk = r.read1(65536) if hasattr(r, "read1") else r.read(65536)
            if not chunk:
                break
            buf += chunk
            while True:
                s = buf.find(b"\xff\xd8")
                e = buf.find(b"\xff\xd9", s + 2) if s >= 0 else -1
                if s < 0 or e < 0:
                    break
                got.append(buf[s: e + 2])
                buf = buf[e + 2:]
    if len(got) < a.n:
        fail(f"{a.url}: {len(got)} frames, {a.n} expected")
    faces = [cv2.imread(str(p)) for p in sorted(Path(a.faces).glob("*.jpg"), key=natural)]
    errs = []
    for i, jpg in enumerate(got):
        img = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            fail(f"stream frame {i} does not decode ({len(jpg)} bytes)")
        if colourful(img) < 3:
            fail(f"stream frame {i} ({img.shape[1]}x{img.shape[0]}) is gray (channel difference {colourful(img):.1f})")
        # the picture played, in its own colours (the overlay's boxes and text cover little of it)
        size = (img.shape[1], img.shape[0])
        err = min(float(np.abs(img.astype(np.int16) - cv2.resize(f, size, interpolation=cv2.INTER_AREA)
                               .astype(np.int16)).mean()) for f in faces)
        if err > 12:
            fail(f"stream frame {i} is none of the faces played in their colours (closest: {err:.1f} levels)")
        errs.append(err)
    print(f"stream: {len(got)} frames decode, {img.shape[1]}x{img.shape[0]}, colour {colourful(img):.1f}, "
          f"within {max(errs):.1f} levels of a face played")


def cmd_bench(a) -> None:
    """The bench's JSON: each variant timed its frames from the camera, and saw the faces."""
    b = json.loads(Path(a.json).read_text())
    for v in b["variants"]:
        if v["frames"] != a.frames:
            fail(f"bench variant {v['name']}: {v['frames']} frames timed, {a.frames} asked for")
        if v["faces_per_frame"] < 0.5:
            fail(f"bench variant {v['name']}: {v['faces_per_frame']} faces a frame (the camera plays one face)")
        print(f"bench: {v['name']} {v['frames']} frames, {v['fps']} fps, frame p50 {v['frame_ms_p50']:.1f} ms, "
              f"capture p50 {v['capture_ms_p50']:.2f} ms, {v['faces_per_frame']} faces a frame, {v['shots']} shots")
    print(f"bench: source {b['source']}, open {b['source_open_ms']:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("photos")
    p.add_argument("out")
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--scan", type=int, default=60)
    p = sub.add_parser("frames")
    p.add_argument("out")
    p.add_argument("sets", nargs="+", metavar="SET:N")
    p = sub.add_parser("shots")
    p.add_argument("state")
    p.add_argument("out")
    p.add_argument("--min", type=int, default=0)
    p.add_argument("--max", type=int, default=None)
    p = sub.add_parser("stream")
    p.add_argument("url")
    p.add_argument("n", type=int)
    p.add_argument("--faces", required=True, help="the folder of the faces played")
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--wait", type=float, default=60, help="seconds to wait for the server to answer")
    p = sub.add_parser("bench")
    p.add_argument("json")
    p.add_argument("--frames", type=int, required=True)
    a = ap.parse_args()
    commands = {"bench": cmd_bench, "prepare": cmd_prepare, "frames": cmd_frames, "shots": cmd_shots,
                "stream": cmd_stream}
    commands[a.cmd](a)


if __name__ == "__main__":
    main()
