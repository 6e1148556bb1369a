"""Shared fixtures: tiny HAM10000-layout datasets built in tmp_path."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermsynth.data.index import CLASSES

SHARED_HAM = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000-200x150"


def write_ham(
    root: Path,
    per_class: int = 4,
    images_per_lesion: int = 2,
    size: tuple[int, int] = (40, 30),
    layout: str = "single",
    seed: int = 0,
) -> Path:
    """A tiny HAM10000-layout dataset: a metadata CSV plus solid-ish JPEGs.

    ``layout`` is "single" (images/), "two" (HAM10000_images_part_1/ and _2/) or
    "flat" (next to the CSV).
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    n = 0
    for label, dx in enumerate(CLASSES):
        for k in range(per_class):
            lesion = f"HAM_{label:02d}{k // images_per_lesion:04d}"
            image_id = f"ISIC_{n:07d}"
            n += 1
            rows.append({"lesion_id": lesion, "image_id": image_id, "dx": dx})
            if layout == "two":
                folder = root / ("HAM10000_images_part_1" if n % 2 else "HAM10000_images_part_2")
            elif layout == "flat":
                folder = root
            else:
                folder = root / "images"
            folder.mkdir(exist_ok=True)
            colour = np.array([40 * label, 255 - 30 * label, 120], dtype=np.float64)
            pixels = colour + rng.normal(0, 10, (size[1], size[0], 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{image_id}.jpg", quality=90)
    write_csv(root / "HAM10000_metadata.csv", rows)
    return root


def write_csv(path: Path, rows: list[dict], columns=("lesion_id", "image_id", "dx"), delimiter=",") -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), delimiter=delimiter, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def ham(tmp_path: Path) -> Path:
    return write_ham(tmp_path / "ham")


@pytest.fixture
def shared_ham() -> Path:
    if not (SHARED_HAM / "HAM10000_metadata.csv").is_file():
        pytest.skip("../shared/data/ham10000-200x150 is not on this machine")
    return SHARED_HAM


@pytest.fixture(scope="session", autouse=True)
def _isolated_session_cache(tmp_path_factory):
    """Session fixtures (a tiny GAN trained on the phantom data, say) build caches before any test's own
    fixture runs: they too must never touch the user's ~/.cache. (Autouse: set before the other session
    fixtures.)"""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DERMSYNTH_CACHE", str(tmp_path_factory.mktemp("session-cache")))
        yield


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's ~/.cache from tests."""
    monkeypatch.setenv("DERMSYNTH_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def phantom_data(tmp_path_factory) -> Path:
    """A small phantom dataset (12 images per class, 48 px wide), shared by a test session."""
    from dermsynth.data.phantom import make_phantom

    return make_phantom(tmp_path_factory.mktemp("phantom") / "data", per_class=12, size=48, seed=0)


TINY_GAN = [
    "data.resolution=32",
    "generator.base_channels=8",
    "generator.max_channels=32",
    "discriminator.base_channels=8",
    "discriminator.max_channels=32",
    "train.batch_size=8",
    "train.tick_kimg=0.032",
    "train.snapshot_ticks=2",
    "train.grid_columns=2",
]
"""--set overrides that make any preset tiny: 32 px, 8-32 channels, batch 8, a tick every 4 steps."""


TINY_CLASSIFIER = [
    "data.resolution=32",
    "model.widths=[8,16]",
    "model.dense_units=16",
    "train.batch_size=16",
    "train.epochs=2",
]
"""--set overrides that make any classifier preset tiny: 32 px, two narrow blocks, batch 16, 2 epochs."""


@pytest.fixture(scope="session")
def tiny_gan(phantom_data, tmp_path_factory) -> Path:
    """A GAN run folder (data-efficient preset, tiny, 32 px), trained once per test session."""
    from dermsynth.config import gan_config, load_yaml
    from dermsynth.training.gan_loop import RunOptions, train_gan

    repo = Path(__file__).resolve().parents[1]
    cache = tmp_path_factory.mktemp("gan-cache")  # session fixtures run before the per-test cache override
    cfg = gan_config(load_yaml(repo / "configs" / "data-efficient.yaml"),
                     TINY_GAN + ["train.total_kimg=0.032", f"data.cache_dir={cache}"], data_root=phantom_data)
    return train_gan(cfg, RunOptions(out=tmp_path_factory.mktemp("gan") / "run", progress=False))


@pytest.fixture(scope="session")
def tiny_judge(phantom_data, tmp_path_factory) -> Path:
    """A judge classifier run folder (classifier-paper preset, tiny), trained once per test session."""
    from dermsynth.config import classifier_config, load_yaml
    from dermsynth.training.classifier_loop import train_classifier
    from dermsynth.training.gan_loop import RunOptions

    repo = Path(__file__).resolve().parents[1]
    cache = tmp_path_factory.mktemp("judge-cache")  # session fixtures run before the per-test cache override
    cfg = classifier_config(load_yaml(repo / "configs" / "classifier-paper.yaml"),
                            TINY_CLASSIFIER + [f"data.cache_dir={cache}"], data_root=phantom_data)
    return train_classifier(cfg, RunOptions(out=tmp_path_factory.mktemp("judge") / "run", progress=False))


def newest_states_equal(run_a: Path, run_b: Path, step: int) -> tuple[dict, dict]:
    """Assert the newest training states of two GAN runs are at ``step`` with bit-identical G, D and G_ema."""
    import torch

    from dermsynth.checkpoint import list_states, load_checkpoint

    a = load_checkpoint(list_states(run_a / "checkpoints")[-1])
    b = load_checkpoint(list_states(run_b / "checkpoints")[-1])
    assert a["step"] == b["step"] == step
    for net in ("G", "D", "G_ema"):
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key}"
    return a, b
