"""Scoring a judge: scikit-learn metrics, the test part and --split all, and the leakage guard."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from dermsynth.cli import main
from dermsynth.evaluation.classification import (
    LeakageError,
    check_no_leakage,
    classification_metrics,
    metrics_markdown,
)
from dermsynth.checkpoint import load_checkpoint, save_atomic
from tests.conftest import read_rows, write_csv, write_ham


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_metrics_agree_with_sklearn_and_skip_absent_classes():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(7), 10)
    proba = rng.dirichlet(np.ones(7), size=70)
    proba[np.arange(70), labels] += 0.5 * rng.random(70)  # better than chance
    proba /= proba.sum(1, keepdims=True)
    m = classification_metrics(labels, proba)
    assert m["macro_auc_ovr"] == pytest.approx(roc_auc_score(labels, proba, multi_class="ovr"), abs=1e-6)
    assert m["accuracy"] == pytest.approx((proba.argmax(1) == labels).mean(), abs=1e-6)
    assert sum(map(sum, m["confusion_matrix"])) == 70

    # df absent from the scored set: null recall/F1/AUC, macro averages over the six present classes.
    keep = labels != 6
    m = classification_metrics(labels[keep], proba[keep])
    df = m["per_class"]["df"]
    assert df["support"] == 0 and df["recall"] is None and df["f1"] is None and df["auc_ovr"] is None
    recalls = [m["per_class"][c]["recall"] for c in ("nv", "mel", "bkl", "bcc", "akiec", "vasc")]
    assert m["balanced_accuracy"] == pytest.approx(np.mean(recalls), abs=1e-5)
    assert "| df | 0 |" in metrics_markdown(m, "t") and "—" in metrics_markdown(m, "t")

    # Two-thirds nv: always answering nv scores 67% accuracy and 1/7 balanced accuracy.
    labels = np.array([0] * 14 + [1, 2, 3, 4, 5, 6, 1])
    always_nv = np.tile(np.eye(7)[0], (len(labels), 1))
    m = classification_metrics(labels, always_nv)
    assert m["accuracy"] == pytest.approx(2 / 3) and m["majority_baseline_accuracy"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx(1 / 7)


def test_evaluate_test_part_through_the_cli(tiny_judge, phantom_data):
    result = invoke("evaluate-classifier", "--checkpoint", tiny_judge / "classifier.pt", "--data", phantom_data,
                    "--no-progress")
    assert result.exit_code == 0, result.output
    out = tiny_judge / "eval-test"
    for name in ("metrics.json", "metrics.md", "confusion.png", "predictions.csv"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    test_ids = json.loads((tiny_judge / "split.json").read_text())["parts"]["test"]
    assert metrics["n_images"] == len(test_ids) and metrics["split"] == "test"
    assert metrics["same_data_as_training"] is True and metrics["leakage_check"].startswith("passed")
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc_ovr"):
        assert 0 <= metrics[key] <= 1, key
    assert set(metrics["per_class"]["nv"]) >= {"precision", "recall", "f1", "auc_ovr", "support"}
    with open(out / "predictions.csv", newline="") as f:
        assert sorted(r["image_id"] for r in csv.DictReader(f)) == sorted(test_ids)
    assert "balanced accuracy" in result.output


def test_test_time_flips_average_the_flipped_predictions(tiny_judge, phantom_data):
    from dermsynth.data.cache import load_cache
    from dermsynth.data.index import open_index
    from dermsynth.models.classifier import load_classifier, predict_proba

    result = invoke("evaluate-classifier", "--checkpoint", tiny_judge / "classifier.pt", "--data", phantom_data,
                    "--tta", "flips", "--no-progress")
    assert result.exit_code == 0, result.output
    out = tiny_judge / "eval-test-tta-flips"  # beside eval-test, not over it
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tta"] == "flips" and metrics["tta_views"] == 4 and "4 flips views" in result.output
    model, meta = load_classifier(tiny_judge / "classifier.pt")
    cached = load_cache(open_index(phantom_data), meta["resolution"], meta["crop"], progress=False)
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    where = {image_id: i for i, image_id in enumerate(cached.image_ids)}
    images = np.asarray(cached.images[[where[r["image_id"]] for r in rows]])
    views = [images, images[:, :, ::-1], images[:, ::-1], images[:, ::-1, ::-1]]  # NHWC: none, h, v, both
    expected = np.mean([predict_proba(model, np.ascontiguousarray(v)) for v in views], axis=0)
    got = np.array([[float(r[f"p_{c}"]) for c in meta["classes"]] for r in rows])
    assert np.allclose(got, expected, atol=2e-6)
    assert not np.allclose(got, predict_proba(model, images), atol=1e-4)  # the flips changed something


def test_split_all_scores_an_external_dataset_as_is(tiny_judge, tmp_path):
    external = write_ham(tmp_path / "external", per_class=2, images_per_lesion=1)
    out = tmp_path / "eval"
    result = invoke("evaluate-classifier", "--checkpoint", tiny_judge / "classifier.pt", "--data", external,
                    "--split", "all", "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 14 and metrics["same_data_as_training"] is False
    assert all(row["support"] == 2 for row in metrics["per_class"].values())


def test_external_set_without_lesion_ids_is_scored_with_a_warning(tiny_judge, tmp_path):
    external = write_ham(tmp_path / "external", per_class=2, images_per_lesion=1)
    rows = read_rows(external / "HAM10000_metadata.csv")
    write_csv(external / "HAM10000_metadata.csv", rows, columns=("image_id", "dx"))  # like some public test sets
    out = tmp_path / "eval"
    result = invoke("evaluate-classifier", "--checkpoint", tiny_judge / "classifier.pt", "--data", external,
                    "--split", "all", "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "has no lesion_id column: each image counts as its own lesion" in result.output
    assert json.loads((out / "metrics.json").read_text())["n_images"] == 14


def test_training_still_needs_lesion_ids(tmp_path):
    data = write_ham(tmp_path / "data", per_class=2, images_per_lesion=1)
    write_csv(data / "HAM10000_metadata.csv", read_rows(data / "HAM10000_metadata.csv"), columns=("image_id", "dx"))
    result = invoke("train-classifier", "--config", "configs/classifier-paper.yaml", "--data", data, "--out",
                    tmp_path / "run", "--no-progress")
    assert result.exit_code == 2 and "missing required column(s) lesion_id" in result.output


def test_phantom_set_of_another_seed_is_refused_by_image_id(tiny_judge, tmp_path):
    from dermsynth.data.phantom import make_phantom

    other = make_phantom(tmp_path / "other", per_class=3, size=48, seed=7)  # same id scheme, other pictures
    result = invoke("evaluate-classifier", "--checkpoint", tiny_judge / "classifier.pt", "--data", other,
                    "--split", "all", "--out", tmp_path / "e", "--no-progress")
    assert result.exit_code == 2 and "image id(s)" in result.output  # ids decide: the guard cannot see pixels


def test_leakage_guard_refuses_training_images_and_lesions(tiny_judge, phantom_data, tmp_path):
    checkpoint = tiny_judge / "classifier.pt"
    # The training data itself, scored as --split all: every train image is in it.
    result = invoke("evaluate-classifier", "--checkpoint", checkpoint, "--data", phantom_data, "--split", "all",
                    "--out", tmp_path / "e1", "--no-progress")
    assert result.exit_code == 2 and "refusing to score" in result.output and "Traceback" not in result.output
    assert "image id(s)" in result.output and not (tmp_path / "e1" / "metrics.json").exists()

    # An external set with new image ids, one of them another photograph of a training lesion.
    snapshot = load_checkpoint(checkpoint)
    external = write_ham(tmp_path / "external", per_class=1, images_per_lesion=1)
    rows = read_rows(external / "HAM10000_metadata.csv")
    rows[0]["lesion_id"] = snapshot["train_lesion_ids"][0]
    write_csv(external / "HAM10000_metadata.csv", rows)
    result = invoke("evaluate-classifier", "--checkpoint", checkpoint, "--data", external, "--split", "all",
                    "--out", tmp_path / "e2", "--no-progress")
    assert result.exit_code == 2
    assert f"1 lesion id(s) (e.g. {snapshot['train_lesion_ids'][0]})" in result.output

    # A classifier trained on a leaky split (a train image also listed in test) is refused on --split test.
    leaky = dict(snapshot, split_parts={**snapshot["split_parts"],
                                        "test": snapshot["split_parts"]["test"] + [snapshot["train_image_ids"][0]]})
    save_atomic(leaky, tmp_path / "leaky.pt")
    result = invoke("evaluate-classifier", "--checkpoint", tmp_path / "leaky.pt", "--data", phantom_data,
                    "--no-progress")
    assert result.exit_code == 2 and "1 of its" in result.output

    meta = {"train_image_ids": ["a", "b"], "train_lesion_ids": ["L1"]}
    check_no_leakage(["c"], ["L2"], meta)
    with pytest.raises(LeakageError, match="1 of its 2 image id"):
        check_no_leakage(["b", "c"], ["L2", "L3"], meta)


def test_wrong_checkpoint_kind_and_foreign_data_are_one_line(tiny_judge, ham):
    state = sorted((tiny_judge / "checkpoints").iterdir())[-1]
    result = invoke("evaluate-classifier", "--checkpoint", state, "--data", ham, "--no-progress")
    assert result.exit_code == 2 and "expected dermsynth-classifier/1" in result.output
    result = invoke("evaluate-classifier", "--checkpoint", tiny_judge / "classifier.pt", "--data", ham,
                    "--no-progress")
    assert result.exit_code == 2 and "was the split made for other data" in result.output
    assert f"the classifier {tiny_judge / 'classifier.pt'}'s split: its test part" in result.output
