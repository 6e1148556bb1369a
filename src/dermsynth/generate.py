"""Generation and export of synthetic images, always marked as synthetic.

``generate_images`` loads an inference snapshot (or a full training state),
draws ``per_class`` images of each requested class and writes them in the
HAM10000 layout (``images/`` and ``HAM10000_metadata.csv``) or the ImageFolder
layout (one folder per class and ``metadata.csv``); the metadata columns are
image_id, lesion_id, dx, synthetic (=1), seed, checkpoint_sha256 and file. Every
image carries ``synthetic=1``, ``generator``, ``checkpoint_sha256``, ``seed``
and ``dx`` in the file (PNG text chunks or a JPEG comment) so a synthetic image
can never pass for a patient's. Noise for
class c is drawn from a generator seeded by (seed, c): the same seed gives the
same images, whichever other classes are asked for.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from dermsynth.checkpoint import SNAPSHOT_FORMAT, STATE_FORMAT, CheckpointError, error_summary, load_checkpoint, seeded
from dermsynth.config import MAX_SEED
from dermsynth.data.ham10000 import write_metadata
from dermsynth.data.index import CLASS_TO_LABEL, CLASSES
from dermsynth.errors import UsageError
from dermsynth.figures import labelled_grid, save_synthetic_image, to_uint8
from dermsynth.models.generator import Generator, GeneratorConfig, build_generator
from dermsynth.storage import (
    FolderError,
    FolderLock,
    StorageError,
    check_folder,
    check_replaceable,
    clear_folder,
    is_owned,
    sha256_file,
    storage_error,
    swap_in,
    write_marker,
)

LAYOUTS = ("ham10000", "imagefolder")
IMAGE_FORMATS = ("png", "jpg")
GRID_FILE = "grid.png"
"""An export's class grid, one row per class."""

PIXEL_NOISE_SEED = 1 << 40  # offset: the per-pixel noise stream never shares a seed with a class's z stream


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """The EMA generator of a snapshot or of a full training state, in eval mode."""
    ckpt = load_checkpoint(path, expect=(SNAPSHOT_FORMAT, STATE_FORMAT))
    gen_cfg = ckpt["generator_config"] if ckpt["format"] == SNAPSHOT_FORMAT else ckpt["config"]["generator"]
    try:
        G = build_generator(GeneratorConfig(**gen_cfg))
        G.load_state_dict(ckpt["G_ema"])
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path}: its generator weights do not fit its generator config "
                              f"({error_summary(e)})") from None
    return G.to(device).eval(), ckpt


def trained_against(ckpt: dict) -> str | None:
    """The discriminator a generator checkpoint was trained against (snapshots record it; a full training
    state has its config; older snapshots only their preset's name), or None if unknown."""
    if ckpt.get("discriminator_arch"):
        return ckpt["discriminator_arch"]
    if "config" in ckpt:
        return ckpt["config"].get("discriminator", {}).get("arch")
    return "projected" if ckpt.get("preset") == "projected" else None


@torch.no_grad()
def sample(G: Generator, label: int, n: int, seed: int, batch: int = 64, device="cpu") -> np.ndarray:
    """``n`` uint8 images of class ``label`` from noise seeded by (seed, label); a generator's per-pixel noise
    (fastgan) comes from another stream seeded by the same pair, drawn batch by batch."""
    return np.concatenate(list(sample_batches(G, label, n, seed, batch, device)))


@torch.no_grad()
def sample_batches(G: Generator, label: int, n: int, seed: int, batch: int = 64, device="cpu") -> Iterator[np.ndarray]:
    """:func:`sample`'s images batch by batch, in memory bounded by the batch: noise is drawn per batch (the
    same numbers as drawing all of it at once: each batch's noise is a multiple of 16 numbers long)."""
    gen = torch.Generator().manual_seed(seed * 1000 + label)
    with seeded(PIXEL_NOISE_SEED + seed * 1000 + label):
        for i in range(0, n, batch):
            zb = torch.randn(min(batch, n - i), G.cfg.z_dim, generator=gen).to(device)
            yield to_uint8(G(zb, torch.full((len(zb),), label, dtype=torch.long, device=device)))


def parse_classes(classes: str | None) -> list[str]:
    if classes is None:
        return list(CLASSES)
    names = [c.strip().lower() for c in classes.split(",") if c.strip()]
    if not names:
        raise UsageError(f"--classes {classes!r} names no class; choose from {', '.join(CLASSES)}")
    unknown = [c for c in names if c not in CLASS_TO_LABEL]
    if unknown:
        raise UsageError(f"unknown class(es) {', '.join(unknown)}; choose from {', '.join(CLASSES)}")
    return list(dict.fromkeys(names))


MAX_PER_CLASS = 100_000
"""Default limit of ``--per-class`` (about 1.2 GB of PNGs per class at 64 px); ``--max-per-class`` raises it."""


def generate_images(
    checkpoint: str | Path,
    out: str | Path,
    per_class: int = 100,
    classes: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
    device: str = "cpu",
    progress: bool = True,
    max_per_class: int = MAX_PER_CLASS,
    layout: str = "ham10000",
    image_format: str = "png",
    quality: int = 95,
) -> Path:
    """Write ``per_class`` synthetic images of each class; returns ``out``.

    ``layout`` ham10000: ``images/`` and ``HAM10000_metadata.csv``; imagefolder: one folder per class
    (``nv/``, ``mel/`` ..., what torchvision's ImageFolder and most training scripts read) and
    ``metadata.csv``. ``image_format`` png (text chunks) or jpg (a comment, at ``quality``): every file is
    marked synthetic either way.

    The export is written into a hidden folder beside ``out`` and renamed into place when complete. With
    ``overwrite`` an earlier export is replaced only then, and only if dermsynth made it (its marker says
    so): a wrong checkpoint or a crash leaves the old export as it was. ``out`` is locked meanwhile.
    """
    out = Path(out)
    if out.name in ("", ".."):
        out = out.resolve()  # the export is swapped in beside its folder: that needs the folder's name
    names = parse_classes(classes)
    if layout not in LAYOUTS or image_format not in IMAGE_FORMATS or not 1 <= quality <= 100:
        raise UsageError(f"layout must be one of {', '.join(LAYOUTS)}, format one of {', '.join(IMAGE_FORMATS)} "
                        f"and quality in [1, 100]; got {layout!r}, {image_format!r}, {quality}")
    if not 1 <= per_class <= max_per_class:
        raise UsageError(f"--per-class must be between 1 and {max_per_class:,}, got {per_class:,}"
                        + (" (raise the limit with --max-per-class)" if per_class > max_per_class else ""))
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed must be between 0 and {MAX_SEED}, got {seed}")
    _check_export_target(out, overwrite)
    G, _ = load_generator(checkpoint, device)  # before anything is written: a wrong path changes nothing
    digest = sha256_file(checkpoint)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(e, out.parent) from None
    with FolderLock(out.parent / f".{out.name}.lock", f"export folder {out}"):
        _check_export_target(out, overwrite)  # again, under the lock
        tmp, old = out.with_name(f".{out.name}.partial"), out.with_name(f".{out.name}.old")
        for leftover in (tmp, old):  # left by a generate that was killed; ours only if it carries the marker
            _remove_leftover(leftover)
        try:
            tmp.mkdir()
            write_marker(tmp, "export")
            _write_export(G, tmp, names, per_class, seed, digest, device, progress, layout, image_format, quality)
            swap_in(tmp, out, old, "export")  # out: empty, or an export of ours (checked above)
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, OSError) and not isinstance(e, StorageError):
                raise storage_error(e, out) from None
            raise
    return out


def _check_export_target(out: Path, overwrite: bool) -> None:
    check_folder(out, "export")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:  # suggest only what would work: --overwrite replaces dermsynth's own exports only
            raise FolderError(f"{out} exists and is not empty; " + (
                "pass --overwrite to replace it" if is_owned(out, "export") else
                "it is not an export of `dermsynth generate`, so it is never replaced: choose another --out"))
        check_replaceable(out, "export", "synthetic-image export")
    elif out.is_symlink():
        raise FolderError(f"{out} is a symbolic link; name the folder itself")


def _remove_leftover(folder: Path) -> None:
    if folder.is_symlink():
        folder.unlink()  # the link, never what it points to
    elif folder.exists():
        clear_folder(folder, "export")
        folder.rmdir()


def _write_export(G, folder: Path, names: list[str], per_class: int, seed: int, digest: str, device: str,
                  progress: bool, layout: str = "ham10000", image_format: str = "png", quality: int = 95) -> None:
    rows, grid_images = [], []
    bar = tqdm(total=per_class * len(names), desc="generating", unit="img", disable=not progress)
    for name in names:
        label = CLASS_TO_LABEL[name]
        where = folder / ("images" if layout == "ham10000" else name)
        where.mkdir(exist_ok=True)
        k = 0
        for batch in sample_batches(G, label, per_class, seed, device=device):
            if k == 0:
                grid_images.append(batch[: min(8, per_class)])
            for image in batch:
                image_id = f"SYN_{name}_{seed}_{k:05d}"
                path = where / f"{image_id}.{image_format}"
                save_synthetic_image(image, path, quality, dx=name, seed=seed, generator="dermsynth",
                                     checkpoint_sha256=digest)
                rows.append({"lesion_id": image_id, "image_id": image_id, "dx": name, "synthetic": 1,
                             "seed": seed, "checkpoint_sha256": digest,
                             "file": path.relative_to(folder).as_posix()})
                k += 1
                bar.update()
    bar.close()
    metadata = "HAM10000_metadata.csv" if layout == "ham10000" else "metadata.csv"
    write_metadata(folder / metadata, rows, ("synthetic", "seed", "checkpoint_sha256", "file"))
    cols = min(len(g) for g in grid_images)
    grid = labelled_grid(np.concatenate([g[:cols] for g in grid_images]), names,
                         f"checkpoint {digest[:12]}, seed {seed}")
    save_synthetic_image(grid, folder / GRID_FILE, checkpoint_sha256=digest, seed=seed)
