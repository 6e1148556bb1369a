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
