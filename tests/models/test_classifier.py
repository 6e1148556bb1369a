"""Judge classifiers: shapes of both architectures, features before the head, probabilities, config checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dermsynth.config import ConfigError, classifier_config
from dermsynth.data.index import DataError
from dermsynth.models.classifier import (
    BasicBlock,
    Classifier,
    ClassifierConfig,
    ConvBlock,
    penultimate_features,
    predict_proba,
    to_input,
)


@pytest.mark.parametrize("arch", ["paper", "resnet"])
@pytest.mark.parametrize("resolution", [32, 64])
def test_logits_and_features_shapes(arch, resolution):
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(arch=arch, resolution=resolution, widths=(4, 8, 16), dense_units=12))
    x = torch.rand(3, 3, resolution, resolution) * 2 - 1
    model.eval()
    assert model(x).shape == (3, 7)
    features = model.features(x)
    assert features.shape == (3, 12 if arch == "paper" else 16) and model.feature_dim == features.shape[1]
    assert torch.allclose(model.head(features), model(x))  # the head is the only layer after the features


def test_networks_are_built_from_blocks():
    paper = Classifier(ClassifierConfig(arch="paper", widths=(32, 64, 128)))
    assert sum(isinstance(m, ConvBlock) for m in paper.modules()) == 3
    assert [m.out_channels for m in paper.modules() if isinstance(m, torch.nn.Conv2d)] == [32, 64, 128]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in paper.modules()) == 3
    assert paper.feature_dim == 256
    resnet = Classifier(ClassifierConfig(arch="resnet", widths=(32, 64, 128, 256), blocks_per_stage=2))
    assert sum(isinstance(m, BasicBlock) for m in resnet.modules()) == 8
    assert resnet.feature_dim == 256


def test_predict_proba_and_features_take_uint8_images():
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(resolution=32, widths=(4, 8), dense_units=8)).train()
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    proba = predict_proba(model, images, batch=2)
    assert proba.shape == (5, 7) and proba.dtype == np.float32
    assert np.allclose(proba.sum(1), 1, atol=1e-5)
    assert np.allclose(proba, predict_proba(model, images), atol=1e-6)  # eval mode inside: no dropout noise
    assert model.training  # and the caller's mode is restored
    assert penultimate_features(model, images).shape == (5, 8)
    assert predict_proba(model, images[:0]).shape == (0, 7)
    x = to_input(images)
    assert x.shape == (5, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    with pytest.raises(DataError, match=r"uint8 images of shape \(N, 32, 32, 3\)"):
        predict_proba(model, np.zeros((2, 64, 64, 3), dtype=np.uint8))
    with pytest.raises(DataError, match="uint8"):
        predict_proba(model, images.astype(np.float32))


def test_classifier_config_reports_every_problem_at_once():
    raw = {"data": {"resolution": 32}, "split": {"fractions": [0.8, 0.0, 0.2]},
           "model": {"arch": "vit"}, "train": {"imbalance": "smote", "optimizer": "lion"}}
    with pytest.raises(ConfigError) as e:
        classifier_config(raw)
    message = str(e.value)
    for part in ("model.arch: expected one of paper, resnet, effnet, got 'vit'", "train.imbalance: expected one of "
                 "oversample, weighted_loss, none, got 'smote'", "train.optimizer: expected one of adam, adamw, sgd, "
                 "got 'lion'"):
        assert part in message, part
    # Checks across sections run once every section is valid on its own; then all of them are named at once.
    with pytest.raises(ConfigError) as e:
        classifier_config({**raw, "model": {"resolution": 64}, "train": {}})
    assert str(e.value) == ("invalid classifier config:\n"
                            "  - split.fractions: the val share must be above 0 (the best epoch is chosen on val)\n"
                            "  - model.resolution: must equal data.resolution (32), got 64")
    cfg = classifier_config({"data": {"resolution": 32}}, ["train.epochs=3"])
    assert cfg.model.resolution == 32 and cfg.train.epochs == 3
    with pytest.raises(ConfigError, match="must equal data.resolution"):
        classifier_config({"data": {"resolution": 32}, "model": {"resolution": 64}})
