"""What an evaluation measures: images drawn from a dermsynth generator snapshot, or a folder of images that any
tool made (StyleGAN2-ADA, a diffusion model, ...), in HAM10000 layout or one folder per class.

Both give every measure the same things: images of a class, the set compared with the real train part, what
they are (for the report and for reusing finished work), and the check that they carry no patient of the test
part into a study. A generator's check is exact (its snapshot records what it trained on); a folder's can only
look at the ids it holds, so it also warns that what made the images is unknown.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dermsynth.data.cache import crop_resize
from dermsynth.data.index import CLASS_TO_LABEL, CLASSES, check_nonempty, open_index
from dermsynth.data.splits import load_split
from dermsynth.errors import DataError, LeakageError
from dermsynth.generate import load_generator, sample, trained_against
from dermsynth.models.discriminator import sees_imagenet_features
from dermsynth.storage import sha256_file


def _found(images: list[str], lesions: list[str]) -> str:
    """'N image(s) (e.g. ...) and M lesion(s) (e.g. ...)', naming only what is there."""
    found = [f"{len(images)} image(s) (e.g. {', '.join(images[:3])})"] if images else []
    if lesions:
        found.append(f"{len(lesions)} lesion(s) (e.g. {', '.join(lesions[:3])})")
    return " and ".join(found)


def check_held_out(ids, lesions, split, index, what: str) -> None:
    """Refuse a network (``what``) trained on any val or test image, or any image of a val or test lesion, of
    ``split``: its output would carry those patients into the study."""
    lesion_of = {r.image_id: r.lesion_id for r in index.records}
    lesions = set(lesions if lesions is not None else (lesion_of[i] for i in ids if i in lesion_of))
    held_out = [i for part in ("val", "test") for i in split.parts.get(part, [])]
    seen_images = sorted(set(ids) & set(held_out))
    seen_lesions = sorted({lesion_of[i] for i in held_out if i in lesion_of} & lesions)
    if seen_images or seen_lesions:
        raise LeakageError(f"{what} was trained on {_found(seen_images, seen_lesions)} of this split's val or "
                           "test part: its output would carry those patients into the classifier's training")


def check_generator_data(snapshot: dict, generator: Path, split, index) -> str:
    """Refuse a generator that saw any val or test image, or any image of a val or test lesion, of ``split``.

    The ids come from the snapshot (recorded since this check exists) or, for an older one, from the
    ``split.json`` of its run folder. Returns how it was checked.
    """
    ids = snapshot.get("train_image_ids")
    lesions = snapshot.get("train_lesion_ids")
    source = f"the ids recorded in {generator}"
    if ids is None:
        beside = next((p / "split.json" for p in (generator.parent, generator.parent.parent)
                       if (p / "split.json").is_file()), None)
        if beside is None:
            raise DataError(f"{generator} does not record the images it was trained on, and no split.json is beside "
                            "it: cannot check that it never saw the test or val lesions. Retrain it with this "
                            "version, or put its run's split.json next to it")
        ids = load_split(beside).parts["train"]
        source = f"the train part of {beside}"
    check_held_out(ids, lesions, split, index, f"the generator {generator}")
    return f"checked against {source}: no val or test image or lesion"


def generate_like(G, labels: np.ndarray, seed: int) -> np.ndarray:
    """Images with the given class counts; class c's images come from sample(G, c, n, seed), on G's device."""
    out = np.zeros((len(labels), G.cfg.resolution, G.cfg.resolution, 3), dtype=np.uint8)
    device = next(G.parameters()).device
    for c in range(len(CLASSES)):
        where = np.flatnonzero(labels == c)
        if len(where):
            out[where] = sample(G, c, len(where), seed, device=device)
    return out


class GeneratorSource:
    """Images drawn from a generator snapshot (or a full training state)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.G, self.snapshot = load_generator(self.path)
        self.resolution = self.G.cfg.resolution
        self.fingerprint = sha256_file(self.path)
        self.name = str(self.path)

    @property
    def imagenet_discriminator(self) -> str | None:
        """The discriminator that judged this generator by ImageNet features, if one did (else None)."""
        arch = trained_against(self.snapshot)
        return arch if sees_imagenet_features(arch) else None

    def describe(self) -> dict:
        return {"generator": self.name, "generator_sha256": self.fingerprint, "preset": self.snapshot.get("preset"),
                "generator_kimg": self.snapshot.get("images_seen", 0) / 1000}

    def draw(self, label: int, n: int, seed: int) -> np.ndarray:
        """``n`` images of class ``label`` (the same ones for the same seed)."""
        return sample(self.G, label, n, seed, device=next(self.G.parameters()).device)

    def like(self, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The set compared with the real train part: as many images of each class as ``labels`` has."""
        return generate_like(self.G, labels, seed), labels.copy()

    def train_image_ids(self, split) -> list[str]:
        """The real images the generator learned from (its record, else the split's train part)."""
        return self.snapshot.get("train_image_ids") or list(split.parts["train"])

    def check(self, split, index) -> str:
        """Refuse a generator that saw a val or test image or lesion of ``split``; returns how it was checked."""
        return check_generator_data(self.snapshot, self.path, split, index)


class FolderSource:
    """The images of a folder in HAM10000 layout (``dx`` = intended class) or one folder per class, any size,
    cropped and resized to ``resolution`` as the cache does it."""

    def __init__(self, folder: str | Path, resolution: int, crop: str = "center", progress: bool = True) -> None:
        self.path = Path(folder)
        # Generated images are what is expected here; real ones are read too (a known-answer control).
        self.index = open_index(self.path, synthetic="expected")
        if self.index.source == "folder":
            unknown = sorted(p.name for p in self.path.iterdir()
                             if p.is_dir() and not p.name.startswith(".") and p.name.lower() not in CLASS_TO_LABEL)
            if unknown:
                raise DataError(f"{self.path}: folder(s) {', '.join(unknown)} are not class names "
                                f"({', '.join(CLASSES)}); rename or move them")
        check_nonempty(self.index)
        self.resolution, self.name = resolution, str(self.path)
        records = self.index.records
        self.labels = np.array([r.label for r in records], dtype=np.int64)
        self.images = np.stack([crop_resize(self.index.open_image(i), resolution, crop)
                                for i in tqdm(range(len(records)), desc="reading images", unit="img",
                                              disable=not progress, leave=False)])
        self.fingerprint = self.index.fingerprint()
        self.imagenet_discriminator = None  # unknown: whatever made the images is not recorded
        self._warned = False

    def describe(self) -> dict:
        counts = np.bincount(self.labels, minlength=len(CLASSES))
        return {"images": self.name, "images_fingerprint": self.fingerprint,
                "images_per_class": {c: int(n) for c, n in zip(CLASSES, counts)}}

    def draw(self, label: int, n: int, seed: int) -> np.ndarray:
        """At most ``n`` images of class ``label``: the folder's first, in image-id order (``seed`` is unused: a
        folder holds what it holds)."""
        return self.images[self.labels == label][:n]

    def like(self, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Every image of the folder with its own class (the folder decides the counts)."""
        return self.images, self.labels

    def train_image_ids(self, split) -> list[str]:
        return list(split.parts["train"])

    def check(self, split, index) -> str:
        """Refuse a folder holding images (by id) or lesions of the split's test part, the images every score
        is taken on; warn that what made the images, and on what, cannot be checked."""
        test = set(split.parts.get("test", []))
        lesion_of = {r.image_id: r.lesion_id for r in index.records}
        test_lesions = {lesion_of[i] for i in test if i in lesion_of}
        ids = [r.image_id for r in self.index.records if r.image_id in test]
        lesions = sorted({r.lesion_id for r in self.index.records if r.lesion_id in test_lesions})
        if ids or lesions:
            raise LeakageError(f"{self.path} holds {_found(ids, lesions)} of this split's test part: scores on the "
                               "test part would be scores on images the evaluated set contains")
        if not self._warned:  # once, however many measures check
            print(f"warning: {self.path}: what made these images, and on which real images, is not recorded; "
                  "make sure their generator learned from this split's train part only", file=sys.stderr)
            self._warned = True
        return ("no test image or lesion among the folder's ids; the images' generator and its training data are "
                "unknown")


def open_source(generator: str | Path | None, images: str | Path | None, resolution: int | None = None,
                crop: str = "center", progress: bool = True) -> GeneratorSource | FolderSource:
    """A :class:`GeneratorSource` or a :class:`FolderSource` (exactly one of ``generator`` and ``images``)."""
    if (generator is None) == (images is None):
        raise DataError("give exactly one of a generator snapshot or a folder of images")
    if generator is not None:
        return GeneratorSource(generator)
    if resolution is None:
        raise DataError("a folder of images needs the resolution to evaluate it at")
    return FolderSource(images, resolution, crop, progress)
