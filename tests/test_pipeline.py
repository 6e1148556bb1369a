"""`dermsynth run`: every stage on tiny phantom data, skipping, resuming, and the HTML report in Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dermsynth.cli import main
from dermsynth.study.pipeline import STAGES, run_study

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def tiny_study(tmp: Path, **changes) -> Path:
    study = {
        "name": "tiny test study",
        "phantom": {"per_class": 12, "size": 48, "seed": 0},
        "gan": {"preset": str(REPO / "configs/data-efficient.yaml"),
                "set": ["data.resolution=32", "generator.base_channels=8", "generator.max_channels=32",
                        "discriminator.base_channels=8", "discriminator.max_channels=32", "train.batch_size=8",
                        "train.total_kimg=0.032", "train.tick_kimg=0.016", "train.grid_columns=2"]},
        "judge": {"preset": str(REPO / "configs/classifier-tiny.yaml"), "set": ["train.epochs=1"]},
        "generate": {"per_class": 2, "seed": 0},
        "detection": {"per_class": 4, "seed": 0},
        "metrics": {"measures": ["fid", "kid", "prdc", "memorisation"], "spaces": ["judge"]},  # Inception: elsewhere
        "probe": {"seeds": 2, "iterations": 20, "bootstrap": 100, "feature_resolution": 32, "topup_to": 12,
                  "synthetic_per_class": 6},
        "utility": {"preset": str(REPO / "configs/classifier-tiny.yaml"), "set": ["train.epochs=1"], "seeds": [0],
                    "topup_to": 12, "synthetic_per_class": 6},
    }
    for key, value in changes.items():
        study[key] = {**study.get(key, {}), **value}
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("study")
    run_study(tiny_study(tmp), tmp / "run", progress=False)
    return tmp


def test_every_stage_runs_and_leaves_its_outputs(study):
    run = study / "run"
    for stage in STAGES:
        assert json.loads((run / "stages" / f"{stage}.json").read_text())["key"], stage
    for path in ("report.html", "provenance.json", "split.json", "gan/generator.pt", "judge/classifier.pt",
                 "synthetic/grid.png", "eval/table3/table3.json", "eval/evaluation.json",
                 "eval/utility/utility.json", "phantom-data/HAM10000_metadata.csv"):
        assert (run / path).exists(), path
    prov = json.loads((run / "provenance.json").read_text())
    assert set(prov["stage_seconds"]) == set(STAGES) and prov["versions"]["torch"]
    # One split hash, named one way: the hash of the parts, as split.json and the trained runs record it.
    split_hash = json.loads((run / "split.json").read_text())["sha256"]
    assert prov["split_sha256"] == split_hash == json.loads((run / "gan" / "run.json").read_text())["split_sha256"]


def test_unchanged_stages_are_skipped_and_a_change_reruns_only_what_depends_on_it(study, capsys):
    run = study / "run"
    run_study(tiny_study(study), run, progress=False)
    out = capsys.readouterr().out
    assert out.count("up to date, skipped") == len(STAGES)
    gan_stamp = (run / "gan" / "generator.pt").stat().st_mtime_ns
    run_study(tiny_study(study, detection={"per_class": 3}), run, progress=False)
    out = capsys.readouterr().out
    assert "[detection] running" in out and "[report] running" in out and "[gan] up to date" in out
    assert (run / "gan" / "generator.pt").stat().st_mtime_ns == gan_stamp
    assert json.loads((run / "eval" / "table3" / "table3.json").read_text())["rows"][0]["images"] == 3


def test_a_study_on_copied_data_is_up_to_date_and_a_changed_image_reruns_it(study, tmp_path, capsys):
    import os

    config = tiny_study(study)
    shutil.copytree(study / "run" / "phantom-data", tmp_path / "data")
    run_study(config, tmp_path / "run", tmp_path / "data", progress=False)
    # Another machine: the same bytes at another path, with other modification times.
    shutil.copytree(tmp_path / "data", tmp_path / "copied")
    first = min((tmp_path / "copied" / "images").iterdir())
    os.utime(first, ns=(1, 1))
    capsys.readouterr()
    run_study(config, tmp_path / "run", tmp_path / "copied", progress=False)
    assert capsys.readouterr().out.count("up to date, skipped") == len(STAGES)
    first.write_bytes(first.read_bytes()[:-1] + b"\0")
    run_study(config, tmp_path / "run", tmp_path / "copied", stages=("prepare",), progress=False)
    assert "[prepare] running" in capsys.readouterr().out


def test_renaming_a_study_rewrites_only_its_report(study, tmp_path, capsys):
    config = yaml.safe_load(tiny_study(study).read_text())
    config["name"] = "renamed study"
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(yaml.safe_dump(config))
    run_study(tiny_study(study), study / "run", progress=False)  # whatever earlier tests changed, settled
    capsys.readouterr()
    try:
        run_study(renamed, study / "run", progress=False)
        out = capsys.readouterr().out
        assert out.count("up to date, skipped") == len(STAGES) - 1 and "[report] running" in out
        assert "<h1>dermsynth report: renamed study" in (study / "run" / "report.html").read_text()
    finally:
        run_study(tiny_study(study), study / "run", progress=False)  # back to the name the other tests expect


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs: root only")
def test_a_full_disk_under_the_report_is_one_line_and_keeps_the_old_report(study, tmp_path):
    config = yaml.safe_load(tiny_study(study).read_text())
    config["name"] = "renamed study"  # reruns the report stage only
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(yaml.safe_dump(config))
    used = sum(p.stat().st_size + 4096 for p in (study / "run").rglob("*") if p.is_file())  # tmpfs: 4 KiB pages
    disk = tmp_path / "disk"
    disk.mkdir()
    report = (study / "run" / "report.html").stat().st_size
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={used // 1024 + 1024}k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        run = disk / "run"
        shutil.copytree(study / "run", run)
        # Fill the disk to half a report short of room (what else the rerun writes is small and fits).
        (disk / "filler").write_bytes(b"\0" * max(0, shutil.disk_usage(disk).free - report // 2))
        before = (run / "report.html").read_bytes()
        result = CliRunner().invoke(main, ["run", "--config", str(renamed), "--out", str(run)])
        assert result.exit_code == 2, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(f"error: cannot write {run / 'report.html'}: No space left "
                                                         "on device (") and "MB free" in errors[0]
        assert (run / "report.html").read_bytes() == before
        assert not [p.name for p in run.rglob(".*.tmp*")]
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_an_interrupted_training_stage_resumes(study, capsys):
    run = study / "run"
    (run / "stages" / "judge.json").unlink()  # as if the process died before the stage finished
    run_study(tiny_study(study, detection={"per_class": 3}), run, stages=("judge",), progress=False)
    out = capsys.readouterr().out
    assert "[judge] running" in out and "resumed from" in out
    assert (run / "judge" / "classifier.pt").is_file() and (run / "stages" / "judge.json").is_file()


def test_a_larger_time_cap_trains_the_gan_on_and_a_smaller_one_trains_it_afresh(study, tmp_path, capsys):
    shutil.copytree(study / "run", tmp_path / "run")
    run = tmp_path / "run"
    gan = yaml.safe_load(tiny_study(study).read_text())["gan"]

    def with_cap(minutes: float) -> str:
        capsys.readouterr()
        run_study(tiny_study(tmp_path, gan={"set": [*gan["set"], f"train.max_minutes={minutes}"]}), run,
                  stages=("gan",), progress=False)
        return capsys.readouterr().out

    assert "resumed from" not in with_cap(30)  # a cap where there was none: the run may have trained past it
    out = with_cap(600)
    assert "[gan] running" in out and "resumed from" in out  # a larger cap, the same recipe: continued
    record = json.loads((run / "gan" / "run.json").read_text())
    assert record["resumed"][-1]["changed"]["train.max_minutes"] == [30, 600]
    assert "resumed from" not in with_cap(20)  # a smaller cap: trained afresh, so it never ran past it


def test_a_feature_judge_of_its_own_gives_the_judge_space_and_reruns_only_the_metrics(study, tmp_path, capsys):
    config = tiny_study(study)
    shutil.copytree(study / "run", tmp_path / "run")
    run = tmp_path / "run"
    own = {"preset": str(REPO / "configs/classifier-tiny.yaml"), "set": ["train.epochs=1", "train.seed=1"]}
    capsys.readouterr()
    run_study(tiny_study(tmp_path, feature_judge=own), run, progress=False)
    out = capsys.readouterr().out
    assert "[feature_judge] running" in out and "[metrics] running" in out
    for stage in ("gan", "judge", "detection", "utility"):
        assert f"[{stage}] up to date" in out, stage
    assert (run / "feature-judge" / "classifier.pt").is_file()
    evaluation = json.loads((run / "eval" / "evaluation.json").read_text())
    assert evaluation["judge"] == str(run / "feature-judge" / "classifier.pt")
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["feature_judge_config"]["train"]["seed"] == 1
    assert "a classifier of their own" in (run / "report.html").read_text()
    # Back to the judge's own features: no second network; the metrics use the judge again.
    run_study(config, run, progress=False)
    out = capsys.readouterr().out
    assert "[metrics] running" in out and "[judge] up to date" in out
    assert json.loads((run / "eval" / "evaluation.json").read_text())["judge"] == str(run / "judge" / "classifier.pt")


def test_imagenet_features_are_refused_as_the_judge_space_of_a_projected_gan(tmp_path):
    from dermsynth.config import ConfigError
    from dermsynth.study.pipeline import STAGE, Study

    projected = {"preset": str(REPO / "configs/projected.yaml"), "set": []}
    effnet = {"preset": str(REPO / "configs/classifier-effnet.yaml"), "set": []}
    with pytest.raises(ConfigError, match="judge-space FID would not be independent"):
        Study(tiny_study(tmp_path, gan=projected, judge=effnet), tmp_path / "run")
    paper = {"preset": str(REPO / "configs/classifier-paper.yaml"), "set": []}
    Study(tiny_study(tmp_path, gan=projected, judge=effnet, feature_judge=paper), tmp_path / "run")  # accepted
    # The metrics are checked too: a typo is named, not silently skipped; Table III and utility are stages.
    for measures, bad in ((["fid", "fdi"], "[1]"), (["utility"], "[0]")):
        with pytest.raises(ConfigError, match=re.escape(f"metrics.measures{bad}: expected one of fid, kid, prdc")):
            Study(tiny_study(tmp_path, metrics={"measures": measures}), tmp_path / "run")
    with pytest.raises(ConfigError, match=r"metrics.spaces\[0\]: expected one of inception, judge"):
        Study(tiny_study(tmp_path, metrics={"spaces": ["clip"]}), tmp_path / "run")
    # The utility section's arms are checked with the presets, before anything trains.
    with pytest.raises(ConfigError, match=r"utility.arms\[1\]: expected one of real, .*, got 'mixup'"):
        Study(tiny_study(tmp_path, utility={"arms": ["real", "mixup"]}), tmp_path / "run")
    study = Study(tiny_study(tmp_path, utility={"arms": ["balanced", "filter"], "real_fraction": 0.75}),
                  tmp_path / "run")
    assert study.utility.arms == ("real", "balanced", "filter") and study.utility.real_fraction == 0.75
    assert STAGE["utility"].inputs(study) == ("gan", "judge")  # the filter arm's images depend on the judge
    # The shipped HAM10000 study: the effnet judge for Table III, the paper CNN for the judge space.
    shipped = yaml.safe_load((REPO / "configs/run-ham10000.yaml").read_text())
    assert shipped["judge"]["preset"] == "classifier-effnet.yaml"
    assert shipped["feature_judge"]["preset"] == "classifier-paper.yaml"


def test_run_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    result = CliRunner().invoke(main, ["run", "--config", str(tiny_study(tmp_path)), "--out", str(tmp_path / "mine"),
                                       "--stages", "prepare"])
    assert result.exit_code == 2 and "not a dermsynth study folder" in result.output
    bad = CliRunner().invoke(main, ["run", "--config", str(tiny_study(tmp_path)), "--out", str(tmp_path / "x"),
                                    "--stages", "prepare,fit"])
    assert bad.exit_code == 2 and "unknown stage" in bad.output


def test_report_has_every_table_and_figure(study):
    page = (study / "run" / "report.html").read_text()
    for element in ('id="class-table"', 'id="split-table"', 'id="loss-curves"', 'id="sample-grid"', 'id="table3"',
                    'id="metrics-judge"', 'id="probe"', 'id="utility"', 'id="utility-figure"', 'id="timings"',
                    "not medical data", "data:image/png;base64,"):
        assert element in page, element
    assert "src=\"http" not in page and "<script" not in page  # self-contained, offline


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's chromium)")
def test_report_renders_in_headless_chromium(study, tmp_path):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}"]
    url = (study / "run" / "report.html").resolve().as_uri()
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for element in ('id="table3"', 'id="class-table"', 'id="metrics-judge"', 'id="utility"', "<img"):
        assert element in dom.stdout, element
    shot = tmp_path / "report.png"
    done = subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,2400", url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.stat().st_size > 20_000


def test_a_gan_trained_outside_the_study_with_its_config_is_adopted(study, tmp_path, capsys):
    from dermsynth.study.pipeline import Study
    from dermsynth.training.gan_loop import RunOptions, train_gan

    config = tiny_study(study)
    run = tmp_path / "run"
    s = Study(config, run, progress=False)
    s.run(stages=("prepare", "split"))
    # As a user would with torchrun: train the study's GAN config into the study's gan/ folder.
    train_gan(s.gan_cfg, RunOptions(out=run / "gan", split_file=run / "split.json", progress=False))
    stamp = (run / "gan" / "generator.pt").stat().st_mtime_ns
    capsys.readouterr()
    run_study(config, run, stages=("prepare", "split", "gan"), progress=False)
    assert "resumed from" in capsys.readouterr().out
    info = json.loads((run / "gan" / "run.json").read_text())
    assert info["steps"] == 4 and len(info["resumed"]) == 1
    assert (run / "gan" / "generator.pt").stat().st_mtime_ns >= stamp
    # One trained with other settings is the user's: refused in one line, never deleted.
    other = tmp_path / "other"
    Study(config, other, progress=False).run(stages=("prepare", "split"))
    changed = s.gan_cfg.model_copy(update={"train": s.gan_cfg.train.model_copy(update={"seed": 7})})
    train_gan(changed, RunOptions(out=other / "gan", split_file=other / "split.json", progress=False))
    result = CliRunner().invoke(main, ["run", "--config", str(config), "--out", str(other), "--stages", "gan"])
    assert result.exit_code == 2 and "holds a run the study did not start" in result.output
    assert (other / "gan" / "generator.pt").is_file()


def test_a_study_with_the_projected_preset_runs_to_its_report(tmp_path):
    gan = {"preset": str(REPO / "configs/projected.yaml"),
           "set": ["data.resolution=32", "generator.base_channels=8", "generator.max_channels=32",
                   "generator.z_dim=16", "generator.embed_dim=8", "discriminator.base_channels=8",
                   "discriminator.head_channels=16", "discriminator.cmap_dim=8", "train.batch_size=8",
                   "train.total_kimg=0.032", "train.tick_kimg=0.016", "train.grid_columns=2"]}
    run_study(tiny_study(tmp_path, gan=gan), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert (run / "report.html").is_file() and (run / "eval/table3/table3.json").is_file()
    config = yaml.safe_load((run / "gan" / "config.yaml").read_text())
    assert (config["generator"]["arch"], config["discriminator"]["arch"]) == ("fastgan", "projected")


def test_what_decides_a_run_is_every_option_but_where_things_live_and_the_guard_s_bounds():
    from dermsynth.config import gan_config, load_yaml
    from dermsynth.config import result_settings as _settings

    cfg = gan_config(load_yaml(REPO / "configs" / "paper.yaml"))
    bounds = gan_config(load_yaml(REPO / "configs" / "paper.yaml"), ["train.divergence_max_loss=10"])
    assert _settings(bounds) == _settings(cfg)  # the guard's bounds change nothing a finished run computed
    moved = gan_config(load_yaml(REPO / "configs" / "paper.yaml"), data_root="/elsewhere")
    assert _settings(moved) == _settings(cfg)
    # an option at its default value counts as any other: no value is left out of the key
    assert _settings(cfg)["generator"]["arch"] == "dcgan" and _settings(cfg)["loss"]["mode_seeking"] == 0.0
    assert _settings(gan_config(load_yaml(REPO / "configs" / "paper.yaml"), ["loss.mode_seeking=1"])) != _settings(cfg)


def test_a_study_of_an_earlier_folder_format_is_refused_unless_overwritten_and_one_without_a_marker_always(tmp_path):
    from dermsynth.storage import MARKER

    def run(out: Path, *extra: str):
        return CliRunner().invoke(main, ["run", "--config", str(tiny_study(tmp_path)), "--out", str(out),
                                         "--stages", "prepare", *extra])

    old = tmp_path / "old"
    (old / "stages").mkdir(parents=True)
    (old / "stages" / "gan.json").write_text('{"key": "0"}')
    (old / MARKER).write_text(json.dumps({"format": "dermsynth-folder/1", "kind": "study"}))
    result = run(old)
    assert result.exit_code == 2 and "earlier dermsynth (dermsynth-folder/1)" in result.output
    assert (old / "stages" / "gan.json").is_file()  # nothing deleted without --overwrite
    assert run(old, "--overwrite").exit_code == 0
    assert json.loads((old / MARKER).read_text())["format"] == "dermsynth-folder/2"
    assert not (old / "stages" / "gan.json").exists()
    # a newer dermsynth's study is not this version's to continue or replace
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / MARKER).write_text(json.dumps({"format": "dermsynth-folder/3", "kind": "study"}))
    for extra in ((), ("--overwrite",)):
        result = run(newer, *extra)
        assert result.exit_code == 2 and "not a dermsynth study folder" in result.output
    assert (newer / MARKER).is_file()
    # stages/ without a marker: some folder of the user's, never continued nor replaced
    (tmp_path / "bare" / "stages").mkdir(parents=True)
    for extra in ((), ("--overwrite",)):
        result = run(tmp_path / "bare", *extra)
        assert result.exit_code == 2 and "not a dermsynth study folder" in result.output
    assert (tmp_path / "bare" / "stages").is_dir()
