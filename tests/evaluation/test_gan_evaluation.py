"""`dermsynth evaluate gan` on phantom data: feature spaces, floors, memorisation; the generative metrics only."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dermsynth.cli import main
from dermsynth.data import DataError
from dermsynth.errors import UsageError
from dermsynth.evaluation.gan import EvaluationConfig, evaluate_gan, parse_measures
from dermsynth.metrics import inception



def test_evaluate_gan_writes_every_generative_metric(tiny_gan, tiny_judge, phantom_data, tmp_path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(main, [
        "evaluate", "gan", "--generator", str(tiny_gan / "generator.pt"), "--data", str(phantom_data),
        "--judge", str(tiny_judge / "classifier.pt"), "--measures", "fid,kid,prdc,memorisation",
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
        low, high = gen["fid"]["overall"]["fid_ci95"]  # the bootstrap interval of every space's FID
        assert 0 <= low < gen["fid"]["overall"]["fid"] < high and gen["fid"]["overall"]["fid_bootstrap_draws"] == 30
        assert (out / block["memorisation"]["figure"]).is_file()
    assert report["n_generated"] == report["n_real_train"]
    assert "detection" not in report and not (out / "table3").exists()  # Table III is `evaluate detection`
    z = report["feature_spaces"]["judge"]["standardised"]  # the judge's features, standardised by real train
    assert z["dims"] > z["dead"] >= 0 and 0 < z["top5_variance_share"] <= 1
    assert "standardised" not in report["feature_spaces"].get("inception", {})
    text = (out / "evaluation.md").read_text()
    assert "floor: real train half vs half" in text
    assert "95 % interval" in text and "a small negative value" in text  # every number explained in a line
    # Real features were cached: a second run reads them back.
    assert len(list((tmp_path / "features").glob("*.npy"))) == 2 * len(spaces)


def test_a_measure_that_is_not_a_generative_metric_is_refused_naming_the_choices(tiny_gan, phantom_data, tmp_path):
    with pytest.raises(UsageError, match="unknown measure"):
        parse_measures("fid,is")
    for measure in ("utility", "detection", "probe"):  # commands of their own now
        result = CliRunner().invoke(main, ["evaluate", "gan", "--generator", str(tiny_gan / "generator.pt"),
                                           "--data", str(phantom_data), "--measures", measure, "--out", str(tmp_path)])
        assert result.exit_code == 2 and f"unknown measure(s) {measure}; choose from fid, kid, prdc, memorisation" \
            in result.output


def test_imagenet_features_are_refused_as_the_judge_space_of_a_projected_gan(tiny_gan, phantom_data, tmp_path):
    from dermsynth.checkpoint import CLASSIFIER_FORMAT, load_checkpoint, save_atomic
    from dermsynth.config import to_plain
    from dermsynth.models.classifier import Classifier, ClassifierConfig

    snapshot = load_checkpoint(tiny_gan / "generator.pt")
    assert snapshot["discriminator_arch"] == "dcgan"  # recorded by training
    snapshot["discriminator_arch"] = "projected"
    (tmp_path / "gan").mkdir()
    save_atomic(snapshot, tmp_path / "gan" / "generator.pt")
    (tmp_path / "gan" / "split.json").write_bytes((tiny_gan / "split.json").read_bytes())
    cfg = ClassifierConfig(arch="effnet", resolution=32)
    save_atomic({"format": CLASSIFIER_FORMAT, "model": Classifier(cfg, pretrained=False).state_dict(),
                 "model_config": to_plain(cfg), "resolution": 32, "crop": "center", "best_epoch": 1,
                 "val_balanced_accuracy": 0.0, "split_sha256": ""}, tmp_path / "effnet.pt")
    with pytest.raises(DataError, match="judge-space FID would not be independent"):
        evaluate_gan(tmp_path / "gan" / "generator.pt", phantom_data, tmp_path / "eval",
                     EvaluationConfig(measures=("fid",), spaces=("judge",), judge=tmp_path / "effnet.pt"))
    # Table III with that judge runs, but says that its rates favour this generator.
    from dermsynth.evaluation.detection import evaluate_detection

    evaluate_detection(tmp_path / "effnet.pt", tmp_path / "t3", generator=tmp_path / "gan" / "generator.pt",
                       per_class=2, progress=False)
    assert "not an independent measure" in (tmp_path / "t3" / "table3.md").read_text()
