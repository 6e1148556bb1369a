"""Memorisation check: copies are flagged, independent samples mostly are not; feature cache."""

from __future__ import annotations

import numpy as np

from dermsynth.metrics.features import extract
from dermsynth.metrics.memorisation import memorisation, plot_memorisation, summary


def test_copies_are_flagged_and_independent_samples_are_not():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 16))
    test = rng.normal(size=(300, 16))
    independent = rng.normal(size=(200, 16))
    copies = train[:20] + rng.normal(scale=1e-3, size=(20, 16))
    result = memorisation(train, np.concatenate([independent, copies]), test)
    flagged = set(result["flagged"].tolist())
    assert set(range(200, 220)) <= flagged  # every copy
    assert len(flagged - set(range(200, 220))) <= 10  # ~1% of 200 independent ones, with slack
    assert list(result["synthetic_nearest"][200:220]) == list(range(20))
    clean = memorisation(train, independent, test)
    assert 0.3 < clean["below_test_median"] < 0.7
    assert "synthetic_distances" not in summary(clean) and summary(clean)["n_synthetic"] == 200


def test_memorisation_figure(tmp_path):
    rng = np.random.default_rng(1)
    train_f, syn_f, test_f = rng.normal(size=(50, 4)), rng.normal(size=(20, 4)), rng.normal(size=(30, 4))
    result = memorisation(train_f, syn_f, test_f)
    images = rng.integers(0, 255, (50, 16, 16, 3), dtype=np.uint8)
    plot_memorisation(result, images[:20], images, tmp_path / "m.png")
    assert (tmp_path / "m.png").stat().st_size > 10_000


class CountingExtractor:
    settings = "mean-v1"

    def __init__(self):
        self.calls = 0

    def __call__(self, images, progress=False):
        self.calls += 1
        return images.reshape(len(images), -1).mean(axis=1, keepdims=True).astype(np.float64)


def test_feature_cache_is_keyed_by_images_and_settings(tmp_path):
    images = np.random.default_rng(2).integers(0, 255, (6, 8, 8, 3), dtype=np.uint8)
    ex = CountingExtractor()
    a = extract(ex, images, tmp_path)
    b = extract(ex, images, tmp_path)
    assert ex.calls == 1 and np.array_equal(a, b)
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    extract(ex, changed, tmp_path)
    ex.settings = "mean-v2"
    extract(ex, images, tmp_path)
    assert ex.calls == 3 and len(list(tmp_path.glob("*.npy"))) == 3
