"""`dermsynth evaluate images`: images any tool made, in either layout, measured like a generator's; known
answers (real images scored as if synthetic) and one-line refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from dermsynth.cli import main
from dermsynth.data.index import open_index
from dermsynth.data.phantom import make_phantom
from dermsynth.data.splits import load_split, make_split, save_split
from dermsynth.errors import LeakageError
from dermsynth.evaluation.gan import EvaluationConfig, evaluate_gan, evaluate_images
from tests.conftest import write_csv


def copy_part(data: Path, split_file: Path, part: str, out: Path, layout: str) -> Path:
    """The real images of one split part, copied as they are into ``layout`` (class folders or HAM10000)."""
    index, ids = open_index(data), set(load_split(split_file).parts[part])
    rows = []
    for r in index.records:
        if r.image_id not in ids:
            continue
        folder = out / r.dx if layout == "folder" else out / "images"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(r.path, folder / Path(r.path).name)
        rows.append({"lesion_id": r.lesion_id, "image_id": r.image_id, "dx": r.dx})
    if layout == "ham10000":
        write_csv(out / "HAM10000_metadata.csv", rows)
    return out


def judge_space(tiny_judge, split_file, tmp_path, measures=("fid", "memorisation")) -> EvaluationConfig:
    return EvaluationConfig(measures=measures, spaces=("judge",), judge=tiny_judge / "classifier.pt",
                            split_file=split_file, feature_cache=tmp_path / "features")


def fid(report: dict, block: str = "generated_vs_train") -> float:
    return report["feature_spaces"]["judge"][block]["fid"]["overall"]["fid"]


def test_real_images_scored_as_synthetic_give_the_known_answers_in_both_layouts(tiny_gan, tiny_judge, phantom_data,
                                                                                 tmp_path):
    split_file = tiny_gan / "split.json"
    cfg = judge_space(tiny_judge, split_file, tmp_path)
    # The train images themselves: the same pixels, so FID 0 and every image flagged as a near-copy.
    train = {layout: evaluate_images(copy_part(phantom_data, split_file, "train", tmp_path / layout, layout),
                                     phantom_data, tmp_path / f"eval-{layout}", cfg, resolution=32, progress=False)
             for layout in ("folder", "ham10000")}
    assert fid(train["folder"]) == pytest.approx(fid(train["ham10000"]), abs=1e-9)  # the layout changes nothing
    assert abs(fid(train["folder"])) < 1e-3
    assert train["folder"]["feature_spaces"]["judge"]["memorisation"]["flagged_pct"] == 100
    assert train["folder"]["n_generated"] == train["folder"]["n_real_train"]
    # Unseen real images (the val part) score far nearer the real train part than the tiny generator does.
    val = evaluate_images(copy_part(phantom_data, split_file, "val", tmp_path / "val", "folder"), phantom_data,
                          tmp_path / "eval-val", cfg, resolution=32, progress=False)
    gan = evaluate_gan(tiny_gan / "generator.pt", phantom_data, tmp_path / "eval-gan", cfg)
    assert fid(val) < fid(gan) / 2, (fid(val), fid(gan))
    assert val["n_floor_test"] == val["n_generated"] and fid(val, "floor_test_vs_train") > 0
    assert "no test image or lesion" in val["source_check"]
    text = (tmp_path / "eval-val" / "evaluation.md").read_text()
    assert "the images in" in text and "floor: real test vs real train" in text


def test_the_probe_sees_held_out_real_images_as_a_gain(tmp_path):
    # Known answer for utility: real images the baseline never saw, topping up each class, must help as the
    # positive control (real minus half) does.
    root = make_phantom(tmp_path / "data", per_class=100, size=48, seed=0)
    index = open_index(root)
    save_split(make_split(index, (0.2, 0.3, 0.5), 0), tmp_path / "split.json", index)
    folder = copy_part(root, tmp_path / "split.json", "val", tmp_path / "val", "folder")
    probe = ("arms=[real,half,topup]", "seeds=4", "iterations=100", "bootstrap=300", "topup_to=50",
             "feature_resolution=64")
    result = CliRunner().invoke(main, [
        "evaluate", "utility", "--images", str(folder), "--data", str(root), "--split", str(tmp_path / "split.json"),
        "--out", str(tmp_path / "eval"), "--resolution", "32", "--feature-cache", str(tmp_path / "features"),
        "--no-progress", *[x for option in probe for x in ("--probe", option)]], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = {"probe": json.loads((tmp_path / "eval" / "probe" / "probe.json").read_text())}
    topup, half = report["probe"]["differences"]["topup"], report["probe"]["differences"]["half"]
    assert half["ci95"][0] > 0 and topup["ci95"][0] > 0, (half, topup)


def test_a_folder_that_cannot_be_evaluated_is_refused_in_one_line(tiny_gan, phantom_data, tmp_path):
    split_file = tiny_gan / "split.json"

    def run(folder: Path, *extra: str):
        return CliRunner().invoke(main, ["evaluate", "images", str(folder), "--data", str(phantom_data),
                                         "--split", str(split_file), "--out", str(tmp_path / "eval"),
                                         "--measures", "fid", *extra])

    (tmp_path / "empty" / "nv").mkdir(parents=True)
    result = run(tmp_path / "empty")
    assert result.exit_code == 2 and "has no images" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1

    odd = copy_part(phantom_data, split_file, "val", tmp_path / "odd", "folder")
    (odd / "melanoma").mkdir()
    result = run(odd)
    assert result.exit_code == 2 and "melanoma" in result.output and "not class names" in result.output

    (tmp_path / "nothing").mkdir()
    result = run(tmp_path / "nothing")
    assert result.exit_code == 2 and "class folders" in result.output

    leaked = copy_part(phantom_data, split_file, "test", tmp_path / "leaked", "folder")
    result = run(leaked)
    assert result.exit_code == LeakageError.exit_code and "test part" in result.output, result.output

    result = CliRunner().invoke(main, ["evaluate", "images", str(odd), "--data", str(phantom_data),
                                       "--out", str(tmp_path / "eval")])
    assert result.exit_code == 2 and "--split" in result.output
    assert not (tmp_path / "eval" / "evaluation.json").exists()
