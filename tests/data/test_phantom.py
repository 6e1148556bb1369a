"""Phantom dataset generator: layout, determinism, safety and learnability."""

from __future__ import annotations

import csv
import importlib.util
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import torch
from PIL import Image

from dermsynth.data import CLASSES, open_index, phantom
from dermsynth.errors import FolderError, UsageError
from dermsynth.data.phantom import make_phantom, plan_images
from dermsynth.storage import MARKER


def _load_benchmark():
    """The learnability helpers live in the benchmark; this test runs a small version of it."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "phantom_learnability.py"
    spec = importlib.util.spec_from_file_location("phantom_learnability", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(root: Path) -> dict[str, bytes]:
    """The dataset's files (images and metadata), without dermsynth's folder marker, which records when it was
    made."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MARKER}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return make_phantom(tmp_path_factory.mktemp("small") / "phantom", per_class=8, size=32, seed=3)


def test_reads_back_as_ham10000(small):
    index = open_index(small)
    assert index.source == "ham10000" and not index.warnings
    assert [row["images"] for row in index.class_table()] == [8] * len(CLASSES)
    assert all(r.image_id.startswith("PHANTOM_") and r.path.parent == small / "images" for r in index.records)

    lesions = defaultdict(list)
    for r in index.records:
        lesions[r.lesion_id].append(r)
    sizes = Counter(len(v) for v in lesions.values())
    assert set(sizes) <= {1, 2, 3} and sizes[1] and (sizes[2] or sizes[3]), sizes
    assert all(len({r.label for r in v}) == 1 for v in lesions.values())

    with open(small / "HAM10000_metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and {row["synthetic"] for row in rows} == {"phantom"}
    with Image.open(index.records[0].path) as img:
        assert img.format == "JPEG" and img.size == (32, 24)
        assert b"NOT medical data" in img.info["comment"]


def test_deterministic(small, tmp_path):
    again = make_phantom(tmp_path / "again", per_class=8, size=32, seed=3)
    assert _files(again) == _files(small)
    other = _files(make_phantom(tmp_path / "other", per_class=8, size=32, seed=4))
    same = [name for name, data in _files(small).items() if name.endswith(".jpg") and other.get(name) == data]
    assert not same


def test_images_do_not_depend_on_count(small, tmp_path):
    # Image k of a class is the same picture whether 4 or 8 per class are drawn.
    fewer = make_phantom(tmp_path / "fewer", per_class=4, size=32, seed=3)
    big = {(p.dx, p.index): p.image_id for p in plan_images(8, 3)}
    for p in plan_images(4, 3):
        path = f"images/{p.image_id}.jpg"
        assert (fewer / path).read_bytes() == (small / f"images/{big[p.dx, p.index]}.jpg").read_bytes()


def test_refuses_to_overwrite(small, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    with pytest.raises(FolderError, match="not empty"):
        make_phantom(busy, per_class=1, size=16, seed=0)
    with pytest.raises(FolderError, match="refusing to delete"):
        make_phantom(busy, per_class=1, size=16, seed=0, overwrite=True)
    assert (busy / "notes.txt").read_text() == "keep me"
    with pytest.raises(FolderError, match="not a folder"):
        make_phantom(busy / "notes.txt", per_class=1, size=16, seed=0)

    (tmp_path / "empty").mkdir()
    make_phantom(tmp_path / "empty", per_class=1, size=16, seed=0)
    make_phantom(tmp_path / "empty", per_class=2, size=16, seed=1, overwrite=True)
    assert len(open_index(tmp_path / "empty")) == 2 * len(CLASSES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "empty"]  # no temporary folders left


def test_bad_arguments_are_all_reported(tmp_path):
    with pytest.raises(UsageError) as info:
        make_phantom(tmp_path / "x", per_class=0, size=8, seed=-1)
    assert all(name in str(info.value) for name in ("per_class", "size", "seed"))
    with pytest.raises(UsageError, match="integer"):
        make_phantom(tmp_path / "x", per_class=2.5, size=32, seed=0)
    assert not (tmp_path / "x").exists()


def test_crash_leaves_no_half_dataset(tmp_path, monkeypatch):
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    real = phantom.render_view
    monkeypatch.setattr(phantom, "render_view", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        make_phantom(tmp_path / "out", per_class=2, size=16, seed=0)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def learnability(tmp_path_factory):
    """60 images per class drawn at 64 px, classified at 32 px; the package's lesion-grouped split."""
    bench = _load_benchmark()
    base = tmp_path_factory.mktemp("learn")
    root = make_phantom(base / "phantom", per_class=60, size=64, seed=0)
    parts = bench.parts(root, resolution=32, seed=0, cache_dir=base / "cache")
    lesions = {r.image_id: r.lesion_id for r in open_index(root).records}
    split = bench.make_split(open_index(root), bench.FRACTIONS, 0)
    assert not {lesions[i] for i in split.parts["train"]} & {lesions[i] for i in split.parts["test"]}
    return bench, base, root, parts


@pytest.mark.slow
def test_small_cnn_learns_the_classes(learnability):
    bench, base, root, _ = learnability
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on two busy cores run ~5x slower than one
    try:
        score = bench.train_cnn(root, base / "cnn", resolution=32, epochs=20, seed=0, cache_dir=base / "cache")
    finally:
        torch.set_num_threads(threads)
    assert score > 0.5, f"CNN balanced accuracy {score:.3f} (chance 0.143)"


def test_colour_alone_does_not_give_the_answer(learnability):
    bench, _, _, parts = learnability
    scores = bench.colour_baselines(*parts["train"], *parts["test"])
    assert max(scores.values()) < 0.95, scores
    # ...but colour is not meaningless either: the classes differ in colour on average.
    assert min(scores.values()) > 1.5 / len(CLASSES), scores
