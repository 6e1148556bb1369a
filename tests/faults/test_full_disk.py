"""A real full disk (a small tmpfs; root only): training fails with one line naming the file and the space left,
leaves no temporary file, keeps the last good checkpoint, and resumes once there is room."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dermsynth.checkpoint import list_states
from dermsynth.cli import main
from tests.conftest import TINY_CLASSIFIER, TINY_GAN

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0,
                                reason="mounts a tmpfs: Linux, as root")


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(kib)``: a tmpfs of that size, unmounted afterwards (its files copied out first)."""
    mounts = []

    def make(kib: int) -> Path:
        point = tmp_path / f"disk{len(mounts)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounts.append(point)
        return point

    yield make
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def hidden(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*") if p.is_file() and ".tmp" in p.name]


@pytest.mark.parametrize("kind, preset, tiny", [("gan", "best", TINY_GAN), ("classifier", "classifier-paper",
                                                                             TINY_CLASSIFIER)])
def test_a_full_disk_is_one_line_keeps_the_last_checkpoint_and_resumes(phantom_data, tmp_path, small_disk, kind,
                                                                       preset, tiny):
    command = "train-gan" if kind == "gan" else "train-classifier"
    length = ["train.total_kimg=0.032"] if kind == "gan" else ["train.epochs=1"]
    longer = ["train.total_kimg=0.064"] if kind == "gan" else ["train.epochs=2"]
    sets = lambda extra: [x for s in tiny + [f"data.cache_dir={tmp_path / 'cache'}"] + extra  # noqa: E731
                          for x in ("--set", s)]
    first = tmp_path / "first"
    code, output = cli(command, "--config", preset, "--data", phantom_data, "--out", first, "--no-progress",
                       *sets(length))
    assert code == 0, output
    used = sum(p.stat().st_size for p in first.rglob("*") if p.is_file())
    state = max(p.stat().st_size for p in list_states(first / "checkpoints"))
    # The run on a disk with its files and half a checkpoint to spare: the next checkpoint cannot be written.
    disk = small_disk((used + state // 2) // 1024 + 64)
    run = disk / "run"
    shutil.copytree(first, run)
    states = sorted(p.name for p in list_states(run / "checkpoints"))
    code, output = cli(command, "--config", preset, "--data", phantom_data, "--out", run, "--no-progress",
                       "--resume", "auto", *sets(longer))
    assert code == 2, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    line = errors[0]
    assert line.startswith(f"error: cannot write {run}/checkpoints/state-0000000") and "No space left on device" in line
    assert "MB free, about" in line and "MB needed" in line
    assert "Traceback" not in output
    assert sorted(p.name for p in list_states(run / "checkpoints")) == states and not hidden(run)
    # Room again (the folder moved to a disk with space): the run resumes from its last good checkpoint.
    roomy = tmp_path / "roomy"
    shutil.copytree(run, roomy)
    code, output = cli(command, "--config", preset, "--data", phantom_data, "--out", roomy, "--no-progress",
                       "--resume", "auto", *sets(longer))
    assert code == 0 and "resumed from" in output, output


def test_evaluate_on_a_full_disk_is_one_line_and_leaves_no_temporary_file(tiny_judge, phantom_data, small_disk):
    disk = small_disk(64)
    (disk / "filler").write_bytes(b"\0" * (shutil.disk_usage(disk).free - 4096))  # one page left
    out = disk / "eval"
    code, output = cli("evaluate-classifier", "--checkpoint", tiny_judge / "classifier.pt", "--data", phantom_data,
                       "--out", out, "--no-progress")
    assert code == 2, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot write {out}/") and "No space left" in errors[0]
    assert "MB free" in errors[0] and "Traceback" not in output
    assert not hidden(disk)


def test_a_stats_line_cut_short_is_dropped_on_resume_so_the_next_line_is_whole(tmp_path):
    import json

    from dermsynth.figures import read_jsonl
    from dermsynth.training.runs import truncate_stats

    stats = tmp_path / "stats.jsonl"
    stats.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "loss')  # the disk filled during the third line
    truncate_stats(stats, "step", last=5)  # nothing is past the resumed step: only the cut line goes
    with stats.open("a") as f:
        f.write(json.dumps({"step": 3}) + "\n")
    assert read_jsonl(stats) == [{"step": 1}, {"step": 2}, {"step": 3}]


def test_a_full_disk_under_torchrun_stops_every_rank_with_one_line_each(phantom_data, tmp_path, small_disk):
    sets = lambda kimg: [x for s in TINY_GAN + [f"data.cache_dir={tmp_path / 'cache'}",  # noqa: E731
                                                 f"train.total_kimg={kimg}"] for x in ("--set", s)]

    def torchrun(out: Path, *extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "dermsynth.cli", "train-gan", "--config", "best", "--data", str(phantom_data), "--out", str(out),
               "--no-progress", *extra]
        # A rank left waiting for rank 0 would hang here until the timeout: the test would fail, not pass.
        return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                              timeout=240)

    first = tmp_path / "first"
    done = torchrun(first, *sets(0.032))
    assert done.returncode == 0, done.stderr[-3000:]
    used = sum(p.stat().st_size for p in first.rglob("*") if p.is_file())
    state = max(p.stat().st_size for p in list_states(first / "checkpoints"))
    run = small_disk((used + state // 2) // 1024 + 64) / "run"
    shutil.copytree(first, run)
    done = torchrun(run, "--resume", "auto", *sets(0.064))
    output = done.stdout + done.stderr
    assert done.returncode != 0
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, output[-3000:]
    assert sum(line.startswith(f"error: cannot write {run}/checkpoints/state-") for line in errors) == 1
    assert sum("rank 1: stopping because the main process could not write" in line for line in errors) == 1
    assert hidden(run) == [] and sorted(p.name for p in list_states(run / "checkpoints")) == \
        sorted(p.name for p in list_states(first / "checkpoints"))
