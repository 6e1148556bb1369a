"""Judge classifiers: image -> 7 class logits, and the helpers that score uint8 images.

Three architectures (nothing is downloaded):

    paper   the study's CNN, from scratch: blocks of conv 3x3 -> BatchNorm -> ReLU ->
            max-pool 2 -> dropout, then flatten -> dense -> ReLU -> dropout -> linear
    resnet  a small ResNet, from scratch: a conv stem, stages of basic residual blocks
            (each stage after the first halves the resolution), global average pool -> linear
    effnet  EfficientNet-Lite0 fine-tuned from its ImageNet weights (the module and the
            weights file the projected discriminator uses), its pooled 1280 features ->
            dropout -> a new linear head

Inputs are RGB in [-1, 1], (N, 3, R, R), the GAN's range, so real and generated
images are judged the same way. ``load_classifier`` reads a ``classifier.pt``
snapshot; ``predict_proba`` and ``penultimate_features`` take uint8 (N, R, R, 3)
arrays, as the cache and the generator's exports hold them::

    model, meta = load_classifier("runs/judge/classifier.pt")
    proba = predict_proba(model, images)          # (N, 7), rows sum to 1
    feats = penultimate_features(model, images)   # (N, D), the input of the last linear layer
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from dermsynth.augment import dihedral_view
from dermsynth.checkpoint import CLASSIFIER_FORMAT, load_checkpoint
from dermsynth.errors import DataError
from dermsynth.figures import from_uint8
from dermsynth.models.efficientnet import BackboneWeightsError, EfficientNetLite0, find_backbone_weights, load_lite0
from dermsynth.schema import FilePath, Integer, Items, Number, Section, raise_problems

ARCHS = ("paper", "resnet", "effnet")


Dropout = Annotated[Number, Field(ge=0, lt=1)]


class ClassifierConfig(Section):
    """Architecture of a judge classifier (saved with every snapshot)."""

    arch: Literal[ARCHS] = Field("paper", description=(
        "paper (the study's three-block CNN), resnet (a small ResNet) or effnet (EfficientNet-Lite0 from "
        "ImageNet)."))
    resolution: Literal[32, 64, 128, 256] = Field(64, description="Input size in pixels: 32, 64, 128 or 256.")
    num_classes: Integer = Field(7, ge=2, description="Number of classes.")
    widths: Items[Annotated[Integer, Field(ge=1)]] = Field((32, 64, 128), min_length=1, description=(
        "Channels of each conv block (paper) or residual stage (resnet); one entry per block or stage."))
    blocks_per_stage: Integer = Field(2, ge=1, description="Basic residual blocks per stage (resnet only).")
    dense_units: Integer = Field(256, ge=1, description="Width of the dense layer before the output (paper only).")
    conv_dropout: Dropout = Field(0.25, description="Dropout after each conv block (paper only).")
    head_dropout: Dropout = Field(0.5, description="Dropout before the output layer.")
    backbone_weights: FilePath | None = Field(None, description=(
        "effnet: the ImageNet EfficientNet-Lite0 weights file; None finds the installed package's."))

    @model_validator(mode="after")
    def _fits(self) -> ClassifierConfig:
        found = []
        if self.resolution >> len(self.widths) < 1:
            found.append(("widths", f"{len(self.widths)} halvings do not fit {self.resolution} px"))
        if self.arch == "effnet":
            try:
                find_backbone_weights(self.backbone_weights)
            except BackboneWeightsError as e:
                found.append(("backbone_weights", str(e)))
        raise_problems(found)
        return self


class ConvBlock(nn.Sequential):
    """The paper's block: conv 3x3 -> BatchNorm -> ReLU -> max-pool 2 -> dropout (halves the resolution)."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
        )


class BasicBlock(nn.Module):
    """Residual block: two conv 3x3 with BatchNorm; a 1x1 projection when the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_ch == out_ch
            else nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))
        )
        nn.init.zeros_(self.bn2.weight)  # each block starts as the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class _Lite0Features(nn.Module):
    """EfficientNet-Lite0's body: (N, 3, R, R) in [-1, 1] -> pooled (N, 1280); its ImageNet classifier dropped."""

    def __init__(self, pretrained: bool, weights: Path | None) -> None:
        super().__init__()
        self.net = load_lite0(weights).train() if pretrained else EfficientNetLite0()
        self.net._fc = nn.Identity()  # the 1000-class layer: not part of the judge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


class Classifier(nn.Module):
    """``features`` (conv body and neck) -> (N, D); ``head`` (one linear layer) -> (N, classes) logits.

    ``pretrained``: effnet starts from the ImageNet weights (training); a snapshot being loaded brings its own.
    """

    def __init__(self, cfg: ClassifierConfig, pretrained: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.arch == "effnet":
            self.features = nn.Sequential(_Lite0Features(pretrained, cfg.backbone_weights),
                                          nn.Dropout(cfg.head_dropout))
            self.feature_dim = 1280
        elif cfg.arch == "paper":
            blocks, in_ch = [], 3
            for width in cfg.widths:
                blocks.append(ConvBlock(in_ch, width, cfg.conv_dropout))
                in_ch = width
            side = cfg.resolution >> len(cfg.widths)
            self.features = nn.Sequential(
                *blocks,
                nn.Flatten(),  # (N, C * side * side)
                nn.Linear(in_ch * side * side, cfg.dense_units),
                nn.ReLU(inplace=True),
                nn.Dropout(cfg.head_dropout),
            )
            self.feature_dim = cfg.dense_units
        else:
            stem = [nn.Conv2d(3, cfg.widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(cfg.widths[0]),
                    nn.ReLU(inplace=True)]
            blocks, in_ch = [], cfg.widths[0]
            for stage, width in enumerate(cfg.widths):
                for k in range(cfg.blocks_per_stage):
                    stride = 2 if stage > 0 and k == 0 else 1
                    blocks.append(BasicBlock(in_ch, width, stride))
                    in_ch = width
            self.features = nn.Sequential(
                *stem, *blocks,
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),  # (N, C_last)
                nn.Dropout(cfg.head_dropout),
            )
            self.feature_dim = in_ch
        self.head = nn.Linear(self.feature_dim, cfg.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))  # (N, num_classes)


def to_input(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1] on ``device``."""
    x = torch.from_numpy(np.array(images, dtype=np.uint8)).to(device)  # a copy: the cache is read-only
    return from_uint8(x.permute(0, 3, 1, 2))


def _check_images(model: Classifier, images: np.ndarray) -> None:
    r = model.cfg.resolution
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (r, r, 3):
        raise DataError(
            f"the classifier takes uint8 images of shape (N, {r}, {r}, 3); got {images.dtype} {tuple(images.shape)}"
        )


@torch.no_grad()
def _run(model: Classifier, images: np.ndarray, batch: int, fn, width: int) -> np.ndarray:
    _check_images(model, images)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [fn(to_input(images[i: i + batch], device)).float().cpu() for i in range(0, len(images), batch)]
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, width), dtype=np.float32)


TTA = {"none": 1, "flips": 4, "dihedral": 8}
"""Test-time augmentation: how many views of each image are averaged (flips: none, horizontal, vertical,
both; dihedral: those and their transposes, the 8 flips and 90-degree rotations)."""


def predict_proba(model: Classifier, images: np.ndarray, batch: int = 256, tta: str = "none") -> np.ndarray:
    """Class probabilities (N, num_classes), float32, of uint8 (N, R, R, 3) images.

    With ``tta`` other than ``none`` the probabilities are the mean over the views of :data:`TTA`.
    """
    if tta not in TTA:
        raise ValueError(f"tta {tta!r} is not one of {', '.join(TTA)}")
    views = TTA[tta]

    def proba(x: torch.Tensor) -> torch.Tensor:
        return sum(torch.softmax(model(dihedral_view(x, v)).float(), dim=1) for v in range(views)) / views

    return _run(model, images, batch, proba, model.cfg.num_classes)


def penultimate_features(model: Classifier, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """The input of the final linear layer (N, D), float32, of uint8 (N, R, R, 3) images."""
    return _run(model, images, batch, model.features, model.feature_dim)


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> tuple[Classifier, dict]:
    """The model of a ``classifier.pt`` snapshot, in eval mode, and the snapshot's other entries.

    ``meta`` holds ``model_config``, ``classes``, ``resolution``, ``crop``, the
    split it was trained on (``split_parts``, ``split_sha256``), the train part's
    ``train_image_ids`` and ``train_lesion_ids`` (for the leakage guard),
    ``best_epoch`` and ``val_balanced_accuracy``.
    """
    ckpt = load_checkpoint(path, expect=CLASSIFIER_FORMAT)
    model = Classifier(ClassifierConfig(**ckpt["model_config"]), pretrained=False)
    model.load_state_dict(ckpt["model"])
    meta = {k: v for k, v in ckpt.items() if k != "model"}
    return model.to(device).eval(), meta
