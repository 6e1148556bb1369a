"""Figures from run outputs (matplotlib, Agg backend, PNG files)."""

from __future__ import annotations

import json
from pathlib import Path

from dermsynth.storage import atomic_write


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
    return rows


def plot_gan_stats(stats_path: str | Path, out_png: str | Path) -> Path | None:
    """Loss curves of D and G and D's mean outputs over kimg (the paper's Fig. 5)."""
    rows = read_jsonl(stats_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kimg = [r["kimg"] for r in rows]
    fig, (ax_loss, ax_d) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110)
    ax_loss.plot(kimg, [r["loss_D"] for r in rows], label="discriminator")
    ax_loss.plot(kimg, [r["loss_G"] for r in rows], label="generator")
    ax_loss.set_xlabel("kimg (thousands of real images shown)")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("GAN losses")
    ax_loss.legend()
    ax_d.plot(kimg, [r["D_real"] for r in rows], label="D(real) logit")
    ax_d.plot(kimg, [r["D_fake"] for r in rows], label="D(fake) logit")
    ax_d.set_xlabel("kimg")
    ax_d.set_title("discriminator outputs")
    ax_d.legend()
    for ax in (ax_loss, ax_d):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out_png)


def save_figure(fig, path: str | Path) -> Path:
    """Write a matplotlib figure atomically (temporary file, then rename) and close it."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda f: fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png"))
    finally:
        plt.close(fig)
