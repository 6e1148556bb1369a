"""MedMNIST DermaMNIST ``.npz`` files (``train_images``, ``train_labels``, ``val_*``, ``test_*``).

DermaMNIST labels are 0 akiec, 1 bcc, 2 bkl, 3 df, 4 mel, 5 nv, 6 vasc (its own
alphabetical order); they are mapped to dermsynth's fixed class order. The file
carries its own train/val/test parts, kept as ``Record.part``. It has no lesion
ids, so each image is its own lesion: DermaMNIST's split is image-level and can
put images of one lesion on both sides, which no dermsynth split can undo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dermsynth.data.index import CLASS_TO_LABEL, DatasetIndex, Record, register_reader
from dermsynth.errors import DataError

DERMAMNIST_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
PARTS = ("train", "val", "test")


def read_dermamnist(path: str | Path) -> DatasetIndex:
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    to_ours = np.array([CLASS_TO_LABEL[c] for c in DERMAMNIST_CLASSES])
    records: list[Record] = []
    arrays = []
    offset = 0
    for part in PARTS:
        if f"{part}_images" not in data.files:
            continue
        if f"{part}_labels" not in data.files:
            raise DataError(f"{path}: has {part}_images but no {part}_labels")
        images = data[f"{part}_images"]
        labels = np.asarray(data[f"{part}_labels"]).reshape(-1)
        if len(images) != len(labels):
            raise DataError(f"{path}: {part}_images has {len(images)} rows, {part}_labels {len(labels)}")
        if images.ndim == 3:  # grayscale (N, H, W)
            images = np.repeat(images[..., None], 3, axis=-1)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise DataError(f"{path}: {part}_images has shape {images.shape}, expected (N, H, W, 3)")
        bad = np.flatnonzero((labels < 0) | (labels >= len(DERMAMNIST_CLASSES)))
        if bad.size:
            raise DataError(f"{path}: {part}_labels row {bad[0]} has label {labels[bad[0]]}, expected 0-6")
        for i, label in enumerate(labels):
            image_id = f"{part}_{i:05d}"
            records.append(
                Record(image_id, image_id, int(to_ours[label]), array_index=offset + i, part=part)
            )
        arrays.append(np.asarray(images, dtype=np.uint8))
        offset += len(images)
    if not arrays:
        raise DataError(f"{path}: no train_images/val_images/test_images arrays (found {data.files})")
    return DatasetIndex(root=path, records=records, source="dermamnist", arrays=np.concatenate(arrays))


register_reader("dermamnist", lambda root: root.is_file() and root.suffix == ".npz",
                lambda root, lesions_required: read_dermamnist(root))  # each image is its own lesion
