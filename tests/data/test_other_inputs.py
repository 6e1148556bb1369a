"""Class-folder datasets and DermaMNIST .npz files read into the same index."""

from __future__ import annotations

import numpy as np
from PIL import Image

from dermsynth.data import CLASSES, open_index
from dermsynth.data.cache import load_cache
from dermsynth.data.dermamnist import DERMAMNIST_CLASSES


def test_class_folders(tmp_path):
    root = tmp_path / "folders"
    for dx in ("nv", "MEL", "df"):
        (root / dx / "sub").mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (20, 20), (k * 50, 10, 10)).save(root / dx / f"{dx.lower()}_{k}.jpg")
        Image.new("RGB", (20, 20)).save(root / dx / "sub" / f"{dx.lower()}_deep.png")
    (root / "notes").mkdir()
    index = open_index(root)
    assert index.source == "folder"
    counts = {r["dx"]: r["images"] for r in index.class_table()}
    assert counts == {"nv": 3, "mel": 3, "bkl": 0, "bcc": 0, "akiec": 0, "vasc": 0, "df": 3}
    assert all(r.lesion_id == r.image_id for r in index.records)
    assert any("notes" in w for w in index.warnings)
    assert load_cache(index, 32, progress=False).images.shape == (9, 32, 32, 3)


def write_dermamnist(path, n=(7, 3, 4), size=28):
    rng = np.random.default_rng(0)
    arrays = {}
    for part, k in zip(("train", "val", "test"), n):
        arrays[f"{part}_images"] = rng.integers(0, 255, (k, size, size, 3), dtype=np.uint8)
        arrays[f"{part}_labels"] = (np.arange(k) % 7).reshape(-1, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return arrays


def test_dermamnist_npz_labels_map_to_our_class_order(tmp_path):
    arrays = write_dermamnist(tmp_path / "dermamnist.npz")
    index = open_index(tmp_path / "dermamnist.npz")
    assert index.source == "dermamnist" and len(index) == 14
    first = index.records[0]
    assert first.part == "train" and first.dx == DERMAMNIST_CLASSES[0] == "akiec"
    by_part = [r.part for r in index.records]
    assert by_part.count("train") == 7 and by_part.count("val") == 3 and by_part.count("test") == 4
    # Label 5 of DermaMNIST is nv, our label 0.
    assert index.records[5].dx == "nv" and index.records[5].label == CLASSES.index("nv")
    np.testing.assert_array_equal(np.asarray(index.open_image(8)), arrays["val_images"][1])
    cached = load_cache(index, 32, progress=False)
    assert cached.images.shape == (14, 32, 32, 3)
