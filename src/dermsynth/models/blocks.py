"""Shared building blocks for the generator and the discriminator.

BatchNorm momentum: the paper gives Keras' ``momentum=0.9`` (new = 0.9 * old +
0.1 * batch). PyTorch's ``momentum`` weighs the batch instead (new = (1 - m) *
old + m * batch), so the same behaviour is PyTorch's ``momentum=0.1``, its
default; :data:`PAPER_BN_MOMENTUM` names it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

PAPER_BN_MOMENTUM = 0.1  # = 1 - Keras momentum 0.9
LRELU_SLOPE = 0.2


def maybe_sn(layer: nn.Module, use_sn: bool) -> nn.Module:
    """Wrap a conv/linear layer in spectral norm (one power iteration per step) if asked."""
    return spectral_norm(layer, n_power_iterations=1) if use_sn else layer


def norm_layer(kind: str, channels: int, momentum: float = PAPER_BN_MOMENTUM) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels, momentum=momentum)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose batch or none")


class UpBlock(nn.Sequential):
    """Double the resolution: transposed conv 4x4/2 (or nearest upsample + conv 3x3), norm, LeakyReLU."""

    def __init__(self, in_ch: int, out_ch: int, upsample: str = "deconv", norm: str = "batch") -> None:
        if upsample == "deconv":
            conv = [nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=norm == "none")]
        elif upsample == "nearest":
            conv = [nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=norm == "none")]
        else:
            raise ValueError(f"unknown upsample {upsample!r}; choose deconv or nearest")
        super().__init__(*conv, norm_layer(norm, out_ch), nn.LeakyReLU(LRELU_SLOPE))


class DownBlock(nn.Sequential):
    """Halve the resolution: strided conv 4x4/2, optional norm, LeakyReLU; optional spectral norm."""

    def __init__(self, in_ch: int, out_ch: int, norm: str = "none", use_sn: bool = False) -> None:
        conv = maybe_sn(nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1, bias=norm == "none"), use_sn)
        super().__init__(conv, norm_layer(norm, out_ch), nn.LeakyReLU(LRELU_SLOPE))


def channel_schedule(resolution: int, base_channels: int, max_channels: int) -> dict[int, int]:
    """Channels of the feature maps at each resolution 4, 8, ..., resolution / 2.

    DCGAN's schedule: ``base_channels`` at resolution / 2, doubling each halving,
    capped at ``max_channels`` (64 px, base 64: 4->512, 8->256, 16->128, 32->64).
    """
    out = {}
    r = 4
    while r < resolution:
        out[r] = min(max_channels, base_channels * (resolution // 2) // r)
        r *= 2
    return out


def init_dcgan_(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    for m in module.modules():
        weight = getattr(m, "weight", None)
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            target = m.parametrizations.weight.original if hasattr(m, "parametrizations") else weight
            nn.init.normal_(target, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(weight, 0.0, 0.02)


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return nn.functional.one_hot(labels, num_classes).float()
