"""The data checks hold in every command that reads data (evaluate gan, detection, run), and a study or an
evaluation that was told to let something through records that it did."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from dermsynth.cli import main
from dermsynth.data.index import DataChecks
from dermsynth.errors import ConfigError
from dermsynth.evaluation.gan import EvaluationConfig, evaluate_gan
from dermsynth.study.pipeline import run_study
from dermsynth.storage import write_marker
from tests.test_pipeline import tiny_study


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def marked(phantom_data, tmp_path):
    """The phantom data, marked as if they were a GAN's export."""
    data = tmp_path / "marked"
    shutil.copytree(phantom_data, data)
    write_marker(data, "export")
    return data


def test_the_checks_say_what_changed():
    assert DataChecks().changed() == {} and DataChecks().sets() == []
    checks = DataChecks(allow_synthetic=True, label_conflicts="majority")
    assert checks.sets() == ["data.allow_synthetic=true", "data.label_conflicts=majority"]
    assert checks.readers() == {"synthetic": "allow", "label_conflicts": "majority", "follow_links": False}


def test_evaluate_gan_utility_and_detection_refuse_a_synthetic_data_root_in_one_line(marked, tiny_gan, tiny_judge,
                                                                                   tmp_path):
    for args in (("evaluate", "gan", "--generator", tiny_gan / "generator.pt", "--measures", "fid"),
                 ("evaluate", "utility", "--generator", tiny_gan / "generator.pt"),
                 ("evaluate", "detection", "--judge", tiny_judge / "classifier.pt", "--generator",
                  tiny_gan / "generator.pt", "--per-class", 2)):
        result = cli(*args, "--data", marked, "--out", tmp_path / "eval", "--no-progress")
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert "are synthetic images made by dermsynth" in lines[0] and "--allow-synthetic uses them anyway" in lines[0]


def test_an_evaluation_told_to_allow_synthetic_data_records_it(marked, tiny_gan, tiny_judge, tmp_path):
    out = tmp_path / "eval"
    report = evaluate_gan(tiny_gan / "generator.pt", marked, out, EvaluationConfig(
        measures=("fid",), spaces=("judge",), judge=tiny_judge / "classifier.pt",
        feature_cache=tmp_path / "features", checks=DataChecks(allow_synthetic=True)), progress=False)
    assert report["data_checks"] == {"allow_synthetic": True}
    assert len(report["data_warnings"]) == 1 and "synthetic images were allowed" in report["data_warnings"][0]
    assert json.loads((out / "evaluation.json").read_text())["data_checks"] == {"allow_synthetic": True}
    assert "Data taken in on request" in (out / "evaluation.md").read_text()


def test_a_study_refuses_synthetic_data_unless_told_and_then_records_it(marked, tmp_path, capsys):
    config = tiny_study(tmp_path)
    args = ("run", "--config", config, "--data", marked, "--out", tmp_path / "run", "--stages", "prepare,split,report",
            "--no-progress")
    refused = cli(*args)
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
    assert "--allow-synthetic uses them anyway" in refused.output
    allowed = cli(*args, "--allow-synthetic")
    assert allowed.exit_code == 0, allowed.output
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert provenance["data_checks"] == {"allow_synthetic": True}
    assert "synthetic images were allowed" in provenance["data_warnings"][0]
    for name in ("gan_config", "judge_config"):  # every sub-run reads the data with the same checks
        assert provenance[name]["data"]["allow_synthetic"] is True
    assert "synthetic images were allowed" in json.loads((tmp_path / "run" / "data-summary.json").read_text())[
        "warnings"][0]
    assert "Taken in on request" in (tmp_path / "run" / "report.html").read_text()
    # The same choice written in the study file is the same study: nothing reruns.
    capsys.readouterr()
    run_study(tiny_study(tmp_path, data_checks={"allow_synthetic": True}), tmp_path / "run", marked,
              stages=("prepare", "split"), progress=False)
    assert capsys.readouterr().out.count("up to date, skipped") == 2


def test_a_study_names_a_bad_data_checks_section(tmp_path):
    with pytest.raises(ConfigError, match="data_checks.label_conflicts: expected one of refuse, drop, majority, "
                                          "got 'vote'"):
        run_study(tiny_study(tmp_path, data_checks={"label_conflicts": "vote"}), tmp_path / "run", progress=False)
