"""Typed configs: dataclasses with one docstring per field, checked up front.

Every check runs before any work starts and all problems are reported at once
(:class:`ConfigError`). Presets are YAML files in ``configs/``; a run saves its
resolved config next to its outputs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dermsynth.data.cache import CROPS, RESOLUTIONS


class ConfigError(ValueError):
    """One or more invalid options; the message lists every problem."""


def _raise_if(problems: list[str], what: str) -> None:
    if problems:
        raise ConfigError(f"invalid {what}:\n  - " + "\n  - ".join(problems))


@dataclass
class DataConfig:
    """Where the images are and how they are turned into training tensors."""

    root: Path = Path("data/phantom")
    """Data root: a HAM10000-layout folder, class folders, or a DermaMNIST .npz."""
    format: str = "auto"
    """Reader: auto, ham10000, folder or dermamnist."""
    resolution: int = 64
    """Square training resolution in pixels: 32, 64, 128 or 256."""
    crop: str = "center"
    """center (centre square), full (squeeze whole image) or pad (letterbox)."""
    cache_dir: Path | None = None
    """Preprocessing cache folder; None means $DERMSYNTH_CACHE or ~/.cache/dermsynth."""
    on_corrupt: str = "skip"
    """Undecodable image files: skip (listed in the cache's skipped.csv) or fail."""

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.cache_dir = Path(self.cache_dir) if self.cache_dir else None
        problems = []
        if self.format not in ("auto", "ham10000", "folder", "dermamnist"):
            problems.append(f"data.format: {self.format!r} is not auto, ham10000, folder or dermamnist")
        if self.resolution not in RESOLUTIONS:
            problems.append(f"data.resolution: {self.resolution} is not one of {RESOLUTIONS}")
        if self.crop not in CROPS:
            problems.append(f"data.crop: {self.crop!r} is not one of {CROPS}")
        if self.on_corrupt not in ("skip", "fail"):
            problems.append(f"data.on_corrupt: {self.on_corrupt!r} is not skip or fail")
        _raise_if(problems, "data config")


@dataclass
class SplitConfig:
    """How the lesion-grouped train/val/test split is drawn."""

    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    """Shares of images in train, val and test (per class, grouped by lesion)."""
    seed: int = 0
    """Seed of the split; the same seed and data give the same split."""

    def __post_init__(self) -> None:
        self.fractions = tuple(float(f) for f in self.fractions)
        problems = []
        if len(self.fractions) != 3 or any(f < 0 for f in self.fractions):
            problems.append(f"split.fractions: need three non-negative numbers, got {self.fractions}")
        elif abs(sum(self.fractions) - 1) > 1e-6:
            problems.append(f"split.fractions: must sum to 1, got {sum(self.fractions):g}")
        elif self.fractions[0] == 0:
            problems.append("split.fractions: the train share must be above 0")
        _raise_if(problems, "split config")


@dataclass
class PhantomConfig:
    """Procedural phantom data (not medical data) for demos and tests."""

    per_class: int = 100
    """Images per class."""
    size: int = 128
    """Image width in pixels."""
    seed: int = 0
    """Seed; the same seed gives byte-identical files."""


def from_dict(cls: type, values: dict[str, Any] | None, what: str) -> Any:
    """Build dataclass ``cls`` from a dict, refusing unknown keys (all named at once)."""
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown {what} option(s): {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    return cls(**values)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def to_plain(obj: Any) -> Any:
    """A config as plain YAML/JSON-friendly values (paths as strings)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


__all__ = ["ConfigError", "DataConfig", "PhantomConfig", "SplitConfig", "from_dict", "load_yaml", "to_plain"]
