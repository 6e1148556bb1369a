"""Writing to disk without losing anything: atomic files, folders dermsynth owns, locks, clear disk errors.

- :func:`atomic_write` writes a file beside its destination and renames it into place, so a crash or a full
  disk leaves the old file as it was and no temporary file behind; a failed write becomes a
  :class:`StorageError` that names the file and, for a full disk, the space needed and free.
- A folder that dermsynth creates (run, export, study, phantom data) holds a marker file :data:`MARKER` with
  its kind and format. ``--overwrite`` only ever deletes a folder whose marker names the expected kind,
  never one recognised by a common file name: a data root with ``HAM10000_metadata.csv`` is the user's.
  The marker says dermsynth made the folder; files a user adds to such a folder later go with it.
- :class:`FolderLock` holds an exclusive OS lock (``flock``) while a process writes a folder; the OS releases
  it on any exit, ``kill -9`` included. A second writer is refused with the holder's PID. Locks on network
  file systems that do not implement ``flock`` are not guaranteed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import BinaryIO, Callable

from dermsynth._version import __version__
from dermsynth.errors import FolderError, StorageError

MARKER = ".dermsynth-folder.json"
_FORMAT_PREFIX = "dermsynth-folder/"
FORMAT_VERSION = 2
MARKER_FORMAT = f"{_FORMAT_PREFIX}{FORMAT_VERSION}"
"""Raised from 1 when a study's stage keys came to hash every option as written (no option is left out at a
value that kept an earlier behaviour): a study of format 1 is refused rather than silently retrained."""
LOCK = ".dermsynth.lock"
KINDS = ("gan-run", "classifier-run", "export", "study", "phantom")


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def storage_error(error: OSError, path: Path, needed_bytes: int | None = None) -> StorageError:
    """``error`` raised while writing ``path`` as one clear sentence."""
    reason = error.strerror or str(error) or type(error).__name__
    message = f"cannot write {path}: {reason}"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = shutil.disk_usage(next(p for p in (path, *path.parents) if p.exists())).free
            message += f" ({_mb(free)} free" + (f", about {_mb(needed_bytes)} needed)" if needed_bytes else ")")
        except (OSError, StopIteration):
            pass
    out = StorageError(error.errno, message)
    out.filename = str(path)
    return out


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], needed_bytes: int | None = None) -> Path:
    """Write ``path`` through ``write(file)`` into a hidden file beside it, fsync, rename into place.

    On any failure the temporary file is removed and the old ``path`` (if any) is untouched; an OSError
    becomes a :class:`StorageError` naming ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, StorageError):
            raise storage_error(e, path, needed_bytes) from None
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data), needed_bytes=len(data))


def atomic_write_json(path: str | Path, obj, indent: int | None = 1) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent))


# --- folders dermsynth owns -------------------------------------------------------------


def _format_version(marker: object) -> int | None:
    text = str(marker.get("format", "")) if isinstance(marker, dict) else ""
    number = text.removeprefix(_FORMAT_PREFIX)
    return int(number) if text.startswith(_FORMAT_PREFIX) and number.isdigit() else None


def read_marker(folder: Path) -> dict | None:
    """The marker of ``folder`` (kind, format, created) of this format or an earlier one, or None if it has
    none, an unreadable one, or one of a newer dermsynth (whose folders this version does not know)."""
    try:
        marker = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = _format_version(marker)
    return marker if version is not None and version <= FORMAT_VERSION else None


def is_owned(folder: Path, kind: str) -> bool:
    """Whether ``folder`` carries dermsynth's marker of this kind (of any format: dermsynth made it)."""
    marker = read_marker(folder)
    return marker is not None and marker.get("kind") == kind


def earlier_format(folder: Path) -> str | None:
    """The format of a marker written by an earlier dermsynth, or None (no marker, or this format)."""
    marker = read_marker(folder)
    return None if marker is None or marker["format"] == MARKER_FORMAT else marker["format"]


def write_marker(folder: Path, kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown folder kind {kind!r}")
    atomic_write_json(Path(folder) / MARKER, {"format": MARKER_FORMAT, "kind": kind,
                                              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                              "dermsynth_version": __version__})


def check_folder(folder: Path, what: str) -> None:
    """Refuse (FolderError) a path that exists and is not a folder."""
    if folder.exists() and not folder.is_dir():
        raise FolderError(f"{folder} is a file, not a folder; choose a folder for the {what}")


def check_replaceable(folder: Path, kind: str, what: str) -> None:
    """Refuse (FolderError) to replace ``folder`` unless dermsynth made it as a ``kind`` (a symbolic link to a
    folder is never replaced: what it points to may be anything)."""
    if folder.is_symlink():
        raise FolderError(f"{folder} is a symbolic link; refusing to delete through it. Name the folder itself")
    check_folder(folder, what)
    if not is_owned(folder, kind):
        other = read_marker(folder)
        found = f"it is a dermsynth {other['kind']} folder" if other else f"it has no dermsynth marker ({MARKER})"
        raise FolderError(f"{folder} is not a {what} made by dermsynth ({found}); refusing to delete it. "
                          "Choose another folder, or delete it yourself if it is yours to delete")


def clear_folder(folder: Path, kind: str | None, keep: tuple[str, ...] = (LOCK,)) -> None:
    """Delete everything in a folder dermsynth owns as ``kind`` (checked again here; None: the caller owns it,
    e.g. a study's sub-folder), except ``keep``. Refused while a process holds a lock anywhere inside it."""
    if kind is not None:
        check_replaceable(folder, kind, kind)
    elif folder.is_symlink():
        raise FolderError(f"{folder} is a symbolic link; refusing to delete through it")
    held = []
    try:
        for lock_file in sorted(folder.rglob(LOCK)):
            if lock_file.parent != folder or LOCK not in keep:
                held.append(FolderLock(lock_file, f"folder {lock_file.parent}").acquire())
        for entry in folder.iterdir():
            if entry.name in keep:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    finally:
        for lock in held:
            lock.release()


def remove_folder(folder: Path) -> None:
    """Delete a folder the caller owns (a study's sub-run, say) while holding its lock: refused (FolderError)
    while another process writes it."""
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_symlink() or not folder.is_dir():
        folder.unlink()  # the link itself, never what it points to
        return
    with FolderLock(folder / LOCK, f"folder {folder}"):
        clear_folder(folder, None)
    folder.rmdir()


# --- locks --------------------------------------------------------------------------------


class FolderLock:
    """An exclusive, non-blocking OS lock on ``path`` (a lock file) for as long as it is held.

    The lock file holds the holder's PID; it is removed on release. A holder that dies releases the lock
    with its file descriptor (the OS does it), so a stale file never blocks anyone.
    """

    def __init__(self, path: str | Path, what: str) -> None:
        self.path, self.what = Path(path), what
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                _lock(fd)
            except OSError:
                os.lseek(fd, 0, os.SEEK_SET)
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise FolderError(f"{self.what} is in use by process {holder} (lock file {self.path}); wait for "
                                  "it to finish or stop it, or choose another folder") from None
            try:  # the file may have been removed by the holder releasing it meanwhile: lock the new one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # a full disk: the lock holds without the PID
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self._fd)  # closing the descriptor releases the lock
        self._fd = None

    def __enter__(self) -> "FolderLock":
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


try:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except ImportError:  # Windows
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def settings_key(payload) -> str:
    """A short stable hash of JSON-able settings (keys sorted; paths and other objects as text): what a study's
    stage keys and a utility classifier's fingerprint are made of."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def swap_in(new: Path, out: Path, old: Path, kind: str) -> None:
    """Put the complete folder ``new`` in the place of ``out``, which is missing, empty, or dermsynth's own
    ``kind`` (the caller checked): ``out`` is first renamed to ``old`` (and put back if the swap fails), then
    deleted, all of it only if it carries the marker of ``kind``, else only while still empty. Nothing is ever
    half-written in ``out``: a crash between the two renames leaves ``out`` missing and the old folder whole at
    ``old``."""
    if not out.exists():
        new.rename(out)
        return
    out.rename(old)
    try:
        new.rename(out)
    except BaseException:
        old.rename(out)  # the old folder back where the user left it
        raise
    try:
        if is_owned(old, kind):
            shutil.rmtree(old)
        else:
            old.rmdir()  # it was empty when checked; if something appeared since, it stays
    except OSError as e:
        print(f"warning: the new {kind} folder is in place, but the old one could not be removed from {old} "
              f"({e.strerror or e})", file=sys.stderr)
