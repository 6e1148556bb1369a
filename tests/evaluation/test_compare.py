"""Several evaluated image sets side by side (`dermsynth evaluate compare`)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dermsynth.cli import main
from dermsynth.errors import DataError
from dermsynth.evaluation.gan import evaluate_images
from dermsynth.evaluation.compare import compare_evaluations
from tests.evaluation.test_evaluate_images import copy_part, judge_space


def test_two_sets_side_by_side_and_the_refusals(tiny_gan, tiny_judge, phantom_data, tmp_path):
    split_file = tiny_gan / "split.json"
    cfg = judge_space(tiny_judge, split_file, tmp_path)
    evaluated = {}
    for part in ("train", "val"):  # the train images themselves (FID 0) and unseen real images
        images = copy_part(phantom_data, split_file, part, tmp_path / f"{part}-images", "folder")
        evaluated[part] = tmp_path / f"{part}-set"
        evaluate_images(images, phantom_data, evaluated[part], cfg, resolution=32, progress=False)
    table = compare_evaluations([evaluated["train"], evaluated["val"]], tmp_path / "compare")
    judge = table["spaces"]["judge"]["sets"]
    assert abs(judge["train-set"]["fid"]) < 1e-3 < judge["val-set"]["fid"]
    assert judge["train-set"]["memorised_pct"] == 100
    text = (tmp_path / "compare" / "compare.md").read_text()
    assert "| train-set |" in text and "| val-set |" in text and "compare.png" in text
    assert (tmp_path / "compare" / "compare.png").stat().st_size > 0
    cli = CliRunner().invoke(main, ["evaluate", "compare", str(evaluated["train"]), str(evaluated["val"]),
                                    "--out", str(tmp_path / "cli")])
    assert cli.exit_code == 0 and "| val-set |" in cli.output
    # A probe that `evaluate utility --out` wrote into a set's folder is compared too.
    (evaluated["val"] / "probe").mkdir()
    (evaluated["val"] / "probe" / "probe.json").write_text(json.dumps(
        {"differences": {"topup": {"mean": 4.25, "ci95": [1.5, 7.0]}}}))
    compare_evaluations([evaluated["train"], evaluated["val"]], tmp_path / "probed")
    assert "| val-set | topup | +4.2 | [+1.5, +7.0] |" in (tmp_path / "probed" / "compare.md").read_text()
    alone = CliRunner().invoke(main, ["evaluate", "compare", str(evaluated["train"]), "--out", str(tmp_path / "z")])
    assert alone.exit_code == 2 and "at least two" in alone.output and "Traceback" not in alone.output

    with pytest.raises(DataError, match="no evaluation.json"):
        compare_evaluations([evaluated["train"], tmp_path], tmp_path / "x")
    report = json.loads((evaluated["val"] / "evaluation.json").read_text())
    report["resolution"] = 64
    (evaluated["val"] / "evaluation.json").write_text(json.dumps(report))
    with pytest.raises(DataError, match="val-set: measured unlike the first set \\(resolution differ"):
        compare_evaluations([evaluated["train"], evaluated["val"]], tmp_path / "y")
