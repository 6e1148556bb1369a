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


def _root(sigma: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _distance(mu1, sigma1, root1, mu2, sigma2) -> float:
    cross = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    tr_sqrt = np.sqrt(np.clip(cross, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_sqrt)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    return _distance(mu1, sigma1, _root(sigma1), mu2, sigma2)


def fid_bootstrap(real: np.ndarray, fake: np.ndarray, draws: int = 50, seed: int = 0) -> dict:
    """The FID's spread from sampling the generated set: its standard error over ``draws`` bootstrap resamples of
    ``fake`` (the real reference held fixed: it is the set every FID here is taken against), and the 95 %
    interval ``fid +- 1.96 se``, cut at 0. (A percentile interval would sit above the estimate: a resample's
    repeated images inflate its covariance's error, and so its FID.)"""
    mu1, sigma1 = gaussian_stats(real)
    root1 = _root(sigma1)
    value = _distance(mu1, sigma1, root1, *gaussian_stats(fake))
    rng = np.random.default_rng(seed)
    x = np.asarray(fake, dtype=np.float64)
    trace1 = np.trace(sigma1)

    def resampled(rows: np.ndarray) -> float:
        # tr((S1 S2)^(1/2)) from the n x n Gram matrix of the centred resample mapped by S1^(1/2): the same
        # non-zero eigenvalues as S1^(1/2) S2 S1^(1/2), and far cheaper when n is below the dimension.
        y = x[rows]
        mu2 = y.mean(axis=0)
        z = (y - mu2) @ root1 / np.sqrt(len(y) - 1)
        gram = z @ z.T if len(y) < x.shape[1] else z.T @ z
        tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0, None)).sum()
        trace2 = ((y - mu2) ** 2).sum() / (len(y) - 1)
        diff = mu1 - mu2
        return float(diff @ diff + trace1 + trace2 - 2 * tr_sqrt)

    values = [resampled(rng.integers(0, len(x), len(x))) for _ in range(draws)]
    se = float(np.std(values, ddof=1))
    return {"fid": value, "fid_se": se, "fid_ci95": [max(0.0, value - 1.96 * se), value + 1.96 * se],
            "fid_bootstrap_draws": draws}


def fid(real: np.ndarray, fake: np.ndarray) -> dict:
    """Frechet distance of two feature sets; {'fid': value}. Where the smaller set has fewer vectors than
    dimensions (a class of a few hundred images in Inception's 2,048), tr((S_r S_f)^(1/2)) comes from its
    n x n Gram matrix mapped by the other set's covariance: the same value without two D x D
    eigendecompositions."""
    small, big = sorted((np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)), key=len)
    if len(small) < 2 or len(small) - 1 >= small.shape[1]:
        return {"fid": frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))}
    mu_big, sigma_big = gaussian_stats(big)
    mu_small = small.mean(axis=0)
    z = (small - mu_small) / np.sqrt(len(small) - 1)  # S_small = z^T z, of rank < D
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(z @ sigma_big @ z.T), 0, None)).sum()
    diff = mu_big - mu_small
    return {"fid": float(diff @ diff + np.trace(sigma_big) + (z ** 2).sum() - 2 * tr_sqrt)}
