"""The utility study on phantom data: every arm through the CLI, the filter, the intervals, the generator guard."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dermsynth.cli import main
from dermsynth.config import ConfigError, classifier_config, load_yaml
from dermsynth.data import CLASSES
from dermsynth.data.index import open_index
from dermsynth.data.splits import make_split, save_split
from dermsynth.evaluation import utility
from dermsynth.evaluation.classification import LeakageError
from dermsynth.evaluation.utility import (
    ARMS,
    run_utility,
    summarise,
    synthetic_counts,
    t_interval,
    utility_config,
)
from dermsynth.checkpoint import load_checkpoint, save_atomic
from dermsynth.training.classifier_loop import epoch_order
from tests.conftest import TINY_CLASSIFIER, write_ham

REPO = Path(__file__).resolve().parents[2]


def test_synthetic_counts_of_each_arm():
    real = {"nv": 600, "mel": 120, "df": 10}
    cfg = utility_config({"arms": list(ARMS), "topup_to": 100, "ratio": 0.5, "synthetic_per_class": 50})
    topup = synthetic_counts(real, "topup", cfg)
    assert topup["nv"] == 0 and topup["mel"] == 0 and topup["df"] == 90 and topup["vasc"] == 100
    assert synthetic_counts(real, "filter", cfg) == topup  # wanted after filtering
    ratio = synthetic_counts(real, "ratio", cfg)
    assert ratio["nv"] == 300 and ratio["df"] == 5 and ratio["vasc"] == 0
    for arm in ("synthetic", "balanced", "pretrain"):
        assert set(synthetic_counts(real, arm, cfg).values()) == {50}
    assert set(synthetic_counts(real, "real", cfg).values()) == {0}


def test_utility_config_refuses_unknown_arms_and_adds_the_baseline():
    assert utility_config({"arms": ["topup"]}).arms == ("real", "topup")
    with pytest.raises(ConfigError) as e:
        utility_config({"arms": ["real", "mixup"], "real_fraction": 1.5, "seeds": []})
    for text in ("utility.arms[1]: expected one of real, half,", "utility.real_fraction: must be <= 1, got 1.5",
                 "utility.seeds: expected at least 1 item, got []"):
        assert text in str(e.value)


def test_the_interval_on_a_hand_worked_case():
    # Differences 1, 3, 5 points: mean 3, sd 2, t(0.975, 2) = 4.302653; half-width 4.302653 * 2 / sqrt(3).
    low, high = t_interval([0.01, 0.03, 0.05])
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert low == pytest.approx(0.03 - half, abs=1e-6) and high == pytest.approx(0.03 + half, abs=1e-6)
    assert t_interval([0.02]) is None
    recall = lambda v: {c: v for c in CLASSES}  # noqa: E731
    runs = [{"arm": "real", "seed": s, "balanced_accuracy": 0.50, "recall": recall(0.5)} for s in (0, 1, 2)]
    runs += [{"arm": "topup", "seed": s, "balanced_accuracy": 0.50 + d, "recall": recall(0.5 + 2 * d)}
             for s, d in zip((0, 1, 2), (0.01, 0.03, 0.05))]
    diff = summarise(runs, ("real", "topup"))["differences"]["topup"]
    assert diff["balanced_accuracy_mean"] == pytest.approx(0.03)
    assert diff["balanced_accuracy_ci95"] == pytest.approx([0.03 - half, 0.03 + half], abs=1e-6)
    assert diff["above_zero"] is False  # the interval reaches below zero
    assert diff["recall"]["df"]["mean"] == pytest.approx(0.06)
    assert diff["recall"]["df"]["ci95"] == pytest.approx([0.06 - 2 * half, 0.06 + 2 * half], abs=1e-6)
    runs += [{"arm": "ratio", "seed": s, "balanced_accuracy": 0.52 + d, "recall": recall(0.5)}
             for s, d in zip((0, 1, 2), (0.0, 0.001, 0.002))]
    assert summarise(runs, ("real", "ratio"))["differences"]["ratio"]["above_zero"] is True


def test_balanced_batches_draw_every_class_alike_with_the_synthetic_share():
    labels = torch.tensor([0] * 800 + [0] * 100 + [3] * 20 + [3] * 80)
    synthetic = torch.tensor([False] * 800 + [True] * 100 + [False] * 20 + [True] * 80)
    order = epoch_order(labels, "none", seed=0, epoch=1, synthetic=synthetic, synthetic_share=0.25)
    drawn_labels, drawn_synthetic = labels[order], synthetic[order]
    assert abs((drawn_labels == 3).float().mean() - 0.5) < 0.06  # class-balanced whatever the counts
    for c in (0, 3):
        share = drawn_synthetic[drawn_labels == c].float().mean()
        assert abs(share - 0.25) < 0.07, (c, share)


def test_the_filter_keeps_the_first_images_the_judge_accepts(monkeypatch):
    images = np.arange(10, dtype=np.uint8)[:, None, None, None].repeat(4, 1).repeat(4, 2).repeat(3, 3)
    proba = np.zeros((10, 7), np.float32)
    proba[:, 2] = [0.9, 0.1, 0.6, 0.59, 0.95, 0.0, 0.7, 0.2, 0.61, 0.3]
    monkeypatch.setattr(utility, "predict_proba", lambda model, x: proba[x[:, 0, 0, 0]])
    monkeypatch.setattr(utility, "at_judge_resolution", lambda x, r, crop: x)
    keep = utility.filter_images(images, 2, (None, {"resolution": 4, "crop": "center"}), 0.6)
    assert keep.tolist() == [True, False, True, False, True, False, True, False, True, False]
    # The pool takes the first accepted images in the order drawn, and says how many passed.
    class Source:  # draws the images above, in this order
        def draw(self, label, n, seed):
            return images[:n]

    cfg = utility_config({"arms": ["filter"], "topup_to": 3, "filter_confidence": 0.6, "filter_max_draws": 5})
    real = {c: 3 for c in CLASSES}
    real["bkl"] = 0  # bkl is class 2: 3 wanted, from 15 drawn (10 here)
    pool, acceptance = utility._filtered_pool(Source(), real, cfg, (None, {"resolution": 4, "crop": "center"}))
    assert list(pool) == ["bkl"] and pool["bkl"][:, 0, 0, 0].tolist() == [0, 2, 4]
    assert acceptance["bkl"] == pytest.approx(0.5)


def test_every_arm_runs_through_the_cli_and_only_changed_runs_train_again(tiny_gan, tiny_judge, phantom_data,
                                                                          tmp_path, monkeypatch):
    from dermsynth.training import classifier_loop

    shares = []
    real_order = classifier_loop.epoch_order

    def spy(labels, imbalance, seed, epoch, synthetic=None, synthetic_share=None):
        order = real_order(labels, imbalance, seed, epoch, synthetic, synthetic_share)
        if synthetic_share is not None:
            shares.append((synthetic_share, float(synthetic[order].float().mean())))
        return order

    monkeypatch.setattr(classifier_loop, "epoch_order", spy)
    external = write_ham(tmp_path / "external", per_class=2, images_per_lesion=1)  # ids none of the train part has
    out = tmp_path / "eval"
    sets = [x for s in TINY_CLASSIFIER + ["train.epochs=1"] for x in ("--set", s)]

    def run(*options):
        args = ["evaluate", "utility", "--generator", tiny_gan / "generator.pt", "--data", phantom_data,
                "--judge", tiny_judge / "classifier.pt", "--out", out, "--feature-cache", tmp_path / "features",
                "--probe", "seeds=2", "--probe", "iterations=20", "--probe", "bootstrap=100",
                "--probe", "feature_resolution=32", "--classifier", REPO / "configs/classifier-paper.yaml", *sets,
                "--utility", f"arms=[{','.join(ARMS)}]", "--utility", "seeds=[0,1]", "--utility", "topup_to=12",
                "--utility", "synthetic_per_class=6", "--utility", "pretrain_epochs=1",
                "--utility", "filter_confidence=1.0", "--external", external, "--no-progress", *options]
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    output = run()
    folder = out / "study"
    saved = json.loads((folder / "utility.json").read_text())
    assert (out / "probe" / "probe.json").is_file()  # the probe runs beside the fine-tuned study
    assert len(saved["runs"]) == 2 * len(ARMS) and set(saved["summary"]["arms"]) == set(ARMS)
    # seed by seed: every arm of seed 0 is trained before any of seed 1 (a study stopped early can be compared)
    assert [(r["seed"], r["arm"]) for r in saved["runs"]] == [(s, a) for s in (0, 1) for a in ARMS]
    assert set(saved["summary"]["differences"]) == set(ARMS) - {"real"}
    assert saved["generator_check"].startswith("checked against the ids recorded in")
    for r in saved["runs"]:
        assert 0 <= r["balanced_accuracy"] <= 1 and 0 <= r["external"]["balanced_accuracy"] <= 1
    assert set(saved["external"]["summary"]["arms"]) == set(ARMS)
    info = lambda name: json.loads((folder / name / "run.json").read_text())  # noqa: E731
    assert info("synthetic-seed0")["train_images"] == 0
    assert set(info("synthetic-seed0")["synthetic_train_images_per_class"].values()) == {6}
    # balanced: the batches hold the share of synthetic images asked for (about half of each class's draws)
    assert shares and all(share == 0.5 and 0.3 < drawn < 0.7 for share, drawn in shares)
    ratio = info("ratio-seed0")["synthetic_train_images_per_class"]
    assert ratio == {c: round(0.5 * n) for c, n in info("real-seed0")["train_images_per_class"].items()}
    # pretrain: synthetic only, then real only from those weights
    assert info("pretrain-synthetic-stage-seed0")["train_images"] == 0
    tuned = info("pretrain-seed0")
    assert tuned["initialised_from"] == str(folder / "pretrain-synthetic-stage-seed0" / "classifier.pt")
    assert sum(tuned["synthetic_train_images_per_class"].values()) == 0 and tuned["train_images"] > 0
    # filter at confidence 1.0: the near-uniform tiny judge accepts nothing, so the arm trains on real images only
    assert all(v == 0.0 for v in saved["filter_acceptance"].values()) and "pass the judge" in output
    assert sum(info("filter-seed0")["synthetic_train_images_per_class"].values()) == 0
    assert sum(info("topup-seed0")["synthetic_train_images_per_class"].values()) > 0
    md = (folder / "utility.md").read_text()
    assert "95 % interval" in md and "external set" in md and (folder / "utility.png").is_file()
    # the controls: real images only (no generator in their fingerprint), every difference with its joint interval
    assert info("half-seed0")["train_images"] < info("real-seed0")["train_images"]
    assert info("shuffled-seed0")["synthetic_train_images_per_class"] == info(
        "topup-seed0")["synthetic_train_images_per_class"]
    assert all("bootstrap" in d for d in saved["summary"]["differences"].values())
    assert "positive_resolved" in saved["summary"]["controls"]

    # Run again with topup_to changed: topup and filter train again, the other arms are reused.
    stamp = {name: (folder / name / "classifier.pt").stat().st_mtime_ns
             for name in ("real-seed0", "ratio-seed1", "topup-seed0", "filter-seed1")}
    output = run("--utility", "topup_to=10")
    assert output.count("made by other settings") == 6  # topup, filter and shuffled, two seeds each
    assert (folder / "real-seed0" / "classifier.pt").stat().st_mtime_ns == stamp["real-seed0"]
    assert (folder / "ratio-seed1" / "classifier.pt").stat().st_mtime_ns == stamp["ratio-seed1"]
    assert (folder / "topup-seed0" / "classifier.pt").stat().st_mtime_ns != stamp[
        "topup-seed0"]
    assert json.loads((folder / "utility.json").read_text())["config"]["topup_to"] == 10


def test_an_external_set_sharing_the_study_s_images_is_refused_before_training(tiny_gan, phantom_data, tmp_path):
    cfg = classifier_config(load_yaml(REPO / "configs/classifier-paper.yaml"), TINY_CLASSIFIER + ["train.epochs=1"],
                            data_root=phantom_data)
    with pytest.raises(LeakageError, match="external set"):
        run_utility(tiny_gan / "generator.pt", phantom_data, tiny_gan / "split.json", cfg, tmp_path / "u",
                    external=phantom_data, progress=False)
    assert not (tmp_path / "u").exists()  # refused before anything was written


def test_a_network_trained_on_a_held_out_lesion_is_refused(tmp_path):
    from dermsynth.data.splits import Split
    from dermsynth.evaluation.sources import check_held_out

    data = write_ham(tmp_path / "data", per_class=2, images_per_lesion=2)
    index = open_index(data)
    by_lesion = {}
    for r in index.records:
        by_lesion.setdefault(r.lesion_id, []).append(r.image_id)
    lesion, (seen, held) = next((k, v) for k, v in by_lesion.items() if len(v) == 2)
    others = [r.image_id for r in index.records if r.lesion_id != lesion]
    split = Split(parts={"train": others, "val": [], "test": [held]}, seed=0, fractions={})
    # Another photograph of a test lesion, under another image id: refused by lesion.
    with pytest.raises(LeakageError, match=r"1 lesion\(s\)") as e:
        check_held_out([seen], None, split, index, "the filter's judge j.pt")
    assert "image(s)" not in str(e.value) and "the filter's judge j.pt was trained on" in str(e.value)
    check_held_out(others, None, split, index, "a judge")  # the train part only: accepted


def test_a_generator_that_saw_test_lesions_is_refused(tiny_gan, phantom_data, tmp_path):
    cfg = classifier_config(load_yaml(REPO / "configs/classifier-paper.yaml"), TINY_CLASSIFIER + ["train.epochs=1"],
                            data_root=phantom_data)
    index = open_index(phantom_data)
    other = save_split(make_split(index, seed=5), tmp_path / "other-split.json", index)  # mixes GAN train into test
    with pytest.raises(LeakageError, match="val or test part"):
        run_utility(tiny_gan / "generator.pt", phantom_data, other, cfg, tmp_path / "u", progress=False)
    assert not list((tmp_path / "u").glob("*-seed*"))  # refused before anything trained
    # A snapshot from before the ids were recorded: checked from the split.json of its run folder, else refused.
    old = load_checkpoint(tiny_gan / "generator.pt")
    for key in ("train_image_ids", "train_lesion_ids", "split_sha256"):
        del old[key]
    (tmp_path / "old").mkdir()
    save_atomic(old, tmp_path / "old" / "generator.pt")
    with pytest.raises(Exception, match="does not record the images it was trained on"):
        run_utility(tmp_path / "old" / "generator.pt", phantom_data, tiny_gan / "split.json", cfg, tmp_path / "v",
                    progress=False)
    shutil.copyfile(tiny_gan / "split.json", tmp_path / "old" / "split.json")
    with pytest.raises(LeakageError):
        run_utility(tmp_path / "old" / "generator.pt", phantom_data, other, cfg, tmp_path / "w", progress=False)


class _NoSynthetic(utility.FolderSource):
    """A source the known-answer controls never draw from: they train on real images only."""

    def __init__(self, resolution: int) -> None:
        self.resolution, self.name, self.fingerprint, self.path = resolution, "none", "0" * 16, Path("none")

    def check(self, split, index) -> str:
        return "not needed: real images only"

    def draw(self, label, n, seed):
        raise AssertionError("the controls draw no synthetic image")


def test_the_fine_tuned_study_s_controls_come_out_as_known_on_phantom_data(tmp_path):
    # Phantom classes are learnable: the classifier on every train lesion beats the one on half of them, with
    # the joint interval above zero; class-shuffled real top-up images bring no gain.
    from dermsynth.data.phantom import make_phantom

    root = make_phantom(tmp_path / "data", per_class=60, size=48, seed=0)
    index = open_index(root)
    save_split(make_split(index, (0.5, 0.1, 0.4), 0), tmp_path / "split.json", index)
    cfg = classifier_config(load_yaml(REPO / "configs/classifier-tiny.yaml"), ["train.epochs=8"], data_root=root)
    result = run_utility(_NoSynthetic(32), root, tmp_path / "split.json", cfg, tmp_path / "u",
                         utility=utility_config({"arms": ["real", "half", "shuffled"], "seeds": [0, 1, 2],
                                                 "topup_to": 60}), progress=False)
    summary = result["summary"]
    half, shuffled = (summary["differences"][a]["bootstrap"] for a in ("half", "shuffled"))
    assert half["sign"] == "real minus half" and half["ci95"][0] > 0 and half["mean"] > 3, half
    assert shuffled["ci95"][0] <= 0, shuffled
    assert summary["controls"]["positive_resolved"] and summary["controls"]["negative_no_gain"]
    assert half["mde"] > 0 and len(half["per_seed"]) == 3
    # half trains on about half of each class's train images (whole lesions); shuffled on real + relabelled images
    info = lambda name: json.loads((tmp_path / "u" / name / "run.json").read_text())  # noqa: E731
    full, halved = info("real-seed0")["train_images_per_class"], info("half-seed0")["train_images_per_class"]
    assert all(0.3 * full[c] <= halved[c] <= 0.7 * full[c] for c in CLASSES)
    assert sum(info("shuffled-seed0")["synthetic_train_images_per_class"].values()) == 7 * 60 - sum(full.values())
    md = (tmp_path / "u" / "utility.md").read_text()
    assert "positive control" in md and "MDE" in md and "The controls came out as known" in md
