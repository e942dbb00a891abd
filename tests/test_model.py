"""SmileModel as the device uses it: ``model.mirror`` (a face and its mirror image, averaged)."""

import cv2
import numpy as np
import pytest

from djsmile.config import Config, load
from djsmile.errors import ConfigError
from djsmile.model import SmileModel


def _faces(shared_datasets, n=12):
    out = []
    for cls in ("smile", "no_smile"):
        files = sorted((shared_datasets / "djsmile" / "faces" / cls).glob("*.jpg"))[: n // 2]
        out += [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]
    return out


def test_mirror_averages_a_face_and_its_mirror_image(shared_datasets):
    plain, mirrored = SmileModel(), SmileModel(mirror=True)
    # the shipped model's own crop of each face (a paired model: a tuple, one crop per input)
    crops = [plain.crop(g, (0, 0, g.shape[1], g.shape[0])) for g in _faces(shared_datasets)]
    flipped = [tuple(c[:, ::-1].copy() for c in cs) if isinstance(cs, tuple) else cs[:, ::-1].copy() for cs in crops]
    p, p_flip = plain.predict_crops(crops), plain.predict_crops(flipped)
    assert np.abs(p - p_flip).max() > 0.005, "the model reads these faces and their mirror images alike: no test"
    got = mirrored.predict_crops(crops)
    np.testing.assert_allclose(got, 0.5 * (p + p_flip), atol=1e-6)
    # with mirror on, a face and its mirror image score the same
    np.testing.assert_allclose(mirrored.predict_crops(flipped), got, atol=1e-6)
    assert mirrored.predict_crops([]).shape == (0,)


def test_mirror_is_a_config_key_the_run_reads(tmp_path):
    assert Config().model.mirror is False
    cfg_file = tmp_path / "djsmile.toml"
    cfg_file.write_text("[model]\nmirror = true\n")
    cfg = load(cfg_file)
    assert cfg.model.mirror is True
    assert SmileModel.from_config(cfg.model).mirror is True
    cfg_file.write_text('[model]\nmirror = "yes"\n')
    with pytest.raises(ConfigError) as e:
        load(cfg_file)
    assert "model.mirror" in str(e.value)
