"""The data root is a boundary: a file or a folder that resolves outside it is refused the same way."""

from __future__ import annotations

import os
import shutil

import pytest
from click.testing import CliRunner

from dermsynth.cli import main
from dermsynth.data.index import DataError, open_index
from tests.conftest import write_ham


def test_an_image_linked_to_a_file_outside_is_refused_naming_link_and_target(tmp_path):
    root = write_ham(tmp_path / "ham", per_class=2)
    outside = tmp_path / "elsewhere.jpg"
    image = root / "images" / "ISIC_0000003.jpg"
    shutil.move(image, outside)
    image.symlink_to(outside)
    with pytest.raises(DataError, match=rf"^1 image file\(s\) under {root} resolve outside it through symbolic links, "
                                        rf"e.g. {image} -> {outside}. Nothing outside the data root is read$"):
        open_index(root)  # a caller with no option to allow links: none suggested
    result = CliRunner().invoke(main, ["data", "summary", str(root)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert result.output.strip().endswith("Nothing outside the data root is read unless you pass --follow-links")
    index = open_index(root, follow_links=True)
    assert len(index) == 14 and any("read because links were allowed" in w for w in index.warnings)
    # A copy of the same images reached through a link never wins over the one inside the root.
    shutil.move(outside, image)
    (tmp_path / "backup").mkdir()
    shutil.copy(image, tmp_path / "backup" / image.name)
    (root / "a_backup").symlink_to(tmp_path / "backup")  # sorts before images/
    assert len(open_index(root)) == 14


def test_a_link_to_a_system_file_is_refused_before_anything_opens_it(tmp_path):
    root = write_ham(tmp_path / "ham", per_class=2)
    image = root / "images" / "ISIC_0000000.jpg"
    image.unlink()
    image.symlink_to("/etc/passwd")
    with pytest.raises(DataError, match=r"ISIC_0000000.jpg -> /etc/passwd"):
        open_index(root)


def test_a_linked_images_folder_is_treated_like_its_files(tmp_path):
    root = write_ham(tmp_path / "ham", per_class=2)
    # Inside the root: a link to a folder of the root is fine.
    shutil.move(root / "images", root / "real-images")
    (root / "images").symlink_to(root / "real-images")
    os.symlink(root, root / "real-images" / "loop")  # a loop ends: each real folder is walked once
    assert len(open_index(root)) == 14
    # Outside: found (not "no image file"), then refused like a linked file.
    (root / "images").unlink()
    shutil.move(root / "real-images", tmp_path / "outside-images")
    (root / "images").symlink_to(tmp_path / "outside-images")
    with pytest.raises(DataError, match=r"^14 image file\(s\) under .* resolve outside it"):
        open_index(root)
    assert len(open_index(root, follow_links=True)) == 14
