"""Feature extraction with a cache keyed by the images and the extractor's settings.

``extract(extractor, images)`` returns (N, D) features; when ``cache_dir`` is
given, features are stored as ``<sha256>.npy`` where the hash covers the image
bytes, their shape and ``extractor.settings``, so the real data's features are
computed once per feature space.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from dermsynth.storage import atomic_write


def feature_key(images: np.ndarray, settings: str) -> str:
    h = hashlib.sha256()
    h.update(f"{settings}|{images.shape}|{images.dtype}".encode())
    h.update(np.ascontiguousarray(images).data)
    return h.hexdigest()


def extract(extractor, images: np.ndarray, cache_dir: str | Path | None = None, progress: bool = False) -> np.ndarray:
    images = np.asarray(images)
    if cache_dir is None:
        return extractor(images, progress=progress)
    path = Path(cache_dir) / f"{feature_key(images, extractor.settings)}.npy"
    if path.is_file():
        return np.load(path)
    features = extractor(images, progress=progress)
    atomic_write(path, lambda f: np.save(f, features), needed_bytes=features.nbytes)
    return features


class Standardiser:
    """Each feature divided by its standard deviation over a reference set (the real train part); features that
    are constant there (dead ReLUs) are dropped. A network trained from scratch puts a handful of large-valued
    units beside many small ones, and a distance on its raw features is mostly a distance on those few; on
    standardised features every unit counts alike, as Inception's features roughly do already."""

    def __init__(self, reference: np.ndarray) -> None:
        std = np.asarray(reference, dtype=np.float64).std(axis=0)
        self.alive = std > 1e-6 * max(float(std.max()), 1e-12)
        self.std = std[self.alive]
        variances = np.sort(std ** 2)[::-1]
        self.summary = {"dims": int(len(std)), "dead": int((~self.alive).sum()),
                        "top5_variance_share": float(variances[:5].sum() / max(variances.sum(), 1e-12))}

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, dtype=np.float64)[:, self.alive] / self.std
