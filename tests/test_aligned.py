"""Eye-aligned crops (issue 28): the crop function, the model's crop mode, landmarks carried by tracking."""

import json
import shutil

import cv2
import numpy as np
import pytest

from djsmile import preprocess as P
from djsmile.detectors.base import Detection, FaceDetector
from djsmile.errors import ModelError
from djsmile.faces import FaceFinder
from djsmile.model import SmileModel, sidecar_path
from helpers import BOX_MODEL

SIZE = 48


def synthetic_face(angle_deg=0.0, centre=(160.0, 120.0), iod=60.0, shape=(240, 320)):
    """A gray frame with a cartoon face (two dark eyes, a dark mouth bar, a lighter head) turned by ``angle_deg``
    about its eyes' midpoint, and its true landmarks."""
    H, W = shape
    big = 4   # drawn 4x larger, then shrunk: smooth edges
    img = np.full((H * big, W * big), 170, np.uint8)
    cx, cy = centre
    th = np.deg2rad(angle_deg)
    c, s = np.cos(th), np.sin(th)

    def at(u, v):   # face coordinates (eye-midpoint origin, eye line = u) -> frame
        return (cx + c * u - s * v, cy + s * u + c * v)

    def px(p):
        return (int(round(p[0] * big)), int(round(p[1] * big)))

    cv2.ellipse(img, px(at(0, 0.45 * iod)), (int(0.95 * iod * big), int(1.25 * iod * big)), angle_deg, 0, 360, 215, -1)
    for u in (-iod / 2, iod / 2):
        cv2.circle(img, px(at(u, 0)), int(0.12 * iod * big), 20, -1)
    m0, m1 = at(-0.3 * iod, 1.08 * iod), at(0.3 * iod, 1.08 * iod)
    cv2.line(img, px(m0), px(m1), 40, int(0.1 * iod * big))
    frame = cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)
    marks = {"right_eye": at(-iod / 2, 0), "left_eye": at(iod / 2, 0), "mouth": at(0, 1.08 * iod)}
    return frame, marks


def dark_centroids(crop, upper=0.5):
    """The centroids of the dark pixels in the upper-left and upper-right parts (the eyes)."""
    out = []
    h = int(crop.shape[0] * upper)
    for x0, x1 in ((0, crop.shape[1] // 2), (crop.shape[1] // 2, crop.shape[1])):
        q = crop[:h, x0:x1].astype(np.float64)
        w = np.clip(110.0 - q, 0, None)
        ys, xs = np.mgrid[0:q.shape[0], 0:q.shape[1]]
        out.append(((xs * w).sum() / w.sum() + x0, (ys * w).sum() / w.sum()))
    return out


@pytest.mark.parametrize("angle", [-25.0, -10.0, 12.0, 30.0])
def test_a_rotated_face_comes_out_level_with_its_eyes_at_the_template(angle):
    frame, marks = synthetic_face(angle)
    level, marks0 = synthetic_face(0.0)
    crop = P.crop_aligned(frame, marks, SIZE)
    (rx, ry), (lx, ly) = dark_centroids(crop)
    assert abs(ry - ly) < 0.6, f"eyes not level: {ry:.2f} vs {ly:.2f}"
    want_y = P.ALIGN_EYE_Y * SIZE - 0.5
    assert abs(ry - want_y) < 1.0 and abs(ly - want_y) < 1.0
    assert abs((lx - rx) - P.ALIGN_EYE_DIST * SIZE) < 1.5
    # the box crop of the same turned face is not level (what the aligned crop fixes)
    mid = (np.asarray(marks["right_eye"]) + np.asarray(marks["mouth"]) + np.asarray(marks["left_eye"])) / 3
    box = (int(mid[0]) - 66, int(mid[1]) - 66, 132, 132)
    (bx0, by0), (bx1, by1) = dark_centroids(P.crop_face(frame, box, SIZE), 0.55)
    assert abs(by0 - by1) > 2.0
    # and it is the crop of the level face, up to the resampling
    ref = P.crop_aligned(level, marks0, SIZE)
    assert np.abs(crop.astype(int) - ref).mean() < 6.0


def test_the_same_face_from_two_box_shapes_gives_the_same_crop():
    frame, marks = synthetic_face(8.0)
    haar_like = (100, 70, 130, 130)     # a square box
    blaze_raw = (112, 92, 104, 118)     # another back-end's box: narrower, taller, lower
    a = P.crop_for("aligned", frame, haar_like, SIZE, -0.075, marks)
    b = P.crop_for("aligned", frame, blaze_raw, SIZE, -0.075, marks)
    assert np.array_equal(a, b)
    # the box crops of the two boxes differ (what v2 saw)
    haar_crop = P.crop_face(frame, haar_like, SIZE, -0.075).astype(int)
    assert np.abs(haar_crop - P.crop_face(frame, blaze_raw, SIZE, -0.075)).mean() > 10


def test_without_landmarks_the_eyes_are_estimated_from_the_box():
    frame, _ = synthetic_face(0.0)
    box = (90, 60, 140, 140)
    est = P.eyes_from_box(box)
    ey, ed, my = P.BOX_EYES
    assert est["right_eye"] == pytest.approx((160 - 70 * ed, 60 + 140 * ey))
    assert est["mouth"] == pytest.approx((160, 60 + 140 * my))
    assert np.array_equal(P.crop_for("aligned", frame, box, SIZE, -0.075, None), P.crop_aligned(frame, est, SIZE))
    assert np.array_equal(P.crop_for("aligned", frame, box, SIZE, -0.075, {}), P.crop_aligned(frame, est, SIZE))


def test_a_large_face_is_averaged_not_aliased():
    # a 1-px checkerboard seen by a 48-px crop of a ~500-px face: box averaging gives mid gray everywhere,
    # point sampling would give black and white speckle
    board = (np.indices((1200, 1600)).sum(0) % 2 * 255).astype(np.uint8)
    marks = {"right_eye": (700.0, 500.0), "left_eye": (900.0, 500.0), "mouth": (800.0, 720.0)}
    crop = P.crop_aligned(board, marks, SIZE)
    assert abs(float(crop.mean()) - 127.5) < 2 and int(crop.max()) - int(crop.min()) <= 40


def test_the_crop_is_integer_bilinear_and_edges_are_replicated():
    rng = np.random.default_rng(3)
    g = rng.integers(0, 256, (60, 80), dtype=np.uint8)
    marks = {"right_eye": (30.3, 20.7), "left_eye": (50.9, 23.1), "mouth": (39.0, 44.0)}
    crop = P.crop_aligned(g, marks, SIZE)
    # the float reference at the same sample points (OpenCV's remap, linear, replicated border)
    c, s, k, mid = P.align_params(marks)
    t = (np.arange(SIZE) + 0.5) / SIZE
    U, V = np.meshgrid(t - 0.5, t - P.ALIGN_EYE_Y)
    X = (mid[0] + (c * U - s * V) / k - 0.5).astype(np.float32)
    Y = (mid[1] + (s * U + c * V) / k - 0.5).astype(np.float32)
    ref = cv2.remap(g.astype(np.float32), X, Y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    assert np.abs(crop - ref).max() <= 8.5      # 1/32 px positions on random noise
    assert np.abs(crop - ref).mean() < 1.5
    # a face half out of the frame: no error, the edge replicated
    edge = P.crop_aligned(g, {k_: (x - 40, y) for k_, (x, y) in marks.items()}, SIZE)
    assert edge.shape == (SIZE, SIZE) and (edge[:, 0] == edge[:, 0]).all()
    # the same input gives the same bytes (what the emulated Pi check compares)
    assert np.array_equal(crop, P.crop_aligned(g.copy(), dict(marks), SIZE))


# ------------------------------------------------------------------ the model's crop mode (sidecar "crop")
def _aligned_copy(tmp_path):
    src = BOX_MODEL
    dst = tmp_path / "smile_int8.tflite"
    shutil.copy(src, dst)
    meta = json.loads(sidecar_path(src).read_text())
    assert "crop" not in meta, "v2's sidecar has no crop key: it is a box model by default"
    meta["crop"] = "aligned"
    sidecar_path(dst).write_text(json.dumps(meta))
    return dst


def test_v2_without_a_crop_key_keeps_its_box_crop_even_given_landmarks():
    frame, marks = synthetic_face(15.0)
    v2 = SmileModel(BOX_MODEL)
    assert v2.meta.crop == "box" and not v2.aligned
    box = (100, 60, 130, 130)
    assert np.array_equal(v2.crop(frame, box, marks), P.crop_face(frame, box, 48, v2.meta.crop_margin))
    np.testing.assert_array_equal(v2.predict(frame, [box], [marks]), v2.predict(frame, [box]))
    assert "crop" not in v2.meta.to_json()   # rewriting v2's sidecar adds nothing


def test_an_aligned_sidecar_makes_the_model_crop_on_landmarks(tmp_path):
    frame, marks = synthetic_face(15.0)
    m = SmileModel(_aligned_copy(tmp_path))
    assert m.aligned and m.meta.to_json()["crop"] == "aligned"
    box = (100, 60, 130, 130)
    assert np.array_equal(m.crop(frame, box, marks), P.crop_aligned(frame, marks, 48))
    assert np.array_equal(m.crop(frame, box, None), P.crop_aligned(frame, P.eyes_from_box(box), 48))
    want = m.predict_crops([P.crop_aligned(frame, marks, 48)])
    np.testing.assert_array_equal(m.predict(frame, [box], [marks]), want)


def test_an_unknown_crop_mode_is_refused(tmp_path):
    dst = _aligned_copy(tmp_path)
    meta = json.loads(sidecar_path(dst).read_text())
    meta["crop"] = "warped"
    sidecar_path(dst).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="crop 'warped'"):
        SmileModel(dst)


# ------------------------------------------------------------------ the template, recorded in the sidecar
TIGHT = (0.30, 0.46, 0.80)


def _with_template(tmp_path, template):
    dst = _aligned_copy(tmp_path)
    meta = json.loads(sidecar_path(dst).read_text())
    meta["template"] = template
    sidecar_path(dst).write_text(json.dumps(meta))
    return dst


def test_the_sidecar_template_puts_the_eyes_where_it_says(tmp_path):
    frame, marks = synthetic_face(12.0)
    m = SmileModel(_with_template(tmp_path, {"eye_y": TIGHT[0], "eye_distance": TIGHT[1], "mouth_y": TIGHT[2]}))
    assert m.meta.template == TIGHT
    box = (100, 60, 130, 130)
    crop = m.crop(frame, box, marks)
    assert np.array_equal(crop, P.crop_aligned(frame, marks, 48, template=TIGHT))
    (rx, ry), (lx, ly) = dark_centroids(crop)
    assert abs(ry - (TIGHT[0] * 48 - 0.5)) < 1.0 and abs(ly - (TIGHT[0] * 48 - 0.5)) < 1.0
    assert abs((lx - rx) - TIGHT[1] * 48) < 1.5          # 22 px apart, not the default's 19
    assert abs((lx - rx) - P.ALIGN_EYE_DIST * 48) > 2.0
    # without landmarks: eyes estimated from the box, to the same template
    assert np.array_equal(m.crop(frame, box, None), P.crop_aligned(frame, P.eyes_from_box(box), 48, template=TIGHT))
    # the sidecar written back keeps it; an aligned sidecar without the key is the default template, written out
    assert m.meta.to_json()["template"] == {"eye_y": 0.30, "eye_distance": 0.46, "mouth_y": 0.80}
    (tmp_path / "default").mkdir()
    d = SmileModel(_aligned_copy(tmp_path / "default"))
    assert d.meta.template == P.ALIGN_TEMPLATE
    assert np.array_equal(d.crop(frame, box, marks), P.crop_aligned(frame, marks, 48))
    assert d.meta.to_json()["template"] == {"eye_y": 0.32, "eye_distance": 0.40, "mouth_y": 0.76}


@pytest.mark.parametrize("bad", [[0.3, 0.46, 0.8], {"eye_y": 0.8, "eye_distance": 0.4, "mouth_y": 0.3},
                                 {"eye_y": 0.3, "mouth_y": 0.8}, {"eye_y": "a", "eye_distance": 0.4, "mouth_y": 0.8},
                                 {"eye_y": 0.3, "eye_distance": 0.0, "mouth_y": 0.8}])
def test_a_bad_sidecar_template_is_refused(tmp_path, bad):
    with pytest.raises(ModelError, match="template"):
        SmileModel(_with_template(tmp_path, bad))


def test_the_template_is_part_of_the_crop_cache_key():
    from djsmile.training import data as D
    aligned = D.CropParams(input_size=48, crop_margin=-0.075, crop="aligned", landmarks={"backend": "blazeface"})
    # the keys of the aligned crops cached before the template was a parameter (default template)
    assert (aligned.key("faces"), aligned.key("photos")) == ("cf47f591d31c", "5eed523c5ad8")
    tight = D.CropParams(input_size=48, crop_margin=-0.075, crop="aligned", landmarks={"backend": "blazeface"},
                         template=TIGHT)
    assert tight.key("faces") != aligned.key("faces") and tight.key("photos") != aligned.key("photos")


@pytest.mark.parametrize("argv", [["--template", "0.3,0.46,0.8"],                       # box crops take no template
                                  ["--crop", "aligned", "--template", "0.3,0.46"],
                                  ["--crop", "aligned", "--template", "0.8,0.46,0.3"]])
def test_train_refuses_a_template_it_cannot_use(tmp_path, argv, capsys):
    from djsmile.cli import main
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "run"), *argv]) == 64
    assert "template" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_train_and_convert_record_the_template_and_eval_crops_to_it(tmp_path, capsys):
    pytest.importorskip("tensorflow")
    from test_training import make_faces

    from djsmile.cli import main
    from djsmile.training.evaluate import face_crop, landmark_detector_for
    data = make_faces(tmp_path / "data", n=20)
    cache, run, models = tmp_path / "cache", tmp_path / "run", tmp_path / "models"
    assert main(["train", str(data), "--out", str(run), "--epochs", "1", "--input-size", "32", "--batch-size", "16",
                 "--crop", "aligned", "--template", "0.30,0.46,0.80", "--cache", str(cache), "--no-progress",
                 "--workers", "1"]) == 0
    assert json.loads((run / "summary.json").read_text())["template"] == [0.30, 0.46, 0.80]
    assert main(["convert", str(run / "model.keras"), "--out", str(models), "--cache", str(cache),
                 "--max-drop", "100", "--representative", "20", "--no-progress", "--no-float"]) == 0
    q = models / "smile_int8.tflite"
    meta = json.loads(q.with_suffix(".json").read_text())
    assert meta["crop"] == "aligned" and meta["template"] == {"eye_y": 0.30, "eye_distance": 0.46, "mouth_y": 0.80}
    m = SmileModel(q)
    g = cv2.imread(str(next((data / "smile").iterdir())), cv2.IMREAD_GRAYSCALE)
    det = landmark_detector_for(m)
    marks = P.face_crop_landmarks(g, det) or P.eyes_from_box(P.whole_image_box(g), P.FACE_CROP_EYES)
    assert np.array_equal(face_crop(m, g, det), P.crop_aligned(g, marks, 32, template=TIGHT))
    assert not np.array_equal(face_crop(m, g, det), P.crop_aligned(g, marks, 32))


# ------------------------------------------------------------------ the device: landmarks carried by tracking
class _Once(FaceDetector):
    """A back-end that finds the synthetic face (box and landmarks) in the first frame only."""
    name = "once"

    def __init__(self, box, marks):
        self.box, self.marks, self.calls = box, marks, 0

    def detect_faces(self, gray, color=None):
        self.calls += 1
        return [Detection(self.box, 0.9, self.box, dict(self.marks))] if self.calls == 1 else []

    def clone(self):
        return self


def test_tracking_moves_the_landmarks_with_the_box_and_the_pipeline_crops_on_them(tmp_path):
    frame, marks = synthetic_face(10.0, centre=(150.0, 110.0))
    box = (95, 55, 120, 120)
    finder = FaceFinder(_Once(box, marks), full_every=10)
    assert finder.find(frame) == [box]
    assert finder.landmarks[0]["left_eye"] == pytest.approx(marks["left_eye"])
    shifted = np.roll(np.roll(frame, 7, axis=1), 4, axis=0)   # the person moved 7 px right, 4 down
    boxes = finder.find(shifted)
    assert not finder.last_was_full and len(boxes) == 1
    dx, dy = boxes[0][0] - box[0], boxes[0][1] - box[1]
    assert abs(dx - 7) <= 1 and abs(dy - 4) <= 1      # template matching, rounded to whole pixels
    for k, (x, y) in marks.items():
        assert finder.landmarks[0][k] == pytest.approx((x + dx, y + dy))

    from djsmile.pipeline import Pipeline

    class _Trig:
        hold_frames = 1

        def update(self, i, t, boxes, probs):
            self.probs = probs
            return None

        def new_scene(self):
            pass

    class _Frame:
        index, t, new_scene, color = 1, 0.0, False, None

        def __init__(self, g):
            self.gray = g

    m = SmileModel(_aligned_copy(tmp_path))
    finder2 = FaceFinder(_Once(box, marks), full_every=10)
    finder2.find(frame)
    trig = _Trig()
    Pipeline(finder2, m, trig).process(_Frame(shifted))
    moved = {k: (x + dx, y + dy) for k, (x, y) in marks.items()}
    assert finder2.landmarks[0]["mouth"] == pytest.approx(moved["mouth"])
    np.testing.assert_allclose(trig.probs, m.predict_crops([P.crop_aligned(shifted, moved, 48)]), atol=1e-7)


def test_move_landmarks_scales_with_a_resized_box():
    from djsmile.faces import move_landmarks
    got = move_landmarks({"mouth": (60.0, 90.0)}, (40, 40, 40, 60), (50, 30, 80, 30))
    assert got["mouth"] == pytest.approx((50 + 20 * 2.0, 30 + 50 * 0.5))
    assert move_landmarks(None, (0, 0, 1, 1), (1, 1, 1, 1)) is None


# ------------------------------------------------------------------ training data and eval, cropped the same way
def test_box_crops_keep_their_cache_key():
    from djsmile.training import data as D
    # the key the v2 crops were cached under before issue 28 (~/.cache/djsmile/crops/faces-31934699aac2.npz)
    assert D.CropParams(input_size=48, crop_margin=-0.075).key("faces") == "31934699aac2"
    aligned = D.CropParams(input_size=48, crop_margin=-0.075, crop="aligned", landmarks={"backend": "blazeface"})
    assert aligned.key("faces") != "31934699aac2"
    other = D.CropParams(input_size=48, crop_margin=-0.075, crop="aligned", landmarks={"backend": "blazeface",
                                                                                       "min_score": 0.7})
    assert other.key("faces") != aligned.key("faces")   # the detector's settings are part of the key


def _mini_roots(tmp_path, shared_datasets):
    out = []
    for src, kind, n in ((shared_datasets / "djsmile" / "faces", "faces", 3),
                         (shared_datasets / "smilesmiled", "faces", 3),
                         (shared_datasets / "djsmile" / "photos", "photos", 4)):
        if not src.is_dir():
            pytest.skip(f"needs the shared datasets ({src})")
        root = tmp_path / f"{src.parent.name}-{src.name}" / src.name
        for c in ("smile", "no_smile"):
            (root / c).mkdir(parents=True)
            for f in sorted((src / c).glob("*.jpg"))[:n]:
                shutil.copy(f, root / c / f.name)
        out.append((root, kind))
    return out


def test_training_crops_are_what_eval_and_the_device_crop(tmp_path, shared_datasets):
    from djsmile.config import Config
    from djsmile.detectors import make_detector
    from djsmile.training import data as D
    from djsmile.training.evaluate import run_eval
    cfg = Config()
    roots = _mini_roots(tmp_path, shared_datasets)
    params = D.CropParams(input_size=48, crop_margin=-0.075, detector=D.detector_kwargs(cfg.detector),
                          crop="aligned", landmarks=D.landmark_settings(cfg.detector))
    items = D.list_items(D.resolve_roots([f"{r}:{k}" for r, k in roots]))
    crops = D.load_crops(items, params, cache_dir=tmp_path / "cache", workers=1, progress=False)
    st = crops.stats
    assert sum(s["landmarks"] + s["box_estimate"] for s in st.values()) == sum(s["used"] for s in st.values())
    assert sum(s["landmarks"] for s in st.values()) >= 0.8 * sum(s["used"] for s in st.values())
    model = SmileModel(_aligned_copy(tmp_path))
    by_path = {it.path: i for i, it in enumerate(items)}
    for root, kind in roots:
        det = make_detector(cfg.detector) if kind == "photos" else None
        res = run_eval(root, model, kind, det, cfg=cfg)
        for path, p, found in zip(res["paths"], res["p"], res["found"]):
            i = by_path[path]
            if kind == "photos" and not crops.src[i]:
                continue   # no BlazeFace face: training fell back to Haar's box, eval (BlazeFace) finds none
            assert found == bool(crops.found[i])
            if found:
                want = float(model.predict_crops([crops.crop[i]])[0])
                assert p == pytest.approx(want, abs=1e-6), path
    # the cache gives the same crops again
    again = D.load_crops(items, params, cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert np.array_equal(again.crop, crops.crop) and np.array_equal(again.src, crops.src)


def test_the_cross_check_scores_an_aligned_model_on_the_detections_landmarks(tmp_path, shared_datasets):
    import hashlib
    from djsmile.config import Config
    from djsmile.crosscheck import score_folder
    from djsmile.detectors import make_detector
    photos = sorted((shared_datasets / "djsmile" / "photos" / "smile").glob("*.jpg"))[:6]
    if not photos:
        pytest.skip("needs the shared datasets")
    folder = tmp_path / "photos"
    folder.mkdir()
    for f in photos:
        shutil.copy(f, folder / f.name)
    cfg = Config()
    cfg.model.path = str(_aligned_copy(tmp_path))
    det = make_detector(cfg.detector)
    m = SmileModel(cfg.model.path)
    rows = list(score_folder(folder, cfg))
    faces = 0
    for row in rows:
        assert not any(row["enlarged"])
        gray = cv2.cvtColor(cv2.imread(str(folder / row["file"])), cv2.COLOR_BGR2GRAY)
        color = cv2.imread(str(folder / row["file"]))
        dets = det.detect_faces(gray, color)
        if row["boxes"] and dets and list(dets[0].box) == row["boxes"][0]:
            want = m.crop(gray, dets[0].box, dets[0].landmarks)
            assert row["crop_sha256"][0] == hashlib.sha256(want.tobytes()).hexdigest()[:16]
            faces += 1
    assert faces >= 3
