"""Losses, regularisers and augmentation against known answers."""

from __future__ import annotations

import math

import pytest
import torch

from dermsynth.training import gan_losses
from dermsynth.augment import check_policy, diff_augment, dihedral


def test_loss_values_at_zero_logits():
    zero = torch.zeros(4)
    assert gan_losses.d_loss("bce", zero, zero).item() == pytest.approx(2 * math.log(2))
    assert gan_losses.g_loss("bce", zero).item() == pytest.approx(math.log(2))
    assert gan_losses.d_loss("hinge", zero, zero).item() == pytest.approx(2.0)
    assert gan_losses.d_loss("wgan", torch.ones(4), zero).item() == pytest.approx(-1.0)
    assert gan_losses.g_loss("hinge", torch.full((4,), 2.0)).item() == pytest.approx(-2.0)
    with pytest.raises(ValueError, match="unknown loss"):
        gan_losses.d_loss("lsgan", zero, zero)


class Linear:
    """D(x, y) = <w, x>: its input gradient is w everywhere."""

    def __init__(self, w):
        self.w = w

    def __call__(self, x, labels):
        return (x.flatten(1) * self.w.flatten()).sum(1)


def test_gradient_penalty_known_answers():
    real, fake, labels = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4), torch.zeros(5, dtype=torch.long)
    w = torch.randn(3, 4, 4)
    unit = Linear(w / w.norm())
    assert gan_losses.gradient_penalty(unit, real, fake, labels).item() == pytest.approx(0.0, abs=1e-10)
    double = Linear(2 * w / w.norm())
    assert gan_losses.gradient_penalty(double, real, fake, labels).item() == pytest.approx(1.0, rel=1e-5)


def test_r1_penalty_is_squared_gradient_norm():
    w = torch.randn(3, 4, 4)
    real = torch.randn(6, 3, 4, 4, requires_grad=True)
    logits = Linear(w)(real, None)
    assert gan_losses.r1_penalty(logits, real).item() == pytest.approx(float(w.pow(2).sum()), rel=1e-5)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diff_augment_is_differentiable_and_random(policy):
    torch.manual_seed(0)
    x = torch.rand(8, 3, 16, 16, requires_grad=True)
    y = diff_augment(x, policy)
    assert y.shape == x.shape and not torch.equal(y, x)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_and_cutout_zero_fill():
    torch.manual_seed(1)
    ones = torch.ones(64, 3, 16, 16)
    cut = diff_augment(ones, "cutout")
    # A cutout square of half the side covers at most a quarter of the image.
    assert 0 < (cut == 0).float().mean() <= 0.25 + 1e-6
    moved = diff_augment(ones, "translation")
    assert (moved == 0).any() and (moved == 1).any()


def test_empty_policy_is_identity_and_bad_policy_is_named():
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(diff_augment(x, ""), x)
    assert check_policy("color,blur") == ["unknown DiffAugment policy 'blur' (known: color, translation, cutout)"]


def test_dihedral_moves_pixels_without_changing_them():
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float).reshape(2, 3, 4, 4)
    y = dihedral(x.repeat(8, 1, 1, 1))
    assert torch.equal(y.flatten(2).sort(dim=2).values, x.repeat(8, 1, 1, 1).flatten(2).sort(dim=2).values)
    assert not torch.equal(y, x.repeat(8, 1, 1, 1))


def test_mode_seeking_term_grows_as_the_generator_ignores_its_noise():
    z = torch.randn(8, 16)
    varied = torch.randn(8, 3, 4, 4)
    collapsed = torch.randn(1, 3, 4, 4).expand(8, -1, -1, -1) + 1e-3 * torch.randn(8, 3, 4, 4)
    assert gan_losses.mode_seeking(collapsed, z) > 100 * gan_losses.mode_seeking(varied, z)
    # Hand-worked: halves differ by 0.5 everywhere and their noises by 1 -> 1 / 0.5 = 2.
    fake = torch.cat([torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)])
    noise = torch.cat([torch.zeros(2, 16), torch.ones(2, 16)])
    assert torch.isclose(gan_losses.mode_seeking(fake, noise, eps=0.0), torch.tensor(2.0))


def test_penalties_treat_patch_logits_as_the_losses_do():
    # D that returns P identical patch logits per image: the penalties must equal those of one logit per image.
    w = torch.randn(3 * 4 * 4)
    one = lambda x, y: (x.flatten(1) * w).sum(1)  # noqa: E731
    patches = lambda x, y: one(x, y)[:, None].expand(-1, 5)  # noqa: E731
    real = torch.randn(2, 3, 4, 4)
    torch.manual_seed(0)
    gp_one = gan_losses.gradient_penalty(one, real, real.flip(0), None)
    torch.manual_seed(0)
    assert torch.isclose(gan_losses.gradient_penalty(patches, real, real.flip(0), None), gp_one)
    x = real.clone().requires_grad_(True)
    assert torch.isclose(gan_losses.r1_penalty(patches(x, None), x), gan_losses.r1_penalty(one(x, None), x))
