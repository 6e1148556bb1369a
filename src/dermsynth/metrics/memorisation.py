"""Memorisation check: does a synthetic image copy a training image (a patient's lesion)?

For every synthetic image, the distance in feature space to its nearest
training image; for comparison, the same for every real test image (other
lesions, never seen in training: how close an independent lesion gets by chance).

Rule: a synthetic image is flagged as a near-copy when it lies closer to a
training image than ``percentile`` % (default 1 %) of real test images do.
A generator that copies shows a synthetic distance distribution shifted below
the test one and many flags; an independent one flags about ``percentile`` %.
"""

from __future__ import annotations

import numpy as np
import torch


def nearest(query: np.ndarray, reference: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance to, and index of, each query's nearest reference vector."""
    ref = torch.as_tensor(np.asarray(reference, dtype=np.float32))
    dists, idx = [], []
    for i in range(0, len(query), chunk):
        d = torch.cdist(torch.as_tensor(np.asarray(query[i: i + chunk], dtype=np.float32)), ref)
        value, index = d.min(dim=1)
        dists.append(value.numpy())
        idx.append(index.numpy())
    return np.concatenate(dists).astype(np.float64), np.concatenate(idx)


def memorisation(train: np.ndarray, synthetic: np.ndarray, test: np.ndarray, percentile: float = 1.0) -> dict:
    """Nearest-training distances of synthetic and real test features, and the near-copies flagged."""
    syn_d, syn_idx = nearest(synthetic, train)
    test_d, _ = nearest(test, train)
    threshold = float(np.percentile(test_d, percentile))
    flagged = np.flatnonzero(syn_d < threshold)
    return {
        "threshold": threshold,
        "percentile": percentile,
        "n_synthetic": int(len(syn_d)),
        "n_flagged": int(len(flagged)),
        "flagged_pct": float(100 * len(flagged) / max(len(syn_d), 1)),
        "synthetic_median": float(np.median(syn_d)),
        "test_median": float(np.median(test_d)),
        # Share of synthetic images closer to training than the median test image (0.5 if independent).
        "below_test_median": float((syn_d < np.median(test_d)).mean()),
        "synthetic_distances": syn_d,
        "synthetic_nearest": syn_idx,
        "test_distances": test_d,
        "flagged": flagged,
    }


def summary(result: dict) -> dict:
    """The JSON-friendly part of :func:`memorisation`'s result (no arrays)."""
    return {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}


def plot_memorisation(result: dict, synthetic_images: np.ndarray, train_images: np.ndarray, out_png,
                      pairs: int = 8) -> None:
    """Histogram of nearest-training distances (synthetic vs real test) and the closest pairs."""
    from dermsynth.figures import pyplot, save_figure

    plt = pyplot()

    order = np.argsort(result["synthetic_distances"])[:pairs]
    fig = plt.figure(figsize=(10, 5.2), dpi=110)
    ax = fig.add_axes([0.07, 0.63, 0.88, 0.31])  # above the image rows, with room for the x label
    bins = np.linspace(0, max(result["synthetic_distances"].max(), result["test_distances"].max()), 50)
    ax.hist(result["test_distances"], bins, alpha=0.6, density=True, label="real test image -> nearest training")
    ax.hist(result["synthetic_distances"], bins, alpha=0.6, density=True, label="synthetic -> nearest training")
    ax.axvline(result["threshold"], color="k", ls="--", lw=1,
               label=f"near-copy threshold ({result['percentile']:g} % of real test images are closer)")
    ax.set_xlabel("distance in feature space")
    ax.legend(fontsize=8)
    ax.set_title(f"memorisation: {result['n_flagged']} of {result['n_synthetic']} synthetic images flagged",
                 fontsize=10)
    for j, i in enumerate(order):
        for row, (img, label) in enumerate(((synthetic_images[i], "synthetic"),
                                            (train_images[result["synthetic_nearest"][i]], "nearest training"))):
            a = fig.add_axes([0.07 + j * 0.11, 0.27 - row * 0.25, 0.1, 0.22])
            a.imshow(img)
            a.set_xticks([])
            a.set_yticks([])
            if j == 0:
                a.set_ylabel(label, fontsize=7)
            if row == 0:
                a.set_title(f"d={result['synthetic_distances'][i]:.2f}", fontsize=7)
    save_figure(fig, out_png)
