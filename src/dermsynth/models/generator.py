"""Class-conditional generators: (z, class) -> RGB image in [-1, 1].

- ``dcgan``: the paper's cDCGAN (transposed convs, BatchNorm, LeakyReLU);
- ``fastgan``: a light FastGAN-style generator (Liu et al., ICLR 2021): nearest
  upsampling + 3x3 convs with GLU, per-pixel noise, class-conditional BatchNorm
  and skip-layer excitation (a low-resolution map gates the channels of a map 8-16x
  larger), built in a loop for 32 to 256 px.

:func:`build_generator` picks one by ``GeneratorConfig.arch``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from dermsynth.models.blocks import LRELU_SLOPE, UpBlock, channel_schedule, init_dcgan_, norm_layer, one_hot
from dermsynth.schema import Integer, Section


GENERATOR_ARCHS = ("dcgan", "fastgan")


class GeneratorConfig(Section):
    """Architecture of the generator (saved with every snapshot)."""

    arch: Literal[GENERATOR_ARCHS] = Field("dcgan", description=(
        "dcgan (the paper's network) or fastgan (light FastGAN-style network, see the module docstring)."))
    resolution: Literal[32, 64, 128, 256] = Field(64, description="Output size in pixels: 32, 64, 128 or 256.")
    num_classes: Integer = Field(7, ge=1, description=(
        "Number of classes (HAM10000: 7; images are RGB, the 7 are classes)."))
    z_dim: Integer = Field(100, ge=1, description="Noise dimensions, drawn from N(0, I).")
    conditioning: Literal["onehot", "embedding"] = Field("onehot", description=(
        "onehot (the paper: one-hot label concatenated to z) or embedding (learned, embed_dim)."))
    embed_dim: Integer = Field(64, ge=1, description="Size of the learned class embedding when conditioning is "
                                                     "embedding.")
    base_channels: Integer = Field(64, ge=1, description=(
        "dcgan: channels at half the output resolution; fastgan: at the output resolution; doubling at each "
        "halving."))
    max_channels: Integer = Field(512, ge=1, description="Cap on channels.")
    upsample: Literal["deconv", "nearest"] = Field("deconv", description=(
        "dcgan only: deconv (transposed conv 4x4/2, the paper) or nearest (upsample + conv 3x3)."))
    norm: Literal["batch", "none"] = Field("batch", description=(
        "dcgan only: batch (the paper) or none (fastgan always uses class-conditional BatchNorm)."))


class Generator(nn.Module):
    """The paper's cDCGAN generator."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.conditioning == "embedding":
            self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim)
            cond_dim = cfg.embed_dim
        else:
            self.embed = None
            cond_dim = cfg.num_classes
        schedule = channel_schedule(cfg.resolution, cfg.base_channels, cfg.max_channels)
        resolutions = sorted(schedule)
        # (N, z + cond, 1, 1) -> (N, C4, 4, 4)
        self.stem = nn.Sequential(
            nn.ConvTranspose2d(cfg.z_dim + cond_dim, schedule[4], 4, stride=1, padding=0, bias=cfg.norm == "none"),
            norm_layer(cfg.norm, schedule[4]),
            nn.LeakyReLU(LRELU_SLOPE),
        )
        self.blocks = nn.Sequential(
            *[UpBlock(schedule[r], schedule[2 * r], cfg.upsample, cfg.norm) for r in resolutions[:-1]]
        )
        last = schedule[resolutions[-1]]
        if cfg.upsample == "deconv":
            self.to_rgb = nn.ConvTranspose2d(last, 3, 4, stride=2, padding=1)
        else:
            self.to_rgb = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(last, 3, 3, padding=1))
        init_dcgan_(self)

    def condition(self, labels: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            return self.embed(labels)
        return one_hot(labels, self.cfg.num_classes)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.condition(labels).to(z.dtype)], dim=1)[:, :, None, None]
        return torch.tanh(self.to_rgb(self.blocks(self.stem(h))))  # (N, 3, R, R)


# --- FastGAN-style generator ---------------------------------------------------------


class CondBatchNorm(nn.Module):
    """BatchNorm without its own affine; a per-class gain (around 1) and bias instead."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * (1 + self.gain(labels)[:, :, None, None]) + self.bias(labels)[:, :, None, None]


class NoiseInjection(nn.Module):
    """Adds per-pixel Gaussian noise scaled by one learned weight (starts at 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight * torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)


class FastUpBlock(nn.Module):
    """Double the resolution: nearest upsample, then ``convs`` x (conv 3x3 -> noise -> class BN -> GLU)."""

    def __init__(self, in_ch: int, out_ch: int, num_classes: int, convs: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        self.noises = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i in range(convs):
            self.convs.append(nn.Conv2d(in_ch if i == 0 else out_ch, 2 * out_ch, 3, padding=1, bias=False))
            self.noises.append(NoiseInjection())
            self.norms.append(CondBatchNorm(2 * out_ch, num_classes))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        for conv, noise, norm in zip(self.convs, self.noises, self.norms):
            x = F.glu(norm(noise(conv(x)), labels), dim=1)
        return x


class SkipExcitation(nn.Module):
    """Skip-layer excitation: a small map (N, C_lo, r, r) gates the channels of a large one (N, C_hi, R, R)."""

    def __init__(self, lo_ch: int, hi_ch: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(4), nn.Conv2d(lo_ch, hi_ch, 4, bias=False), nn.LeakyReLU(LRELU_SLOPE),
            nn.Conv2d(hi_ch, hi_ch, 1, bias=False), nn.Sigmoid(),
        )

    def forward(self, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        return hi * self.gate(lo)


def excitation_pairs(resolution: int) -> list[tuple[int, int]]:
    """(source, target) resolutions of the skip-layer excitations: 4->32, then 16x apart as in FastGAN (4->64,
    8->128, 16->256), so even a 32 px generator has one."""
    return [(max(4, hi // 16), hi) for hi in (32, 64, 128, 256) if hi <= resolution]


class FastGenerator(nn.Module):
    """FastGAN-style conditional generator (see the module docstring)."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim) if cfg.conditioning == "embedding" else None
        cond_dim = cfg.embed_dim if self.embed is not None else cfg.num_classes
        # base_channels at the output resolution itself, doubling each halving: DCGAN's schedule one octave up.
        ch = channel_schedule(2 * cfg.resolution, cfg.base_channels, cfg.max_channels)
        # (N, z + cond, 1, 1) -> (N, C4, 4, 4)
        self.stem = nn.ConvTranspose2d(cfg.z_dim + cond_dim, 2 * ch[4], 4, bias=False)
        self.stem_norm = CondBatchNorm(2 * ch[4], cfg.num_classes)
        # Two convs per block at 8 and 32 px (and 128), one elsewhere, as FastGAN alternates them.
        self.blocks = nn.ModuleDict({
            str(r): FastUpBlock(ch[r // 2], ch[r], cfg.num_classes, 2 if r in (8, 32, 128) else 1)
            for r in sorted(ch) if r > 4
        })
        self.pairs = excitation_pairs(cfg.resolution)
        self.excite = nn.ModuleDict({f"{lo}-{hi}": SkipExcitation(ch[lo], ch[hi]) for lo, hi in self.pairs})
        self.to_rgb = nn.Conv2d(ch[cfg.resolution], 3, 3, padding=1)

    def condition(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embed(labels) if self.embed is not None else one_hot(labels, self.cfg.num_classes)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.condition(labels).to(z.dtype)], dim=1)[:, :, None, None]
        feats = {4: F.glu(self.stem_norm(self.stem(h), labels), dim=1)}
        r = 4
        for name, block in self.blocks.items():
            r = int(name)
            feats[r] = block(feats[r // 2], labels)
            for lo, hi in self.pairs:
                if hi == r:
                    feats[r] = self.excite[f"{lo}-{hi}"](feats[lo], feats[r])
        return torch.tanh(self.to_rgb(feats[r]))  # (N, 3, R, R)


def build_generator(cfg: GeneratorConfig) -> nn.Module:
    """The generator that ``cfg.arch`` names."""
    return FastGenerator(cfg) if cfg.arch == "fastgan" else Generator(cfg)
