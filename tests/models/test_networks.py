"""Generator and discriminator: shapes at every resolution, conditioning, spectral norm, BN momentum."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dermsynth.models.blocks import PAPER_BN_MOMENTUM, channel_schedule
from dermsynth.models.discriminator import Discriminator, DiscriminatorConfig
from dermsynth.models.generator import Generator, GeneratorConfig


@pytest.mark.parametrize("resolution", [32, 64, 128, 256])
def test_generator_and_discriminator_shapes(resolution):
    g = Generator(GeneratorConfig(resolution=resolution, base_channels=8, max_channels=32))
    d = Discriminator(DiscriminatorConfig(resolution=resolution, base_channels=8, max_channels=32))
    labels = torch.tensor([0, 6])
    images = g(torch.randn(2, 100), labels)
    assert images.shape == (2, 3, resolution, resolution)
    assert images.abs().max() <= 1
    assert d(images, labels).shape == (2,)


def test_dcgan_channel_schedule():
    assert channel_schedule(64, 64, 512) == {4: 512, 8: 256, 16: 128, 32: 64}
    assert channel_schedule(128, 64, 512) == {4: 512, 8: 512, 16: 256, 32: 128, 64: 64}


@pytest.mark.parametrize("conditioning", ["onehot", "embedding"])
def test_generator_output_depends_on_class(conditioning):
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(resolution=32, conditioning=conditioning, base_channels=8)).eval()
    z = torch.randn(1, 100).repeat(2, 1)
    out = g(z, torch.tensor([0, 3]))
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("conditioning", ["concat", "projection"])
def test_discriminator_output_depends_on_class(conditioning):
    torch.manual_seed(0)
    d = Discriminator(DiscriminatorConfig(resolution=32, conditioning=conditioning, base_channels=8))
    x = torch.randn(1, 3, 32, 32).repeat(2, 1, 1, 1)
    with torch.no_grad():
        out = d(x, torch.tensor([0, 3]))
    assert out[0] != out[1]


def test_spectral_norm_and_batchnorm_options():
    d = Discriminator(DiscriminatorConfig(resolution=32, spectral_norm=True, norm="batch", base_channels=8))
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    bns = [m for m in d.modules() if isinstance(m, nn.BatchNorm2d)]
    # No BatchNorm right after the input layer (DCGAN), on every later block.
    assert len(bns) == len(convs) - 1
    plain = Discriminator(DiscriminatorConfig(resolution=32, spectral_norm=False, base_channels=8))
    assert not any(hasattr(m, "parametrizations") for m in plain.modules() if isinstance(m, nn.Conv2d))


def test_paper_batchnorm_momentum_is_keras_0_9():
    # Keras: new = 0.9 * old + 0.1 * batch; PyTorch: new = (1 - m) * old + m * batch.
    g = Generator(GeneratorConfig(resolution=32))
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.momentum == PAPER_BN_MOMENTUM == pytest.approx(1 - 0.9) for m in bns)


def test_bad_config_lists_every_problem():
    with pytest.raises(ValueError, match=r"(?s)2 validation errors.*resolution.*conditioning"):
        GeneratorConfig(resolution=48, conditioning="x")
