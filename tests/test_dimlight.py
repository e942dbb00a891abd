"""The dim-light measurement's pieces: camera-like degradations, face luminance bins, matching, summary."""

import argparse

import numpy as np
import pytest

from djsmile.training.dimlight import (CONDITIONS, LUMA_BINS, Degradation, face_luma, found, luma_bin, measure,
                                       parse_variant, summarize, zoom_out)


def _scene():
    img = np.full((120, 160), 100, np.uint8)
    img[30:70, 100:140] = 200                      # a bright 40 px "face" right of centre
    return img


def test_default_degradation_is_the_identity():
    img = _scene()
    assert np.array_equal(Degradation().apply(img, np.random.default_rng(0)), img)
    assert Degradation().map_box((100, 30, 40, 40), img.shape) == (100, 30, 40, 40)


def test_zoom_out_shrinks_the_scene_about_the_centre_and_the_box_follows():
    img = _scene()
    deg = Degradation(zoom=0.5)
    out = deg.apply(img, np.random.default_rng(0))
    x, y, w, h = deg.map_box((100, 30, 40, 40), img.shape)
    assert (w, h) == (20, 20)
    ys, xs = np.nonzero(out > 150)
    assert abs(xs.mean() - (x + w / 2 - 0.5)) <= 1.0 and abs(ys.mean() - (y + h / 2 - 0.5)) <= 1.0
    assert out[0, 0] == 100                        # the new border is the photo's median gray
    with pytest.raises(ValueError):
        zoom_out(img.astype(np.float32), 1.5)


def test_dark_noisy_frames_are_darker_and_noisier_and_repeatable():
    img = _scene()
    deg = CONDITIONS["dark+noise"]
    a = deg.apply(img, np.random.default_rng(3))
    assert a.dtype == np.uint8 and a.mean() < 0.5 * img.mean()
    assert a[80:, :60].std() > 1.0                 # the flat background got sensor noise
    assert np.array_equal(a, deg.apply(img, np.random.default_rng(3)))


def test_luminance_bins_cover_every_gray_level_in_order():
    names = [luma_bin(v) for v in (0, 79.9, 80, 139.9, 140, 255)]
    assert names[0] == names[1] == LUMA_BINS[0][2] and names[-1] == names[-2] == LUMA_BINS[-1][2]
    assert names[2] != names[1]
    img = _scene()
    assert face_luma(img, (100, 30, 40, 40)) == 200.0      # the face's centre, not its surroundings


def test_found_needs_the_reference_face_not_any_box():
    assert found([(100, 30, 40, 40)], (104, 32, 38, 38))
    assert not found([(0, 0, 40, 40)], (100, 30, 40, 40))
    assert not found([], (100, 30, 40, 40))


def test_parse_variant_overrides_detector_keys_and_rejects_others():
    name, kw = parse_variant("clahe mff:equalize=clahe,min_face_fraction=0.1",
                             {"equalize": "none", "scale_factor": 1.15})
    assert name == "clahe mff" and kw == {"equalize": "clahe", "min_face_fraction": 0.1, "scale_factor": 1.15}
    with pytest.raises(argparse.ArgumentTypeError):
        parse_variant("x:colour=1", {})


def test_summary_counts_per_bin_and_overall():
    rows = [{"bin": LUMA_BINS[0][2], "found": {("dark", "a"): False}},
            {"bin": LUMA_BINS[0][2], "found": {("dark", "a"): True}},
            {"bin": LUMA_BINS[3][2], "found": {("dark", "a"): True}}]
    s = summarize(rows, ["a"], ["dark"])["dark"]["a"]
    assert s[LUMA_BINS[0][2]] == {"n": 2, "found": 0.5}
    assert s[LUMA_BINS[3][2]] == {"n": 1, "found": 1.0}
    assert s[LUMA_BINS[1][2]] == {"n": 0, "found": None}
    assert s["all"] == {"n": 3, "found": round(2 / 3, 4)}


def test_measure_on_a_real_face_finds_it_clean_and_counts_every_variant(small_face_scene):
    scene = small_face_scene(60)
    base = dict(min_face_fraction=0.1, equalize="none")
    degradations = {"clean": Degradation(), "dim": Degradation(gamma=2.2, exposure=0.12, read_noise=1.5)}
    rows, times = measure(["scene"], degradations,
                          {"none": dict(base), "clahe": dict(base, equalize="clahe")}, base, load=lambda p: scene)
    assert len(rows) == 1 and len(times["none"]) == 2
    f = rows[0]["found"]
    assert f[("clean", "none")] and f[("clean", "clahe")]
    assert not f[("dim", "none")] and f[("dim", "clahe")]


def test_the_command_reads_a_photo_folder_and_writes_its_report(small_face_scene, tmp_path, capsys):
    """``python -m djsmile.training.dimlight DIR --json OUT`` as the model card runs it (it raised AttributeError)."""
    import json

    import cv2
    from djsmile.training.dimlight import main
    for cls in ("smile", "no_smile"):
        (tmp_path / "photos" / cls).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "photos" / cls / "1.png"), small_face_scene(60))
    out = tmp_path / "dim.json"
    rc = main([str(tmp_path / "photos"), "--set", "detector.min_face_fraction=0.1", "--conditions", "clean,dark",
               "--variant", "none:equalize=none", "--variant", "auto:equalize=auto", "--json", str(out)])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["n_photos"] == 2 and rep["n_reference"] == 2
    assert rep["summary"]["clean"]["none"]["all"] == {"n": 2, "found": 1.0}
    assert "clean" in capsys.readouterr().out
    with pytest.raises(Exception, match="min_face_fraction"):
        main([str(tmp_path / "photos"), "--set", "detector.min_face_fraction=7"])
