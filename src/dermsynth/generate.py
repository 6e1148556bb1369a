"""Generation and export of synthetic images, always marked as synthetic.

``generate_images`` loads an inference snapshot (or a full training state),
draws ``per_class`` images of each requested class and writes them in the
HAM10000 layout: ``images/*.png`` and ``HAM10000_metadata.csv`` with columns
image_id, lesion_id, dx, synthetic (=1), seed and checkpoint_sha256. Every PNG
carries text chunks (``synthetic=1``, ``generator``, ``checkpoint_sha256``,
``seed``, ``dx``) so a synthetic image can never pass for a patient's. Noise for
class c is drawn from a generator seeded by (seed, c): the same seed gives the
same images, whichever other classes are asked for.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin
from tqdm import tqdm

from dermsynth.data.ham10000 import write_metadata
from dermsynth.data.index import CLASS_TO_LABEL, CLASSES, DataError
from dermsynth.models.generator import Generator, GeneratorConfig, build_generator
from dermsynth.training.checkpoint import SNAPSHOT_FORMAT, STATE_FORMAT, load_checkpoint, seeded, sha256_file

SYNTHETIC_TAG = "dermsynth synthetic image (GAN-generated, not a patient image)"


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def save_synthetic_png(image: Image.Image | np.ndarray, path: Path, **text: str) -> None:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    info = PngImagePlugin.PngInfo()
    info.add_text("synthetic", "1")
    info.add_text("Comment", SYNTHETIC_TAG)
    for key, value in text.items():
        info.add_text(key, str(value))
    image.save(path, pnginfo=info)


PIXEL_NOISE_SEED = 1 << 40  # offset: the per-pixel noise stream never shares a seed with a class's z stream


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """The EMA generator of a snapshot or of a full training state, in eval mode."""
    ckpt = load_checkpoint(path, expect=(SNAPSHOT_FORMAT, STATE_FORMAT))
    gen_cfg = ckpt["generator_config"] if ckpt["format"] == SNAPSHOT_FORMAT else ckpt["config"]["generator"]
    G = build_generator(GeneratorConfig(**gen_cfg))
    G.load_state_dict(ckpt["G_ema"])
    return G.to(device).eval(), ckpt


@torch.no_grad()
def sample(G: Generator, label: int, n: int, seed: int, batch: int = 64, device="cpu") -> np.ndarray:
    """``n`` uint8 images of class ``label`` from noise seeded by (seed, label); a generator's per-pixel noise
    (fastgan) comes from another stream seeded by the same pair, drawn batch by batch."""
    gen = torch.Generator().manual_seed(seed * 1000 + label)
    z = torch.randn(n, G.cfg.z_dim, generator=gen)
    out = []
    with seeded(PIXEL_NOISE_SEED + seed * 1000 + label):
        for i in range(0, n, batch):
            zb = z[i: i + batch].to(device)
            out.append(to_uint8(G(zb, torch.full((len(zb),), label, dtype=torch.long, device=device))))
    return np.concatenate(out)


def parse_classes(classes: str | None) -> list[str]:
    if not classes:
        return list(CLASSES)
    names = [c.strip().lower() for c in classes.split(",") if c.strip()]
    unknown = [c for c in names if c not in CLASS_TO_LABEL]
    if unknown:
        raise DataError(f"unknown class(es) {', '.join(unknown)}; choose from {', '.join(CLASSES)}")
    return names


def generate_images(
    checkpoint: str | Path,
    out: str | Path,
    per_class: int = 100,
    classes: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
    device: str = "cpu",
    progress: bool = True,
) -> Path:
    """Write ``per_class`` synthetic images of each class in the HAM10000 layout; returns ``out``."""
    out = Path(out)
    names = parse_classes(classes)
    if per_class < 1:
        raise DataError(f"--per-class must be >= 1, got {per_class}")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise DataError(f"{out} exists and is not empty; pass --overwrite to replace it")
        if not (out / "HAM10000_metadata.csv").is_file():
            raise DataError(f"{out} does not look like a dermsynth export; refusing to delete it")
        shutil.rmtree(out)
    G, _ = load_generator(checkpoint, device)
    digest = sha256_file(checkpoint)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    rows, grid_images = [], []
    bar = tqdm(total=per_class * len(names), desc="generating", unit="img", disable=not progress)
    for name in names:
        label = CLASS_TO_LABEL[name]
        images = sample(G, label, per_class, seed, device=device)
        for k, image in enumerate(images):
            image_id = f"SYN_{name}_{seed}_{k:05d}"
            save_synthetic_png(image, tmp / "images" / f"{image_id}.png", dx=name, seed=seed,
                               generator="dermsynth", checkpoint_sha256=digest)
            rows.append({"lesion_id": image_id, "image_id": image_id, "dx": name, "synthetic": 1,
                         "seed": seed, "checkpoint_sha256": digest})
            bar.update()
        grid_images.append(images[: min(8, per_class)])
    bar.close()
    write_metadata(tmp / "HAM10000_metadata.csv", rows, ("synthetic", "seed", "checkpoint_sha256"))
    cols = min(len(g) for g in grid_images)
    grid = labelled_grid(np.concatenate([g[:cols] for g in grid_images]), names, f"checkpoint {digest[:12]}, seed {seed}")
    save_synthetic_png(grid, tmp / "grid.png", checkpoint_sha256=digest, seed=seed)
    tmp.rename(out)
    return out
