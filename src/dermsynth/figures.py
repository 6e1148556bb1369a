"""Images and figures, one module for every layer that draws: uint8 conversion, class grids, PNGs marked
synthetic, matplotlib figures written atomically, and the stats.jsonl reader.

It sits at the bottom of the layers (it imports only :mod:`dermsynth.storage`), not in the report package,
because training and evaluation draw their figures while they run; ``report/`` assembles them into HTML.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from dermsynth.storage import atomic_write


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display), set once for the whole process."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


SYNTHETIC_TAG = "dermsynth synthetic image (GAN-generated, not a patient image)"


def from_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (any layout) -> float in [-1, 1], the range every network of dermsynth takes."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def class_grid(images: np.ndarray, rows: int, pad: int = 2) -> Image.Image:
    """Tile (rows * cols, H, W, 3) uint8 images, one class per row."""
    n, h, w, _ = images.shape
    cols = n // rows
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = images[i]
    return Image.fromarray(grid)


def labelled_grid(images: np.ndarray, class_names: list[str], title: str = "", synthetic: bool = True) -> Image.Image:
    """A class grid with the class name left of each row (the paper's Fig. 4), as an image; ``synthetic``
    adds the line that marks the images as GAN-generated."""
    plt = pyplot()
    grid = class_grid(images, len(class_names))
    height = 6.0 * grid.size[1] / grid.size[0] + 0.8  # the grid's own aspect, plus room for the title
    fig, ax = plt.subplots(figsize=(7, max(2.0, height)), dpi=120)
    ax.imshow(np.asarray(grid))
    step = grid.size[1] / len(class_names)
    ax.set_yticks([step * (i + 0.5) for i in range(len(class_names))], class_names)
    ax.set_xticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    mark = "synthetic images (GAN-generated)" if synthetic else ""
    ax.set_title("\n".join(t for t in (title, mark) if t), fontsize=9)
    fig.tight_layout()
    fig.canvas.draw()
    out = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return out


def save_synthetic_image(image: Image.Image | np.ndarray, path: Path, quality: int = 95, atomic: bool = False,
                         **text: str) -> None:
    """An image marked as synthetic in the file itself: PNG text chunks (``synthetic=1``, a comment and
    ``text``), or a JPEG comment (.jpg/.jpeg, at ``quality``) holding the same ``synthetic=1; key=value``
    pairs. ``atomic``: written beside and renamed into place, a failed write named (a full disk, with the space
    left) and nothing half-written left (an export is made atomic as a whole folder instead)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    pairs = {"synthetic": "1", **{k: str(v) for k, v in text.items()}}
    if Path(path).suffix.lower() in (".jpg", ".jpeg"):
        comment = SYNTHETIC_TAG + "; " + "; ".join(f"{k}={v}" for k, v in pairs.items())
        options = {"format": "JPEG", "quality": quality, "comment": comment.encode()}
    else:
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", SYNTHETIC_TAG)
        for key, value in pairs.items():
            info.add_text(key, value)
        options = {"format": "PNG", "pnginfo": info}
    if atomic:
        atomic_write(path, lambda f: image.save(f, **options))
    else:
        image.save(path, **options)


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
    plt = pyplot()
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
    plt = pyplot()
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png"))
    finally:
        plt.close(fig)
