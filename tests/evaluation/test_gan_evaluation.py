"""`dermsynth evaluate gan` on phantom data: feature spaces, floors, memorisation, Table III, utility."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dermsynth.cli import main
from dermsynth.config import classifier_config, gan_config, load_yaml
from dermsynth.data import CLASSES
from dermsynth.evaluation.gan import evaluate_gan, parse_measures
from dermsynth.evaluation.utility import run_utility, synthetic_counts
from dermsynth.metrics import inception
from dermsynth.training.gan_loop import RunOptions, train_gan
from tests.conftest import TINY_CLASSIFIER, TINY_GAN

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_gan(phantom_data, tmp_path_factory) -> Path:
    cfg = gan_config(load_yaml(REPO / "configs" / "data-efficient.yaml"), TINY_GAN + ["train.total_kimg=0.032"],
                     data_root=phantom_data)
    return train_gan(cfg, RunOptions(out=tmp_path_factory.mktemp("gan") / "run", progress=False))


def test_evaluate_gan_writes_every_measure_but_utility(tiny_gan, tiny_judge, phantom_data, tmp_path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(main, [
        "evaluate", "gan", "--generator", str(tiny_gan / "generator.pt"), "--data", str(phantom_data),
        "--judge", str(tiny_judge / "classifier.pt"), "--measures", "fid,kid,prdc,memorisation,detection",
        "--out", str(out), "--no-progress", "--feature-cache", str(tmp_path / "features"),
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "evaluation.json").read_text())
    spaces = {"judge"} | ({"inception"} if inception.packaged_weights() else set())
    assert set(report["feature_spaces"]) == spaces
    for space in spaces:
        block = report["feature_spaces"][space]
        gen, floor = block["generated_vs_train"], block["floor_half_vs_half"]
        assert gen["fid"]["overall"]["fid"] > 0 and floor["fid"]["overall"]["fid"] >= 0
        assert set(gen["prdc"]["overall"]) == {"precision", "recall", "density", "coverage"}
        assert "nv" in gen["fid"]["per_class"] and "fid" in gen["fid"]["mean"]
        assert (out / block["memorisation"]["figure"]).is_file()
    assert report["n_generated"] == report["n_real_train"]
    assert [row["class"] for row in report["detection"]] == list(CLASSES)
    assert (out / "table3" / "table3.md").is_file()
    assert "floor: real train half vs half" in (out / "evaluation.md").read_text()
    # Real features were cached: a second run reads them back.
    assert len(list((tmp_path / "features").glob("*.npy"))) == 2 * len(spaces)


def test_measures_need_their_inputs(tiny_gan, phantom_data, tmp_path):
    with pytest.raises(Exception, match="needs --judge"):
        evaluate_gan(tiny_gan / "generator.pt", phantom_data, tmp_path, measures=("detection",))
    with pytest.raises(Exception, match="unknown measure"):
        parse_measures("fid,is")
    result = CliRunner().invoke(main, ["evaluate", "gan", "--generator", str(tiny_gan / "generator.pt"),
                                       "--data", str(phantom_data), "--measures", "utility", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--utility-config" in result.output


def test_synthetic_counts_top_up_minority_classes():
    real = {"nv": 600, "mel": 120, "df": 10}
    counts = synthetic_counts(real, "real+synthetic", 100, 50)
    assert counts["nv"] == 0 and counts["mel"] == 0 and counts["df"] == 90 and counts["vasc"] == 100
    assert set(synthetic_counts(real, "synthetic", 100, 50).values()) == {50}
    assert set(synthetic_counts(real, "real", 100, 50).values()) == {0}


def test_utility_study_trains_every_setting_and_seed_and_reuses_finished_runs(tiny_gan, phantom_data, tmp_path):
    cfg = classifier_config(load_yaml(REPO / "configs" / "classifier-paper.yaml"),
                            TINY_CLASSIFIER + ["train.epochs=1"], data_root=phantom_data)
    out = tmp_path / "utility"
    summary = run_utility(tiny_gan / "generator.pt", phantom_data, tiny_gan / "split.json", cfg, out,
                          seeds=(0, 1), topup_to=12, synthetic_per_class=8, progress=False)
    assert {"real", "real+synthetic", "synthetic"} <= set(summary)
    diff = summary["difference_real+synthetic_minus_real"]
    assert len(diff["per_seed"]) == 2
    runs = json.loads((out / "utility.json").read_text())["runs"]
    assert len(runs) == 6 and all(0 <= r["balanced_accuracy"] <= 1 for r in runs)
    syn_only = json.loads((out / "synthetic-seed0" / "run.json").read_text())
    assert syn_only["train_images"] == 0 and set(syn_only["synthetic_train_images_per_class"].values()) == {8}
    mixed = json.loads((out / "real-plus-synthetic-seed0" / "run.json").read_text())
    assert mixed["train_images"] > 0 and sum(mixed["synthetic_train_images_per_class"].values()) > 0
    assert (out / "utility.png").is_file() and "real+synthetic minus real" in (out / "utility.md").read_text()
    stamp = (out / "real-seed0" / "classifier.pt").stat().st_mtime_ns
    run_utility(tiny_gan / "generator.pt", phantom_data, tiny_gan / "split.json", cfg, out,
                seeds=(0, 1), topup_to=12, synthetic_per_class=8, progress=False)
    assert (out / "real-seed0" / "classifier.pt").stat().st_mtime_ns == stamp
