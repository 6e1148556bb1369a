"""Frechet distance between Gaussians fitted to two feature sets (FID on Inception features).

FD = ||mu_r - mu_f||^2 + tr(S_r) + tr(S_f) - 2 tr((S_r S_f)^(1/2)).

The trace of the matrix square root is computed from the eigenvalues of the
symmetric matrix S_r^(1/2) S_f S_r^(1/2), which has the same eigenvalues as
S_r S_f; this avoids the complex round-off that ``scipy.linalg.sqrtm`` of a
non-symmetric product can produce (the tests check both agree).
"""

from __future__ import annotations

import numpy as np


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need at least 2 feature vectors of shape (N, D), got {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    tr_sqrt = np.sqrt(np.clip(cross, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_sqrt)


def fid(real: np.ndarray, fake: np.ndarray) -> dict:
    """Frechet distance of two feature sets; {'fid': value}."""
    return {"fid": frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))}
