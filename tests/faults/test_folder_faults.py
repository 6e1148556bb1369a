"""Fault catalogue: folders and files. Nothing of the user's is deleted, no two runs share a folder, a full disk
leaves everything as it was, a failed start or resume leaves nothing to clean up by hand."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import dermsynth.storage
from dermsynth.cli import main
from dermsynth.config import gan_config, load_yaml
from dermsynth.generate import sample, sample_batches
from dermsynth.storage import MARKER, FolderLock
from dermsynth.training import gan_losses
from dermsynth.checkpoint import list_states, load_checkpoint, save_atomic
from dermsynth.training.gan_loop import DivergenceError, RunOptions, train_gan
from tests.conftest import TINY_GAN

REPO = Path(__file__).resolve().parents[2]


def tiny(data: Path, *extra: str):
    return gan_config(load_yaml(REPO / "configs" / "paper.yaml"), TINY_GAN + list(extra), data_root=data)


def cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback is itself the fault
    return result.exit_code, result.output


def train_cli(data: Path, out: Path, *extra: str) -> tuple[int, str]:
    """train-gan on the tiny paper preset; ``extra`` holds flags (``--resume auto``) and SECTION.KEY=VALUE sets."""
    sets = [x for s in TINY_GAN + [e for e in extra if "=" in e] for x in ("--set", s)]
    return cli("train-gan", "--config", REPO / "configs" / "paper.yaml", "--data", data, "--out", out,
               "--no-progress", *[e for e in extra if "=" not in e], *sets)


def hidden_leftovers(*folders: Path) -> list[str]:
    return sorted(str(p) for f in folders if f.exists() for p in f.rglob("*")
                  if ".tmp" in p.name or p.name.endswith(".partial") or p.name.endswith(".old"))


@pytest.fixture(scope="module")
def trained(phantom_data, tmp_path_factory) -> Path:
    """A finished tiny run (4 steps, checkpoints at steps 2 and 4); copy it before changing it."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train_gan(tiny(phantom_data, "train.total_kimg=0.032", "train.snapshot_ticks=1", "train.tick_kimg=0.016"),
              RunOptions(out=run, progress=False))
    return run


def copy_run(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


def snapshot_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- 1, 2: generate --overwrite ---------------------------------------------------------------


def test_generate_overwrite_refuses_a_data_root_that_holds_ham10000_metadata(trained, phantom_data, tmp_path):
    users = Path(shutil.copytree(phantom_data, tmp_path / "my_ham_copy"))
    (users / MARKER).unlink(missing_ok=True)  # a real data root: the user's, not dermsynth's
    (users / "notes.txt").write_text("mine")
    before = snapshot_of(users)
    code, output = cli("generate", "--checkpoint", trained / "generator.pt", "--out", users, "--per-class", 1,
                       "--overwrite")
    assert code == 2 and "not a synthetic-image export made by dermsynth" in output
    assert "refusing to delete it" in output
    assert snapshot_of(users) == before
    # Without --overwrite the message offers only what works: not --overwrite, which would be refused.
    code, output = cli("generate", "--checkpoint", trained / "generator.pt", "--out", users, "--per-class", 1)
    assert code == 2 and "--overwrite" not in output
    assert f"{users} exists and is not empty; it is not an export of `dermsynth generate`, so it is never " \
           "replaced: choose another --out" in output
    export = tmp_path / "export"
    assert cli("generate", "--checkpoint", trained / "generator.pt", "--out", export, "--per-class", 1)[0] == 0
    code, output = cli("generate", "--checkpoint", trained / "generator.pt", "--out", export, "--per-class", 1)
    assert code == 2 and f"{export} exists and is not empty; pass --overwrite to replace it" in output


def test_generate_overwrite_with_a_mistyped_checkpoint_keeps_the_old_export(trained, tmp_path):
    export = tmp_path / "export"
    assert cli("generate", "--checkpoint", trained / "generator.pt", "--out", export, "--per-class", 1)[0] == 0
    before = snapshot_of(export)
    code, output = cli("generate", "--checkpoint", trained / "generatr.pt", "--out", export, "--per-class", 2,
                       "--overwrite")
    assert code == 2 and "no such checkpoint file" in output
    assert snapshot_of(export) == before and not hidden_leftovers(tmp_path)


def test_generate_overwrite_replaces_its_own_export_only_when_the_new_one_is_complete(trained, tmp_path):
    export = tmp_path / "export"
    cli("generate", "--checkpoint", trained / "generator.pt", "--out", export, "--per-class", 1)
    assert cli("generate", "--checkpoint", trained / "generator.pt", "--out", export, "--per-class", 2,
               "--overwrite")[0] == 0
    assert len(list((export / "images").iterdir())) == 14 and (export / MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no lock, partial or old folder left


# --- 3, 4: locks and --overwrite of run folders -----------------------------------------------------


def hold_lock(path: Path) -> subprocess.Popen:
    """Another process that holds dermsynth's lock on ``path`` until killed."""
    code = ("import sys, time; from dermsynth.storage import FolderLock; "
            "FolderLock(sys.argv[1], 'x').acquire(); print('locked', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_second_writer_of_a_live_run_folder_is_refused_with_the_holders_pid(trained, phantom_data, tmp_path):
    run = copy_run(trained, tmp_path)
    before = snapshot_of(run)
    holder = hold_lock(run / dermsynth.storage.LOCK)
    try:
        for extra in (("--resume", "auto"), ("--overwrite",)):
            code, output = train_cli(phantom_data, run, *extra)
            assert code == 2 and f"run folder {run} is in use by process {holder.pid}" in output
        assert {k: v for k, v in snapshot_of(run).items() if k != dermsynth.storage.LOCK} == before
    finally:
        holder.send_signal(signal.SIGKILL)  # kill -9: the OS releases the lock with the process
        holder.wait()
    code, output = train_cli(phantom_data, run, "--resume", "auto", "train.total_kimg=0.048")
    assert code == 0, output
    assert not (run / dermsynth.storage.LOCK).exists()


def test_overwrite_refuses_a_folder_that_merely_holds_a_run_json(phantom_data, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "run.json").write_text("{}")
    (folder / "thesis.tex").write_text("precious")
    code, output = train_cli(phantom_data, folder, "--overwrite")
    assert code == 2 and "is not a run folder made by dermsynth" in output
    assert (folder / "thesis.tex").read_text() == "precious"


def test_overwrite_refuses_a_run_folder_of_another_kind(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    code, output = cli("train-classifier", "--config", REPO / "configs" / "classifier-paper.yaml", "--data",
                       tmp_path, "--out", run, "--overwrite", "--no-progress")
    assert code == 2 and "is a dermsynth gan-run folder, not a classifier-run folder" in output
    assert (run / "generator.pt").is_file()


def test_overwrite_replaces_a_dermsynth_run(trained, phantom_data, tmp_path):
    run = copy_run(trained, tmp_path)
    (run / "old-notes").write_text("old")
    assert train_cli(phantom_data, run, "--overwrite", "train.total_kimg=0.016")[0] == 0
    assert not (run / "old-notes").exists() and len(list_states(run / "checkpoints")) == 1


def test_second_generate_into_an_export_being_written_is_refused(trained, tmp_path):
    export = tmp_path / "export"
    holder = hold_lock(tmp_path / ".export.lock")
    try:
        code, output = cli("generate", "--checkpoint", trained / "generator.pt", "--out", export, "--per-class", 1)
        assert code == 2 and f"export folder {export} is in use by process {holder.pid}" in output
    finally:
        holder.kill()
        holder.wait()
    assert not export.exists()


def test_second_study_run_on_a_live_study_is_refused(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    holder = hold_lock(study / dermsynth.storage.LOCK)
    try:
        code, output = cli("run", "--config", REPO / "configs" / "run-demo.yaml", "--out", study, "--overwrite")
        assert code == 2 and f"study folder {study} is in use by process {holder.pid}" in output
    finally:
        holder.kill()
        holder.wait()


def test_overwrite_through_a_symbolic_link_is_refused(trained, tmp_path):
    export = tmp_path / "export"
    cli("generate", "--checkpoint", trained / "generator.pt", "--out", export, "--per-class", 1)
    link = tmp_path / "link"
    link.symlink_to(export)
    before = snapshot_of(export)
    code, output = cli("generate", "--checkpoint", trained / "generator.pt", "--out", link, "--per-class", 1,
                       "--overwrite")
    assert code == 2 and "is a symbolic link; refusing to delete through it" in output
    assert snapshot_of(export) == before


def test_folders_made_before_the_marker_are_resumed_but_never_replaced(trained, phantom_data, tmp_path):
    run = copy_run(trained, tmp_path)
    (run / MARKER).unlink()  # as an older dermsynth left it
    code, output = train_cli(phantom_data, run, "--overwrite")
    assert code == 2 and "it has no dermsynth marker" in output and (run / "generator.pt").is_file()
    code, output = train_cli(phantom_data, run, "--resume", "auto", "train.total_kimg=0.048")
    assert code == 0, output


def test_phantom_overwrite_needs_the_phantom_marker(tmp_path):
    from dermsynth.data.phantom import make_phantom

    data = make_phantom(tmp_path / "data", per_class=1, size=16, seed=0)
    make_phantom(data, per_class=2, size=16, seed=0, overwrite=True)  # its own: replaced
    (data / MARKER).unlink()  # the same files without the marker: a user's folder now
    code, output = cli("data", "phantom", "--out", data, "--per-class", 1, "--size", 16, "--overwrite")
    assert code == 2 and "is not phantom data made by dermsynth" in output
    assert len(list((data / "images").iterdir())) == 14


def test_a_study_never_deletes_a_sub_run_that_another_process_is_writing(tmp_path):
    from dermsynth.storage import remove_folder

    sub = tmp_path / "study" / "gan"
    sub.mkdir(parents=True)
    (sub / "split.json").write_text("{}")
    holder = hold_lock(sub / dermsynth.storage.LOCK)
    try:
        with pytest.raises(dermsynth.storage.FolderError, match=f"in use by process {holder.pid}"):
            remove_folder(sub)
        with pytest.raises(dermsynth.storage.FolderError, match=f"in use by process {holder.pid}"):
            dermsynth.storage.clear_folder(tmp_path / "study", None)
        assert (sub / "split.json").is_file()
    finally:
        holder.kill()
        holder.wait()
    remove_folder(sub)
    assert not sub.exists()


def test_lock_released_by_its_holder_is_taken_by_the_next_writer(tmp_path):
    path = tmp_path / ".x.lock"
    first = FolderLock(path, "x").acquire()
    first.release()
    assert not path.exists()
    with FolderLock(path, "x"):
        assert path.read_text().strip() == str(os.getpid())


# --- 8: failed starts -------------------------------------------------------------------------------


def test_failed_start_leaves_a_folder_that_a_plain_rerun_or_overwrite_accepts(phantom_data, tmp_path):
    data = Path(shutil.copytree(phantom_data, tmp_path / "data"))
    first = sorted((data / "images").iterdir())[0]
    first.write_bytes(first.read_bytes()[:40])  # a truncated JPEG: the cache refuses it with on_corrupt=fail
    run = tmp_path / "run"
    code, output = train_cli(data, run, "data.on_corrupt=fail", "train.total_kimg=0.016")
    assert code == 2 and "could not be decoded" in output
    assert (run / "split.json").is_file()  # the start got this far
    code, output = train_cli(data, run, "train.total_kimg=0.016")
    assert code == 0, output
    assert "never saved a checkpoint; starting it afresh" in output
    code, output = train_cli(data, run, "--overwrite", "train.total_kimg=0.016")
    assert code == 0, output


def test_resume_auto_into_a_missing_folder_creates_nothing(phantom_data, tmp_path):
    code, output = train_cli(phantom_data, tmp_path / "nothing", "--resume", "auto")
    assert code == 2 and "holds no run to resume" in output
    assert not (tmp_path / "nothing").exists()


# --- 6: full disk ---------------------------------------------------------------------------------------


@pytest.fixture
def disk_full(monkeypatch):
    """``disk_full(pattern)``: every atomic write whose file name contains ``pattern`` fails as on a full disk,
    after its temporary file has been written."""

    def install(pattern: str) -> None:
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            if pattern in Path(dst).name:
                raise OSError(errno.ENOSPC, "No space left on device", str(src))
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(dermsynth.storage.os, "replace", replace)

    return install


def test_full_disk_on_a_checkpoint_ends_in_one_line_and_leaves_no_temp_file(trained, phantom_data, tmp_path,
                                                                            disk_full):
    run = copy_run(trained, tmp_path)
    before = snapshot_of(run / "checkpoints")
    disk_full("state-")
    code, output = train_cli(phantom_data, run, "--resume", "auto", "train.total_kimg=0.064")
    assert code == 2
    line = output.strip().splitlines()[-1]
    assert line.startswith(f"error: cannot write {run / 'checkpoints'}/state-000000") and "No space left" in line
    assert "MB free, about" in line and "MB needed" in line
    assert snapshot_of(run / "checkpoints") == before and not hidden_leftovers(run)


def test_full_disk_while_caching_leaves_no_temp_array(phantom_data, tmp_path, disk_full):
    disk_full("images-")
    cache = tmp_path / "cache"
    code, output = cli("data", "prepare", phantom_data, "--resolution", 32, "--cache-dir", cache)
    assert code == 2 and "cannot write" in output and "No space left on device" in output
    assert not hidden_leftovers(cache)


def test_full_disk_on_split_json_leaves_no_temp_file(phantom_data, tmp_path, disk_full):
    disk_full("split.json")
    run = tmp_path / "run"
    code, output = train_cli(phantom_data, run, "train.total_kimg=0.016")
    assert code == 2 and f"cannot write {run / 'split.json'}: No space left on device" in output
    assert not hidden_leftovers(run)


def test_full_disk_during_generate_keeps_the_old_export_and_leaves_no_partial_folder(trained, tmp_path,
                                                                                     monkeypatch):
    export = tmp_path / "export"
    cli("generate", "--checkpoint", trained / "generator.pt", "--out", export, "--per-class", 1)
    before = snapshot_of(export)
    calls = {"n": 0}
    real_save = Image.Image.save

    def save(self, fp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    code, output = cli("generate", "--checkpoint", trained / "generator.pt", "--out", export, "--per-class", 3,
                       "--overwrite")
    assert code == 2 and f"cannot write {export}: No space left on device" in output
    assert snapshot_of(export) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_save_atomic_failure_keeps_the_old_file(tmp_path, disk_full):
    path = save_atomic({"format": "x", "w": torch.zeros(3)}, tmp_path / "state-00000001.pt")
    old = path.read_bytes()
    disk_full("state-")
    with pytest.raises(OSError, match="No space left"):
        save_atomic({"format": "x", "w": torch.ones(3)}, path)
    assert path.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


# --- 7: divergence and failed resumes ------------------------------------------------------------------


def test_huge_loss_stops_the_run_naming_the_step_and_the_real_checkpoint(trained, phantom_data, tmp_path,
                                                                         monkeypatch):
    run = copy_run(trained, tmp_path)
    real_d_loss = gan_losses.d_loss
    monkeypatch.setattr(gan_losses, "d_loss", lambda *a: real_d_loss(*a) + 1e9)
    code, output = train_cli(phantom_data, run, "--resume", "auto", "train.total_kimg=0.064")
    assert code == 3
    assert ("the discriminator loss became 1e+09, beyond the bound 1e+06 (train.divergence_max_loss) at step 5 "
            "(0.0 kimg); weights were not updated with it") in output
    assert f"the last good checkpoint is {run / 'checkpoints' / 'state-00000004.pt'}" in output


def test_generator_gradient_stuck_at_zero_stops_the_run(phantom_data, tmp_path, monkeypatch):
    monkeypatch.setattr(gan_losses, "g_loss", lambda kind, logits: logits.sum() * 0.0)
    run = tmp_path / "run"
    with pytest.raises(DivergenceError, match=r"gradient was exactly 0 for 3 steps in a row \(steps 1-3\)"):
        train_gan(tiny(phantom_data, "train.total_kimg=0.2", "train.divergence_zero_grad_steps=3"),
                  RunOptions(out=run, progress=False))
    code, output = train_cli(phantom_data, tmp_path / "run2", "train.total_kimg=0.2",
                             "train.divergence_zero_grad_steps=3")
    assert code == 3 and "no checkpoint had been saved yet" in output and "checkpoints" not in output


def test_failed_resume_rewrites_neither_config_nor_run_record(trained, phantom_data, tmp_path):
    run = copy_run(trained, tmp_path)
    config, record = (run / "config.yaml").read_bytes(), (run / "run.json").read_bytes()
    code, output = train_cli(phantom_data, run, "--resume", "auto", "generator.base_channels=16")
    assert code == 2 and "does not fit this config's networks or optimisers" in output
    assert (run / "config.yaml").read_bytes() == config and (run / "run.json").read_bytes() == record


def test_resume_keeps_the_earlier_sessions_record(trained, phantom_data, tmp_path):
    run = copy_run(trained, tmp_path)
    earlier = json.loads((run / "run.json").read_text())
    assert train_cli(phantom_data, run, "--resume", "auto", "train.snapshot_ticks=1", "train.tick_kimg=0.016",
                     "train.total_kimg=0.048")[0] == 0
    record = json.loads((run / "run.json").read_text())
    session = record["resumed"][-1]
    assert session["previous_session"]["steps"] == earlier["steps"] == 4
    assert session["changed"] == {"train.total_kimg": [0.032, 0.048]}
    assert record["steps"] == 6 and record["started"] == earlier["started"]


# --- 9: tracebacks instead of messages -------------------------------------------------------------------


def test_generate_with_a_snapshot_whose_weights_do_not_fit_its_config_is_named(trained, tmp_path):
    snap = load_checkpoint(trained / "generator.pt")
    snap["generator_config"]["base_channels"] = 64
    save_atomic(snap, tmp_path / "odd.pt")
    code, output = cli("generate", "--checkpoint", tmp_path / "odd.pt", "--out", tmp_path / "x")
    assert code == 2 and "its generator weights do not fit its generator config" in output


def test_generate_out_naming_an_existing_file_is_named(trained, tmp_path):
    (tmp_path / "file.png").write_bytes(b"x")
    code, output = cli("generate", "--checkpoint", trained / "generator.pt", "--out", tmp_path / "file.png")
    assert code == 2 and "is a file, not a folder" in output


def test_generate_classes_naming_no_class_is_named(trained, tmp_path):
    code, output = cli("generate", "--checkpoint", trained / "generator.pt", "--out", tmp_path / "x",
                       "--classes", ",")
    assert code == 2 and "--classes ',' names no class" in output


def test_generate_per_class_beyond_the_limit_is_refused_before_any_work(trained, tmp_path):
    code, output = cli("generate", "--checkpoint", trained / "generator.pt", "--out", tmp_path / "x",
                       "--per-class", 1_000_000_000)
    assert code == 2 and "--per-class must be between 1 and 100,000" in output and "--max-per-class" in output
    assert not (tmp_path / "x").exists()


def test_seed_beyond_the_limit_is_a_usage_error(trained, tmp_path):
    code, output = cli("generate", "--checkpoint", trained / "generator.pt", "--out", tmp_path / "x",
                       "--seed", 2**70)
    assert code == 2 and "--seed" in output and "4294967295" in output


def test_generation_draws_noise_per_batch_with_the_same_numbers():
    class NoiseAsImage(torch.nn.Module):
        """A stand-in generator whose images are its noise: what sample_batches feeds it, seen exactly."""

        cfg = type("cfg", (), {"z_dim": 100})

        def forward(self, z, labels):
            return z[:, :48].reshape(-1, 3, 4, 4).tanh()

    n, label, seed = 70, 3, 5
    parts = list(sample_batches(NoiseAsImage(), label, n, seed, batch=32))
    assert [len(p) for p in parts] == [32, 32, 6]  # memory bounded by the batch, not by n
    z = torch.randn(n, 100, generator=torch.Generator().manual_seed(seed * 1000 + label))  # all at once
    expected = ((z[:, :48].reshape(-1, 3, 4, 4).tanh() + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
    assert np.array_equal(np.concatenate(parts), expected.numpy())
    assert np.array_equal(sample(NoiseAsImage(), label, n, seed), expected.numpy())
