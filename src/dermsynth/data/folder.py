"""Class-folder datasets: ``ROOT/<class>/<image>.jpg``, one folder per class name.

Folder names are the HAM10000 codes (nv, mel, bkl, bcc, akiec, vasc, df), in any
case. With no lesion ids in such a layout, each image is its own lesion.
"""

from __future__ import annotations

from pathlib import Path

from dermsynth.data.ham10000 import IMAGE_SUFFIXES
from dermsynth.data.index import CLASS_TO_LABEL, CLASSES, DatasetIndex, Record, register_reader
from dermsynth.errors import DataError


def looks_like_class_folders(root: Path) -> bool:
    return any(p.is_dir() and p.name.lower() in CLASS_TO_LABEL for p in root.iterdir())


def read_class_folders(root: str | Path) -> DatasetIndex:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    warnings: list[str] = []
    records: list[Record] = []
    seen: dict[str, Path] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        dx = sub.name.lower()
        if dx not in CLASS_TO_LABEL:
            warnings.append(f"{sub}: not a class name ({', '.join(CLASSES)}); ignored")
            continue
        for path in sorted(sub.rglob("*")):
            if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            image_id = path.stem
            if image_id in seen:
                raise DataError(f"{path}: duplicate image_id {image_id!r} (also {seen[image_id]})")
            seen[image_id] = path
            records.append(Record(image_id, image_id, CLASS_TO_LABEL[dx], path=path))
    records.sort(key=lambda r: r.image_id)
    return DatasetIndex(root=root, records=records, source="folder", warnings=warnings)


register_reader("folder", lambda root: root.is_dir() and looks_like_class_folders(root),
                lambda root, lesions_required: read_class_folders(root))  # each image is its own lesion
