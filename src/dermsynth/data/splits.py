"""Lesion-grouped, class-stratified train/val/test splits, saved as one small JSON file.

All images of a lesion go to one part, so no lesion is seen in training and
scored in test. Within each class, lesions are dealt to the parts greedily,
largest first, to whichever part is furthest below its share of that class's
images; each part first gets one lesion of every class that has enough lesions.
The file is written once (``dermsynth data split``) and reused by every later stage.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermsynth.data.index import CLASSES, DatasetIndex
from dermsynth.errors import DataError
from dermsynth.storage import atomic_write_json

PARTS = ("train", "val", "test")
SPLIT_FILE = "split.json"
"""The split's file name in a run or study folder."""
SCORED_PARTS = ("test", "val", "all")
"""What a classifier can be scored on: a part of its split, or every image of a dataset."""
"""The split's file name in a run or study folder."""
SPLIT_FORMAT = "dermsynth-split/1"


@dataclass
class Split:
    """Image ids of each part, and how they were drawn."""

    parts: dict[str, list[str]]
    seed: int
    fractions: dict[str, float]
    data_root: str = ""
    source: str = ""

    def part_of(self) -> dict[str, str]:
        return {image_id: part for part, ids in self.parts.items() for image_id in ids}

    def indices(self, index: DatasetIndex, part: str, whose: str = "the split") -> np.ndarray:
        """Rows of ``index`` in ``part``; refuses ids the index does not have, naming ``whose`` split it is
        (e.g. "the judge runs/j/classifier.pt's split")."""
        if part not in self.parts:
            raise DataError(f"{whose} has no part {part!r} (parts: {', '.join(self.parts)})")
        rows = {r.image_id: i for i, r in enumerate(index.records)}
        missing = [i for i in self.parts[part] if i not in rows]
        if missing:
            raise DataError(
                f"{whose}: its {part} part names {len(missing)} image(s) that the dataset at "
                f"{index.root} does not have (e.g. {', '.join(missing[:3])}); was the split made "
                "for other data?"
            )
        return np.array(sorted(rows[i] for i in self.parts[part]), dtype=np.int64)

    def sha256(self) -> str:
        payload = json.dumps(self.parts, sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()


def make_split(
    index: DatasetIndex,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
) -> Split:
    """Split ``index`` into train/val/test, grouped by lesion_id and stratified by class."""
    if len(fractions) != len(PARTS) or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise DataError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    # With fewer lesions than parts, train is served first, then test, then val.
    priority = [p for p in ("train", "test", "val") if dict(zip(PARTS, fractions))[p] > 0]
    images_of, assigned = _deal(index, dict(zip(PARTS, fractions)), priority, seed)
    assigned = {p: assigned.get(p, []) for p in PARTS}
    parts = {p: sorted(i for les in assigned[p] for i in images_of[les]) for p in PARTS}
    return Split(
        parts=parts,
        seed=seed,
        fractions=dict(zip(PARTS, fractions)),
        data_root=str(index.root),
        source=index.source,
    )


def _deal(index: DatasetIndex, share: dict[str, float], priority: list[str], seed: int
          ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Deal the lesions of ``index`` to the groups with a positive ``share``, class by class, largest lesion first,
    to the group furthest below its share (ties to the first in ``share``'s order); each group of ``priority``
    first gets one lesion of every class that has enough. Returns (images of each lesion, lesions of each group)."""
    groups = [g for g, f in share.items() if f > 0]
    rng = np.random.default_rng(seed)
    # A lesion belongs to the class most of its images have (HAM10000 lesions have one).
    images_of: dict[str, list[str]] = defaultdict(list)
    labels_of: dict[str, Counter] = defaultdict(Counter)
    for r in index.records:
        images_of[r.lesion_id].append(r.image_id)
        labels_of[r.lesion_id][r.label] += 1
    lesions_by_class: dict[int, list[str]] = defaultdict(list)
    for lesion in sorted(images_of):
        lesions_by_class[labels_of[lesion].most_common(1)[0][0]].append(lesion)

    assigned: dict[str, list[str]] = {g: [] for g in groups}
    for label in sorted(lesions_by_class):
        lesions = [lesions_by_class[label][i] for i in rng.permutation(len(lesions_by_class[label]))]
        total = sum(len(images_of[les]) for les in lesions)
        target = {g: share[g] * total for g in groups}
        count = {g: 0 for g in groups}
        # Every group gets one lesion first where the class has enough of them, in the order of ``priority``.
        seeded = lesions[: len(priority)]
        for group, lesion in zip(priority, seeded):
            assigned[group].append(lesion)
            count[group] += len(images_of[lesion])
        rest = lesions[len(seeded):]
        rest.sort(key=lambda les: -len(images_of[les]))  # stable: random order among equal sizes
        for lesion in rest:
            group = max(groups, key=lambda g: (target[g] - count[g]) / max(target[g], 1e-9))
            assigned[group].append(lesion)
            count[group] += len(images_of[lesion])
    return images_of, assigned


def lesion_folds(index: DatasetIndex, folds: int = 5, seed: int = 0) -> list[Split]:
    """``folds`` lesion-grouped, class-stratified folds of ``index`` for cross-fitting: split ``i`` tests on
    fold ``i`` and trains on the others (no val part), so every image is scored once, by a model that saw
    none of its lesion's images."""
    if folds < 2:
        raise DataError(f"cross-fitting needs at least 2 folds, got {folds}")
    groups = [f"fold{i}" for i in range(folds)]
    images_of, assigned = _deal(index, {g: 1 / folds for g in groups}, groups, seed)
    fold_images = [sorted(i for les in assigned[g] for i in images_of[les]) for g in groups]
    return [Split(parts={"train": sorted(i for j, ids in enumerate(fold_images) if j != f for i in ids),
                         "val": [], "test": fold_images[f]},
                  seed=seed, fractions={"train": 1 - 1 / folds, "val": 0.0, "test": 1 / folds},
                  data_root=str(index.root), source=index.source)
            for f in range(folds)]


def split_table(split: Split, index: DatasetIndex) -> list[dict]:
    """Images and lesions per class and part, for printing and reports."""
    part_of = split.part_of()
    rows = []
    for label, name in enumerate(CLASSES):
        row: dict = {"dx": name}
        for part in PARTS:
            recs = [r for r in index.records if r.label == label and part_of.get(r.image_id) == part]
            row[f"{part}_images"] = len(recs)
            row[f"{part}_lesions"] = len({r.lesion_id for r in recs})
        rows.append(row)
    return rows


def save_split(split: Split, path: str | Path, index: DatasetIndex | None = None) -> Path:
    """Write the split atomically as JSON (parts as sorted image id lists)."""
    path = Path(path)
    payload = {
        "format": SPLIT_FORMAT,
        "seed": split.seed,
        "fractions": split.fractions,
        "group_by": "lesion_id",
        "stratify_by": "dx",
        "data_root": split.data_root,
        "source": split.source,
        "sha256": split.sha256(),
        "counts": {p: len(ids) for p, ids in split.parts.items()},
        "parts": split.parts,
    }
    if index is not None:
        payload["per_class"] = split_table(split, index)
    return atomic_write_json(path, payload)


def load_split(path: str | Path) -> Split:
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such split file (make one with `dermsynth data split`)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a split file ({e})") from None
    if not isinstance(payload, dict) or payload.get("format") != SPLIT_FORMAT:
        raise DataError(f"{path}: not a dermsynth split file (format {SPLIT_FORMAT!r} expected)")
    split = Split(
        parts={p: list(payload["parts"].get(p, [])) for p in PARTS},
        seed=int(payload["seed"]),
        fractions={p: float(v) for p, v in payload["fractions"].items()},
        data_root=payload.get("data_root", ""),
        source=payload.get("source", ""),
    )
    if "sha256" in payload and payload["sha256"] != split.sha256():
        raise DataError(f"{path}: the split's parts do not match its recorded sha256 (edited by hand?)")
    seen: dict[str, str] = {}
    for part, ids in split.parts.items():
        for image_id in ids:
            if image_id in seen:
                raise DataError(f"{path}: image {image_id} is in both {seen[image_id]} and {part}")
            seen[image_id] = part
    return split
