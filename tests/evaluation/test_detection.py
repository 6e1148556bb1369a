"""Table III from a generator checkpoint and from a generated folder, with the real-test ceiling."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dermsynth.cli import main
from dermsynth.config import gan_config, load_yaml
from dermsynth.evaluation.detection import PAPER_TABLE3
from dermsynth.generate import generate_images, load_generator, sample
from dermsynth.models.classifier import load_classifier, predict_proba
from dermsynth.training.gan_loop import RunOptions, train_gan
from tests.conftest import TINY_GAN

REPO = Path(__file__).resolve().parents[2]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def generator(phantom_data, tmp_path_factory) -> Path:
    """A 32 px generator snapshot after two steps (what it draws does not matter here)."""
    cache = tmp_path_factory.mktemp("gan-cache")
    cfg = gan_config(load_yaml(REPO / "configs/demo.yaml"),
                     TINY_GAN + ["train.total_kimg=0.016", f"data.cache_dir={cache}"], data_root=phantom_data)
    return train_gan(cfg, RunOptions(out=tmp_path_factory.mktemp("gan") / "run", progress=False)) / "generator.pt"


def test_table3_from_a_checkpoint_and_from_its_export_agree(tiny_judge, generator, phantom_data, tmp_path):
    judge = tiny_judge / "classifier.pt"
    result = invoke("evaluate", "detection", "--generator", generator, "--judge", judge, "--per-class", 3,
                    "--data", phantom_data, "--out", tmp_path / "t3", "--no-progress")
    assert result.exit_code == 0, result.output
    for name in ("table3.md", "table3.csv", "table3.json"):
        assert (tmp_path / "t3" / name).is_file(), name
    table = json.loads((tmp_path / "t3" / "table3.json").read_text())
    rows = {r["class"]: r for r in table["rows"]}
    assert list(rows) == ["nv", "mel", "bkl", "bcc", "akiec", "vasc", "df"]  # all 7 by default
    assert rows["nv"]["paper_detection_pct"] == 63.41 and rows["bcc"]["paper_avg_confidence_pct"] == 99.90
    assert rows["df"]["paper_detection_pct"] is None and rows["df"]["images"] == 3
    mean = round(sum(r["detection_pct"] for r in rows.values()) / len(rows), 1)  # the headline, in the model card
    assert f"Table III mean detection % {mean}" in (generator.parent / "MODEL_CARD.md").read_text()

    # The numbers are what the judge says about sample(G, class, n, seed).
    model, _ = load_classifier(judge)
    G, _ = load_generator(generator)
    proba = predict_proba(model, sample(G, 3, 3, seed=0))  # bcc
    assert rows["bcc"]["detection_pct"] == round(100 * float((proba.argmax(1) == 3).mean()), 2)
    assert rows["bcc"]["avg_confidence_pct"] == round(100 * float(proba[:, 3].mean()), 2)

    # The ceiling column is the judge's recall on the real test part, as evaluate-classifier reports it.
    result = invoke("evaluate-classifier", "--checkpoint", judge, "--data", phantom_data,
                    "--out", tmp_path / "eval", "--no-progress")
    assert result.exit_code == 0, result.output
    per_class = json.loads((tmp_path / "eval" / "metrics.json").read_text())["per_class"]
    for name, row in rows.items():
        recall = per_class[name]["recall"]
        assert row["real_test_recall_pct"] == round(100 * recall, 2)
        assert row["real_test_images"] == per_class[name]["support"]

    # With test-time flips: both the generated images and the ceiling are judged on the mean of 4 views.
    result = invoke("evaluate", "detection", "--generator", generator, "--judge", judge, "--per-class", 3,
                    "--data", phantom_data, "--out", tmp_path / "t3-tta", "--tta", "flips", "--no-progress")
    assert result.exit_code == 0, result.output
    flipped = {r["class"]: r for r in json.loads((tmp_path / "t3-tta" / "table3.json").read_text())["rows"]}
    proba = predict_proba(model, sample(G, 3, 3, seed=0), tta="flips")
    assert flipped["bcc"]["avg_confidence_pct"] == round(100 * float(proba[:, 3].mean()), 2)
    result = invoke("evaluate-classifier", "--checkpoint", judge, "--data", phantom_data, "--tta", "flips",
                    "--out", tmp_path / "eval-tta", "--no-progress")
    per_class = json.loads((tmp_path / "eval-tta" / "metrics.json").read_text())["per_class"]
    assert all(row["real_test_recall_pct"] == round(100 * per_class[n]["recall"], 2) for n, row in flipped.items())

    # The same images exported as PNGs and judged from the folder give the same figures.
    export = generate_images(generator, tmp_path / "export", per_class=3, classes="nv,bcc,mel,bkl", seed=0,
                             progress=False)
    result = invoke("evaluate", "detection", "--images", export, "--judge", judge, "--classes", "nv,bcc,mel,bkl",
                    "--out", tmp_path / "t3-folder", "--no-progress")
    assert result.exit_code == 0, result.output
    with open(tmp_path / "t3-folder" / "table3.csv", newline="") as f:
        from_folder = list(csv.DictReader(f))
    assert [r["class"] for r in from_folder] == ["nv", "bcc", "mel", "bkl"]
    for r in from_folder:
        assert float(r["detection_pct"]) == rows[r["class"]]["detection_pct"]
        assert float(r["avg_confidence_pct"]) == rows[r["class"]]["avg_confidence_pct"]
        assert r["real_test_recall_pct"] == ""  # no --data: the ceiling is left empty, and said so
    markdown = (tmp_path / "t3-folder" / "table3.md").read_text()
    assert "| bcc | 3 |" in markdown and "29.73" in markdown and "pass --data" in markdown


def test_detection_refuses_bad_requests_with_one_line(tiny_judge, generator, phantom_data, tmp_path):
    judge = tiny_judge / "classifier.pt"
    both = invoke("evaluate", "detection", "--generator", generator, "--images", tmp_path, "--judge", judge)
    neither = invoke("evaluate", "detection", "--judge", judge)
    for result in (both, neither):
        assert result.exit_code == 2 and "exactly one of --generator" in result.output
    real = invoke("evaluate", "detection", "--images", phantom_data, "--judge", judge, "--out", tmp_path / "x")
    assert real.exit_code == 2 and "refusing to score" in real.output
    swapped = invoke("evaluate", "detection", "--generator", judge, "--judge", generator, "--out", tmp_path / "y")
    assert swapped.exit_code == 2 and "Traceback" not in swapped.output and "expected" in swapped.output
    unknown = invoke("evaluate", "detection", "--generator", generator, "--judge", judge, "--classes", "nv,scc")
    assert unknown.exit_code == 2 and "unknown class" in unknown.output


def test_a_judge_of_other_data_is_named_in_the_refusal(tiny_judge, generator, ham, tmp_path):
    judge = tiny_judge / "classifier.pt"
    result = invoke("evaluate", "detection", "--generator", generator, "--judge", judge, "--data", ham,
                    "--per-class", 2, "--out", tmp_path / "x", "--no-progress")
    assert result.exit_code == 2 and f"the judge {judge}'s split: its test part names" in result.output


def test_help_lists_the_evaluation_commands():
    result = invoke("--help")
    for name in ("train-classifier", "evaluate-classifier", "evaluate"):
        assert name in result.output
    listed = invoke("evaluate", "--help").output
    assert all(name in listed for name in ("detection", "gan", "images", "utility", "compare"))
    assert set(PAPER_TABLE3) == {"nv", "bcc", "mel", "bkl"}
