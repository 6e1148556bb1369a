"""Generative metrics on feature vectors, one module each, registered by name.

Each metric takes real and generated features (N, D) and returns a dict of
numbers: ``METRICS["fid"](real, fake)``. Per-class (intra-class) versions come
from :func:`per_class`, which averages a metric over the classes present in both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dermsynth.metrics.frechet import fid
from dermsynth.metrics.kid import kid
from dermsynth.metrics.prdc import prdc
from dermsynth.tables import number


@dataclass(frozen=True)
class Column:
    """One number of a metric's result, as a table shows it."""

    key: str
    """Its key in the metric's result dict."""
    header: str
    scale: float = 1.0
    digits: int = 3


@dataclass(frozen=True)
class Metric:
    """A generative metric on features: its function, the numbers it reports, and which of them per class."""

    name: str
    compute: Callable[..., dict]
    """(real (N, D), fake (M, D), **options) -> {key: number}."""
    columns: tuple[Column, ...]
    per_class: tuple[str, ...] = ()
    """Keys also shown class by class."""
    options: tuple[str, ...] = ()
    """Keyword options it takes from the evaluation's settings (e.g. KID's subset_size)."""


REGISTRY: dict[str, Metric] = {m.name: m for m in (
    Metric("fid", fid, (Column("fid", "FID", digits=2),), per_class=("fid",)),
    Metric("kid", kid, (Column("kid", "KID x1000", 1000, 2),), options=("subset_size",)),
    Metric("prdc", prdc, (Column("precision", "precision"), Column("recall", "recall"), Column("density", "density"),
                          Column("coverage", "coverage")), per_class=("precision", "recall")),
)}
"""Every feature-space metric; evaluation, its Markdown and JSON, the HTML report and the CLI read this.
Adding one: a module with its function, an entry here, and a test against a known answer."""

METRICS: dict[str, Callable[..., dict]] = {name: m.compute for name, m in REGISTRY.items()}


def cell(value: float | None, column: Column, missing: str = "") -> str:
    return number(value, column.digits, column.scale, missing=missing)


def overall_table(blocks: dict[str, dict], missing: str = "") -> tuple[list[str], list[list[str]]]:
    """``{row label: metric block}`` (a block maps metric name -> {"overall", "per_class", "mean"}) as table
    headers and rows of text: every registered metric's columns, then the mean per-class FID; ``missing``
    stands for a number not computed."""
    names = [n for n in REGISTRY if any(n in b for b in blocks.values())]
    columns = [c for n in names for c in REGISTRY[n].columns]
    headers = ["comparison", *[c.header for c in columns]]
    per_fid = "fid" in names
    if per_fid:
        headers.append("mean per-class FID")
    rows = []
    for label, block in blocks.items():
        overall = {k: v for n in names if n in block for k, v in block[n]["overall"].items()}
        row = [label, *[cell(overall.get(c.key), c, missing) for c in columns]]
        if per_fid:
            row.append(cell(block.get("fid", {}).get("mean", {}).get("fid"), REGISTRY["fid"].columns[0], missing))
        rows.append(row)
    return headers, rows


def per_class_table(block: dict, classes: tuple[str, ...], missing: str = "") -> tuple[list[str], list[list[str]]]:
    """The per-class numbers of a metric block, one row per class present."""
    shown = [(n, c) for n in REGISTRY if n in block for c in REGISTRY[n].columns if c.key in REGISTRY[n].per_class]
    headers = ["class", *[c.header for _, c in shown]]
    present = [k for k in classes if any(k in block[n]["per_class"] for n, _ in shown)]
    rows = [[k, *[cell(block[n]["per_class"].get(k, {}).get(c.key), c, missing) for n, c in shown]] for k in present]
    return headers, rows


def per_class(
    metric: Callable[..., dict],
    real: np.ndarray,
    real_labels: np.ndarray,
    fake: np.ndarray,
    fake_labels: np.ndarray,
    classes: list[str],
    min_samples: int = 2,
    **kwargs,
) -> dict:
    """``metric`` within each class, and its mean over the classes with enough samples on both sides."""
    out: dict = {"per_class": {}}
    for label, name in enumerate(classes):
        r, f = real[real_labels == label], fake[fake_labels == label]
        if len(r) >= min_samples and len(f) >= min_samples:
            out["per_class"][name] = metric(r, f, **kwargs)
    keys = {k for v in out["per_class"].values() for k in v if isinstance(v[k], (int, float))}
    out["mean"] = {k: float(np.mean([v[k] for v in out["per_class"].values() if k in v])) for k in sorted(keys)}
    return out


__all__ = ["METRICS", "REGISTRY", "Column", "Metric", "fid", "kid", "overall_table", "per_class", "per_class_table",
           "prdc"]
