"""Judge classifier training on phantom data: run folder, train part only, exact resume, class balance."""

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
from dermsynth.config import classifier_config, load_yaml
from dermsynth.models.classifier import load_classifier
from dermsynth.augment import color_jitter, dihedral_view, random_resized_crop
from dermsynth.checkpoint import list_states, load_checkpoint
from dermsynth.training.classifier_loop import class_weights, epoch_order, lr_at, train_classifier
from dermsynth.errors import DataError
from dermsynth.training.gan_loop import RunOptions
from dermsynth.training.runs import device_images
from tests.conftest import TINY_CLASSIFIER

REPO = Path(__file__).resolve().parents[2]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_run_folder_snapshot_and_refusal(tiny_judge, phantom_data, tmp_path):
    run = tiny_judge  # trained once per session by conftest.tiny_judge (classifier-paper, tiny)
    for name in ("config.yaml", "run.json", "split.json", "stats.jsonl", "classifier.pt"):
        assert (run / name).is_file(), name
    assert [p.name for p in list_states(run / "checkpoints")] == ["state-00000001.pt", "state-00000002.pt"]
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [s["epoch"] for s in stats] == [1, 2]
    for key in ("train_loss", "val_balanced_accuracy", "val_accuracy", "lr", "images_per_s"):
        assert np.isfinite(stats[-1][key]), key

    # Trained on the train part only; the snapshot carries its ids for the leakage guard.
    split = json.loads((run / "split.json").read_text())
    info = json.loads((run / "run.json").read_text())
    model, meta = load_classifier(run / "classifier.pt")
    assert meta["format"] == "dermsynth-classifier/1" and meta["classes"][0] == "nv"
    assert sorted(meta["train_image_ids"]) == sorted(split["parts"]["train"])
    assert info["train_images"] == len(meta["train_image_ids"]) and info["split_sha256"] == meta["split_sha256"]
    assert not set(meta["train_image_ids"]) & set(split["parts"]["test"])
    best = max(stats, key=lambda s: s["val_balanced_accuracy"])  # the first of equals
    assert meta["best_epoch"] == best["epoch"]
    assert meta["val_balanced_accuracy"] == pytest.approx(best["val_balanced_accuracy"], abs=1e-6)
    assert meta["resolution"] == 32 and not model.training

    # A second run into the same folder is refused with one clear line.
    sets = [x for s in TINY_CLASSIFIER for x in ("--set", s)]
    again = CliRunner().invoke(main, ["train-classifier", "--config", str(REPO / "configs/classifier-paper.yaml"),
                                      "--data", str(phantom_data), "--out", str(run), "--no-progress", *sets])
    assert again.exit_code == 2 and "--resume auto" in again.output and "Traceback" not in again.output


def test_cli_fine_tunes_effnet_from_imagenet_weights_and_the_snapshot_scores(phantom_data, tmp_path):
    from dermsynth.models.classifier import load_classifier, predict_proba
    from dermsynth.models.efficientnet import load_lite0

    run = tmp_path / "effnet"
    sets = [x for s in ["data.resolution=32", "train.epochs=1", "train.batch_size=16"] for x in ("--set", s)]
    result = cli("train-classifier", "--config", REPO / "configs/classifier-effnet.yaml", "--data", phantom_data,
                 "--out", run, "--no-progress", *sets)
    assert result.exit_code == 0, result.output
    model, meta = load_classifier(run / "classifier.pt")
    assert model.cfg.arch == "effnet" and model.feature_dim == 1280
    assert "features.0.net._fc.weight" not in model.state_dict()  # ImageNet's 1000-class layer is dropped
    imagenet = load_lite0().state_dict()
    tuned = {k.removeprefix("features.0.net."): v for k, v in model.state_dict().items()}
    stem = "_conv_stem.weight"
    moved = float((tuned[stem] - imagenet[stem]).norm() / imagenet[stem].norm())
    assert 0 < moved < 0.2  # started from ImageNet and trained: neither frozen nor random
    proba = predict_proba(model, np.zeros((3, 32, 32, 3), np.uint8))
    assert proba.shape == (3, 7) and np.allclose(proba.sum(1), 1, atol=1e-5)


def test_cli_trains_resnet_with_weighted_loss_and_resumes_exactly(phantom_data, tmp_path):
    straight = tmp_path / "straight"
    # Warm-up (a learning rate per step) and random resized crops must resume exactly too.
    sets = [x for s in TINY_CLASSIFIER + ["train.epochs=3", "train.batch_size=8", "train.warmup_epochs=1",
                                          "train.random_resized_crop=0.5"] for x in ("--set", s)]
    result = cli("train-classifier", "--config", REPO / "configs/classifier-resnet.yaml", "--data", phantom_data,
                 "--out", straight, "--no-progress", *sets)
    assert result.exit_code == 0, result.output
    assert "epoch    3" in result.output and "mean of the last 3 epochs' weights" in result.output
    config = load_yaml(straight / "config.yaml")
    assert config["model"]["arch"] == "resnet" and config["train"]["imbalance"] == "weighted_loss"
    assert config["train"]["lr_schedule"] == "cosine" and config["train"]["warmup_epochs"] == 1

    # A crash after epoch 2: drop epoch 3's state and stats line, then --resume auto.
    parted = tmp_path / "parted"
    shutil.copytree(straight, parted)
    (parted / "checkpoints" / "state-00000003.pt").unlink()
    result = cli("train-classifier", "--config", REPO / "configs/classifier-resnet.yaml", "--data", phantom_data,
                 "--out", parted, "--no-progress", "--resume", "auto", *sets)
    assert result.exit_code == 0, result.output
    assert "resumed from" in result.output and "after epoch 2" in result.output
    a = load_checkpoint(straight / "checkpoints" / "state-00000003.pt")
    b = load_checkpoint(parted / "checkpoints" / "state-00000003.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for k, state in a["opt"]["state"].items():
        assert torch.equal(state["exp_avg"], b["opt"]["state"][k]["exp_avg"])
    assert (straight / "stats.jsonl").read_text().count("\n") == (parted / "stats.jsonl").read_text().count("\n")
    strip = lambda path: [{k: v for k, v in json.loads(line).items() if k not in ("images_per_s", "elapsed_s")}
                          for line in path.read_text().splitlines()]  # noqa: E731
    assert strip(straight / "stats.jsonl") == strip(parted / "stats.jsonl")
    # run.json keeps the first session: its start, its outcome and where the second one took over.
    first, record = json.loads((straight / "run.json").read_text()), json.loads((parted / "run.json").read_text())
    assert record["started"] == first["started"] and record["epochs"] == 3 and record["kind"] == "classifier"
    (session,) = record["resumed"]
    assert session["epoch"] == 2 and session["from"].endswith("state-00000002.pt")
    assert session["previous_session"]["epochs"] == 3 and "changed" not in session


def test_saved_split_reuse_patience_and_the_config_dry_run(tiny_judge, phantom_data, tmp_path):
    cfg = classifier_config(load_yaml(REPO / "configs/classifier-tiny.yaml"),
                            TINY_CLASSIFIER + ["train.epochs=20", "train.select=best", "train.patience=1",
                                               "train.lr=1e-9", "split.seed=5"],
                            data_root=phantom_data)
    run = train_classifier(cfg, RunOptions(out=tmp_path / "run", split_file=tiny_judge / "split.json",
                                           progress=False))
    info = json.loads((run / "run.json").read_text())
    assert info["split_sha256"] == json.loads((tiny_judge / "split.json").read_text())["sha256"]
    assert info["stopped_early"] is True and info["epochs"] < 20
    assert list_states(run / "checkpoints")[-1].name == f"state-{info['epochs']:08d}.pt"
    ok = cli("train-classifier", "--config", REPO / "configs/classifier-paper.yaml", "--data", phantom_data,
             "--out", "unused", "--dry-run")
    assert ok.exit_code == 0 and "imbalance: oversample" in ok.output
    bad = CliRunner().invoke(main, ["train-classifier", "--config", str(REPO / "configs/classifier-paper.yaml"),
                                    "--data", str(phantom_data), "--out", "unused", "--dry-run",
                                    "--set", "train.imbalance=smote", "--set", "model.arch=vit"])
    assert bad.exit_code == 2 and "smote" in bad.output and "vit" in bad.output


def test_oversampling_balances_classes_and_is_seeded_by_epoch():
    labels = torch.tensor([0] * 90 + [3] * 10)
    order = epoch_order(labels, "oversample", seed=0, epoch=1)
    drawn = torch.bincount(labels[order], minlength=7)
    assert len(order) == 100 and 35 <= drawn[3] <= 65  # about half, not a tenth
    assert torch.equal(order, epoch_order(labels, "oversample", seed=0, epoch=1))
    assert not torch.equal(order, epoch_order(labels, "oversample", seed=0, epoch=2))
    perm = epoch_order(labels, "none", seed=0, epoch=1)
    assert sorted(perm.tolist()) == list(range(100))
    weights = class_weights(labels.numpy(), 7)
    assert weights[3] / weights[0] == pytest.approx(9) and weights[1] == 0
    assert weights[0] * 90 == pytest.approx(weights[3] * 10)  # each class carries the same total weight
    assert weights[labels].sum() == pytest.approx(100)


def test_warmup_rises_per_step_then_the_cosine_decays_over_the_remaining_epochs():
    cfg = classifier_config(load_yaml(REPO / "configs/classifier-effnet.yaml"),
                            ["train.epochs=5", "train.warmup_epochs=2"])
    lr = cfg.train.lr
    warm = [lr_at(cfg, epoch, step, 10) for epoch in (1, 2) for step in range(10)]
    assert warm == pytest.approx([lr * (i + 1) / 20 for i in range(20)])  # linear, lr at the last warm-up step
    assert [lr_at(cfg, e, 3, 10) for e in (3, 4, 5)] == pytest.approx(
        [lr, lr * 0.5 * (1 + math.cos(math.pi / 3)), lr * 0.5 * (1 + math.cos(2 * math.pi / 3))])
    plain = classifier_config(load_yaml(REPO / "configs/classifier-effnet.yaml"),
                              ["train.epochs=5", "train.warmup_epochs=0"])
    assert [lr_at(plain, e) for e in range(1, 6)] == pytest.approx(  # no warm-up: the schedule it always had
        [lr * 0.5 * (1 + math.cos(math.pi * (e - 1) / 5)) for e in range(1, 6)])


def test_random_resized_crops_zoom_in_and_keep_the_size():
    x = torch.linspace(-1, 1, 32).expand(4, 3, 32, 32).clone()  # a horizontal ramp
    assert torch.equal(random_resized_crop(x, 0.0), x)
    assert torch.allclose(random_resized_crop(x, 1.0, ratio=(1, 1)), x, atol=1e-6)  # the whole image
    torch.manual_seed(0)
    y = random_resized_crop(x, 0.25)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    span = y[:, 0, 16, -1] - y[:, 0, 16, 0]  # a crop of a ramp is a flatter ramp
    assert (span > 0).all() and (span < 2 - 1e-3).all()
    torch.manual_seed(0)
    assert torch.equal(random_resized_crop(x, 0.25), y)  # torch's generator: saved in checkpoints


def test_dihedral_views_are_the_eight_flips_and_rotations():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    views = [dihedral_view(x, v) for v in range(8)]
    assert torch.equal(views[0], x) and torch.equal(views[1], x.flip(3)) and torch.equal(views[2], x.flip(2))
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
    assert any(torch.equal(v, torch.rot90(x, 1, dims=(2, 3))) for v in views)


def test_color_jitter_is_small_and_stays_in_range():
    torch.manual_seed(0)
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    y = color_jitter(x, 0.1)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    assert 0 < (y - x).abs().mean() < 0.2
    assert torch.equal(color_jitter(x, 0.0), x)


def test_init_from_starts_from_the_given_classifier_and_refuses_another_model(tiny_judge, phantom_data, tmp_path):
    from dermsynth.checkpoint import CheckpointError

    cfg = classifier_config(load_yaml(REPO / "configs" / "classifier-paper.yaml"),
                            TINY_CLASSIFIER + ["train.epochs=1", "train.lr=1e-12"], data_root=phantom_data)
    run = train_classifier(cfg, RunOptions(out=tmp_path / "tuned", progress=False),
                           init_from=tiny_judge / "classifier.pt")
    start, tuned = load_classifier(tiny_judge / "classifier.pt")[0].state_dict(), load_classifier(
        run / "classifier.pt")[0].state_dict()
    weights = [k for k in start if k.endswith("weight") and start[k].dim() > 1]
    assert weights and all(torch.allclose(start[k], tuned[k], atol=1e-6) for k in weights)  # lr ~0: still the start
    assert json.loads((run / "run.json").read_text())["initialised_from"] == str(tiny_judge / "classifier.pt")
    wider = classifier_config(load_yaml(REPO / "configs" / "classifier-paper.yaml"),
                              TINY_CLASSIFIER + ["train.epochs=1", "model.dense_units=32"], data_root=phantom_data)
    with pytest.raises(CheckpointError, match="model config differs"):
        train_classifier(wider, RunOptions(out=tmp_path / "wider", progress=False),
                         init_from=tiny_judge / "classifier.pt")


def test_train_images_go_to_the_device_as_uint8_nchw_and_need_one_batch():
    images, labels = device_images(np.full((4, 8, 8, 3), 7, np.uint8), [0, 1, 2, 3], 4, torch.device("cpu"))
    assert images.shape == (4, 3, 8, 8) and images.dtype == torch.uint8 and labels.tolist() == [0, 1, 2, 3]
    with pytest.raises(DataError, match="the train part has 3 images, fewer than one batch of 4"):
        device_images(np.zeros((3, 8, 8, 3), np.uint8), [0, 1, 2], 4, torch.device("cpu"))


def test_select_average_holds_the_mean_of_the_last_epochs_and_resumes_exactly(phantom_data, tmp_path):
    sets = TINY_CLASSIFIER + ["train.epochs=4", "train.average_epochs=2", "train.keep_checkpoints=5"]
    cfg = classifier_config(load_yaml(REPO / "configs/classifier-tiny.yaml"), sets, data_root=phantom_data)
    assert cfg.train.select == "average"  # the default: nothing chosen on the val part
    run = train_classifier(cfg, RunOptions(out=tmp_path / "run", progress=False))
    states = {p.name: load_checkpoint(p) for p in list_states(run / "checkpoints")}
    third, fourth = states["state-00000003.pt"]["model"], states["state-00000004.pt"]["model"]
    model, meta = load_classifier(run / "classifier.pt")
    assert meta["selection"] == "mean of the weights of epochs 3-4"
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, (third[key].double() + fourth[key].double()).div(2).float(), atol=1e-6), key
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert "val_balanced_accuracy_averaged" not in stats[1] and "val_balanced_accuracy_averaged" in stats[3]
    assert meta["val_balanced_accuracy"] == pytest.approx(stats[3]["val_balanced_accuracy_averaged"], abs=1e-6)
    assert json.loads((run / "run.json").read_text())["selection"] == "average"
    # Stopped after epoch 3 (inside the window) and resumed: the same average, bit for bit.
    parted = tmp_path / "parted"
    shutil.copytree(run, parted)
    (parted / "checkpoints" / "state-00000004.pt").unlink()
    train_classifier(cfg, RunOptions(out=parted, resume="auto", progress=False))
    resumed, _ = load_classifier(parted / "classifier.pt")
    for key, value in model.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    with pytest.raises(Exception, match="select best"):
        classifier_config(load_yaml(REPO / "configs/classifier-tiny.yaml"), sets + ["train.patience=2"],
                          data_root=phantom_data)
