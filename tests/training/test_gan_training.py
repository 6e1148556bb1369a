"""GAN training end to end on phantom data: snapshots, exact resume, guards, generation, torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dermsynth.cli import main
from dermsynth.config import gan_config, load_yaml
from dermsynth.data import open_index
from dermsynth.checkpoint import list_states, load_checkpoint
from dermsynth.training.gan_loop import RunOptions, train_gan
from tests.conftest import TINY_GAN, newest_states_equal

REPO = Path(__file__).resolve().parents[2]


def tiny(preset: str, data: Path, *extra: str):
    return gan_config(load_yaml(REPO / "configs" / f"{preset}.yaml"), TINY_GAN + list(extra), data_root=data)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_train_snapshot_resume_and_generate_through_the_cli(phantom_data, tmp_path):
    run = tmp_path / "run"
    sets = [x for s in TINY_GAN + ["train.total_kimg=0.064"] for x in ("--set", s)]
    result = cli("train-gan", "--config", REPO / "configs/data-efficient.yaml", "--data", phantom_data, "--out", run,
                 "--no-progress", *sets)
    assert result.exit_code == 0, result.output
    for name in ("config.yaml", "run.json", "split.json", "stats.jsonl", "generator.pt", "loss_curves.png"):
        assert (run / name).is_file(), name
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [s["step"] for s in stats] == [4, 8]
    for key in ("loss_D", "loss_G", "D_real", "D_fake", "grad_norm_D", "grad_norm_G", "images_per_s"):
        assert np.isfinite(stats[-1][key]), key
    assert np.isfinite(stats[0]["r1"])  # lazy R1: on step 0 of every 16
    grids = sorted((run / "samples").glob("fakes-*.png"))
    assert grids and Image.open(grids[-1]).size[1] > Image.open(grids[-1]).size[0]  # 7 rows x 2 columns
    assert Image.open(grids[-1]).text["synthetic"] == "1"

    # The GAN never sees test images: the split it saved has them, the run trained on train only.
    split = json.loads((run / "split.json").read_text())
    run_info = json.loads((run / "run.json").read_text())
    assert run_info["train_images"] == len(split["parts"]["train"]) < len(open_index(phantom_data))

    # A second run into the same folder is refused; --resume auto continues it.
    again = CliRunner().invoke(main, ["train-gan", "--config", str(REPO / "configs/data-efficient.yaml"), "--data",
                                      str(phantom_data), "--out", str(run), "--no-progress", *sets])
    assert again.exit_code == 2 and "--resume auto" in again.output
    longer = [x for s in TINY_GAN + ["train.total_kimg=0.096"] for x in ("--set", s)]
    result = cli("train-gan", "--config", REPO / "configs/data-efficient.yaml", "--data", phantom_data, "--out", run,
                 "--no-progress", "--resume", "auto", *longer)
    assert result.exit_code == 0, result.output
    assert "resumed from" in result.output
    assert json.loads((run / "stats.jsonl").read_text().splitlines()[-1])["step"] == 12

    out = tmp_path / "synthetic"
    result = cli("generate", "--checkpoint", run / "generator.pt", "--out", out, "--per-class", 3,
                 "--classes", "nv,df", "--seed", 7)
    assert result.exit_code == 0, result.output
    index = open_index(out, synthetic="expected")
    assert {r["dx"]: r["images"] for r in index.class_table() if r["images"]} == {"nv": 3, "df": 3}


def test_resume_continues_bit_identically(phantom_data, tmp_path):
    straight = tmp_path / "straight"
    train_gan(tiny("data-efficient", phantom_data, "train.total_kimg=0.096"), RunOptions(out=straight, progress=False))
    parted = tmp_path / "parted"
    train_gan(tiny("data-efficient", phantom_data, "train.total_kimg=0.048"), RunOptions(out=parted, progress=False))
    train_gan(tiny("data-efficient", phantom_data, "train.total_kimg=0.096"),
              RunOptions(out=parted, resume="auto", progress=False))
    a, b = newest_states_equal(straight, parted, step=12)
    for k, state in a["opt_G"]["state"].items():
        assert torch.equal(state["exp_avg"], b["opt_G"]["state"][k]["exp_avg"])


def test_paper_preset_trains_with_gradient_penalty(phantom_data, tmp_path):
    train_gan(tiny("paper", phantom_data, "train.total_kimg=0.032"), RunOptions(out=tmp_path / "r", progress=False))
    stats = json.loads((tmp_path / "r" / "stats.jsonl").read_text().splitlines()[-1])
    assert stats["gp"] >= 0 and "r1" not in stats


def test_generation_is_deterministic_tagged_and_guarded(phantom_data, tmp_path):
    run = tmp_path / "run"
    train_gan(tiny("paper", phantom_data, "train.total_kimg=0.032"), RunOptions(out=run, progress=False))
    from dermsynth.generate import generate_images

    a = generate_images(run / "generator.pt", tmp_path / "a", per_class=2, seed=3, progress=False)
    b = generate_images(run / "generator.pt", tmp_path / "b", per_class=2, classes="df,nv", seed=3, progress=False)
    c = generate_images(run / "generator.pt", tmp_path / "c", per_class=2, classes="nv", seed=4, progress=False)
    name = "SYN_nv_3_00001.png"
    assert np.array_equal(np.asarray(Image.open(a / "images" / name)), np.asarray(Image.open(b / "images" / name)))
    assert not np.array_equal(np.asarray(Image.open(a / "images" / name)),
                              np.asarray(Image.open(c / "images" / "SYN_nv_4_00001.png")))
    png = Image.open(a / "images" / name)
    assert png.text["synthetic"] == "1" and len(png.text["checkpoint_sha256"]) == 64
    rows = (a / "HAM10000_metadata.csv").read_text().splitlines()
    assert rows[0] == "lesion_id,image_id,dx,synthetic,seed,checkpoint_sha256,file" and len(rows) == 15
    assert rows[1].endswith(",images/SYN_nv_3_00000.png") and (a / "grid.png").is_file()
    # The ImageFolder layout as JPEGs: the same images (up to JPEG), one folder per class, tagged in the file,
    # and readable by dermsynth's class-folder reader.
    from dermsynth.data import open_index

    f = generate_images(run / "generator.pt", tmp_path / "f", per_class=2, classes="df,nv", seed=3, progress=False,
                        layout="imagefolder", image_format="jpg", quality=98)
    assert sorted(p.name for p in f.iterdir() if p.is_dir()) == ["df", "nv"]
    jpg = Image.open(f / "nv" / "SYN_nv_3_00001.jpg")
    assert b"synthetic=1" in jpg.info["comment"] and b"checkpoint_sha256=" in jpg.info["comment"]
    assert np.abs(np.asarray(jpg, dtype=int) - np.asarray(Image.open(a / "images" / name), dtype=int)).mean() < 8
    meta = (f / "metadata.csv").read_text().splitlines()
    assert len(meta) == 5 and meta[1].endswith(",df/SYN_df_3_00000.jpg")
    assert sorted(r.dx for r in open_index(f, synthetic="expected").records) == ["df", "df", "nv", "nv"]
    with pytest.raises(Exception, match="--overwrite"):
        generate_images(run / "generator.pt", a, per_class=1, progress=False)
    with pytest.raises(Exception, match="unknown class"):
        generate_images(run / "generator.pt", tmp_path / "d", classes="nv,melanoma", progress=False)


def test_config_errors_are_reported_together(phantom_data):
    result = CliRunner().invoke(main, ["train-gan", "--config", str(REPO / "configs/data-efficient.yaml"), "--data",
                                       str(phantom_data), "--out", "unused", "--dry-run",
                                       "--set", "loss.kind=lsgan", "--set", "train.diffaugment=blur"])
    assert result.exit_code == 2
    assert "loss.kind: expected one of bce, hinge, wgan, got 'lsgan'" in result.output
    assert "train.diffaugment: unknown DiffAugment policy 'blur'" in result.output
    ok = cli("train-gan", "--config", REPO / "configs/paper.yaml", "--data", phantom_data, "--out", "unused",
             "--dry-run")
    assert ok.exit_code == 0 and "gp_weight: 10.0" in ok.output


def test_torchrun_two_processes_train_and_agree(phantom_data, tmp_path):
    run = tmp_path / "ddp"
    sets = [x for s in TINY_GAN + ["train.total_kimg=0.048"] for x in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "dermsynth.cli", "train-gan", "--config", str(REPO / "configs/data-efficient.yaml"),
           "--data", str(phantom_data), "--out", str(run), "--no-progress", *sets]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    info = json.loads((run / "run.json").read_text())
    assert info["hardware"]["world_size"] == 2
    assert info["rank_weights_agree"] is True and len(info["rank_checksums"]) == 2
    assert proc.stdout.count("done:") == 1  # only rank 0 prints
    state = load_checkpoint(list_states(run / "checkpoints")[-1])
    assert len(state["rng"]) == 2 and state["world_size"] == 2


def test_ctrl_c_stops_after_the_step_and_saves_a_resumable_checkpoint(phantom_data, tmp_path, monkeypatch):
    import signal

    from dermsynth.training.gan_loop import Trainer

    original = Trainer.train_step

    def step_then_interrupt(self):
        stats = original(self)
        if self.step == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return stats

    monkeypatch.setattr(Trainer, "train_step", step_then_interrupt)
    run = tmp_path / "run"
    train_gan(tiny("data-efficient", phantom_data, "train.total_kimg=0.2"), RunOptions(out=run, progress=False))
    info = json.loads((run / "run.json").read_text())
    assert info["stopped_early"] is True and info["steps"] == 5
    assert [p.name for p in list_states(run / "checkpoints")] == ["state-00000005.pt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored

    monkeypatch.setattr(Trainer, "train_step", original)
    train_gan(tiny("data-efficient", phantom_data, "train.total_kimg=0.064"),
              RunOptions(out=run, resume="auto", progress=False))
    info = json.loads((run / "run.json").read_text())
    assert info["steps"] == 8 and info["resumed"][0]["step"] == 5


def test_resume_refuses_another_split_and_trims_stats(phantom_data, tmp_path):
    from dermsynth.data.splits import make_split, save_split

    run = tmp_path / "run"
    train_gan(tiny("data-efficient", phantom_data, "train.total_kimg=0.064", "train.snapshot_ticks=1"),
              RunOptions(out=run, progress=False))
    other = save_split(make_split(open_index(phantom_data), seed=99), tmp_path / "other.json")
    with pytest.raises(Exception, match="differs from the split this run was trained on"):
        train_gan(tiny("data-efficient", phantom_data, "train.total_kimg=0.096"),
                  RunOptions(out=run, split_file=other, resume="auto", progress=False))
    # Resuming from the older checkpoint (step 4) drops the stats of steps after it.
    older = list_states(run / "checkpoints")[0]
    assert older.name == "state-00000004.pt"
    train_gan(tiny("data-efficient", phantom_data, "train.total_kimg=0.064"),
              RunOptions(out=run, resume=str(older), progress=False))
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == [4, 8]


def test_max_minutes_counts_training_time_over_resumed_sessions(phantom_data, tmp_path):
    run = tmp_path / "run"
    train_gan(tiny("data-efficient", phantom_data, "train.total_kimg=0.032"), RunOptions(out=run, progress=False))
    elapsed = json.loads((run / "run.json").read_text())["elapsed_s"]
    # A limit already used up: the resumed run stops at once, with a checkpoint, instead of training on.
    limit = f"train.max_minutes={elapsed / 60 / 2}"
    train_gan(tiny("data-efficient", phantom_data, "train.total_kimg=0.2", limit), RunOptions(out=run, resume="auto",
                                                                                       progress=False))
    info = json.loads((run / "run.json").read_text())
    assert info["steps"] == 4 and info["stopped_early"] is True


def test_ema_half_life_ramps_up_with_the_images_seen(phantom_data):
    from dermsynth.training.gan_loop import Trainer

    cfg = tiny("data-efficient", phantom_data, "train.ema_halflife_kimg=5", "train.ema_rampup=0.05")
    trainer = Trainer(cfg, torch.device("cpu"))
    trainer.images_seen = 0
    assert trainer.ema_beta() == 0.0  # the first step copies G
    trainer.images_seen = 20_000  # ramp-up: half-life min(5000, 1000) images
    assert trainer.ema_beta() == pytest.approx(0.5 ** (8 / 1000))
    trainer.images_seen = 1_000_000
    assert trainer.ema_beta() == pytest.approx(0.5 ** (8 / 5000))
    no_ema = Trainer(tiny("paper", phantom_data), torch.device("cpu"))
    no_ema.images_seen = 10_000
    assert no_ema.ema_beta() == 0.0
