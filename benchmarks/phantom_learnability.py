"""How learnable is the phantom dataset? A small CNN against a colour-only baseline.

The phantom data (``dermsynth.data.phantom``) should be learnable well above
chance by a small CNN, but not trivially: per-image colour statistics alone
must not give the answer. This script draws a phantom dataset, splits it by
lesion (images of one lesion never sit on both sides), and prints the
balanced accuracy on the held-out part of

- ``colour centroid``: nearest class centroid of per-image RGB mean and std,
- ``colour linear``: least-squares linear classifier on the same 6 features,
- ``cnn``: a three-stage CNN trained for a few epochs.

Chance is 1/7 = 0.143. Run by hand (CPU is fine)::

    .venv/bin/python benchmarks/phantom_learnability.py                  # 200/class, 64 px
    .venv/bin/python benchmarks/phantom_learnability.py --per-class 60 --resolution 32

``tests/data/test_phantom.py`` runs a small version of the same check with
these helpers.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dermsynth.data import CLASSES, open_index
from dermsynth.data.phantom import make_phantom


def load_images(root: Path, resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images as uint8 (N, R, R, 3) (centre square, resized), labels (N,) and lesion ids (N,)."""
    index = open_index(root)
    images = []
    for i in range(len(index)):
        with index.open_image(i) as img:
            img = img.convert("RGB")
            w, h = img.size
            side = min(w, h)
            box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
            images.append(np.asarray(img.resize((resolution, resolution), Image.Resampling.LANCZOS, box=box)))
    lesions = np.array([r.lesion_id for r in index.records])
    return np.stack(images), index.labels, lesions


def grouped_split(lesions: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the test images: a random ``test_fraction`` of the lesions."""
    unique = np.unique(lesions)
    shuffled = np.random.default_rng(seed).permutation(unique)
    test = set(shuffled[: round(len(unique) * test_fraction)].tolist())
    return np.array([lesion in test for lesion in lesions])


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``labels``."""
    recalls = [np.mean(predicted[labels == c] == c) for c in np.unique(labels)]
    return float(np.mean(recalls))


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


def small_cnn(widths: tuple[int, ...] = (16, 32, 64), num_classes: int = len(CLASSES)) -> torch.nn.Module:
    """Conv-BN-ReLU stages, 2x max-pooling between them, global average pooling, a linear head."""
    layers: list[torch.nn.Module] = []
    channels = 3
    for i, width in enumerate(widths):
        if i > 0:
            layers.append(torch.nn.MaxPool2d(2))
        layers += [
            torch.nn.Conv2d(channels, width, 3, padding=1, bias=False),
            torch.nn.BatchNorm2d(width),
            torch.nn.ReLU(inplace=True),
        ]
        channels = width
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(channels, num_classes)]
    return torch.nn.Sequential(*layers)


def train_cnn(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    epochs: int,
    widths: tuple[int, ...] = (16, 32, 64),
    batch_size: int = 32,
    lr: float = 1e-2,
    seed: int = 0,
) -> float:
    """Train :func:`small_cnn` (Adam, one-cycle schedule, random flips); balanced test accuracy."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)

    def to_tensor(x: np.ndarray) -> torch.Tensor:  # uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]
        return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1

    x, y, x_test = to_tensor(train_x), torch.from_numpy(train_y), to_tensor(test_x)
    net = small_cnn(widths)
    steps_per_epoch = -(-len(x) // batch_size)
    optimiser = torch.optim.Adam(net.parameters(), lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, lr, total_steps=epochs * steps_per_epoch)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            xb = x[batch]
            # Dermoscopy has no up or left: flip both ways at random.
            flips = torch.rand(2, len(batch), 1, 1, 1, generator=generator) < 0.5
            xb = torch.where(flips[0], xb.flip(3), xb)
            xb = torch.where(flips[1], xb.flip(2), xb)
            loss = torch.nn.functional.cross_entropy(net(xb), y[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
    net.eval()
    with torch.no_grad():
        predicted = torch.cat([net(x_test[i : i + 256]).argmax(1) for i in range(0, len(x_test), 256)])
    return balanced_accuracy(test_y, predicted.numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=200, help="images per class")
    parser.add_argument("--size", type=int, default=128, help="phantom image width in pixels")
    parser.add_argument("--resolution", type=int, default=64, help="square input side for the classifiers")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--widths", type=str, default="16,32,64", help="CNN stage widths")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (more is slower on busy cores)")
    parser.add_argument("--out", type=Path, default=None, help="keep the data here (default: temporary)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp) / "phantom"
        start = time.perf_counter()
        make_phantom(root, args.per_class, args.size, args.seed, overwrite=args.out is not None)
        drawn = time.perf_counter()
        images, labels, lesions = load_images(root, args.resolution)
    test = grouped_split(lesions, 1 / 3, args.seed)
    print(
        f"phantom: {args.per_class}/class at {args.size} px drawn in {drawn - start:.1f} s; "
        f"{len(np.unique(lesions))} lesions; train {int((~test).sum())}, test {int(test.sum())} images "
        f"at {args.resolution} px; chance 0.143"
    )
    train_x, train_y, test_x, test_y = images[~test], labels[~test], images[test], labels[test]
    for name, score in colour_baselines(train_x, train_y, test_x, test_y).items():
        print(f"{name:16s} balanced accuracy {score:.3f}")
    start = time.perf_counter()
    widths = tuple(int(w) for w in args.widths.split(","))
    score = train_cnn(train_x, train_y, test_x, test_y, args.epochs, widths=widths, seed=args.seed)
    print(
        f"{'cnn':16s} balanced accuracy {score:.3f}  ({args.epochs} epochs, widths {widths}, "
        f"{time.perf_counter() - start:.0f} s)"
    )


if __name__ == "__main__":
    main()
