"""Images dermsynth generated are never taken for patients' images by accident (marker, metadata column, tag)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from dermsynth.cli import main
from dermsynth.config import gan_config, load_yaml
from dermsynth.data.index import SYNTHETIC_MARK, DataError, open_index
from dermsynth.figures import SYNTHETIC_TAG, save_synthetic_image
from dermsynth.storage import write_marker
from tests.conftest import TINY_GAN, read_rows, write_csv, write_ham


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_the_mark_looked_for_is_the_tag_dermsynth_writes(tmp_path):
    assert SYNTHETIC_TAG.encode().startswith(SYNTHETIC_MARK)
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    for name in ("a.png", "b.jpg"):
        save_synthetic_image(image, tmp_path / name, dx="nv", seed=0)
        assert SYNTHETIC_MARK in (tmp_path / name).read_bytes()[:512]  # in the header: no pixel is decoded


def test_an_export_as_data_root_is_refused_naming_how_many_and_one_example(tiny_gan, tmp_path):
    for layout in ("ham10000", "imagefolder"):
        out = tmp_path / layout
        assert cli("generate", "--checkpoint", tiny_gan / "generator.pt", "--out", out, "--per-class", 3,
                   "--layout", layout).exit_code == 0
        result = cli("data", "summary", out)
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: 21 of 21 images in {out} are synthetic images made "
                                                       "by dermsynth, e.g. ")
        assert "an export of `dermsynth generate`" in lines[0] and "--allow-synthetic uses them anyway" in lines[0]
        allowed = cli("data", "summary", out, "--allow-synthetic")
        assert allowed.exit_code == 0 and "warning: 21 of 21 images" in allowed.output
        assert "used as data because synthetic images were allowed" in allowed.output


def test_tagged_files_and_a_synthetic_column_are_found_without_a_marker(tmp_path):
    root = write_ham(tmp_path / "ham", per_class=3)
    index = open_index(root)
    assert index.synthetic == {}
    # Two generated images copied in under real rows' names: a mixed folder, named as such.
    for record in index.records[:2]:
        save_synthetic_image(np.zeros((30, 40, 3), dtype=np.uint8), record.path, dx=record.dx, seed=0)
    with pytest.raises(DataError, match=r"^2 of 21 images in .* are synthetic images made by dermsynth \(a mixed "
                                        r"folder: the other 19 are not marked\), e.g. ISIC_0000000: "
                                        r"ISIC_0000000.jpg carries dermsynth's synthetic-image tag"):
        open_index(root)
    # A metadata column alone (files re-encoded elsewhere, tags lost) is enough too.
    plain = write_ham(tmp_path / "plain", per_class=3)
    rows = read_rows(plain / "HAM10000_metadata.csv")
    rows[4]["synthetic"] = "1"
    write_csv(plain / "HAM10000_metadata.csv", rows, columns=("lesion_id", "image_id", "dx", "synthetic"))
    with pytest.raises(DataError, match=r"1 of 21 images .* e.g. ISIC_0000004: HAM10000_metadata.csv, line 6: "
                                        r"synthetic=1"):
        open_index(plain)
    assert open_index(plain, synthetic="expected").synthetic == {"ISIC_0000004": "HAM10000_metadata.csv, line 6: "
                                                                                 "synthetic=1"}


def test_the_phantom_data_are_not_gan_output_and_stay_usable(phantom_data):
    index = open_index(phantom_data)
    assert index.synthetic == {} and len(index) > 0


def test_training_refuses_synthetic_data_unless_allowed_and_records_it(tmp_path, phantom_data):
    data = tmp_path / "data"
    shutil.copytree(phantom_data, data)
    write_marker(data, "export")  # as if the phantom data were a GAN's export
    sets = [x for s in TINY_GAN + ["train.total_kimg=0.008"] for x in ("--set", s)]
    refused = cli("train-gan", "--config", "best", "--data", data, "--out", tmp_path / "run", "--no-progress", *sets)
    assert refused.exit_code == 2 and "--set data.allow_synthetic=true uses them anyway" in refused.output
    cfg = gan_config(load_yaml("configs/best.yaml"), ["data.allow_synthetic=true"], data_root=data)
    assert cfg.data.allow_synthetic is True
    allowed = cli("train-gan", "--config", "best", "--data", data, "--out", tmp_path / "run", "--no-progress", *sets,
                  "--set", "data.allow_synthetic=true")
    assert allowed.exit_code == 0, allowed.output
    assert "allow_synthetic: true" in (tmp_path / "run" / "config.yaml").read_text()
