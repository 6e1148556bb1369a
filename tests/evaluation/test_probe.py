"""The utility probe: known-answer controls on phantom data, a lesion bootstrap that narrows with more test
lesions, and `evaluate utility`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from dermsynth.cli import main
from dermsynth.data.index import open_index
from dermsynth.data.phantom import make_phantom
from dermsynth.data.splits import make_split, save_split
from dermsynth.evaluation.probe import (Lite0Features, ProbeConfig, fit_logistic, probe_caption, probe_data,
                                        run_crossfit, run_probe)


def test_the_controls_come_out_as_known_on_phantom_data(tmp_path):
    # Phantom classes are learnable: half the train lesions must score clearly lower than all of them, and
    # top-up images with shuffled labels must not help.
    root = make_phantom(tmp_path / "data", per_class=80, size=48, seed=0)
    index = open_index(root)
    save_split(make_split(index, (0.5, 0.1, 0.4), 0), tmp_path / "split.json", index)
    train, test, *_ = probe_data(root, tmp_path / "split.json", 32, extractor=Lite0Features(64), progress=False)
    cfg = ProbeConfig(arms=("real", "half", "shuffled"), seeds=6, iterations=100, bootstrap=500, topup_to=50)
    result = run_probe(train, test, cfg, progress=False)
    half, shuffled = result["differences"]["half"], result["differences"]["shuffled"]
    assert half["ci95"][0] > 0 and half["mean"] > 2, half  # real minus half: a clear gain
    assert shuffled["ci95"][0] <= 0 and shuffled["mean"] < 1, shuffled
    assert result["controls"] == {"positive_resolved": True, "negative_no_gain": True,
                                  "statement": result["controls"]["statement"]}
    assert result["arms"]["real"]["balanced_accuracy_std"] == 0  # a convex fit on the same data every seed


def _gaussian(counts, rng, means, name="L"):
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    return {"features": (means[labels] + rng.normal(size=(len(labels), means.shape[1]))).astype(np.float32),
            "labels": labels, "lesions": [f"{name}{i // 2}" for i in range(len(labels))]}


def test_the_bootstrap_interval_narrows_with_more_test_lesions():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(7, 16)) * 0.5
    train = _gaussian([600, 100, 100, 60, 40, 20, 20], rng, means)
    cfg = ProbeConfig(arms=("real", "half"), seeds=4, iterations=50, bootstrap=400)
    widths = [run_probe(train, _gaussian([k * n for n in (60, 10, 10, 6, 4, 2, 2)], rng, means, "T"), cfg,
                        progress=False)["differences"]["half"]["half_width"] for k in (1, 8)]
    assert widths[1] < 0.7 * widths[0], widths


def test_cross_fitting_pools_every_fold_and_narrows_the_interval():
    rng = np.random.default_rng(1)
    means = rng.normal(size=(7, 16)) * 0.5
    shape = [120, 20, 20, 12, 8, 4, 4]
    folds = [_gaussian([5 * n for n in shape], rng, means) for _ in range(5)]
    for k, fold in enumerate(folds):
        fold["lesions"] = [f"F{k}-{les}" for les in fold["lesions"]]

    def merged(parts):
        return {"features": np.concatenate([p["features"] for p in parts]),
                "labels": np.concatenate([p["labels"] for p in parts]),
                "lesions": [les for p in parts for les in p["lesions"]]}

    cfg = ProbeConfig(arms=("real", "half"), seeds=4, iterations=50, bootstrap=400)
    crossed = [(merged(folds[:k] + folds[k + 1:]), folds[k], None) for k in range(5)]
    pooled = run_crossfit(crossed, cfg, progress=False)
    single = run_probe(*crossed[0][:2], cfg, progress=False)
    assert pooled["folds"] == 5 and pooled["n_test"] == sum(len(f["labels"]) for f in folds)
    assert pooled["n_test_lesions"] == len({les for f in folds for les in f["lesions"]})
    assert pooled["differences"]["half"]["half_width"] < 0.7 * single["differences"]["half"]["half_width"]
    # The pooled baseline is the balanced accuracy of every fold's own fit on its own test images, put together.
    right = np.concatenate([fit_logistic(train["features"], train["labels"], cfg.l2, cfg.iterations)(
        test["features"]) == test["labels"] for train, test, _ in crossed])
    labels = np.concatenate([test["labels"] for _, test, _ in crossed])
    by_hand = np.mean([right[labels == c].mean() for c in range(7)]) * 100
    assert pooled["arms"]["real"]["balanced_accuracy_mean"] == pytest.approx(by_hand)
    assert "5 lesion-grouped folds" in probe_caption(pooled)
    # Folds that test a lesion twice, or train on their own test lesions, are refused before any fit.
    with pytest.raises(ValueError, match="fold 1: its test part shares lesions"):
        run_crossfit([crossed[0], crossed[0]], cfg, progress=False)
    with pytest.raises(ValueError, match="fold 1: its train part holds lesions of its own test part"):
        run_crossfit([crossed[0], (merged(folds), folds[1], None)], cfg, progress=False)
    with pytest.raises(ValueError, match="^the train part holds lesions"):  # one split: no fold to name
        run_probe(merged(folds), folds[0], cfg, progress=False)


def test_evaluate_utility_runs_the_probe_and_reports_every_arm(tiny_gan, phantom_data, tmp_path):
    out = tmp_path / "eval"
    options = ["seeds=2", "iterations=20", "bootstrap=100", "feature_resolution=32", "topup_to=12",
               "synthetic_per_class=6"]
    result = CliRunner().invoke(main, [
        "evaluate", "utility", "--generator", str(tiny_gan / "generator.pt"), "--data", str(phantom_data),
        "--out", str(out), "--no-progress", "--feature-cache", str(tmp_path / "features"),
        *[x for o in options for x in ("--probe", o)]])
    assert result.exit_code == 0, result.output
    probe = json.loads((out / "probe" / "probe.json").read_text())
    assert set(probe["arms"]) == {"real", "half", "shuffled", "topup", "synthetic"}
    assert set(probe["differences"]) == {"half", "shuffled", "topup", "synthetic"}
    for d in probe["differences"].values():
        assert d["ci95"][0] <= d["mean"] <= d["ci95"][1] and d["mde"] > 0 and len(d["per_seed"]) == 2
    assert "no val or test image" in probe["generator_check"]
    assert "positive control" in result.output and not (out / "study").exists()  # no --classifier: probe only
    assert "positive control" in (out / "probe" / "probe.md").read_text()


def test_a_bad_probe_option_is_named(tiny_gan, phantom_data, tmp_path):
    with pytest.raises(ValueError, match=r"arms\.1\n  Input should be 'real', 'half'"):
        ProbeConfig(arms=("real", "bogus"))
    base = ["evaluate", "utility", "--generator", str(tiny_gan / "generator.pt"), "--data", str(phantom_data),
            "--out", str(tmp_path / "eval")]
    result = CliRunner().invoke(main, [*base, "--utility", "seeds=[0]"])
    assert result.exit_code == 2 and "add --classifier" in result.output
    result = CliRunner().invoke(main, [*base, "--classifier", "classifier-tiny", "--utility", "arms=[filter]"])
    assert result.exit_code == 2 and "the filter arm needs a judge" in result.output
    assert not (tmp_path / "eval" / "probe").exists()  # refused before the probe's minutes
    result = CliRunner().invoke(main, [*base, "--images", str(phantom_data)])
    assert result.exit_code == 2 and "one of --generator" in result.output
    result = CliRunner().invoke(main, [*base, "--probe", "seeds=one"])
    assert result.exit_code == 2 and "probe.seeds" in result.output and len(result.output.strip().splitlines()) <= 3
