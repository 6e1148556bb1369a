"""HAM10000 reader: layouts and the class table (bad-input cases: tests/faults/test_data_faults.py)."""

from __future__ import annotations

import pytest

from dermsynth.data import CLASSES, open_index
from tests.conftest import read_rows, write_ham


@pytest.mark.parametrize("layout", ["single", "two", "flat"])
def test_reads_every_layout(tmp_path, layout):
    root = write_ham(tmp_path / "d", per_class=3, layout=layout)
    index = open_index(root)
    assert index.source == "ham10000"
    assert len(index) == 21
    assert [r["images"] for r in index.class_table()] == [3] * 7
    assert all(r.path.is_file() and r.path.stem == r.image_id for r in index.records)


def test_class_table_counts_images_and_lesions(ham):
    table = open_index(ham).class_table()
    assert [r["dx"] for r in table] == list(CLASSES)
    assert all(r["images"] == 4 and r["lesions"] == 2 for r in table)


def test_tab_separated_metadata_from_dataverse(tmp_path):
    root = write_ham(tmp_path / "d", per_class=2)
    rows = read_rows(root / "HAM10000_metadata.csv")
    (root / "HAM10000_metadata.csv").unlink()
    # Dataverse's .tab quotes strings and separates by tabs.
    lines = ["lesion_id\timage_id\tdx\tage"] + [
        f'"{r["lesion_id"]}"\t"{r["image_id"]}"\t"{r["dx"]}"\t50.0' for r in rows
    ]
    (root / "HAM10000_metadata.tab").write_text("\n".join(lines) + "\n")
    index = open_index(root)
    assert len(index) == 14 and index.records[0].image_id == "ISIC_0000000"


def test_real_ham10000_matches_table_ii(shared_ham):
    index = open_index(shared_ham)
    images = {r["dx"]: r["images"] for r in index.class_table()}
    assert images == {"nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115}
    assert len(index) == 10015
    assert len({r.lesion_id for r in index.records}) == 7470
    assert index.warnings == []
