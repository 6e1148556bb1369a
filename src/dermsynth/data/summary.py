"""Plain-text tables of a dataset and a split (the paper's Table II and split sizes)."""

from __future__ import annotations

from dermsynth.data.index import DatasetIndex
from dermsynth.data.splits import PARTS, Split, split_table


def format_class_table(index: DatasetIndex) -> str:
    rows = index.class_table()
    total_images = sum(r["images"] for r in rows)
    total_lesions = len({r.lesion_id for r in index.records})
    lines = [
        f"{'dx':<6} {'class':<46} {'images':>7} {'share':>6} {'lesions':>8}",
        "-" * 77,
    ]
    for r in rows:
        share = 100 * r["images"] / total_images if total_images else 0.0
        lines.append(f"{r['dx']:<6} {r['name']:<46} {r['images']:>7,} {share:>5.1f}% {r['lesions']:>8,}")
    lines.append("-" * 77)
    lines.append(f"{'total':<53} {total_images:>7,} {100.0:>5.1f}% {total_lesions:>8,}")
    return "\n".join(lines)


def format_split_table(split: Split, index: DatasetIndex) -> str:
    rows = split_table(split, index)
    totals = {p: sum(r[f"{p}_images"] for r in rows) for p in PARTS}
    head = f"{'dx':<6}" + "".join(f" {p + ' img':>10} {'%':>5} {'lesions':>8}" for p in PARTS)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = []
        for p in PARTS:
            share = 100 * r[f"{p}_images"] / totals[p] if totals[p] else 0.0
            cells.append(f" {r[f'{p}_images']:>10,} {share:>5.1f} {r[f'{p}_lesions']:>8,}")
        lines.append(f"{r['dx']:<6}" + "".join(cells))
    lines.append("-" * len(head))
    lesions = {p: sum(r[f"{p}_lesions"] for r in rows) for p in PARTS}
    lines.append(f"{'total':<6}" + "".join(f" {totals[p]:>10,} {100.0:>5.1f} {lesions[p]:>8,}" for p in PARTS))
    return "\n".join(lines)
