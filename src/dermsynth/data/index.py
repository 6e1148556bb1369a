"""The dataset index: one record per image, whatever the source format.

Every reader (HAM10000 CSV, class folders, DermaMNIST .npz) produces a
:class:`DatasetIndex`; splits, the cache and everything after them only see that.

The class order is fixed for the whole package (the order of the HAM10000
paper's Table II, most to least frequent)::

    0 nv     melanocytic nevi
    1 mel    melanoma
    2 bkl    benign keratosis-like lesions
    3 bcc    basal cell carcinoma
    4 akiec  actinic keratoses / intraepithelial carcinoma
    5 vasc   vascular lesions
    6 df     dermatofibroma
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from PIL import Image
from pydantic import Field

from dermsynth.errors import DataError
from dermsynth.schema import Section
from dermsynth.storage import is_owned, sha256_file

SYNTHETIC_MARK = b"dermsynth synthetic image"
"""The start of the tag every image dermsynth generates carries in its file (figures.SYNTHETIC_TAG): a PNG
text chunk or a JPEG comment, written before the pixels."""
MARK_BYTES = 512
"""How much of each file the synthetic check reads: dermsynth writes its tag within the first 100 bytes."""
SYNTHETIC_CHOICES = ("refuse", "allow", "expected")
LABEL_CONFLICTS = ("refuse", "drop", "majority")
"""What to do with a lesion filed under two or more diagnoses: refuse the data (default), drop the lesion, or keep
its most frequent diagnosis (a tie drops it)."""


class DataChecks(Section):
    """What :func:`open_index` refuses unless told otherwise, chosen once for a command or a study and passed to
    every reader it opens: images dermsynth generated, lesions filed under two diagnoses, files that resolve
    outside the data root."""

    allow_synthetic: bool = Field(False, description=(
        "Take images dermsynth generated as if they were data (refused unless true: they are not patients' "
        "images)."))
    label_conflicts: Literal[LABEL_CONFLICTS] = Field("refuse", description=(
        "A lesion filed under two diagnoses: refuse the data, drop the lesion, or keep its most frequent "
        "diagnosis (majority; a tie drops the lesion)."))
    follow_links: bool = Field(False, description=(
        "Read images behind symbolic links that lead outside the data root (refused unless true)."))

    def readers(self) -> dict:
        """The keyword arguments of :func:`open_index` for a data root or reference set."""
        return {"synthetic": "allow" if self.allow_synthetic else "refuse", "label_conflicts": self.label_conflicts,
                "follow_links": self.follow_links}

    def changed(self) -> dict:
        """The options that differ from the defaults (empty for a study that changed none)."""
        default = DataChecks()
        return {k: v for k, v in self.model_dump().items() if getattr(default, k) != v}

    def sets(self) -> list[str]:
        """The changed options as ``data.KEY=VALUE`` overrides of a training run's config."""
        return [f"data.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in self.changed().items()]


CLASSES: tuple[str, ...] = ("nv", "mel", "bkl", "bcc", "akiec", "vasc", "df")
CLASS_NAMES: dict[str, str] = {
    "nv": "melanocytic nevi",
    "mel": "melanoma",
    "bkl": "benign keratosis-like lesions",
    "bcc": "basal cell carcinoma",
    "akiec": "actinic keratoses / intraepithelial carcinoma",
    "vasc": "vascular lesions",
    "df": "dermatofibroma",
}
CLASS_TO_LABEL: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}


@dataclass(frozen=True)
class Record:
    """One image of the dataset."""

    image_id: str
    """Unique id of the image (HAM10000: ``ISIC_0024306``)."""
    lesion_id: str
    """Id of the lesion; images of one lesion must stay in one split part."""
    label: int
    """Index into :data:`CLASSES`."""
    path: Path | None = None
    """Image file for file-backed sources; None for array-backed ones."""
    array_index: int | None = None
    """Row of :attr:`DatasetIndex.arrays` for array-backed sources (DermaMNIST)."""
    part: str | None = None
    """A split part that the source itself defines (DermaMNIST), else None."""

    @property
    def dx(self) -> str:
        return CLASSES[self.label]


@dataclass
class DatasetIndex:
    """All images of a dataset, in a stable order (sorted by image_id)."""

    root: Path
    """Data root the index was read from (a folder, or the .npz file)."""
    records: list[Record]
    source: str
    """Reader that made the index: "ham10000", "folder" or "dermamnist"."""
    arrays: np.ndarray | None = None
    """uint8 images (N, H, W, 3) for array-backed sources."""
    warnings: list[str] = field(default_factory=list)
    """Problems that did not stop reading (for example images with no row)."""
    synthetic: dict[str, str] = field(default_factory=dict)
    """image_id -> why it is a dermsynth synthetic image (export marker, metadata column, tag in the file)."""
    origin: dict[str, str] = field(default_factory=dict)
    """image_id -> where its row is (``HAM10000_metadata.csv, line 12``), for readers with rows."""

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int64)

    def by_id(self) -> dict[str, Record]:
        return {r.image_id: r for r in self.records}

    def open_image(self, i: int) -> Image.Image:
        """Decode record ``i`` as a PIL image (any mode; see ``cache.to_rgb``)."""
        record = self.records[i]
        if record.array_index is not None:
            assert self.arrays is not None
            return Image.fromarray(self.arrays[record.array_index])
        assert record.path is not None
        return Image.open(record.path)

    def fingerprint(self, content: bool = False) -> str:
        """Hash of ids, labels, lesions and, per file, its size and modification time (fast: the cache's key)
        or, with ``content``, the sha256 of its bytes (survives copying the data to another machine:
        the key of ``dermsynth run``'s stages)."""
        h = hashlib.sha256()
        h.update(f"{self.source}{'|content' if content else ''}\n".encode())
        for r in self.records:
            if r.path is None:
                stamp = str(r.array_index)
            elif content:
                stamp = sha256_file(r.path)
            else:
                st = r.path.stat()
                stamp = f"{st.st_size}:{st.st_mtime_ns}"
            h.update(f"{r.image_id},{r.lesion_id},{r.label},{stamp}\n".encode())
        if self.arrays is not None:
            h.update(hashlib.sha256(np.ascontiguousarray(self.arrays).data).digest())
        return h.hexdigest()

    def class_table(self) -> list[dict]:
        """Images and lesions per class, in :data:`CLASSES` order (the paper's Table II)."""
        rows = []
        for label, name in enumerate(CLASSES):
            recs = [r for r in self.records if r.label == label]
            rows.append(
                {
                    "dx": name,
                    "name": CLASS_NAMES[name],
                    "images": len(recs),
                    "lesions": len({r.lesion_id for r in recs}),
                }
            )
        return rows


@dataclass(frozen=True)
class Reader:
    """A dataset format: how to recognise it at a path, and how to read it into a :class:`DatasetIndex`."""

    name: str
    detect: Callable[[Path], bool]
    read: Callable[[Path, bool], DatasetIndex]
    """(root, lesions_required) -> index; a format without lesion ids makes each image its own lesion."""


READERS: dict[str, Reader] = {}
"""The formats, in the order ``auto`` tries them; each reader module registers its own on import."""


def register_reader(name: str, detect: Callable[[Path], bool], read: Callable[[Path, bool], DatasetIndex]) -> None:
    READERS[name] = Reader(name, detect, read)


def open_index(root: str | Path, fmt: str = "auto", lesions_required: bool = True,
               synthetic: str = "refuse", hints: str | None = None,
               label_conflicts: str = "refuse", follow_links: bool = False) -> DatasetIndex:
    """Read a dataset in any registered format.

    ``fmt`` is "ham10000" (metadata CSV/TAB and JPEGs), "folder" (one folder per
    class name), "dermamnist" (a MedMNIST .npz file) or "auto", which picks by
    what is at ``root``. ``lesions_required=False``: a HAM10000 metadata file may
    lack the lesion_id column (for scoring an external test set, never for training).

    Images dermsynth generated are found by its own marks (:func:`find_synthetic`) and, by default
    (``synthetic="refuse"``), refused: a data root, reference set or test set stands for patients' images.
    ``"allow"`` (the user's ``--allow-synthetic``) goes on with a warning; ``"expected"`` is for reading an
    export on purpose. ``hints`` says how the caller's command offers the choices below, so a refusal suggests
    only what exists: "flags" (``--allow-synthetic``, ``--label-conflicts``, ``--follow-links``), "set"
    (``--set data.allow_synthetic=true`` ...) or None (suggest nothing).

    A lesion filed under two diagnoses is refused, naming it and its rows, unless ``label_conflicts`` picks a
    rule (:data:`LABEL_CONFLICTS`; :func:`resolve_label_conflicts`).

    The data root is a boundary: an image that resolves outside it (a symbolic link, or a file in a linked
    folder) is refused unless ``follow_links`` (:func:`check_inside`).
    """
    if synthetic not in SYNTHETIC_CHOICES:
        raise ValueError(f"synthetic={synthetic!r} is not one of {SYNTHETIC_CHOICES}")
    if label_conflicts not in LABEL_CONFLICTS:
        raise DataError(f"label conflicts rule {label_conflicts!r} is not one of {', '.join(LABEL_CONFLICTS)}")
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such file or folder")
    if fmt == "auto":
        fmt = next((r.name for r in READERS.values() if r.detect(root)), None)
        if fmt is None and root.is_dir():
            raise DataError(
                f"{root}: found neither HAM10000_metadata.csv/.tab nor class folders "
                f"({', '.join(CLASSES)}); is this the data root?"
            )
        if fmt is None:
            raise DataError(f"{root}: not a data folder or a DermaMNIST .npz file")
    if fmt not in READERS:
        raise DataError(f"unknown data format {fmt!r}; choose one of {sorted(READERS)} or 'auto'")
    index = READERS[fmt].read(root, lesions_required)
    check_nonempty(index)
    if hints not in (None, "flags", "set"):
        raise ValueError(f"hints={hints!r} is not None, 'flags' or 'set'")
    check_inside(index, follow_links, _hint(hints, "--follow-links", "--set data.follow_links=true"))
    resolve_label_conflicts(index, label_conflicts, _hint(hints, "--label-conflicts drop (leave such lesions out) or "
                                                          "majority (keep each one's most frequent diagnosis)",
                                                          "--set data.label_conflicts=drop or majority"))
    check_nonempty(index)
    find_synthetic(index)
    if synthetic != "expected":
        check_real(index, allow=synthetic == "allow",
                   allow_hint=_hint(hints, "--allow-synthetic", "--set data.allow_synthetic=true"))
    return index


def _hint(hints: str | None, flag: str, setting: str) -> str | None:
    return {"flags": flag, "set": setting}.get(hints) if hints else None


def check_inside(index: DatasetIndex, follow_links: bool = False, hint: str | None = None) -> None:
    """Refuse images whose file resolves outside the data root (a link to a file elsewhere, or a file inside a
    linked folder that points elsewhere), naming the link and its target; links that stay inside the root are
    fine. With ``follow_links`` they are read and a warning says how many."""
    root = Path(index.root)
    if not root.is_dir():
        return
    base = os.path.realpath(root)
    real_dirs: dict[str, str] = {}  # one realpath per folder, one lstat per file: 10,015 files in about 50 ms
    outside = []
    for r in index.records:
        if r.path is None:
            continue
        folder, name = os.path.split(r.path)
        if folder not in real_dirs:
            real_dirs[folder] = os.path.realpath(folder)
        target = os.path.realpath(r.path) if os.path.islink(r.path) else os.path.join(real_dirs[folder], name)
        if os.path.commonpath([base, target]) != base:
            outside.append((r.path, target))
    if not outside:
        return
    link, target = outside[0]
    what = (f"{len(outside):,} image file(s) under {root} resolve outside it through symbolic links, e.g. {link} -> "
            f"{target}")
    if follow_links:
        index.warnings.append(f"{what}; read because links were allowed")
        return
    raise DataError(f"{what}. Nothing outside the data root is read" + (f" unless you pass {hint}" if hint else ""))


def resolve_label_conflicts(index: DatasetIndex, rule: str = "refuse", hint: str | None = None) -> None:
    """Lesions whose images carry two or more diagnoses: refused (``rule`` refuse: the lesion and its rows are
    named), dropped (drop), or given their most frequent diagnosis (majority; a tie is dropped). What a rule
    changed is added to ``index.warnings``; afterwards every lesion has one diagnosis."""
    by_lesion: dict[str, list[Record]] = defaultdict(list)
    for r in index.records:
        by_lesion[r.lesion_id].append(r)
    conflicts = {lesion: rs for lesion, rs in by_lesion.items() if len({r.label for r in rs}) > 1}
    if not conflicts:
        return
    if rule == "refuse":
        lesion, rs = min(conflicts.items())
        rows = "; ".join(f"{index.origin.get(r.image_id, r.image_id)} ({r.image_id}): {r.dx}" for r in rs)
        more = f" (and {len(conflicts) - 1} more lesion(s))" if len(conflicts) > 1 else ""
        raise DataError(f"{index.root}: lesion {lesion} is filed under {len({r.label for r in rs})} diagnoses{more}: "
                        f"{rows}. A lesion has one diagnosis: correct the metadata"
                        + (f", or pass {hint}" if hint else ""))
    dropped, relabelled, ties = 0, 0, 0
    label_of: dict[str, int | None] = {}
    for lesion, rs in conflicts.items():
        counts = Counter(r.label for r in rs).most_common()
        tie = len(counts) > 1 and counts[0][1] == counts[1][1]
        ties += rule == "majority" and tie
        label_of[lesion] = counts[0][0] if rule == "majority" and not tie else None
    records = []
    for r in index.records:
        if r.lesion_id not in label_of:
            records.append(r)
        elif label_of[r.lesion_id] is None:
            dropped += 1
        else:
            relabelled += r.label != label_of[r.lesion_id]
            records.append(replace(r, label=label_of[r.lesion_id]))
    index.records = records
    done = (f"{dropped} image(s) dropped" if rule == "drop" else
            f"{relabelled} image(s) relabelled to their lesion's most frequent diagnosis"
            + (f", {dropped} image(s) of {ties} tied lesion(s) dropped" if ties else ""))
    index.warnings.append(f"{len(conflicts)} lesion(s) filed under two or more diagnoses (e.g. {min(conflicts)}): "
                          f"{done} (label conflicts rule: {rule})")


def find_synthetic(index: DatasetIndex) -> dict[str, str]:
    """Fill ``index.synthetic`` with the images dermsynth made, by its marks: the export marker of the data
    root, a ``synthetic`` column of 1 (readers that have one fill it in), or the tag in the file's first bytes
    (headers only, never pixels). The phantom data are not GAN output: their column says ``phantom``."""
    root = Path(index.root)
    ids = {r.image_id for r in index.records}  # a reader's marks of rows a label rule has since dropped go
    index.synthetic = {k: v for k, v in index.synthetic.items() if k in ids}
    if root.is_dir() and is_owned(root, "export"):
        why = "the folder is an export of `dermsynth generate` (its .dermsynth-folder.json says so)"
        index.synthetic.update({r.image_id: why for r in index.records})
        return index.synthetic
    for r in index.records:
        if r.path is None or r.image_id in index.synthetic:
            continue
        try:  # os.open/os.read: half the cost of open() on 10,015 files
            fd = os.open(r.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            try:
                head = os.read(fd, MARK_BYTES)
            finally:
                os.close(fd)
        except OSError:  # unreadable files are the cache's to report
            continue
        if SYNTHETIC_MARK in head:
            index.synthetic[r.image_id] = f"{r.path.name} carries dermsynth's synthetic-image tag"
    return index.synthetic


def check_real(index: DatasetIndex, allow: bool = False, allow_hint: str | None = None) -> None:
    """Refuse an index with images dermsynth generated (they are not patients' images), naming how many and
    one example, and ``allow_hint`` (the option that allows them) where the command has one; with ``allow``,
    add a warning instead."""
    n = len(index.synthetic)
    if not n:
        return
    image_id, why = next(iter(sorted(index.synthetic.items())))
    mixed = f" (a mixed folder: the other {len(index) - n:,} are not marked)" if n < len(index) else ""
    what = f"{n:,} of {len(index):,} images in {index.root} are synthetic images made by dermsynth{mixed}, e.g. " \
           f"{image_id}: {why}"
    if allow:
        index.warnings.append(f"{what}; used as data because synthetic images were allowed")
        return
    raise DataError(f"{what}. They are not patients' images: a data root, reference set or test set made of them "
                    "reports figures about nothing real" + (f"; {allow_hint} uses them anyway" if allow_hint else ""))


def check_nonempty(index: DatasetIndex, classes: tuple[str, ...] | None = None) -> None:
    """Refuse an empty index, or one where a requested class has no images."""
    if not index.records:
        raise DataError(f"{index.root}: the dataset has no images")
    if classes:
        present = {r.dx for r in index.records}
        missing = [c for c in classes if c not in present]
        if missing:
            raise DataError(
                f"{index.root}: no images left for class(es) {', '.join(missing)} after filtering"
            )


def safe_file_name(value: str, where: str) -> str:
    """Return ``value`` if it is a plain file name; else raise naming ``where``.

    Ids from a CSV become file names: ``../x``, ``a/b`` or an absolute path would
    let a metadata file read outside the data root, so they are refused.
    """
    bad = (
        not value
        or value in (".", "..")
        or "/" in value
        or "\\" in value
        or "\x00" in value
        or Path(value).is_absolute()
        or value != value.strip()
    )
    if bad:
        raise DataError(f"{where}: {value!r} is not a plain file name")
    return value
