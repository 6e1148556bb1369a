"""Generative metrics on feature vectors, one module each, registered by name.

Each metric takes real and generated features (N, D) and returns a dict of
numbers: ``METRICS["fid"](real, fake)``. Per-class (intra-class) versions come
from :func:`per_class`, which averages a metric over the classes present in both.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dermsynth.metrics.frechet import fid
from dermsynth.metrics.kid import kid
from dermsynth.metrics.prdc import prdc

METRICS: dict[str, Callable[..., dict]] = {"fid": fid, "kid": kid, "prdc": prdc}


def per_class(
    metric: Callable[..., dict],
    real: np.ndarray,
    real_labels: np.ndarray,
    fake: np.ndarray,
    fake_labels: np.ndarray,
    classes: list[str],
    min_samples: int = 2,
    **kwargs,
) -> dict:
    """``metric`` within each class, and its mean over the classes with enough samples on both sides."""
    out: dict = {"per_class": {}}
    for label, name in enumerate(classes):
        r, f = real[real_labels == label], fake[fake_labels == label]
        if len(r) >= min_samples and len(f) >= min_samples:
            out["per_class"][name] = metric(r, f, **kwargs)
    keys = {k for v in out["per_class"].values() for k in v if isinstance(v[k], (int, float))}
    out["mean"] = {k: float(np.mean([v[k] for v in out["per_class"].values() if k in v])) for k in sorted(keys)}
    return out


__all__ = ["METRICS", "fid", "kid", "per_class", "prdc"]
