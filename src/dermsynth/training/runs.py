"""What every run folder shares: options, the refusal to overwrite, and provenance."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dermsynth import __version__
from dermsynth import distributed as dist
from dermsynth.data.index import DataError, DatasetIndex
from dermsynth.data.splits import Split, load_split, make_split


@dataclass
class RunOptions:
    """Where a run reads and writes, and how it treats an existing run folder."""

    out: Path
    """Run folder."""
    split_file: Path | None = None
    """A saved split to reuse; None draws one with the config's split settings."""
    resume: str | None = None
    """None (new run), "auto" (newest checkpoint of the run folder) or a checkpoint path."""
    overwrite: bool = False
    """Replace an existing run folder (only one that dermsynth made)."""
    progress: bool = True
    """Show a progress bar."""


def prepare_run_dir(opts: RunOptions) -> None:
    """Refuse to write into an existing run folder unless resuming or told to overwrite."""
    out = opts.out
    if not out.exists() or not any(out.iterdir()):
        if opts.resume == "auto":
            raise DataError(f"--resume auto: {out} holds no run to resume")
        out.mkdir(parents=True, exist_ok=True)
        return
    if opts.resume:
        return
    if not opts.overwrite:
        raise DataError(f"{out} exists and is not empty; pass --resume auto to continue it or --overwrite to replace it")
    if not (out / "run.json").is_file():
        raise DataError(f"{out} does not look like a dermsynth run folder (no run.json); refusing to delete it")
    shutil.rmtree(out)
    out.mkdir(parents=True)


def versions() -> dict:
    return {
        "dermsynth": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def hardware(device: torch.device) -> dict:
    info = {"device": str(device), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "world_size": dist.world_size(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def resolve_split(index: DatasetIndex, split_cfg, opts: RunOptions, parts: tuple[str, ...] = ("train",)) -> Split:
    """The split of a run: the run folder's own (on resume), the one given, or a new one.

    A run keeps one split for life: resuming with a different --split is refused.
    """
    saved = opts.out / "split.json"
    given = load_split(opts.split_file) if opts.split_file is not None else None
    if saved.is_file():
        split = load_split(saved)
        if given is not None and given.sha256() != split.sha256():
            raise DataError(f"{opts.split_file} differs from the split this run was trained on ({saved})")
    else:
        split = given or make_split(index, split_cfg.fractions, split_cfg.seed)
    for part in parts:
        split.indices(index, part)  # refuses a split made for other data
    return split


def provenance(cfg, device: torch.device, index: DatasetIndex, split: Split) -> dict:
    """What every run.json records: preset, seed, command, versions, hardware, data and split hashes."""
    return {
        "preset": cfg.name,
        "seed": cfg.train.seed,
        "command": " ".join(sys.argv),
        "versions": versions(),
        "hardware": hardware(device),
        "data_root": str(cfg.data.root),
        "data_fingerprint": index.fingerprint(),
        "split_sha256": split.sha256(),
    }


def truncate_stats(path: Path, key: str, last: int) -> None:
    """Drop stats.jsonl lines whose ``key`` (step or epoch) is past ``last``: after resuming from an older state."""
    if not path.is_file():
        return
    from dermsynth.report.plots import read_jsonl

    rows = read_jsonl(path)
    kept = [row for row in rows if row.get(key, 0) <= last]
    if len(kept) != len(rows):
        path.write_text("".join(json.dumps(row) + "\n" for row in kept), encoding="utf-8")
