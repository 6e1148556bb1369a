"""Class-conditional DCGAN generator: (z, class) -> RGB image in [-1, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dermsynth.models.blocks import LRELU_SLOPE, UpBlock, channel_schedule, init_dcgan_, norm_layer, one_hot


@dataclass
class GeneratorConfig:
    """Architecture of the generator (saved with every snapshot)."""

    resolution: int = 64
    """Output size in pixels: 32, 64, 128 or 256."""
    num_classes: int = 7
    """Number of classes (HAM10000: 7; images are RGB, the 7 are classes)."""
    z_dim: int = 100
    """Noise dimensions, drawn from N(0, I)."""
    conditioning: str = "onehot"
    """onehot (the paper: one-hot label concatenated to z) or embedding (learned, embed_dim)."""
    embed_dim: int = 64
    """Size of the learned class embedding when conditioning is embedding."""
    base_channels: int = 64
    """Channels at half the output resolution; doubling at each halving."""
    max_channels: int = 512
    """Cap on channels."""
    upsample: str = "deconv"
    """deconv (transposed conv 4x4/2, the paper) or nearest (upsample + conv 3x3)."""
    norm: str = "batch"
    """batch (the paper) or none."""

    def __post_init__(self) -> None:
        problems = []
        if self.resolution not in (32, 64, 128, 256):
            problems.append(f"generator.resolution {self.resolution} is not 32, 64, 128 or 256")
        if self.conditioning not in ("onehot", "embedding"):
            problems.append(f"generator.conditioning {self.conditioning!r} is not onehot or embedding")
        if self.upsample not in ("deconv", "nearest"):
            problems.append(f"generator.upsample {self.upsample!r} is not deconv or nearest")
        if self.norm not in ("batch", "none"):
            problems.append(f"generator.norm {self.norm!r} is not batch or none")
        if self.num_classes < 1 or self.z_dim < 1:
            problems.append("generator.num_classes and generator.z_dim must be positive")
        if problems:
            raise ValueError("; ".join(problems))


class Generator(nn.Module):
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
