"""A lesion filed under two diagnoses is refused by default; a chosen rule leaves a summary that agrees with itself."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from dermsynth.cli import main
from dermsynth.data.index import DataError, open_index
from tests.conftest import read_rows, write_csv, write_ham


def conflicted(tmp_path):
    """21 images of 11 lesions (2 images each, one alone); lesion HAM_000000's second image relabelled mel, and
    lesion HAM_010000 (mel) given a third image filed as nv: a 2-1 majority for mel."""
    root = write_ham(tmp_path / "ham", per_class=3)
    rows = read_rows(root / "HAM10000_metadata.csv")
    rows[1]["dx"] = "mel"  # ISIC_0000001 of HAM_000000 (nv, with ISIC_0000000)
    rows[2]["lesion_id"] = "HAM_010000"  # ISIC_0000002 (nv) joins mel's lesion of ISIC_0000003 and ISIC_0000004
    write_csv(root / "HAM10000_metadata.csv", rows)
    return root


def test_a_lesion_under_two_diagnoses_is_refused_naming_it_and_its_rows(tmp_path):
    root = conflicted(tmp_path)
    with pytest.raises(DataError) as e:
        open_index(root)
    assert str(e.value) == (
        f"{root}: lesion HAM_000000 is filed under 2 diagnoses (and 1 more lesion(s)): HAM10000_metadata.csv, line 2 "
        "(ISIC_0000000): nv; HAM10000_metadata.csv, line 3 (ISIC_0000001): mel. A lesion has one diagnosis: correct "
        "the metadata")
    result = CliRunner().invoke(main, ["data", "summary", str(root)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    # The command line offers the rules where the command has them, and only there.
    assert result.output.strip().endswith("correct the metadata, or pass --label-conflicts drop (leave such lesions "
                                          "out) or majority (keep each one's most frequent diagnosis)")


@pytest.mark.parametrize("rule, images, note", [
    ("drop", 16, "5 image(s) dropped"),
    ("majority", 19, "1 image(s) relabelled to their lesion's most frequent diagnosis, 2 image(s) of 1 tied"),
])
def test_a_rule_resolves_every_conflict_and_the_summary_agrees_with_itself(tmp_path, rule, images, note):
    root = conflicted(tmp_path)
    index = open_index(root, label_conflicts=rule)
    assert len(index) == images
    assert any(note in w for w in index.warnings)
    for lesion in {r.lesion_id for r in index.records}:
        assert len({r.label for r in index.records if r.lesion_id == lesion}) == 1
    table = index.class_table()
    assert sum(r["lesions"] for r in table) == len({r.lesion_id for r in index.records})
    if rule == "majority":  # HAM_010000: two mel images, one nv -> all three mel; HAM_000000 (1-1) dropped
        assert {r.image_id: r.dx for r in index.records if r.lesion_id == "HAM_010000"} == {
            "ISIC_0000002": "mel", "ISIC_0000003": "mel", "ISIC_0000004": "mel"}
    result = CliRunner().invoke(main, ["data", "summary", str(root), "--label-conflicts", rule])
    assert result.exit_code == 0 and note in result.output
    total = result.output.strip().splitlines()[-1].split()
    assert total[0] == "total" and int(total[1]) == images


def test_the_training_config_takes_the_rule(tmp_path):
    from dermsynth.config import ConfigError, gan_config, load_yaml

    assert gan_config(load_yaml("configs/best.yaml"), ["data.label_conflicts=majority"]).data.label_conflicts == \
        "majority"
    with pytest.raises(ConfigError, match="data.label_conflicts: expected one of refuse, drop, majority, got 'vote'"):
        gan_config(load_yaml("configs/best.yaml"), ["data.label_conflicts=vote"])
