"""The Python API: the generator object, the Dataset under a DataLoader, and what is public."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import dermsynth
import dermsynth.errors
from dermsynth.generate import generate_images


def test_sample_gives_the_images_generate_writes(tiny_gan, tmp_path):
    G = dermsynth.load_generator(tiny_gan / "generator.pt")
    export = generate_images(tiny_gan / "generator.pt", tmp_path / "export", per_class=3, classes="nv,df", seed=3,
                             progress=False)
    images = G.sample("df", 3, seed=3)
    assert images.dtype == np.uint8 and images.shape == (3, G.resolution, G.resolution, 3)
    for k in range(3):
        assert np.array_equal(images[k], np.asarray(Image.open(export / "images" / f"SYN_df_3_{k:05d}.png")))
    assert np.array_equal(G.sample(6, 3, seed=3), images)  # a label works as well as the name
    x = G.sample_tensor("df", 3, seed=3)
    assert x.shape == (3, 3, G.resolution, G.resolution) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1), torch.from_numpy(images))
    with pytest.raises(dermsynth.errors.DataError, match="unknown class 'melanoma'"):
        G.sample("melanoma", 1)


def test_the_dataset_under_two_workers_is_distinct_and_reproducible(tiny_gan):
    G = dermsynth.load_generator(tiny_gan / "generator.pt")
    data = dermsynth.SyntheticDataset(G, per_class={"df": 3, "vasc": 2}, seed=5)
    assert len(data) == 5 and data.labels == [5, 5, 6, 6, 6]  # vasc (5) then df (6): label order

    def drawn(workers: int) -> tuple[torch.Tensor, torch.Tensor]:
        loader = torch.utils.data.DataLoader(data, batch_size=2, num_workers=workers, shuffle=False)
        images, labels = zip(*loader)
        return torch.cat(images), torch.cat(labels)

    images, labels = drawn(2)
    assert images.dtype == torch.uint8 and images.shape[0] == 5
    assert labels.tolist() == data.labels and set(labels.tolist()) == {5, 6}  # vasc, df
    assert len({tuple(im.flatten().tolist()) for im in images}) == 5  # every image its own
    again, _ = drawn(0)
    assert torch.equal(images, again)  # the same with 2 workers or none
    df = torch.from_numpy(G.sample("df", 3, seed=5)).permute(0, 3, 1, 2)
    assert torch.equal(images[labels == 6], df)  # what sample() (and generate) gives


def test_the_dataset_reads_an_export_of_either_layout(tiny_gan, tmp_path):
    for layout in ("ham10000", "imagefolder"):
        export = generate_images(tiny_gan / "generator.pt", tmp_path / layout, per_class=2, classes="mel,df",
                                 seed=0, progress=False, layout=layout)
        data = dermsynth.SyntheticDataset(export, transform=lambda x: x.float() / 255)
        assert len(data) == 4 and sorted(data.labels) == [1, 1, 6, 6]
        image, label = data[0]
        assert image.dtype == torch.float32 and image.shape[0] == 3 and label in (1, 6)


def test_the_dataset_refuses_a_folder_that_is_not_an_export(phantom_data):
    with pytest.raises(dermsynth.errors.DataError, match="not an export of `dermsynth generate`"):
        dermsynth.SyntheticDataset(phantom_data)  # real (here phantom) data must never pass for synthetic


def test_the_public_names_are_few_and_documented():
    assert set(dermsynth.__all__) == {"CLASSES", "Generator", "SyntheticDataset", "__version__", "load_generator"}
    for name in ("Generator", "SyntheticDataset", "load_generator"):
        assert getattr(dermsynth, name).__doc__, name
    assert dermsynth.CLASSES[0] == "nv" and dermsynth.__version__


def test_the_readme_snippet_runs(tiny_gan, monkeypatch, tmp_path):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("```python\nimport torch\nimport dermsynth")
    code = readme[start + len("```python"): readme.index("```", start + 10)]
    code = code.replace('"demo/run/gan/generator.pt"', repr(str(tiny_gan / "generator.pt")))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README
    assert scope["x"].shape[0] == 16 and scope["images"].shape[0] == 16
