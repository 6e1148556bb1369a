"""HAM10000 reader: metadata CSV (or Dataverse's .tab) plus JPEGs at any depth.

Works with the official two-folder layout (``HAM10000_images_part_1/``,
``HAM10000_images_part_2/``), a single ``images/`` folder, or images next to the
metadata file: ``<image_id>.jpg`` is looked up anywhere under the data root.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from dermsynth.data.index import (
    CLASS_TO_LABEL,
    CLASSES,
    DatasetIndex,
    Record,
    register_reader,
    safe_file_name,
)
from dermsynth.errors import DataError
from dermsynth.storage import atomic_write_text

METADATA_NAMES = (
    "HAM10000_metadata.csv",
    "HAM10000_metadata.tab",
    "HAM10000_metadata.tsv",
    "HAM10000_metadata",
)
REQUIRED_COLUMNS = ("lesion_id", "image_id", "dx")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def find_metadata(root: Path, required: bool = True) -> Path | None:
    """The metadata file at the data root, or one folder below it."""
    for base in [root, *sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))]:
        for name in METADATA_NAMES:
            if (base / name).is_file():
                return base / name
    if required:
        raise DataError(f"{root}: no metadata file ({' or '.join(METADATA_NAMES[:2])}) found")
    return None


def find_images(root: Path) -> dict[str, list[Path]]:
    """Map image stem -> files with that stem anywhere under ``root`` (hidden folders skipped).

    Linked folders are walked like files behind links are read (each real folder once, so a link loop ends);
    whether what they lead to lies inside the data root is :func:`dermsynth.data.index.check_inside`'s call."""
    found: dict[str, list[Path]] = {}
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in IMAGE_SUFFIXES:
                found.setdefault(stem, []).append(Path(dirpath) / name)
    return found


def read_metadata(path: Path, required: tuple[str, ...] = REQUIRED_COLUMNS) -> list[tuple[int, dict[str, str]]]:
    """Rows of the metadata file as (line number, row); comma or tab separated."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e})") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DataError(f"{path}: the metadata file is empty")
    delimiter = "\t" if lines[0].count("\t") > lines[0].count(",") else ","
    reader = csv.DictReader(lines, delimiter=delimiter)
    columns = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(
            f"{path}: missing required column(s) {', '.join(missing)} "
            f"(found: {', '.join(columns) or 'none'})"
        )
    rows = []
    for row in reader:
        # line_num counts physical lines read so far: the row's own line number.
        # DictReader puts extra fields in a list under None and fills missing ones with None.
        fields = len(columns) + len(row.get(None, [])) - sum(v is None for v in row.values())
        if fields != len(columns):
            raise DataError(f"{path.name}, line {reader.line_num}: {fields} fields, but the header has {len(columns)}")
        rows.append((reader.line_num, {k.strip(): v.strip() for k, v in row.items()}))
    return rows


def read_ham10000(root: str | Path, lesions_required: bool = True) -> DatasetIndex:
    """Index a HAM10000-layout dataset; every problem names the file and row.

    ``lesions_required=False`` (scoring an external test set) accepts a metadata file without a lesion_id column:
    each image is then its own lesion, and a warning says so. Training always needs lesion ids: a split that
    cannot group the photographs of one lesion leaks it between train and test.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    meta = find_metadata(root)
    rows = read_metadata(meta, REQUIRED_COLUMNS if lesions_required else ("image_id", "dx"))
    if not rows:
        raise DataError(f"{meta}: the metadata file has a header but no rows")
    images = find_images(root)

    warnings: list[str] = []
    if "lesion_id" not in rows[0][1]:
        warnings.append(f"{meta.name} has no lesion_id column: each image counts as its own lesion, so the "
                        "leakage guard can match image ids only")
    records: list[Record] = []
    seen: dict[str, int] = {}
    missing: list[str] = []
    synthetic: dict[str, str] = {}
    origin: dict[str, str] = {}
    for line, row in rows:
        where = f"{meta.name}, line {line}"
        image_id = safe_file_name(row["image_id"], f"{where}: image_id")
        lesion_id = row.get("lesion_id") or image_id
        dx = row["dx"].lower()
        if dx not in CLASS_TO_LABEL:
            raise DataError(
                f"{where}: unknown dx label {row['dx']!r} (expected one of {', '.join(CLASSES)})"
            )
        if image_id in seen:
            raise DataError(f"{where}: duplicate image_id {image_id!r} (first at line {seen[image_id]})")
        seen[image_id] = line
        paths = images.get(image_id)
        if not paths:
            missing.append(f"{where}: {image_id}")
            continue
        if len(paths) > 1:  # a copy reached through a link never wins over one inside the root
            base = os.path.realpath(root)
            paths = sorted(paths, key=lambda q: os.path.commonpath([base, os.path.realpath(q)]) != base)
            warnings.append(f"{image_id}: {len(paths)} files, using {paths[0].relative_to(root)}")
        records.append(Record(image_id, lesion_id, CLASS_TO_LABEL[dx], path=paths[0]))
        origin[image_id] = where
        if row.get("synthetic", "").strip() == "1":  # an export's metadata (phantom data say "phantom")
            synthetic[image_id] = f"{where}: synthetic=1"

    if missing:
        shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"{len(missing)} row(s) have no image file under {root}: {shown}")
    orphans = sorted(set(images) - set(seen))
    if orphans:
        warnings.append(
            f"{len(orphans)} image file(s) under {root} have no metadata row and are ignored "
            f"(e.g. {', '.join(orphans[:3])})"
        )
    records.sort(key=lambda r: r.image_id)
    return DatasetIndex(root=root, records=records, source="ham10000", warnings=warnings, synthetic=synthetic,
                        origin=origin)


def write_metadata(path: Path, records: list[dict[str, str]], extra_columns: tuple[str, ...] = ()) -> None:
    """Write a HAM10000-style metadata CSV atomically (used by phantom data and exports)."""
    columns = ["lesion_id", "image_id", "dx", *extra_columns]
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    atomic_write_text(path, table.getvalue())


register_reader("ham10000", lambda root: root.is_dir() and find_metadata(root, required=False) is not None,
                read_ham10000)
