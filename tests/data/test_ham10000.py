"""HAM10000 reader: layouts, the class table, and every bad-input case naming its file or row."""

from __future__ import annotations

import shutil

import pytest

from dermsynth.data import CLASSES, DataError, open_index
from dermsynth.data.ham10000 import read_ham10000
from tests.conftest import read_rows, write_csv, write_ham


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


def test_missing_column_names_file_and_column(ham):
    rows = read_rows(ham / "HAM10000_metadata.csv")
    write_csv(ham / "HAM10000_metadata.csv", rows, columns=("lesion_id", "image_id"))
    with pytest.raises(DataError, match=r"HAM10000_metadata.csv: missing required column\(s\) dx"):
        open_index(ham)


def test_unknown_dx_names_row(ham):
    rows = read_rows(ham / "HAM10000_metadata.csv")
    rows[4]["dx"] = "melanomaa"
    write_csv(ham / "HAM10000_metadata.csv", rows)
    with pytest.raises(DataError, match=r"line 6: unknown dx label 'melanomaa'"):
        open_index(ham)


def test_duplicate_image_id_names_both_rows(ham):
    rows = read_rows(ham / "HAM10000_metadata.csv")
    rows.append(dict(rows[2]))
    write_csv(ham / "HAM10000_metadata.csv", rows)
    with pytest.raises(DataError, match=r"line 30: duplicate image_id 'ISIC_0000002' \(first at line 4\)"):
        open_index(ham)


def test_row_without_image_names_row_and_id(ham):
    (ham / "images" / "ISIC_0000003.jpg").unlink()
    with pytest.raises(DataError, match=r"1 row\(s\) have no image file.*line 5: ISIC_0000003"):
        open_index(ham)


def test_image_without_row_is_warned_and_ignored(ham):
    shutil.copy(ham / "images" / "ISIC_0000000.jpg", ham / "images" / "ISIC_9999999.jpg")
    index = open_index(ham)
    assert len(index) == 28
    assert "ISIC_9999999" not in index.by_id()
    assert any("no metadata row" in w and "ISIC_9999999" in w for w in index.warnings)


@pytest.mark.parametrize("bad_id", ["../x", "/etc/passwd", "sub/ISIC_0000001", "..", ""])
def test_image_id_that_is_not_a_plain_file_name_is_refused(tmp_path, bad_id):
    root = write_ham(tmp_path / "d", per_class=1)
    # A file outside the root that a traversal would reach must never be read.
    (tmp_path / "x.jpg").write_bytes((root / "images" / "ISIC_0000000.jpg").read_bytes())
    rows = read_rows(root / "HAM10000_metadata.csv")
    rows[0]["image_id"] = bad_id
    write_csv(root / "HAM10000_metadata.csv", rows)
    with pytest.raises(DataError, match=r"line 2: image_id: .* is not a plain file name"):
        read_ham10000(root)


def test_empty_data_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="found neither HAM10000_metadata"):
        open_index(tmp_path / "empty")


def test_metadata_with_header_only(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    write_csv(root / "HAM10000_metadata.csv", [])
    with pytest.raises(DataError, match="header but no rows"):
        open_index(root)


def test_missing_root():
    with pytest.raises(DataError, match="no such file or folder"):
        open_index("/nonexistent/dermsynth-data")


def test_real_ham10000_matches_table_ii(shared_ham):
    index = open_index(shared_ham)
    images = {r["dx"]: r["images"] for r in index.class_table()}
    assert images == {"nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115}
    assert len(index) == 10015
    assert len({r.lesion_id for r in index.records}) == 7470
    assert index.warnings == []
