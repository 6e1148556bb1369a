"""How learnable is the phantom dataset? The package's small judge against a colour-only baseline.

The phantom data (``dermsynth.data.phantom``) should be learnable well above
chance by a small CNN, but not trivially: per-image colour statistics alone
must not give the answer. This script draws a phantom dataset, splits it by
lesion with the package's split (images of one lesion never sit on both
sides), reads the images from the package's cache, and prints the balanced
accuracy on the test part of

- ``colour centroid``: nearest class centroid of per-image RGB mean and std,
- ``colour linear``: least-squares linear classifier on the same 6 features,
- ``cnn``: the ``classifier-tiny`` judge (the paper's CNN shape, few channels,
  here without dropout or colour jitter), trained by ``dermsynth``'s
  classifier loop, best epoch chosen on val.

Chance is 1/7 = 0.143. Run by hand (CPU is fine)::

    .venv/bin/python benchmarks/phantom_learnability.py                  # 200/class, 64 px
    .venv/bin/python benchmarks/phantom_learnability.py --per-class 60 --resolution 32

``tests/data/test_phantom.py`` runs a small version of the same check with
these helpers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dermsynth.config import classifier_config, find_preset, load_yaml
from dermsynth.data import open_index
from dermsynth.data.cache import load_cache
from dermsynth.data.phantom import make_phantom
from dermsynth.data.splits import make_split
from dermsynth.evaluation.classification import classification_metrics, score_dataset
from dermsynth.models.classifier import load_classifier
from dermsynth.training.classifier_loop import train_classifier
from dermsynth.training.runs import RunOptions

FRACTIONS = (0.6, 0.1, 0.3)
"""Train, val (the CNN's best epoch) and test shares of the lesions."""


def parts(root: Path, resolution: int, seed: int, cache_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """uint8 images (N, R, R, 3) and labels (N,) of each part of the package's lesion-grouped split."""
    index = open_index(root)
    split = make_split(index, FRACTIONS, seed)
    cached = load_cache(index, resolution, "center", cache_dir, progress=False)
    rows = {part: cached.part_rows(split.parts, part) for part in ("train", "val", "test")}
    return {part: (np.asarray(cached.images[r]), np.asarray(cached.labels[r])) for part, r in rows.items()}


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``labels``."""
    return float(np.mean([np.mean(predicted[labels == c] == c) for c in np.unique(labels)]))


def colour_features(images: np.ndarray) -> np.ndarray:
    """Per-image mean and std of R, G and B in [0, 1]: (N, 6)."""
    pixels = images.reshape(len(images), -1, 3).astype(np.float64) / 255.0
    return np.concatenate([pixels.mean(axis=1), pixels.std(axis=1)], axis=1)


def colour_baselines(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> dict[str, float]:
    """Balanced test accuracy of two classifiers that see only colour statistics."""
    f_train, f_test = colour_features(train_x), colour_features(test_x)
    mean, std = f_train.mean(axis=0), f_train.std(axis=0) + 1e-8
    f_train, f_test = (f_train - mean) / std, (f_test - mean) / std
    classes = np.unique(train_y)
    centroids = np.stack([f_train[train_y == c].mean(axis=0) for c in classes])
    nearest = classes[np.argmin(((f_test[:, None] - centroids[None]) ** 2).sum(axis=-1), axis=1)]
    design = np.c_[f_train, np.ones(len(f_train))]
    weights = np.linalg.lstsq(design, (train_y[:, None] == classes[None]).astype(np.float64), rcond=None)[0]
    linear = classes[np.argmax(np.c_[f_test, np.ones(len(f_test))] @ weights, axis=1)]
    return {
        "colour centroid": balanced_accuracy(test_y, nearest),
        "colour linear": balanced_accuracy(test_y, linear),
    }


def train_cnn(root: Path, out: Path, resolution: int, epochs: int, seed: int, cache_dir: Path,
              widths: tuple[int, ...] = (16, 32, 64)) -> float:
    """Train the ``classifier-tiny`` judge on ``root`` (the same split as :func:`parts`) into ``out``;
    its balanced accuracy on the test part."""
    overrides = [f"data.resolution={resolution}", f"model.resolution={resolution}",
                 f"data.cache_dir={json.dumps(str(cache_dir))}",  # quoted: a path may hold '#' or ': '
                 f"model.widths={list(widths)}", f"train.epochs={epochs}", f"train.seed={seed}",
                 f"split.fractions={list(FRACTIONS)}", f"split.seed={seed}",
                 # 60 images a class: dropout and colour jitter cost more than they give (0.57 vs 0.84 measured)
                 "model.conv_dropout=0", "model.head_dropout=0", "model.dense_units=64", "train.color_jitter=0"]
    cfg = classifier_config(load_yaml(find_preset("classifier-tiny")), overrides, data_root=root)
    run = train_classifier(cfg, RunOptions(out=out, overwrite=True, progress=False))  # --out: rerun in place
    model, meta = load_classifier(run / "classifier.pt")
    scored = score_dataset(model, meta, root, "test", cache_dir=cache_dir, progress=False)
    return float(classification_metrics(scored.labels, scored.proba)["balanced_accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=200, help="images per class")
    parser.add_argument("--size", type=int, default=128, help="phantom image width in pixels")
    parser.add_argument("--resolution", type=int, default=64, help="square input side for the classifiers")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--widths", type=str, default="16,32,64", help="CNN stage widths")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (more is slower on busy cores)")
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the data and the CNN's run here (default: temporary)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        base = args.out or Path(tmp)
        root, cache = base / "phantom", base / "cache"
        start = time.perf_counter()
        make_phantom(root, args.per_class, args.size, args.seed, overwrite=args.out is not None)
        drawn = time.perf_counter()
        data = parts(root, args.resolution, args.seed, cache)
        lesions = len({r.lesion_id for r in open_index(root).records})
        print(f"phantom: {args.per_class}/class at {args.size} px drawn in {drawn - start:.1f} s; {lesions} lesions; "
              + ", ".join(f"{part} {len(y)}" for part, (_, y) in data.items())
              + f" images at {args.resolution} px; chance 0.143")
        for name, score in colour_baselines(*data["train"], *data["test"]).items():
            print(f"{name:16s} balanced accuracy {score:.3f}")
        start = time.perf_counter()
        widths = tuple(int(w) for w in args.widths.split(","))
        score = train_cnn(root, base / "cnn", args.resolution, args.epochs, args.seed, cache, widths)
        print(f"{'cnn':16s} balanced accuracy {score:.3f}  ({args.epochs} epochs, widths {widths}, "
              f"{time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
