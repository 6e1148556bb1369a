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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from dermsynth.errors import DataError
from dermsynth.storage import sha256_file

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


def open_index(root: str | Path, fmt: str = "auto", lesions_required: bool = True) -> DatasetIndex:
    """Read a dataset in any registered format.

    ``fmt`` is "ham10000" (metadata CSV/TAB and JPEGs), "folder" (one folder per
    class name), "dermamnist" (a MedMNIST .npz file) or "auto", which picks by
    what is at ``root``. ``lesions_required=False``: a HAM10000 metadata file may
    lack the lesion_id column (for scoring an external test set, never for training).
    """
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
    return index


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
