"""Every error dermsynth reports to its user, in one place, with the exit status the command line ends with.

The command line prints one line, ``error: <message>``, never a traceback, and exits with the error's
``exit_code``:

    1  DownloadError         a download failed (network, server, archive); it resumes when run again
    2  UsageError            a command-line flag or argument is wrong, or flags that cannot go together
       ConfigError           a preset, --set option or study section is wrong (every problem named at once)
       DataError             a dataset, file, row or image is missing or wrong (named)
       LeakageError          a score would use images or lesions a classifier was trained on
       FolderError           a folder dermsynth must not write, replace or delete (not its own, or in use)
       StorageError          the operating system refused a write (disk full, permission), with what and where
       CheckpointError       a checkpoint is of another kind, another version, damaged, or does not fit
       WeightsError          the FID Inception weights are missing or wrong
       BackboneWeightsError  the EfficientNet-Lite0 ImageNet weights are missing or wrong
    3  DivergenceError       training diverged (NaN, inf, or past a bound); the last good checkpoint is kept
  130  Interrupted           Ctrl-C (SIGINT)
  143  Interrupted           SIGTERM (a scheduler's or `kill`'s stop)

This module imports nothing of dermsynth, so that every layer can raise these.
"""

from __future__ import annotations


class DermsynthError(Exception):
    """Base of the errors a user sees as one line."""

    exit_code = 2
    prefix = ""
    """Put before the message on the command line."""


class UsageError(DermsynthError, ValueError):
    """A flag or argument that cannot work: an unknown choice, a value out of range, flags that conflict."""


class ConfigError(DermsynthError, ValueError):
    """A config problem; the message lists every problem found."""


class DataError(DermsynthError, ValueError):
    """A problem with the dataset the user gave: missing files, bad rows, unreadable images (named)."""


class LeakageError(DataError):
    """Scoring would use images, or images of lesions, that the classifier was trained on."""


class FolderError(DermsynthError, ValueError):
    """A folder dermsynth must not write or replace: not its own, of another kind, or in use by a process."""


class StorageError(DermsynthError, OSError):
    """A write that the operating system refused (disk full, no permission, read-only); names what and where."""

    def __str__(self) -> str:
        return self.strerror


class CheckpointError(DermsynthError, ValueError):
    """A checkpoint that is not what the command expects: another kind or version, damaged, or of another model."""


class WeightsError(DermsynthError, RuntimeError):
    """The FID Inception weights are not on this machine and could not be fetched (or are wrong)."""


class BackboneWeightsError(DermsynthError, RuntimeError):
    """The EfficientNet-Lite0 ImageNet weights are missing or do not fit."""


class DownloadError(DermsynthError, RuntimeError):
    """A download failed: the message names the URL or file and what to do next."""

    exit_code = 1


class DivergenceError(DermsynthError, RuntimeError):
    """A loss or gradient norm became NaN, infinite or larger than its bound, or G's gradient stayed 0; the run
    stops and keeps its last good checkpoint."""

    exit_code = 3
    prefix = "training diverged: "


class Interrupted(BaseException):
    """The command was stopped by SIGINT (Ctrl-C) or SIGTERM; files are written atomically, so nothing
    half-written is left, and a training run has saved a checkpoint to resume from. A BaseException, as
    KeyboardInterrupt is, so that no ``except Exception`` turns a stop into another error."""

    def __init__(self, signum: int) -> None:
        import signal

        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name}{' (Ctrl-C)' if name == 'SIGINT' else ''}; nothing half-written is "
                         "left: run the command again to continue (training: with --resume auto)")
        self.exit_code = 128 + signum
