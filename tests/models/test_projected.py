"""Projected discriminator and FastGAN-style generator: shapes, conditioning, a frozen backbone."""

from __future__ import annotations

import pytest
import torch

from dermsynth.models.discriminator import DiscriminatorConfig, ProjectedDiscriminator, build_discriminator
from dermsynth.models.generator import FastGenerator, GeneratorConfig, build_generator, excitation_pairs


def small_d(**kw) -> ProjectedDiscriminator:
    cfg = DiscriminatorConfig(arch="projected", resolution=32, base_channels=8, head_channels=16, cmap_dim=8,
                              norm="batch", **kw)
    return build_discriminator(cfg)


@pytest.mark.parametrize("resolution", [32, 64, 128, 256])
def test_fastgan_generator_shapes_and_excitations(resolution):
    torch.manual_seed(0)
    g = build_generator(GeneratorConfig(arch="fastgan", resolution=resolution, base_channels=4, max_channels=32,
                                        conditioning="embedding", embed_dim=8, z_dim=16))
    assert isinstance(g, FastGenerator)
    out = g(torch.randn(3, 16), torch.tensor([0, 3, 6]))
    assert out.shape == (3, 3, resolution, resolution) and out.abs().max() <= 1
    assert len(g.excite) == len(excitation_pairs(resolution)) >= 1
    assert excitation_pairs(256) == [(4, 32), (4, 64), (8, 128), (16, 256)]


def test_fastgan_output_depends_on_noise_and_class():
    torch.manual_seed(0)
    g = FastGenerator(GeneratorConfig(arch="fastgan", resolution=32, base_channels=4, max_channels=32, z_dim=16,
                                      conditioning="embedding", embed_dim=8))
    with torch.no_grad():  # the class-conditional norms start as plain BN: perturb them like training would
        for m in g.modules():
            if isinstance(m, torch.nn.Embedding):
                m.weight.normal_(0, 0.5)
        for _ in range(40):  # BatchNorm running statistics, as training leaves them
            g(torch.randn(32, 16), torch.randint(0, 7, (32,)))
    g.eval()
    z = torch.randn(2, 16)
    y = torch.tensor([1, 1])
    with torch.no_grad():
        a = g(z, y)
        assert (a[0] - a[1]).abs().mean() > 1e-2  # two noises, two images
        assert (g(z, torch.tensor([2, 2])) - a).abs().mean() > 1e-2  # another class, other images


def test_projected_d_gives_patch_logits_at_four_scales():
    d = small_d()
    logits = d(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]))
    # heads at 16 -> 8, 8, 4, 2 px: 64 + 64 + 16 + 4 patch logits per image
    assert logits.shape == (4, 148)
    features = small_d(backbone_resolution=64)(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))
    assert features.shape == (2, 64 + 64 + 64 + 16)


def test_backbone_stays_frozen_and_passes_gradients_to_the_images():
    torch.manual_seed(0)
    d = small_d()
    frozen = {k: v.clone() for k, v in d.projection.state_dict().items()}
    d.train()
    d.requires_grad_(True)
    assert not d.projection.training and not d.projection.backbone.training
    assert not any(p.requires_grad for p in d.projection.parameters())
    assert all(p.requires_grad for p in d.heads.parameters())
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    opt = torch.optim.Adam([p for p in d.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        d(x, torch.tensor([0, 1, 2, 3])).mean().backward()
        opt.step()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in d.projection.parameters())
    for k, v in d.projection.state_dict().items():
        assert torch.equal(v, frozen[k]), k  # weights and BatchNorm statistics alike


def test_projected_config_checks(tmp_path):
    # The weights file is looked for before training, not whenever a saved config is read back.
    missing = DiscriminatorConfig(arch="projected", backbone_weights=tmp_path / "missing.pth")
    assert missing.problems() == [f"{tmp_path / 'missing.pth'}: no such EfficientNet-Lite0 weights file"]
    assert DiscriminatorConfig(arch="projected").problems() == []
    assert "only a projected discriminator" in DiscriminatorConfig(backbone_weights=tmp_path / "w.pth").problems()[0]
    with pytest.raises(ValueError, match="head_channels"):
        DiscriminatorConfig(arch="projected", head_channels=0)
    with pytest.raises(ValueError, match="discriminator.arch 'vit' is not one of dcgan, projected"):
        DiscriminatorConfig(arch="vit")
    with pytest.raises(ValueError, match="generator.arch 'stylegan' is not one of dcgan, fastgan"):
        GeneratorConfig(arch="stylegan")


def test_minibatch_std_sees_a_batch_that_repeats_itself():
    from dermsynth.models.discriminator import MinibatchStd

    layer = MinibatchStd(4)
    varied = layer(torch.randn(8, 5, 3, 3))
    same = layer(torch.randn(1, 5, 3, 3).expand(8, -1, -1, -1))
    assert varied.shape == same.shape == (8, 6, 3, 3)
    assert varied[:, -1].min() > 0.5 and same[:, -1].max() < 1e-3
    assert layer(torch.randn(6, 5, 3, 3)).shape == (6, 6, 3, 3)  # a batch not divisible by the group
    d = small_d(mbstd_group=4)
    assert d(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])).shape == (4, 148)


def test_sampling_a_noisy_generator_is_reproducible_and_leaves_the_callers_rng_alone():
    from dermsynth.generate import sample

    torch.manual_seed(0)
    g = FastGenerator(GeneratorConfig(arch="fastgan", resolution=32, base_channels=4, max_channels=32, z_dim=16,
                                      conditioning="embedding", embed_dim=8)).eval()
    for m in g.modules():
        if m.__class__.__name__ == "NoiseInjection":
            m.weight.data.fill_(1.0)  # the noise matters
    before = torch.get_rng_state()
    a = sample(g, 3, 5, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(10)  # whatever the caller did in between
    assert (sample(g, 3, 5, seed=7) == a).all()
    assert (sample(g, 3, 5, seed=8) != a).any()
