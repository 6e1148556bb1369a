"""Projected and hybrid discriminators and the FastGAN-style generator: shapes, conditioning, a frozen backbone."""

from __future__ import annotations

import pytest
import torch

from dermsynth.models.discriminator import (
    DiscriminatorConfig,
    HybridDiscriminator,
    ProjectedDiscriminator,
    build_discriminator,
    sees_imagenet_features,
)
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
    unused = DiscriminatorConfig(backbone_weights=tmp_path / "w.pth").problems()
    assert "only a projected or hybrid discriminator" in unused[0]
    with pytest.raises(ValueError, match="head_channels"):
        DiscriminatorConfig(arch="projected", head_channels=0)
    with pytest.raises(ValueError, match=r"arch\n  Input should be 'dcgan', 'projected' or 'hybrid'"):
        DiscriminatorConfig(arch="vit")
    with pytest.raises(ValueError, match=r"arch\n  Input should be 'dcgan' or 'fastgan'"):
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


def small_hybrid() -> HybridDiscriminator:
    return build_discriminator(DiscriminatorConfig(arch="hybrid", resolution=32, base_channels=8, head_channels=16,
                                                   cmap_dim=8, norm="batch", pixel_channels=8, max_channels=32))


def test_hybrid_d_gives_a_pixel_logit_and_the_feature_heads_patch_logits():
    d = small_hybrid()
    assert isinstance(d, HybridDiscriminator) and d.head_names == ("pixel", "feature")
    pixel, feature = d(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]))
    assert pixel.shape == (4,) and feature.shape == (4, 148)
    # The pixel critic: projection conditioning, no BatchNorm (R1 regularises it), its own channel count.
    assert d.pixel.embed is not None and not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.pixel.modules())
    assert d.pixel.blocks[0][0].out_channels == 8
    assert sees_imagenet_features("hybrid") and sees_imagenet_features("projected")
    assert not sees_imagenet_features("dcgan") and not sees_imagenet_features(None)


def test_hybrid_keeps_its_backbone_frozen_when_the_loop_unfreezes_it():
    torch.manual_seed(0)
    d = small_hybrid()
    frozen = {k: v.clone() for k, v in d.feature.projection.state_dict().items()}
    d.train()
    d.requires_grad_(True)  # what the loop's D phase does
    assert not any(p.requires_grad for p in d.feature.projection.parameters())
    assert all(p.requires_grad for p in d.pixel.parameters()) and all(p.requires_grad for p in d.feature.heads
                                                                      .parameters())
    assert not d.feature.projection.backbone.training
    opt = torch.optim.Adam([p for p in d.parameters() if p.requires_grad], lr=0.1)
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    for _ in range(2):
        opt.zero_grad()
        pixel, feature = d(x, torch.tensor([0, 1, 2, 3]))
        (pixel.mean() + feature.mean()).backward()
        opt.step()
    assert all(p.grad is None for p in d.feature.projection.parameters())
    for k, v in d.feature.projection.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    d.requires_grad_(False)
    assert not any(p.requires_grad for p in d.parameters())


def test_every_head_has_an_unconditional_output_and_a_class_projection():
    torch.manual_seed(0)
    d = small_hybrid()
    x = torch.randn(2, 3, 32, 32)
    same, other = torch.tensor([1, 1]), torch.tensor([5, 5])
    with torch.no_grad():
        for _ in range(5):  # spectral norm's power iteration settles, as in training
            d(x, same)
        d.eval()
        # Pixel critic: logit = psi(h) + <embed(y), h>; what is left without the class term is the same for
        # every class and not zero. (Its embedding is spectrally normalised, so it cannot simply be zeroed.)
        h = d.pixel.blocks(x).flatten(1)
        left = [d.pixel(x, y) - (d.pixel.embed(y) * h).sum(1) for y in (same, other)]
        assert not torch.allclose(d.pixel(x, same), d.pixel(x, other))
        assert torch.allclose(left[0], left[1], atol=1e-5) and left[0].abs().min() > 0
        # Feature heads: with the class embeddings zeroed, an unconditional verdict is left.
        for head in d.feature.heads:
            head.embed.weight.normal_(0, 1)
        assert not torch.allclose(d.feature(x, same), d.feature(x, other))
        for head in d.feature.heads:
            head.embed.weight.zero_()
        unconditional = d.feature(x, same)
        assert unconditional.abs().min() > 0 and torch.equal(unconditional, d.feature(x, other))


def test_hybrid_config_checks():
    with pytest.raises(ValueError, match="pixel_channels"):
        DiscriminatorConfig(arch="hybrid", pixel_channels=0)
    assert DiscriminatorConfig(arch="hybrid").problems() == []
