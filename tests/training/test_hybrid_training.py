"""The hybrid preset: both heads reach G, lazy R1 on the pixel critic, CLI training, exact resume, generation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dermsynth.cli import main
from dermsynth.config import ConfigError, gan_config, load_yaml
from dermsynth.data import open_index
from dermsynth.training.gan_loop import Trainer
from tests.conftest import TINY_GAN, newest_states_equal

REPO = Path(__file__).resolve().parents[2]
HYBRID = REPO / "configs" / "hybrid.yaml"
TINY_HYBRID = TINY_GAN + ["discriminator.head_channels=16", "discriminator.cmap_dim=8", "generator.z_dim=16",
                          "generator.embed_dim=8", "discriminator.pixel_channels=8", "loss.r1_interval=4"]


def sets(*extra: str) -> list[str]:
    return [x for s in TINY_HYBRID + list(extra) for x in ("--set", s)]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def trainer(phantom_data, *extra: str) -> Trainer:
    cfg = gan_config(load_yaml(HYBRID), TINY_HYBRID + list(extra), data_root=phantom_data)
    t = Trainer(cfg, torch.device("cpu"))
    rng = np.random.default_rng(0)
    t.load_data(rng.integers(0, 255, (32, 32, 32, 3), dtype=np.uint8), np.arange(32) % 7)
    return t


def g_gradient(t: Trainer) -> torch.Tensor:
    """G's gradient after one G phase, D fixed (the mode-seeking term off so only D's verdicts count)."""
    torch.manual_seed(1)
    before = [p.clone() for p in t.G.parameters()]
    t.opt_G.step = lambda: None  # keep G where it is: only its gradient is wanted
    t.opt_D.step = lambda: None
    t.train_step()
    assert all(torch.equal(a, b) for a, b in zip(before, t.G.parameters()))
    return torch.cat([p.grad.flatten() for p in t.G.parameters() if p.grad is not None])


def test_both_heads_reach_the_generators_gradient(phantom_data):
    # fp32: on a CPU with native bf16, amp auto would round each gradient to bf16 (about 3 digits), and the sum
    # below holds only to that precision.
    exact = ("loss.mode_seeking=0", "train.amp=none")
    both = g_gradient(trainer(phantom_data, *exact))
    pixel = g_gradient(trainer(phantom_data, *exact, "loss.feature_weight=0"))
    feature = g_gradient(trainer(phantom_data, *exact, "loss.pixel_weight=0"))
    assert pixel.norm() > 0 and feature.norm() > 0
    assert not torch.allclose(pixel, feature)
    # One step, same seed, same batch: the weighted sum of the two terms' gradients is the gradient of both.
    assert torch.allclose(both, pixel + feature, rtol=1e-4, atol=1e-5)
    stats = trainer(phantom_data).train_step()
    for key in ("loss_D_pixel", "loss_D_feature", "loss_G_pixel", "loss_G_feature", "D_real_pixel", "D_fake_feature"):
        assert torch.isfinite(stats[key]), key
    assert torch.allclose(stats["loss_D"], stats["loss_D_pixel"] + stats["loss_D_feature"])


def test_lazy_r1_runs_on_every_interval_th_step_on_the_pixel_critic_only(phantom_data):
    t = trainer(phantom_data)
    calls = []
    from dermsynth.training import gan_losses

    original = gan_losses.r1_penalty

    def spy(logits, real):
        calls.append(t.step)
        assert isinstance(logits, tuple) and logits[0].shape == (len(real),)
        return original(logits, real)

    gan_losses.r1_penalty = spy
    try:
        steps = [t.train_step() for _ in range(9)]
    finally:
        gan_losses.r1_penalty = original
    assert calls == [0, 4, 8]
    assert [i for i, s in enumerate(steps) if "r1" in s] == [0, 4, 8]
    assert all(s["r1"] > 0 for s in steps if "r1" in s)


def test_weights_are_for_a_hybrid_discriminator_only(phantom_data):
    with pytest.raises(ConfigError, match="loss.pixel_weight: weighs a head of a hybrid discriminator; "
                                          "discriminator.arch is projected"):
        gan_config(load_yaml(REPO / "configs" / "projected.yaml"), ["loss.pixel_weight=0.5"], data_root=phantom_data)
    with pytest.raises(ConfigError, match="loss.feature_weight: pixel_weight and feature_weight must not both be 0"):
        gan_config(load_yaml(HYBRID), ["loss.pixel_weight=0", "loss.feature_weight=0"], data_root=phantom_data)


def test_hybrid_preset_trains_resumes_exactly_and_generates(phantom_data, tmp_path):
    straight, parted = tmp_path / "straight", tmp_path / "parted"
    result = cli("train-gan", "--config", "hybrid", "--data", phantom_data, "--out", straight, "--no-progress",
                 *sets("train.total_kimg=0.096"))
    assert result.exit_code == 0, result.output
    stats = [json.loads(line) for line in (straight / "stats.jsonl").read_text().splitlines()]
    assert stats[-1]["step"] == 12 and stats[-1]["grad_norm_G"] > 0 and np.isfinite(stats[-1]["loss_D_pixel"])
    assert "r1" in stats[0] and stats[-1]["mode_seeking"] > 0
    # Stopped at step 6 (between two R1 steps, 4 and 8), resumed to 12: the same weights as straight through.
    assert cli("train-gan", "--config", "hybrid", "--data", phantom_data, "--out", parted, "--no-progress",
               *sets("train.total_kimg=0.048")).exit_code == 0
    result = cli("train-gan", "--config", "hybrid", "--data", phantom_data, "--out", parted, "--no-progress",
                 "--resume", "auto", *sets("train.total_kimg=0.096"))
    assert result.exit_code == 0 and "resumed from" in result.output
    a, _ = newest_states_equal(straight, parted, step=12)
    assert any(k.startswith("pixel.") for k in a["D"]) and any(k.startswith("feature.projection.") for k in a["D"])

    snapshot = torch.load(straight / "generator.pt", map_location="cpu", weights_only=True)
    assert snapshot["discriminator_arch"] == "hybrid" and snapshot["preset"] == "hybrid"
    assert "frozen ImageNet EfficientNet-Lite0 features" in (straight / "MODEL_CARD.md").read_text()
    out = tmp_path / "synthetic"
    result = cli("generate", "--checkpoint", straight / "generator.pt", "--out", out, "--per-class", 2)
    assert result.exit_code == 0, result.output
    assert len(open_index(out, synthetic="expected")) == 14
