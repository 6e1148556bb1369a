"""Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2, cubic polynomial kernel.

k(x, y) = (x . y / d + 1)^3. The unbiased estimate on subsets of ``subset_size``
drawn without replacement, averaged over ``subsets`` draws (the mean is
reported with its standard deviation over subsets).
"""

from __future__ import annotations

import numpy as np


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict:
    """{'kid': mean over subsets, 'kid_std': their standard deviation}."""
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError("KID needs at least 2 feature vectors on each side")
    rng = np.random.default_rng(seed)
    values = [
        mmd2_unbiased(real[rng.choice(len(real), size, replace=False)],
                      fake[rng.choice(len(fake), size, replace=False)])
        for _ in range(subsets)
    ]
    return {"kid": float(np.mean(values)), "kid_std": float(np.std(values))}
