"""Checkpoints: full training states for resume and small inference snapshots.

Both are plain dicts of tensors, numbers, strings, lists and dicts, written
atomically (temporary file, flush, fsync, rename) and read with
``torch.load(weights_only=True)``, which never unpickles arbitrary objects.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from dermsynth.errors import CheckpointError
from dermsynth.storage import atomic_write

STATE_FORMAT = "dermsynth-gan-state/1"
SNAPSHOT_FORMAT = "dermsynth-generator/1"
CLASSIFIER_STATE_FORMAT = "dermsynth-classifier-state/1"
CLASSIFIER_FORMAT = "dermsynth-classifier/1"
FORMATS = (STATE_FORMAT, SNAPSHOT_FORMAT, CLASSIFIER_STATE_FORMAT, CLASSIFIER_FORMAT)


def save_atomic(obj: dict[str, Any], path: str | Path) -> Path:
    """Write a checkpoint atomically; on a full disk the old file stays and no temporary file is left.

    Serialised in memory first: torch's zip writer reports a failed write to a file as a RuntimeError about file
    positions, where a plain write raises the operating system's error (disk full, with how much is free)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, lambda f: f.write(buffer.getbuffer()), needed_bytes=buffer.tell())


def load_checkpoint(path: str | Path, expect: str | tuple[str, ...] | None = None) -> dict[str, Any]:
    """Load a dermsynth checkpoint safely; ``expect`` is the format (or formats) required."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise CheckpointError(f"{path}: cannot be read as a dermsynth checkpoint (damaged: "
                                  f"{error_summary(e, 160)})") from None
        # torch's own message goes on to suggest loading it unsafely: never repeated to the user.
        raise CheckpointError(
            f"{path}: refused: it holds Python objects that only unpickling could rebuild, and unpickling can run "
            "any code the file carries. dermsynth reads checkpoints as tensors, numbers and text only, and every "
            "file it writes is of that kind: this one was not written by dermsynth, or was altered since") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: cannot be read as a dermsynth checkpoint (truncated, or not a safe torch file: {first})"
        ) from None
    fmt = obj.get("format") if isinstance(obj, dict) else None
    if fmt not in FORMATS:
        raise CheckpointError(f"{path}: not a dermsynth checkpoint (format {fmt!r})")
    wanted = (expect,) if isinstance(expect, str) else expect
    if wanted and fmt not in wanted:
        raise CheckpointError(f"{path}: is a {fmt!r} file, expected {' or '.join(wanted)}")
    return obj


def error_summary(error: BaseException, limit: int = 240) -> str:
    """The first two lines of an exception's message, for a one-line error (load_state_dict's are long)."""
    return " ".join(line.strip() for line in str(error).strip().splitlines()[:2])[:limit]


def state_path(folder: Path, step: int) -> Path:
    return folder / f"state-{step:08d}.pt"


def list_states(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if re.fullmatch(r"state-\d{8}\.pt", p.name))


def find_resume(run_dir: Path, resume: str) -> Path:
    """``auto``: the newest state in ``run_dir/checkpoints``; else the given path."""
    if resume != "auto":
        return Path(resume)
    states = list_states(run_dir / "checkpoints")
    if not states:
        raise CheckpointError(f"--resume auto: no checkpoints in {run_dir / 'checkpoints'}")
    return states[-1]


def prune_states(folder: Path, keep: int) -> None:
    for old in list_states(folder)[:-keep]:
        old.unlink(missing_ok=True)


def save_state(state: dict[str, Any], folder: Path, step: int, keep: int) -> Path:
    """Write a full training state as ``folder/state-<step>.pt`` (atomically), keeping the newest ``keep``."""
    path = save_atomic(state, state_path(folder, step))
    prune_states(folder, keep)
    return path


@contextmanager
def seeded(seed: int):
    """Run a block with torch's global RNGs (CPU and every CUDA device) seeded, then restore them.

    Generators with per-pixel noise (fastgan) draw it from the global RNG: seeding it makes their images a
    function of the seed (and of how the noise is batched), and restoring it keeps a training run's random
    stream unchanged by the sample grids it draws, so a resumed run stays bit-identical.
    """
    # Only devices this process already uses: forking them all would start CUDA, which a DataLoader worker
    # forked from a CUDA process must not do (and a CPU generator draws nothing there).
    in_use = torch.cuda.is_available() and torch.cuda.is_initialized()
    devices = list(range(torch.cuda.device_count())) if in_use else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """This process's torch RNG states (CPU, and the device's on CUDA), for exact resume."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
