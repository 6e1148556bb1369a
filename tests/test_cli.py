"""The command line: help, data subcommands, and clean errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from dermsynth.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_help_lists_subcommands():
    result = run("--help")
    assert result.exit_code == 0 and "data" in result.output
    result = run("data", "--help")
    for name in ("summary", "split", "phantom", "prepare", "download"):
        assert name in result.output


def test_summary_prints_class_table(ham):
    result = run("data", "summary", ham)
    assert result.exit_code == 0
    lines = {line.split()[0]: line.split() for line in result.output.splitlines() if line.strip()}
    assert lines["nv"][-3:] == ["4", "14.3%", "2"]
    assert lines["total"][1:] == ["28", "100.0%", "14"]


def test_split_writes_file_and_refuses_to_overwrite(ham, tmp_path):
    out = tmp_path / "split.json"
    result = run("data", "split", ham, "--out", out, "--seed", "3")
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["seed"] == 3 and sum(payload["counts"].values()) == 28
    again = CliRunner().invoke(main, ["data", "split", str(ham), "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    assert run("data", "split", ham, "--out", out, "--force").exit_code == 0


def test_split_rejects_bad_fractions(ham, tmp_path):
    result = CliRunner().invoke(main, ["data", "split", str(ham), "--out", str(tmp_path / "s.json"),
                                       "--fractions", "0.5,0.5,0.5"])
    assert result.exit_code == 2 and "must sum to 1" in result.output


def test_prepare_builds_cache(ham, tmp_path):
    result = run("data", "prepare", ham, "--resolution", "32", "--cache-dir", tmp_path / "c")
    assert result.exit_code == 0, result.output
    assert "28 images at 32px" in result.output
    assert list((tmp_path / "c").glob("*/manifest.json"))


def test_presets_by_name_from_any_folder_and_the_list(tmp_path, monkeypatch):
    from dermsynth.config import PRESETS, find_preset

    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    result = run("presets")
    assert result.exit_code == 0
    listed = {line.split()[0] for line in result.output.splitlines()}
    assert listed == {p.stem for p in PRESETS.glob("*.yaml")} and {"best", "run-demo"} <= listed
    result = run("train-gan", "--config", "best", "--data", tmp_path, "--out", tmp_path / "r", "--dry-run")
    assert result.exit_code == 0 and "name: best" in result.output
    assert find_preset("demo", study=True) == PRESETS / "run-demo.yaml"
    (tmp_path / "demo").mkdir()  # `make demo` leaves ./demo/: a folder is not a config
    assert find_preset("demo", study=True) == PRESETS / "run-demo.yaml"
    assert find_preset("classifier-effnet.yaml") == PRESETS / "classifier-effnet.yaml"
    (tmp_path / "best").write_text("name: mine\n")  # a file of that name wins over the preset
    assert find_preset("best") == Path("best")
    result = CliRunner().invoke(main, ["train-gan", "--config", "bset", "--data", str(tmp_path), "--out",
                                       str(tmp_path / "r"), "--dry-run"])
    assert result.exit_code == 2 and "no preset of that name" in result.output and "best" in result.output


def test_python_m_dermsynth_is_the_command_line():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "dermsynth", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("dermsynth, version ")
