"""dermsynth from Python: synthetic images inside your own training loop.

    import dermsynth

    G = dermsynth.load_generator("runs/best/generator.pt")
    images = G.sample("df", 16, seed=0)          # uint8 (16, H, W, 3): what `generate --per-class 16` writes
    batch = G.sample_tensor("df", 16, seed=0)    # float (16, 3, H, W) in [-1, 1]

    synthetic = dermsynth.SyntheticDataset(G, per_class={"df": 500, "vasc": 500})
    # or dermsynth.SyntheticDataset("exports/syn") for an export written by `dermsynth generate`

Mixing with your real data: ``torch.utils.data.ConcatDataset([real, synthetic])``, or a
``WeightedRandomSampler`` over the concatenation to set the share of synthetic images per batch. Items
are ``(image, label)``: ``image`` a uint8 tensor (3, H, W) (after ``transform`` if given), ``label`` the
class index in :data:`dermsynth.CLASSES`. Every synthetic item is deterministic (the same for any number
of DataLoader workers and any order), and the images are GAN-generated: never a patient's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from dermsynth.data.index import CLASS_TO_LABEL, CLASSES, open_index
from dermsynth.errors import DataError
from dermsynth.figures import from_uint8
from dermsynth.generate import load_generator as _load_generator
from dermsynth.generate import sample as _sample
from dermsynth.storage import is_owned


class Generator:
    """A trained class-conditional generator, ready to sample (see :func:`load_generator`)."""

    def __init__(self, network: torch.nn.Module, snapshot: dict, device: torch.device) -> None:
        self.network, self.snapshot, self.device = network, snapshot, device
        self.resolution: int = network.cfg.resolution
        """Side of the square images, in pixels."""
        self.classes: tuple[str, ...] = CLASSES
        """Class names in label order."""

    def sample(self, dx: str | int, n: int, seed: int = 0) -> np.ndarray:
        """``n`` uint8 images (N, H, W, 3) of class ``dx`` (a name such as "mel" or a label 0-6): the images
        ``dermsynth generate --per-class N --seed SEED`` writes for that class. (For generators with per-pixel
        noise, fastgan, image k depends on N too: ask for the same N to get the same images.)"""
        return _sample(self.network, _label(dx), n, seed, device=self.device)

    def sample_tensor(self, dx: str | int, n: int, seed: int = 0) -> torch.Tensor:
        """The same images as :meth:`sample` as a float tensor (N, 3, H, W) in [-1, 1] on the generator's device."""
        return from_uint8(torch.from_numpy(self.sample(dx, n, seed)).permute(0, 3, 1, 2).to(self.device))


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """A generator snapshot (``generator.pt``) or full training state, loaded safely (no unpickling)."""
    network, snapshot = _load_generator(path, device)
    return Generator(network, snapshot, torch.device(device))


class SyntheticDataset(torch.utils.data.Dataset):
    """Synthetic images as a torch Dataset: drawn from a :class:`Generator` (or a path to one), or read from
    an export folder of ``dermsynth generate`` (either layout).

    Drawn on the fly, ``per_class`` images of each class (an int for every class, or a dict by class
    name) from noise seed ``seed``: the images ``dermsynth generate --per-class N --seed SEED`` writes. Each
    worker draws a class the first time it needs one, all of that class at once, and keeps it (memory: N
    images per class touched, per worker). An export folder must be one ``dermsynth generate`` wrote.
    """

    def __init__(self, source: Generator | str | Path, per_class: int | dict[str, int] = 100, seed: int = 0,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.transform, self.seed = transform, seed
        self._drawn: dict[int, np.ndarray] = {}
        path = Path(source) if isinstance(source, (str, Path)) else None
        if path is not None and path.is_dir():  # an export
            if not is_owned(path, "export"):
                raise DataError(f"{path} is not an export of `dermsynth generate` (no export marker): real images "
                                "must not be served as synthetic ones")
            index = open_index(path, synthetic="expected")
            if not all(r.path is not None for r in index.records):
                raise DataError(f"{path}: not an export of image files")
            self.generator = None
            self.items = [(r.label, r.path) for r in index.records]
            return
        self.generator = load_generator(source) if path is not None else source
        counts = {c: per_class for c in CLASSES} if isinstance(per_class, int) else dict(per_class)
        unknown = sorted(set(counts) - set(CLASSES))
        if unknown or any(n < 0 for n in counts.values()):
            raise DataError(f"per_class: unknown class(es) {', '.join(unknown)} or a negative count; "
                            f"classes are {', '.join(CLASSES)}")
        self.counts = {CLASS_TO_LABEL[c]: n for c, n in counts.items() if n > 0}
        self.items = [(label, k) for label, n in sorted(self.counts.items()) for k in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> list[int]:
        """Every item's class index, in item order (for a weighted sampler)."""
        return [label for label, _ in self.items]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        label, where = self.items[i]
        if self.generator is None:
            image = np.array(Image.open(where).convert("RGB"))
        else:
            if label not in self._drawn:
                self._drawn[label] = self.generator.sample(label, self.counts[label], self.seed)
            image = self._drawn[label][where]
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        return (self.transform(x) if self.transform is not None else x), label


def _label(dx: str | int) -> int:
    if isinstance(dx, str):
        if dx not in CLASS_TO_LABEL:
            raise DataError(f"unknown class {dx!r}; classes are {', '.join(CLASSES)}")
        return CLASS_TO_LABEL[dx]
    if not 0 <= int(dx) < len(CLASSES):
        raise DataError(f"label {dx} is not in 0..{len(CLASSES) - 1}")
    return int(dx)
