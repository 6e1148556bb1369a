"""What both training loops share: run options, the run folder (its lock and the refusal to overwrite what is
not ours), the data set-up (index, split, cache), train images on the device, autocast, resuming a training
state, run.json (provenance, sessions), the progress bar and the stats.jsonl bookkeeping."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np
import torch
import yaml
from tqdm import tqdm

from dermsynth import distributed as dist
from dermsynth._version import __version__
from dermsynth.checkpoint import CheckpointError, error_summary, load_checkpoint
from dermsynth.config import to_plain
from dermsynth.data.cache import load_cache
from dermsynth.data.index import DatasetIndex, open_index
from dermsynth.data.splits import SPLIT_FILE, Split, load_split, make_split, save_split
from dermsynth.errors import DataError
from dermsynth.storage import (
    LOCK,
    MARKER,
    FolderError,
    FolderLock,
    atomic_write_json,
    atomic_write_text,
    check_folder,
    check_replaceable,
    clear_folder,
    is_owned,
    read_marker,
    storage_error,
    write_marker,
)


@dataclass
class RunOptions:
    """Where a run reads and writes, and how it treats an existing run folder."""

    out: Path
    """Run folder."""
    split_file: Path | None = None
    """A saved split to reuse; None draws one with the config's split settings."""
    resume: str | None = None
    """None (new run), "auto" (newest checkpoint of the run folder) or a checkpoint path."""
    overwrite: bool = False
    """Replace an existing run folder (only one that dermsynth made)."""
    progress: bool = True
    """Show a progress bar."""


# What a run writes before its first checkpoint: a folder holding only these (and no checkpoint) is a start
# that failed or was killed, and a plain rerun may start it afresh.
CONFIG_YAML = "config.yaml"
"""A run's resolved config, every option written out."""
RUN_JSON = "run.json"
"""A run's record: its settings, data, split, versions and hardware, and how it ended."""
LOSS_CURVES = "loss_curves.png"

_START_FILES = {MARKER, SPLIT_FILE, CONFIG_YAML, RUN_JSON, "stats.jsonl", "samples", LOSS_CURVES,
                "tensorboard", "checkpoints"}


def _failed_start(out: Path, kind: str, entries: set[str]) -> bool:
    # Any file in checkpoints/ (a state, or something else) means more than a failed start: keep it.
    return is_owned(out, kind) and entries <= _START_FILES and not any(out.glob("checkpoints/*"))


def open_run_folder(opts: RunOptions, kind: str) -> FolderLock:
    """Lock the run folder (``kind``: gan-run or classifier-run) and make it ready; returns the held lock.

    A new or empty folder gets dermsynth's marker. A folder with content is written only to resume it, to
    restart a start that never saved a checkpoint, or, with ``--overwrite``, after deleting its content:
    only if its marker says dermsynth made it as this kind. A folder another process is writing is refused
    with that process's PID. On failure nothing is left that was not there before.
    """
    out = opts.out
    check_folder(out, "run")
    created = not out.exists()
    if opts.resume == "auto" and (created or not any(p.name != LOCK for p in out.iterdir())):
        raise FolderError(f"--resume auto: {out} holds no run to resume")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(e, out) from None
    lock = FolderLock(out / LOCK, f"run folder {out}").acquire()
    try:
        entries = {p.name for p in out.iterdir()} - {LOCK}
        marker = read_marker(out)
        if marker is not None and marker.get("kind") != kind:
            raise FolderError(f"{out} is a dermsynth {marker.get('kind')} folder, not a {kind} folder; "
                              "choose another --out")
        if not entries:  # new or empty (also when resuming from a checkpoint elsewhere): ours from now on
            write_marker(out, kind)
        elif opts.resume:
            return lock
        elif _failed_start(out, kind, entries):
            print(f"note: {out} holds a start that never saved a checkpoint; starting it afresh", file=sys.stderr)
            clear_folder(out, kind)
            write_marker(out, kind)
        elif not opts.overwrite:
            raise FolderError(f"{out} exists and is not empty; pass --resume auto to continue it or --overwrite "
                              "to replace it")
        else:
            check_replaceable(out, kind, "run folder")
            clear_folder(out, kind)
            write_marker(out, kind)
        return lock
    except BaseException:
        if created:  # made by this call a moment ago, and locked since: nothing else is in it
            shutil.rmtree(out, ignore_errors=True)
        lock.release()
        raise


def versions() -> dict:
    return {
        "dermsynth": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
"""CPU feature flags of native bfloat16 arithmetic: AVX-512 BF16 and AMX on x86 (/proc/cpuinfo ``flags``), the
BF16 extension on Arm (``Features``)."""


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo cannot be read)."""
    line = next((line for line in _cpuinfo().splitlines() if line.startswith(("flags", "Features"))), "")
    return frozenset(line.split(":", 1)[1].split()) if ":" in line else frozenset()


def native_bf16(device: torch.device) -> bool:
    """Whether the device does bfloat16 arithmetic natively: a CUDA device that supports it, or a CPU with one of
    :data:`BF16_FLAGS`. Elsewhere torch emulates bf16 in fp32 and autocast makes a step slower, not faster."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return bool(BF16_FLAGS & cpu_flags())


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), with ``+bf16`` where it has native bfloat16 maths."""
    text = _cpuinfo()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                platform.processor() or platform.machine())
    return name + (" +bf16" if native_bf16(torch.device("cpu")) else "")


def hardware(device: torch.device) -> dict:
    info = {"device": str(device), "cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "world_size": dist.world_size(), "torch_threads": torch.get_num_threads(),
            "native_bf16": native_bf16(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def resolve_split(index: DatasetIndex, split_cfg, opts: RunOptions, parts: tuple[str, ...] = ("train",)) -> Split:
    """The split of a run: the run folder's own (on resume), the one given, or a new one.

    A run keeps one split for life: resuming with a different --split is refused.
    """
    saved = opts.out / SPLIT_FILE
    given = load_split(opts.split_file) if opts.split_file is not None else None
    if saved.is_file():
        split = load_split(saved)
        if given is not None and given.sha256() != split.sha256():
            raise DataError(f"{opts.split_file} differs from the split this run was trained on ({saved})")
    else:
        split = given or make_split(index, split_cfg.fractions, split_cfg.seed)
    for part in parts:
        split.indices(index, part, f"the split {saved if saved.is_file() else opts.split_file or 'made now'}")
    return split


def prepare_data(cfg, opts: RunOptions, parts: tuple[str, ...] = ("train",), main: bool = True,
                 barrier: Callable[[], None] | None = None,
                 say: Callable[[str], None] = lambda line: print(line, file=sys.stderr)):
    """A run's data: the index (its warnings said), the split (the run folder's, the one given, or a new one,
    saved as ``split.json`` by the main process) and the uint8 cache at the config's resolution.

    Under DDP the main process builds the cache while the others wait at ``barrier``, then they read it.
    Returns (index, split, cached).
    """
    index = open_index(cfg.data.root, cfg.data.format, hints="set", **cfg.data.checks().readers())
    for warning in index.warnings:
        say(f"warning: {warning}")
    split = resolve_split(index, cfg.split, opts, parts)

    def cache(progress: bool):
        return load_cache(index, cfg.data.resolution, cfg.data.crop, cfg.data.cache_dir, cfg.data.on_corrupt,
                          progress=progress)

    cached = None
    if main:
        if not (opts.out / SPLIT_FILE).is_file():
            save_split(split, opts.out / SPLIT_FILE, index)
        cached = cache(opts.progress)
    if barrier is not None:
        barrier()
    return index, split, cached if main else cache(False)


def resolve_amp(amp: str, device: torch.device) -> str:
    """The precision a run's forward passes use: ``bf16`` or ``none``. ``auto`` is bf16 where the device has native
    bf16 arithmetic (:func:`native_bf16`) and fp32 elsewhere, so it is never slower than fp32."""
    if amp == "auto":
        return "bf16" if native_bf16(device) else "none"
    return amp


def autocast(amp: str, device: torch.device) -> Callable[[], ContextManager]:
    """A factory of the forward passes' autocast context for ``amp`` (auto, bf16 or none; :func:`resolve_amp`)."""
    if resolve_amp(amp, device) == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def provenance(cfg, device: torch.device, index: DatasetIndex, split: Split) -> dict:
    """What every run.json records: preset, seed, command, versions, hardware, data and split hashes."""
    return {
        "preset": cfg.name,
        "seed": cfg.train.seed,
        "command": " ".join(sys.argv),
        "versions": versions(),
        "hardware": hardware(device),
        "amp": {"asked": cfg.train.amp, "used": resolve_amp(cfg.train.amp, device)},
        "data_root": str(cfg.data.root),
        "data_fingerprint": index.fingerprint(),
        "split_sha256": split.sha256(),
    }


def truncate_stats(path: Path, key: str, last: int) -> None:
    """Drop stats.jsonl lines whose ``key`` (step or epoch) is past ``last``: after resuming from an older state.
    A line cut short by a crash or a full disk goes too, so the next line appended starts on a line of its own."""
    if not path.is_file():
        return
    from dermsynth.figures import read_jsonl

    text = path.read_text(encoding="utf-8")
    rows = read_jsonl(path)
    kept = [row for row in rows if row.get(key, 0) <= last]
    if len(kept) != len(rows) or len(rows) != sum(1 for line in text.splitlines() if line.strip()) \
            or (text and not text.endswith("\n")):
        atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in kept))


def device_images(images: np.ndarray, labels: np.ndarray, batch_size: int, device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Train images as a uint8 (N, 3, R, R) tensor on the device, and their labels; refused below one batch."""
    if len(images) < batch_size:
        raise DataError(f"the train part has {len(images)} images, fewer than one batch of {batch_size}")
    tensor = torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).contiguous().to(device)
    return tensor, torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)


def resume_trainer(trainer, path: Path, expect: str, what: str, out: Path) -> None:
    """Load the training state at ``path`` into ``trainer``; one that does not fit its ``what`` (networks,
    optimisers) is a :class:`CheckpointError` naming the config of run folder ``out`` where it has one."""
    state = load_checkpoint(path, expect=expect)
    try:
        trainer.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, IndexError) as e:
        config = out / CONFIG_YAML
        where = f"; the run's own config is {config}" if config.is_file() else ""
        raise CheckpointError(f"{path}: does not fit this config's {what} ({error_summary(e)}){where}") from None


SESSION_RESULTS = ("finished", "steps", "epochs", "kimg", "elapsed_s", "stopped_early", "best_epoch",
                   "best_val_balanced_accuracy", "selection", "rank_weights_agree", "rank_checksums")
"""run.json fields a session ends with; a resumed run moves them into its entry of ``resumed``."""


def start_record(cfg, device: torch.device, index: DatasetIndex, split: Split, out: Path, resume_path: Path | None,
                 position: dict, **fields) -> dict:
    """Write config.yaml and run.json at the start of a session; returns the record. A resumed run keeps every
    field of its earlier record: the last session's outcome moves into this session's entry of ``resumed``,
    with ``position`` (step or epoch) and the options that changed."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    previous = {}
    if resume_path is not None and (out / RUN_JSON).is_file():
        try:
            previous = json.loads((out / RUN_JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = {}
    ended = {k: previous.pop(k) for k in SESSION_RESULTS if k in previous}
    record = {**previous, **provenance(cfg, device, index, split), **fields, "started": previous.get("started", now)}
    if resume_path is not None:
        session = {"from": str(resume_path), **position, "at": now, "previous_session": ended}
        changed = _changed_options(out / CONFIG_YAML, to_plain(cfg))
        if changed:
            session["changed"] = changed
        record["resumed"] = previous.get("resumed", []) + [session]
    atomic_write_text(out / CONFIG_YAML, yaml.safe_dump(to_plain(cfg), sort_keys=False))
    atomic_write_json(out / RUN_JSON, record)
    return record


def finish_record(out: Path, record: dict, **results) -> None:
    """run.json at the end of a session: the record with when it finished and the session's ``results``."""
    record.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **results)
    atomic_write_json(out / RUN_JSON, record)


def _changed_options(saved: Path, now: dict) -> dict:
    """``{"section.key": [before, now]}`` between a run's saved config.yaml and the config it resumes with."""
    try:
        before = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    changed = {}
    for section, values in now.items():
        if not isinstance(values, dict):
            continue
        old = before.get(section) if isinstance(before.get(section), dict) else {}
        for key, value in values.items():
            if key in old and old[key] != value:
                changed[f"{section}.{key}"] = [old[key], value]
    return changed


def progress_bar(total: int, done: int, desc: str, enabled: bool) -> tqdm:
    """A progress bar on stderr counted in images, starting at ``done`` (a resumed run)."""
    return tqdm(total=total, initial=min(done, total), unit="img", unit_scale=True, desc=desc, disable=not enabled,
                file=sys.stderr)


class StatsLog:
    """A run's stats.jsonl, appended one JSON line at a time and flushed (a crash loses no written line);
    ``enabled=False`` (a DDP rank other than 0) writes nothing."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        try:
            self._file = open(path, "a", encoding="utf-8") if enabled else None
        except OSError as e:
            raise storage_error(e, path) from None

    def write(self, line: dict) -> None:
        if self._file is not None:
            try:
                self._file.write(json.dumps(line) + "\n")
                self._file.flush()
            except OSError as e:  # disk full: said like every other write, with the space left
                raise storage_error(e, self.path) from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
