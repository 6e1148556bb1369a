"""Preprocessing cache: shapes, crops and staleness (image modes, corrupt files, atomic writes: tests/faults/)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from dermsynth.data import open_index
from dermsynth.data.cache import crop_resize, load_cache, to_rgb
from tests.conftest import write_ham


def test_builds_uint8_square_arrays_in_index_order(ham, tmp_path):
    index = open_index(ham)
    cached = load_cache(index, 32, cache_dir=tmp_path / "c", progress=False)
    assert cached.images.shape == (28, 32, 32, 3) and cached.images.dtype == np.uint8
    assert cached.image_ids == [r.image_id for r in index.records]
    assert list(cached.labels) == [r.label for r in index.records]
    # The class colour of write_ham survives: label 0 is the reddest-free, greenest image.
    assert cached.images[0, ..., 1].mean() > cached.images[-1, ..., 1].mean()
    manifest = json.loads((cached.path / "manifest.json").read_text())
    assert manifest["resolution"] == 32 and manifest["crop"] == "center"
    assert len(manifest["files"]) == 28 and manifest["files"][0]["bytes"] > 0


def test_parallel_build_equals_serial_build(tmp_path):
    index = open_index(write_ham(tmp_path / "d", per_class=12))
    serial = load_cache(index, 32, cache_dir=tmp_path / "a", workers=1, progress=False)
    parallel = load_cache(index, 32, cache_dir=tmp_path / "b", workers=2, progress=False)
    np.testing.assert_array_equal(serial.images, parallel.images)


def test_second_load_reuses_cache_and_change_rebuilds(ham, tmp_path):
    index = open_index(ham)
    first = load_cache(index, 32, cache_dir=tmp_path / "c", progress=False)
    array = next(first.path.glob("images-*.npy"))
    stamp = array.stat().st_mtime_ns
    again = load_cache(open_index(ham), 32, cache_dir=tmp_path / "c", progress=False)
    assert next(again.path.glob("images-*.npy")).stat().st_mtime_ns == stamp

    # Replace one image with a different one: the cache notices and rebuilds.
    target = ham / "images" / "ISIC_0000000.jpg"
    Image.new("RGB", (40, 30), (255, 0, 255)).save(target)
    os.utime(target, ns=(stamp + 10**9, stamp + 10**9))
    rebuilt = load_cache(open_index(ham), 32, cache_dir=tmp_path / "c", progress=False)
    assert rebuilt.images[0, ..., 0].mean() > 200 and rebuilt.images[0, ..., 1].mean() < 50
    assert len(list(rebuilt.path.glob("images-*.npy"))) == 1


def test_crops():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # a blue band on the left quarter
    center = crop_resize(img, 32, "center")
    assert center[..., 2].max() < 30  # the centre square never sees the band
    full = crop_resize(img, 32, "full")
    assert full[:, :4, 2].mean() > 200
    pad = crop_resize(img, 32, "pad")
    assert pad[:4].max() < 10  # letterbox rows are black
    with pytest.raises(ValueError, match="unknown crop"):
        crop_resize(img, 32, "zoom")


def test_bad_cache_options_are_all_reported(ham, tmp_path):
    with pytest.raises(ValueError, match=r"resolution must be one of.*crop must be one of"):
        load_cache(open_index(ham), 48, crop="zoom", cache_dir=tmp_path)


def test_to_rgb_keeps_rgb():
    img = Image.new("RGB", (4, 4), (1, 2, 3))
    assert to_rgb(img).getpixel((0, 0)) == (1, 2, 3)


def test_real_ham10000_cache(shared_ham, tmp_path):
    index = open_index(shared_ham)
    cached = load_cache(index, 32, cache_dir=tmp_path / "c", progress=False)
    assert cached.images.shape == (10015, 32, 32, 3)
    assert cached.skipped == []
