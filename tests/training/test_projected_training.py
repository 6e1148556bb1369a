"""The projected preset end to end on phantom data: CLI training, exact resume, generation, frozen backbone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner

from dermsynth.cli import main
from dermsynth.config import gan_config, load_yaml
from dermsynth.data import open_index
from dermsynth.models.efficientnet import find_backbone_weights
from dermsynth.training.gan_loop import Trainer
from tests.conftest import TINY_GAN, newest_states_equal

REPO = Path(__file__).resolve().parents[2]
TINY_PROJECTED = TINY_GAN + ["discriminator.head_channels=16", "discriminator.cmap_dim=8", "generator.z_dim=16",
                             "generator.embed_dim=8"]


def sets(*extra: str) -> list[str]:
    return [x for s in TINY_PROJECTED + list(extra) for x in ("--set", s)]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_projected_preset_trains_resumes_exactly_and_generates(phantom_data, tmp_path):
    config = REPO / "configs" / "projected.yaml"
    straight, parted = tmp_path / "straight", tmp_path / "parted"
    result = cli("train-gan", "--config", config, "--data", phantom_data, "--out", straight, "--no-progress",
                 *sets("train.total_kimg=0.096"))
    assert result.exit_code == 0, result.output
    stats = [json.loads(line) for line in (straight / "stats.jsonl").read_text().splitlines()]
    assert stats[-1]["step"] == 12 and stats[-1]["grad_norm_G"] > 0 and np.isfinite(stats[-1]["loss_D"])
    assert stats[-1]["mode_seeking"] > 0  # the preset's mode-seeking term is on
    assert cli("train-gan", "--config", config, "--data", phantom_data, "--out", parted, "--no-progress",
               *sets("train.total_kimg=0.048")).exit_code == 0
    result = cli("train-gan", "--config", config, "--data", phantom_data, "--out", parted, "--no-progress",
                 "--resume", "auto", *sets("train.total_kimg=0.096"))
    assert result.exit_code == 0 and "resumed from" in result.output
    a, b = newest_states_equal(straight, parted, step=12)

    # The pretrained network inside D is the ImageNet one, untouched by 12 steps.
    imagenet = torch.load(find_backbone_weights(), map_location="cpu", weights_only=True)
    for key, value in imagenet.items():
        assert torch.equal(a["D"][f"projection.backbone.{key}"], value), key

    out = tmp_path / "synthetic"
    result = cli("generate", "--checkpoint", straight / "generator.pt", "--out", out, "--per-class", 2)
    assert result.exit_code == 0, result.output
    assert len(open_index(out, synthetic="expected")) == 14


def test_generator_learns_through_the_frozen_backbone(phantom_data):
    # Mode seeking off: G's only signal is then D's verdict, which reaches it through the frozen network.
    cfg = gan_config(load_yaml(REPO / "configs" / "projected.yaml"), TINY_PROJECTED + ["loss.mode_seeking=0"],
                     data_root=phantom_data)
    trainer = Trainer(cfg, torch.device("cpu"))
    rng = np.random.default_rng(0)
    trainer.load_data(rng.integers(0, 255, (32, 32, 32, 3), dtype=np.uint8), np.arange(32) % 7)
    backbone = {k: v.clone() for k, v in trainer.D.projection.state_dict().items()}
    g_before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    for _ in range(3):
        stats = trainer.train_step()
    assert stats["grad_norm_G"] > 0
    assert any(not torch.equal(v, trainer.G.state_dict()[k]) for k, v in g_before.items())
    assert all(torch.equal(v, trainer.D.projection.state_dict()[k]) for k, v in backbone.items())
    assert not any(p.requires_grad for p in trainer.D.projection.parameters())
    optimised = {id(p) for group in trainer.opt_D.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in trainer.D.projection.parameters()}


def test_class_sampling_follows_the_square_root_of_class_sizes_and_repeats_per_epoch(phantom_data):
    cfg = gan_config(load_yaml(REPO / "configs" / "projected.yaml"), TINY_PROJECTED, data_root=phantom_data)
    trainer = Trainer(cfg, torch.device("cpu"))
    labels = np.repeat(np.arange(7), [400, 100, 100, 100, 100, 100, 4])  # 1004 images; class 6 is rare
    trainer.load_data(np.zeros((len(labels), 32, 32, 3), dtype=np.uint8), labels)
    order = trainer._drawn_order()
    assert order == trainer._drawn_order()  # same epoch, same draw (resume)
    share = np.bincount(labels[order], minlength=7) / len(order)
    expected = np.sqrt([400, 100, 100, 100, 100, 100, 4]) / np.sqrt([400, 100, 100, 100, 100, 100, 4]).sum()
    assert np.allclose(share, expected, atol=0.03)
    assert share[6] > 4 * 4 / 1004 and share[0] < 0.3  # the rare class far above, nv far below uniform
    trainer.epoch += 1
    assert trainer._drawn_order() != order


def test_mode_seeking_pairs_share_their_labels(phantom_data):
    cfg = gan_config(load_yaml(REPO / "configs" / "projected.yaml"), TINY_PROJECTED, data_root=phantom_data)
    trainer = Trainer(cfg, torch.device("cpu"))
    trainer.load_data(np.zeros((32, 32, 32, 3), dtype=np.uint8), np.arange(32) % 7)
    calls = []
    G = trainer.G_ddp
    trainer.G_ddp = lambda z, labels: calls.append(labels.clone()) or G(z, labels)
    stats = trainer.train_step()
    labels = calls[-1]  # the G phase
    assert torch.equal(labels[:4], labels[4:]) and "mode_seeking" in stats
