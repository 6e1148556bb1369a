"""Fault catalogue: bad input data and unsafe files (the foundation issue's list): each test is named after the
fault and checks the error names the file or row and nothing is half-written.

Lives elsewhere: zip-slip download archives (test_zip_slip_members_are_refused) stay in tests/data/test_download.py,
next to the fake Dataverse server fixture they need.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dermsynth.cli import main
from dermsynth.config import gan_config, load_yaml
from dermsynth.data import DataError, open_index
from dermsynth.data.cache import crop_resize, load_cache
from dermsynth.data.ham10000 import read_ham10000
from dermsynth.data.splits import load_split, make_split, save_split
from dermsynth.training import gan_losses
from dermsynth.checkpoint import CheckpointError, list_states, load_checkpoint
from dermsynth.training.gan_loop import DivergenceError, RunOptions, train_gan
from tests.conftest import TINY_CLASSIFIER, TINY_GAN, read_rows, write_csv, write_ham
from tests.data.test_splits import synthetic_index

REPO = Path(__file__).resolve().parents[2]


def tiny(preset: str, data: Path, *extra: str):
    return gan_config(load_yaml(REPO / "configs" / f"{preset}.yaml"), TINY_GAN + list(extra), data_root=data)


# HAM10000 metadata and image folder.
def test_missing_column_names_file_and_column(ham):
    rows = read_rows(ham / "HAM10000_metadata.csv")
    write_csv(ham / "HAM10000_metadata.csv", rows, columns=("lesion_id", "image_id"))
    with pytest.raises(DataError, match=r"HAM10000_metadata.csv: missing required column\(s\) dx"):
        open_index(ham)


def test_unknown_dx_names_row(ham):
    rows = read_rows(ham / "HAM10000_metadata.csv")
    rows[4]["dx"] = "melanomaa"
    write_csv(ham / "HAM10000_metadata.csv", rows)
    with pytest.raises(DataError, match=r"line 6: unknown dx label 'melanomaa'"):
        open_index(ham)


def test_duplicate_image_id_names_both_rows(ham):
    rows = read_rows(ham / "HAM10000_metadata.csv")
    rows.append(dict(rows[2]))
    write_csv(ham / "HAM10000_metadata.csv", rows)
    with pytest.raises(DataError, match=r"line 30: duplicate image_id 'ISIC_0000002' \(first at line 4\)"):
        open_index(ham)


def test_row_without_image_names_row_and_id(ham):
    (ham / "images" / "ISIC_0000003.jpg").unlink()
    with pytest.raises(DataError, match=r"1 row\(s\) have no image file.*line 5: ISIC_0000003"):
        open_index(ham)


def test_image_without_row_is_warned_and_ignored(ham):
    shutil.copy(ham / "images" / "ISIC_0000000.jpg", ham / "images" / "ISIC_9999999.jpg")
    index = open_index(ham)
    assert len(index) == 28
    assert "ISIC_9999999" not in index.by_id()
    assert any("no metadata row" in w and "ISIC_9999999" in w for w in index.warnings)


@pytest.mark.parametrize("bad_id", ["../x", "/etc/passwd", "sub/ISIC_0000001", "..", ""])
def test_image_id_that_is_not_a_plain_file_name_is_refused(tmp_path, bad_id):
    root = write_ham(tmp_path / "d", per_class=1)
    # A file outside the root that a traversal would reach must never be read.
    (tmp_path / "x.jpg").write_bytes((root / "images" / "ISIC_0000000.jpg").read_bytes())
    rows = read_rows(root / "HAM10000_metadata.csv")
    rows[0]["image_id"] = bad_id
    write_csv(root / "HAM10000_metadata.csv", rows)
    with pytest.raises(DataError, match=r"line 2: image_id: .* is not a plain file name"):
        read_ham10000(root)


def test_empty_data_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="found neither HAM10000_metadata"):
        open_index(tmp_path / "empty")


def test_metadata_with_header_only_is_refused(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    write_csv(root / "HAM10000_metadata.csv", [])
    with pytest.raises(DataError, match="header but no rows"):
        open_index(root)


def test_missing_data_root_is_named():
    with pytest.raises(DataError, match="no such file or folder"):
        open_index("/nonexistent/dermsynth-data")


# Class folders and DermaMNIST files.
def test_class_folders_with_duplicate_names_are_refused(tmp_path):
    for dx in ("nv", "mel"):
        (tmp_path / dx).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / dx / "same.jpg")
    with pytest.raises(DataError, match="duplicate image_id 'same'"):
        open_index(tmp_path, "folder")


def test_dermamnist_npz_without_labels_with_bad_label_or_junk_is_refused(tmp_path):
    np.savez(tmp_path / "a.npz", train_images=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="train_images but no train_labels"):
        open_index(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", train_images=np.zeros((2, 8, 8, 3), np.uint8), train_labels=np.array([0, 9]))
    with pytest.raises(DataError, match="row 1 has label 9"):
        open_index(tmp_path / "b.npz")
    (tmp_path / "c.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="not a readable .npz"):
        open_index(tmp_path / "c.npz")


# Image files and the preprocessing cache.
def test_crash_during_build_leaves_no_half_written_cache(ham, tmp_path, monkeypatch):
    index = open_index(ham)
    import dermsynth.data.cache as cache

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "atomic_write_text", boom)
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


# Split files.
def test_tampered_or_foreign_split_files_are_refused(tmp_path):
    index = synthetic_index()
    path = save_split(make_split(index, seed=2), tmp_path / "split.json")
    payload = json.loads(path.read_text())
    payload["parts"]["test"].append(payload["parts"]["train"][0])
    path.write_text(json.dumps(payload))
    with pytest.raises(DataError, match="sha256"):
        load_split(path)
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(DataError, match="not a dermsynth split file"):
        load_split(tmp_path / "other.json")
    with pytest.raises(DataError, match="no such split file"):
        load_split(tmp_path / "missing.json")


def test_split_for_other_data_is_refused(tmp_path):
    index = open_index(write_ham(tmp_path / "a", per_class=3))
    split = make_split(index, seed=0)
    other = open_index(write_ham(tmp_path / "b", per_class=2))
    with pytest.raises(DataError, match="does not have"):
        split.indices(other, "train")


# Checkpoints and training.
def test_pickle_payload_foreign_or_truncated_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    torch.save({"format": "dermsynth-gan-state/1", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused: it holds Python objects that only unpickling could "
                                              "rebuild, and unpickling can run any code") as refused:
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
    # The whole message in dermsynth's words: no advice to load it unsafely.
    assert str(refused.value).endswith("this one was not written by dermsynth, or was altered since")
    assert "weights_only" not in str(refused.value) and "False" not in str(refused.value)

    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a dermsynth checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")

    torch.save({"format": "dermsynth-generator/1", "G_ema": {}}, tmp_path / "snap.pt")
    data = (tmp_path / "snap.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="expected dermsynth-gan-state/1"):
        load_checkpoint(tmp_path / "snap.pt", expect="dermsynth-gan-state/1")


def test_divergence_stops_with_step_and_keeps_last_good_checkpoint(phantom_data, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_d_loss = gan_losses.d_loss

    def poisoned(kind, real_logits, fake_logits):
        calls["n"] += 1
        loss = real_d_loss(kind, real_logits, fake_logits)
        return loss * float("nan") if calls["n"] == 10 else loss

    monkeypatch.setattr(gan_losses, "d_loss", poisoned)
    run = tmp_path / "run"
    with pytest.raises(DivergenceError, match=r"discriminator loss became nan at step 10"):
        train_gan(tiny("data-efficient", phantom_data, "train.total_kimg=0.2"), RunOptions(out=run, progress=False))
    states = list_states(run / "checkpoints")
    assert [p.name for p in states] == ["state-00000008.pt"]
    state = load_checkpoint(states[0])
    assert all(torch.isfinite(v).all() for v in state["G"].values() if v.is_floating_point())


def test_a_classifier_whose_loss_is_nan_stops_as_a_divergence_with_exit_3(phantom_data, tmp_path, monkeypatch):
    from dermsynth.training import classifier_loop

    real_loss = classifier_loop.F.cross_entropy
    monkeypatch.setattr(classifier_loop.F, "cross_entropy", lambda *a, **k: real_loss(*a, **k) * float("nan"))
    sets = [x for s in TINY_CLASSIFIER for x in ("--set", s)]
    result = CliRunner().invoke(main, ["train-classifier", "--config", "configs/classifier-paper.yaml", "--data",
                                       str(phantom_data), "--out", str(tmp_path / "run"), "--no-progress", *sets])
    assert result.exit_code == 3, result.output
    assert "error: training diverged: the classifier's loss became nan in epoch 1, step 1" in result.output
    assert "Traceback" not in result.output


def test_every_error_has_its_exit_status():
    from dermsynth import errors

    codes = {name: getattr(errors, name).exit_code for name in dir(errors) if name.endswith("Error")}
    assert codes.pop("DownloadError") == 1 and codes.pop("DivergenceError") == 3
    assert set(codes.values()) == {2}
    assert issubclass(errors.StorageError, OSError) and issubclass(errors.LeakageError, errors.DataError)


# The command line.
def test_bad_input_is_one_clear_line_not_a_traceback(ham):
    rows = read_rows(ham / "HAM10000_metadata.csv")
    rows[0]["dx"] = "xyz"
    write_csv(ham / "HAM10000_metadata.csv", rows)
    result = CliRunner().invoke(main, ["data", "summary", str(ham)])
    assert result.exit_code == 2
    assert "error:" in result.output and "line 2: unknown dx label 'xyz'" in result.output
    assert "Traceback" not in result.output
