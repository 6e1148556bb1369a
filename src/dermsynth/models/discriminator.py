"""Class-conditional discriminator: image and class -> one real/fake logit.

Conditioning by label maps (the paper: one-hot planes concatenated to the RGB
input) or by projection (Miyato & Koyama 2018: logit = psi(h) + <embed(y), h>).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dermsynth.models.blocks import DownBlock, channel_schedule, init_dcgan_, maybe_sn, one_hot


@dataclass
class DiscriminatorConfig:
    """Architecture of the discriminator."""

    resolution: int = 64
    """Input size in pixels."""
    num_classes: int = 7
    """Number of classes."""
    conditioning: str = "concat"
    """concat (the paper: label maps concatenated to the image) or projection."""
    base_channels: int = 64
    """Channels after the first downsampling; doubling at each halving."""
    max_channels: int = 512
    """Cap on channels."""
    spectral_norm: bool = True
    """Spectral normalisation of every conv/linear layer (one power iteration)."""
    norm: str = "none"
    """batch or none (BatchNorm is never applied after the first block, as in DCGAN)."""

    def __post_init__(self) -> None:
        problems = []
        if self.conditioning not in ("concat", "projection"):
            problems.append(f"discriminator.conditioning {self.conditioning!r} is not concat or projection")
        if self.norm not in ("batch", "none"):
            problems.append(f"discriminator.norm {self.norm!r} is not batch or none")
        if self.resolution not in (32, 64, 128, 256):
            problems.append(f"discriminator.resolution {self.resolution} is not 32, 64, 128 or 256")
        if problems:
            raise ValueError("; ".join(problems))


class Discriminator(nn.Module):
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
