"""Preprocessing cache: shapes, crops, image modes, corrupt files, staleness and atomic writes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from dermsynth.data import DataError, open_index
from dermsynth.data.cache import crop_resize, load_cache, to_rgb
from tests.conftest import read_rows, write_csv, write_ham


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


def test_crash_during_build_leaves_no_half_written_cache(ham, tmp_path, monkeypatch):
    index = open_index(ham)
    import dermsynth.data.cache as cache

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "_atomic_write_text", boom)
    with pytest.raises(KeyboardInterrupt):
        load_cache(index, 32, cache_dir=tmp_path / "c", progress=False)
    folders = list((tmp_path / "c").iterdir())
    assert all(not (f / "manifest.json").exists() for f in folders)
    monkeypatch.undo()
    cached = load_cache(index, 32, cache_dir=tmp_path / "c", progress=False)
    assert cached.images.shape[0] == 28


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_jpeg_is_skipped_and_listed_or_fails_on_request(ham, tmp_path, damage):
    bad = ham / "images" / "ISIC_0000005.jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a jpeg at all")
    index = open_index(ham)
    cached = load_cache(index, 32, cache_dir=tmp_path / "c", progress=False)
    assert "ISIC_0000005" not in cached.image_ids and len(cached.image_ids) == 27
    assert [s["image_id"] for s in cached.skipped] == ["ISIC_0000005"]
    assert "ISIC_0000005" in (cached.path / "skipped.csv").read_text()
    with pytest.raises(DataError, match=r"1 image file\(s\) could not be decoded: ISIC_0000005.jpg"):
        load_cache(index, 32, cache_dir=tmp_path / "c", on_corrupt="fail", progress=False)
    with pytest.raises(DataError, match="ISIC_0000005.jpg"):
        load_cache(index, 32, cache_dir=tmp_path / "fresh", on_corrupt="fail", progress=False)


def test_class_with_no_images_after_filtering_is_an_error(tmp_path):
    root = write_ham(tmp_path / "d", per_class=1)
    rows = read_rows(root / "HAM10000_metadata.csv")
    df = next(r for r in rows if r["dx"] == "df")
    (root / "images" / f"{df['image_id']}.jpg").write_bytes(b"broken")
    write_csv(root / "HAM10000_metadata.csv", rows)
    with pytest.raises(DataError, match=r"no images left for class\(es\) df"):
        load_cache(open_index(root), 32, cache_dir=tmp_path / "c", progress=False)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.new("L", (40, 30), 128),
        lambda: Image.new("RGBA", (40, 30), (200, 100, 50, 255)),
        lambda: Image.new("CMYK", (40, 30), (0, 128, 128, 0)),
        lambda: Image.fromarray(np.full((30, 40), 32768, dtype=np.uint16)),
        lambda: Image.new("P", (40, 30), 3),
    ],
    ids=["gray", "rgba", "cmyk", "16bit", "palette"],
)
def test_every_image_mode_becomes_8bit_rgb(make):
    img = make()
    out = crop_resize(img, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    if img.mode.startswith("I;16"):
        assert abs(int(out.mean()) - 128) <= 1  # scaled from 16 bits, not clipped to 255
    if img.mode == "RGBA":
        assert tuple(out[0, 0]) == (200, 100, 50)


def test_grayscale_and_16bit_files_go_through_the_cache(ham, tmp_path):
    Image.new("L", (40, 30), 90).save(ham / "images" / "ISIC_0000001.jpg")
    png16 = ham / "images" / "ISIC_0000002.png"
    Image.fromarray(np.full((30, 40), 65535, dtype=np.uint16)).save(png16)
    (ham / "images" / "ISIC_0000002.jpg").unlink()
    cached = load_cache(open_index(ham), 32, cache_dir=tmp_path / "c", progress=False)
    rows = cached.rows()
    assert np.all(np.abs(cached.images[rows["ISIC_0000001"]].astype(int) - 90) <= 3)
    assert cached.images[rows["ISIC_0000002"]].min() >= 250


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
