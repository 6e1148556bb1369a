"""Precision and recall (Kynkaanniemi et al. 2019) and density and coverage (Naeem et al. 2020).

With B(x, k) the ball around x reaching its k-th nearest neighbour in its own set:

- precision: share of fake samples inside some real ball (k = ``k_pr``, 3);
- recall: share of real samples inside some fake ball (k = ``k_pr``);
- density: mean over fakes of how many real balls contain it, divided by k (k = ``k_dc``, 5);
- coverage: share of real samples whose ball contains at least one fake (k = ``k_dc``).
"""

from __future__ import annotations

import numpy as np
import torch


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return torch.cdist(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)).numpy()


def _kth_neighbour_radius(x: np.ndarray, k: int) -> np.ndarray:
    d = _distances(x, x)
    # Column 0 of the sorted distances is the point itself (0).
    return np.partition(d, k, axis=1)[:, k]


def prdc(real: np.ndarray, fake: np.ndarray, k_pr: int = 3, k_dc: int = 5) -> dict:
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    if len(real) <= max(k_pr, k_dc) or len(fake) <= k_pr:
        raise ValueError(f"precision/recall/density/coverage need more than {max(k_pr, k_dc)} samples per side")
    d_rf = _distances(real, fake)  # (R, F)
    r_real_pr = _kth_neighbour_radius(real, k_pr)
    r_fake_pr = _kth_neighbour_radius(fake, k_pr)
    r_real_dc = _kth_neighbour_radius(real, k_dc)
    precision = (d_rf <= r_real_pr[:, None]).any(axis=0).mean()
    recall = (d_rf <= r_fake_pr[None, :]).any(axis=1).mean()
    density = (d_rf <= r_real_dc[:, None]).sum(axis=0).mean() / k_dc
    coverage = (d_rf.min(axis=1) <= r_real_dc).mean()
    return {"precision": float(precision), "recall": float(recall), "density": float(density),
            "coverage": float(coverage)}
