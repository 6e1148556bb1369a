"""Known-answer tests of FID, KID, precision/recall and density/coverage."""

from __future__ import annotations

import numpy as np
import pytest

from dermsynth.metrics import METRICS, per_class
from dermsynth.metrics.frechet import fid, fid_bootstrap, frechet_distance, gaussian_stats
from dermsynth.metrics.kid import kid, mmd2_unbiased
from dermsynth.metrics.prdc import prdc


def test_fid_of_a_set_against_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 16))
    assert METRICS["fid"](x, x)["fid"] == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_closed_form_for_known_gaussians():
    rng = np.random.default_rng(1)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a @ a.T + np.eye(d), b @ b.T + np.eye(d)
    # Diagonal case by hand: sum (m1 - m2)^2 + sum (sqrt(v1) - sqrt(v2))^2.
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 16.0])
    expected = 1.0**2 * 3 + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert frechet_distance(np.zeros(3), np.diag(v1), np.ones(3), np.diag(v2)) == pytest.approx(expected)
    # General case against scipy's matrix square root of the product.
    scipy_linalg = pytest.importorskip("scipy.linalg")
    covmean = scipy_linalg.sqrtm(s1 @ s2).real
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8)


def test_fid_of_samples_approaches_the_closed_form():
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, size=(20000, 4))
    y = rng.normal(0.5, 2.0, size=(20000, 4))
    expected = 4 * 0.5**2 + 4 * (1.0 - 2.0) ** 2
    assert METRICS["fid"](x, y)["fid"] == pytest.approx(expected, rel=0.03)
    mu, sigma = gaussian_stats(x)
    assert sigma.shape == (4, 4) and np.allclose(mu, 0, atol=0.05)


def test_fid_bootstrap_interval_covers_the_sampling_spread_and_shrinks_with_more_images():
    rng = np.random.default_rng(3)
    real = rng.normal(0.0, 1.0, size=(4000, 8))
    expected = 8 * 0.3**2 + 8 * (1.0 - 1.5) ** 2  # the closed form between the two Gaussians
    small, large = (fid_bootstrap(real, rng.normal(0.3, 1.5, size=(n, 8)), draws=60) for n in (200, 3200))
    assert small["fid_ci95"][0] < small["fid"] < small["fid_ci95"][1] and small["fid_bootstrap_draws"] == 60
    assert large["fid_se"] < small["fid_se"] / 2.5  # 16x the images: about a quarter of the error
    # Fresh samples of the generated set scatter as the interval says: the truth lies within the large one.
    assert large["fid_ci95"][0] - 0.2 < expected < large["fid_ci95"][1] + 0.2
    # Cut at zero: a generated set drawn like the real one.
    same = fid_bootstrap(real, rng.normal(0.0, 1.0, size=(100, 8)), draws=30)
    assert same["fid_ci95"][0] >= 0.0


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_otherwise():
    rng = np.random.default_rng(3)
    same = [mmd2_unbiased(rng.normal(size=(100, 8)), rng.normal(size=(100, 8))) for _ in range(300)]
    # Unbiased: the mean over many draws is ~0 (a biased estimate would be clearly > 0).
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same))
    assert min(same) < 0 < max(same)
    x, y = rng.normal(size=(400, 8)), rng.normal(1.0, 1.0, size=(400, 8))
    result = kid(x, y, subsets=20, subset_size=200)
    assert result["kid"] > 10 * result["kid_std"] / np.sqrt(20)


def test_prdc_hand_worked_case():
    # Real points on a line at 0,1,2,3,4; k=1 for readability: each real ball has radius 1.
    real = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    fake = np.array([[0.5], [10.0], [10.5]])
    r = prdc(real, fake, k_pr=1, k_dc=1)
    assert r["precision"] == pytest.approx(1 / 3)  # only 0.5 lies in a real ball
    # Fake balls (k=1): 0.5 -> radius 9.5 (covers all reals), so recall = 1.
    assert r["recall"] == pytest.approx(1.0)
    assert r["density"] == pytest.approx((2 / 1) / 3)  # 0.5 is in the balls of 0 and 1
    assert r["coverage"] == pytest.approx(2 / 5)  # reals 0 and 1 have a fake within radius 1


def test_prdc_agrees_with_the_reference_implementation():
    reference = pytest.importorskip("prdc")
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(300, 8)), rng.normal(0.3, 1.2, size=(250, 8))
    ours = prdc(real, fake, k_pr=3, k_dc=5)
    ref_pr = reference.compute_prdc(real, fake, nearest_k=3)
    ref_dc = reference.compute_prdc(real, fake, nearest_k=5)
    assert ours["precision"] == pytest.approx(ref_pr["precision"])
    assert ours["recall"] == pytest.approx(ref_pr["recall"])
    assert ours["density"] == pytest.approx(ref_dc["density"])
    assert ours["coverage"] == pytest.approx(ref_dc["coverage"])


def test_per_class_averages_over_classes_present_on_both_sides():
    rng = np.random.default_rng(5)
    real = np.concatenate([rng.normal(0, 1, (200, 4)), rng.normal(5, 1, (200, 4))])
    real_labels = np.repeat([0, 1], 200)
    fake, fake_labels = real.copy(), real_labels.copy()
    fake[fake_labels == 1] += 1.0  # class 1 is shifted by 1 in every dimension: FID ~ 4
    result = per_class(METRICS["fid"], real, real_labels, fake, fake_labels, ["a", "b", "c"])
    assert set(result["per_class"]) == {"a", "b"}
    assert result["per_class"]["a"]["fid"] == pytest.approx(0.0, abs=1e-8)
    assert result["per_class"]["b"]["fid"] == pytest.approx(4.0, rel=1e-6)
    assert result["mean"]["fid"] == pytest.approx(2.0, rel=1e-6)


def test_a_registered_metric_is_computed_and_shown_in_every_table(monkeypatch):
    from dermsynth.evaluation.gan import _metric_block, comparisons, evaluation_markdown
    from dermsynth.metrics import REGISTRY, Column, Metric, overall_table, per_class_table

    gap = Metric("gap", lambda real, fake, scale=1.0: {"gap": scale * float(abs(real.mean() - fake.mean()))},
                 (Column("gap", "mean gap", digits=1),), per_class=("gap",), options=("scale",))
    monkeypatch.setitem(REGISTRY, "gap", gap)
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(40, 3)), rng.normal(2.0, size=(40, 3))
    labels = np.repeat([0, 1], 20)
    block = _metric_block(("gap",), real, labels, fake, labels, {"scale": 10.0, "subset_size": 5})
    assert set(block) == {"gap"}
    assert block["gap"]["overall"]["gap"] == pytest.approx(10 * abs(real.mean() - fake.mean()))
    headers, rows = overall_table({"generated": block})
    assert headers == ["comparison", "mean gap"] and rows[0][1] == f"{block['gap']['overall']['gap']:.1f}"
    assert per_class_table(block, ("nv", "mel"))[0] == ["class", "mean gap"]
    report = {"generator": "g.pt", "generator_kimg": 1.0, "n_generated": 40, "n_real_train": 40, "resolution": 8,
              "n_real_test": 0, "feature_spaces": {"x": {"generated_vs_train": block, "floor_half_vs_half": block}}}
    assert "| mean gap |" in evaluation_markdown(report)
    assert list(comparisons(report["feature_spaces"]["x"])) == ["generated vs real train",
                                                                "floor: real train half vs half"]


def test_standardised_features_weigh_every_unit_alike_and_drop_dead_ones():
    from dermsynth.metrics.features import Standardiser

    rng = np.random.default_rng(4)
    real = rng.normal(size=(2000, 6))
    fake = rng.normal(size=(2000, 6))
    fake[:, 0] += 1.0  # a shift in one unit
    scales = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 100.0])  # and one unit a hundred times larger than the rest
    real_s, fake_s = real * scales, fake * scales
    real_s = np.concatenate([real_s, np.zeros((2000, 1))], axis=1)  # a dead unit
    fake_s = np.concatenate([fake_s, np.zeros((2000, 1))], axis=1)
    z = Standardiser(real_s)
    assert z.summary["dims"] == 7 and z.summary["dead"] == 1 and z.summary["top5_variance_share"] > 0.99
    # Raw, the large unit's sampling noise swamps the shift; standardised, the distance is the shift's, about 1.
    standardised = METRICS["fid"](z(real_s), z(fake_s))["fid"]
    assert standardised == pytest.approx(METRICS["fid"](real, fake)["fid"], rel=0.05)
    assert standardised == pytest.approx(1.0, abs=0.15)
    assert METRICS["fid"](real_s, fake_s)["fid"] > 2 * standardised
    assert z(fake_s).shape == (2000, 6)


@pytest.mark.parametrize("n_real, n_fake", [(300, 40), (40, 300), (30, 30), (300, 200)])
def test_fid_of_a_set_smaller_than_the_dimension_equals_the_full_formula(n_real, n_fake):
    rng = np.random.default_rng(0)
    real = rng.normal(size=(n_real, 64)) @ rng.normal(size=(64, 64))
    fake = rng.normal(0.3, 1.2, size=(n_fake, 64)) @ rng.normal(size=(64, 64))
    full = frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))
    assert fid(real, fake)["fid"] == pytest.approx(full, rel=1e-7) and fid(fake, real)["fid"] == pytest.approx(full)
