"""Typed configs: dataclasses with one docstring per field, checked up front.

Every check runs before any work starts and all problems are reported at once
(:class:`ConfigError`). Presets are YAML files in ``configs/``; a run saves its
resolved config next to its outputs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dermsynth.augment import check_policy
from dermsynth.data.cache import CROPS, RESOLUTIONS
from dermsynth.data.index import LABEL_CONFLICTS, DataChecks
from dermsynth.errors import ConfigError
from dermsynth.models.classifier import ClassifierConfig
from dermsynth.models.discriminator import DiscriminatorConfig
from dermsynth.models.generator import GeneratorConfig


MAX_SEED = 2**32 - 1
"""Largest seed any config or command takes: numpy's generators refuse seeds outside [0, 2**32 - 1]."""


def _raise_if(problems: list[str], what: str) -> None:
    if problems:
        raise ConfigError(f"invalid {what}:\n  - " + "\n  - ".join(problems))


@dataclass
class DataConfig:
    """Where the images are and how they are turned into training tensors."""

    root: Path = Path("data/phantom")
    """Data root: a HAM10000-layout folder, class folders, or a DermaMNIST .npz."""
    format: str = "auto"
    """Reader: auto, ham10000, folder or dermamnist."""
    resolution: int = 64
    """Square training resolution in pixels: 32, 64, 128 or 256."""
    crop: str = "center"
    """center (centre square), full (squeeze whole image) or pad (letterbox)."""
    cache_dir: Path | None = None
    """Preprocessing cache folder; None means $DERMSYNTH_CACHE or ~/.cache/dermsynth."""
    on_corrupt: str = "skip"
    """Undecodable image files: skip (listed in the cache's skipped.csv) or fail."""
    allow_synthetic: bool = False
    """Train on images dermsynth generated (its export marker, metadata column or file tag): refused unless
    true, since they are not patients' images; the run's config.yaml records it."""
    label_conflicts: str = "refuse"
    """A lesion filed under two diagnoses: refuse the data, drop the lesion, or keep its most frequent
    diagnosis (majority; a tie drops the lesion)."""
    follow_links: bool = False
    """Read images behind symbolic links that lead outside the data root (refused unless true)."""

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.cache_dir = Path(self.cache_dir) if self.cache_dir else None
        problems = []
        if self.format not in ("auto", "ham10000", "folder", "dermamnist"):
            problems.append(f"data.format: {self.format!r} is not auto, ham10000, folder or dermamnist")
        if self.resolution not in RESOLUTIONS:
            problems.append(f"data.resolution: {self.resolution} is not one of {RESOLUTIONS}")
        if self.crop not in CROPS:
            problems.append(f"data.crop: {self.crop!r} is not one of {CROPS}")
        if self.on_corrupt not in ("skip", "fail"):
            problems.append(f"data.on_corrupt: {self.on_corrupt!r} is not skip or fail")
        if self.label_conflicts not in LABEL_CONFLICTS:
            problems.append(f"data.label_conflicts: {self.label_conflicts!r} is not one of "
                            f"{', '.join(LABEL_CONFLICTS)}")
        _raise_if(problems, "data config")

    def checks(self) -> DataChecks:
        """The reader's refusals this config lifts."""
        return DataChecks(self.allow_synthetic, self.label_conflicts, self.follow_links)


@dataclass
class SplitConfig:
    """How the lesion-grouped train/val/test split is drawn."""

    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    """Shares of images in train, val and test (per class, grouped by lesion)."""
    seed: int = 0
    """Seed of the split; the same seed and data give the same split."""

    def __post_init__(self) -> None:
        self.fractions = tuple(float(f) for f in self.fractions)
        problems = []
        if len(self.fractions) != 3 or any(f < 0 for f in self.fractions):
            problems.append(f"split.fractions: need three non-negative numbers, got {self.fractions}")
        elif abs(sum(self.fractions) - 1) > 1e-6:
            problems.append(f"split.fractions: must sum to 1, got {sum(self.fractions):g}")
        elif self.fractions[0] == 0:
            problems.append("split.fractions: the train share must be above 0")
        _raise_if(problems, "split config")


@dataclass
class PhantomConfig:
    """Procedural phantom data (not medical data) for demos and tests."""

    per_class: int = 100
    """Images per class."""
    size: int = 128
    """Image width in pixels."""
    seed: int = 0
    """Seed; the same seed gives byte-identical files."""


# --- Typing values by their field's annotation -----------------------------------------

_NAMES = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "booleans"),
          str: ("text", "texts"), Path: ("a path", "paths")}


def _union_args(kind: Any) -> tuple[Any, ...] | None:
    """The members of ``X | Y`` (or ``Optional[X]``), None for any other annotation."""
    return typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else None


def _item_kinds(kind: Any) -> tuple[tuple[Any, ...], bool] | None:
    """Item annotations of ``tuple[...]`` / ``list[...]`` and whether the length is free; None for others."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is list:
        return (args[0] if args else Any,), True
    if origin is tuple:
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            return (args[0] if args else Any,), True
        return args, False
    return None


def describe(kind: Any) -> str:
    """What a value of annotation ``kind`` must be, as a problem names it: "an integer or null"."""
    members = _union_args(kind)
    if members is not None:
        return " or ".join([describe(m) for m in members if m is not type(None)]
                           + ["null"] * (type(None) in members))
    items = _item_kinds(kind)
    if items is not None:
        kinds, free = items
        plural = _NAMES.get(kinds[0], ("", "items"))[1] if len(set(kinds)) == 1 else "items"
        return f"a list of {plural}" if free else f"a list of {len(kinds)} {plural}"
    return _NAMES.get(kind, (getattr(kind, "__name__", str(kind)), ""))[0]


def coerce(value: Any, kind: Any) -> Any:
    """``value`` as annotation ``kind``; ValueError where it is not one.

    YAML reads ``2e-4`` and ``1E3`` (no dot) as text, so numbers are also taken from numeric text. int takes
    integral numbers only (3.0 and "64", not 3.5); float refuses NaN and inf; bool takes true/false only (not
    1, "maybe"); tuples and lists type each item (a fixed-length tuple checks the length); ``X | None`` passes
    None. Other annotations pass the value through.
    """
    members = _union_args(kind)
    if members is not None:
        if value is None and type(None) in members:
            return None
        for member in (m for m in members if m is not type(None)):
            try:
                return coerce(value, member)
            except ValueError:
                pass
        raise ValueError(value)
    items = _item_kinds(kind)
    if items is not None:
        kinds, free = items
        if not isinstance(value, (list, tuple)) or (not free and len(value) != len(kinds)):
            raise ValueError(value)
        item_kinds = kinds * len(value) if free else kinds
        return typing.get_origin(kind)(coerce(v, k) for v, k in zip(value, item_kinds))
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(value)
        if kind is float and isinstance(value, int):
            # An int is a float (the numeric tower): kept as given, so saved configs and study keys stay as
            # they were before values were typed.
            return value
        if kind is int and isinstance(value, (int, str)):
            try:
                return int(value)
            except ValueError:
                pass
        try:
            number = float(value)  # OverflowError: an int beyond a float's range
        except (OverflowError, ValueError):
            raise ValueError(value) from None
        if math.isfinite(number) and (kind is float or number.is_integer()):
            return number if kind is float else int(number)
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind is Path:
        if isinstance(value, (str, os.PathLike)) and str(value):
            return Path(value)
    else:
        return value
    raise ValueError(value)


def typed_values(cls: type, values: dict[str, Any], what: str) -> tuple[dict[str, Any], list[str]]:
    """``values`` typed by dataclass ``cls``'s annotations, and every problem: unknown keys, mistyped values,
    seeds beyond [0, MAX_SEED]. Each problem names ``what.key``, the value given and the type expected."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(values) - set(names), key=str)
    problems = [f"{what}: unknown option(s) {', '.join(map(str, unknown))} (known: {', '.join(sorted(names))})"] \
        if unknown else []
    typed = {}
    for name in (n for n in names if n in values):
        try:
            typed[name] = coerce(values[name], hints[name])
        except ValueError:
            problems.append(f"{what}.{name}: expected {describe(hints[name])}, got {values[name]!r}")
            continue
        if name == "seed" and isinstance(typed[name], int) and not 0 <= typed[name] <= MAX_SEED:
            problems.append(f"{what}.{name}: expected an integer in [0, {MAX_SEED}], got {values[name]!r}")
    return typed, problems


def from_dict(cls: type, values: dict[str, Any] | None, what: str) -> Any:
    """Build dataclass ``cls`` from a dict, each value typed by its field; every problem named at once."""
    if values is not None and not isinstance(values, dict):
        raise ConfigError(f"{what}: expected a mapping of options, got {values!r}")
    typed, problems = typed_values(cls, values or {}, what)
    _raise_if(problems, f"{what} config")
    return cls(**typed)


PRESETS = Path(__file__).resolve().parent / "presets"
"""The presets shipped inside the package (the repository's configs/ links here)."""


def presets() -> dict[str, str]:
    """Every shipped preset's name and the first sentence of the comment it opens with."""
    out = {}
    for path in sorted(PRESETS.glob("*.yaml")):
        lines = path.read_text(encoding="utf-8").splitlines()
        words = " ".join(line.lstrip("#").strip() for line in lines[:next(
            (i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))])
        sentence = words.split(". ")[0].rstrip(".")
        out[path.stem] = sentence if len(sentence) <= 100 else sentence[:99].rsplit(" ", 1)[0] + " ..."
    return out


def find_preset(name: str | Path, study: bool = False) -> Path:
    """A config file: a path that exists, else a shipped preset by name (``best``, ``classifier-effnet.yaml``;
    for a study also ``demo`` for run-demo.yaml)."""
    path = Path(name)
    if path.is_file() or len(path.parts) != 1:  # a folder named like a preset (./demo after make demo) is not one
        return path
    stem = path.name.removesuffix(".yaml")
    for candidate in ([f"run-{stem}", stem] if study else [stem]):
        if (PRESETS / f"{candidate}.yaml").is_file():
            return PRESETS / f"{candidate}.yaml"
    raise ConfigError(f"{name}: no such file, and no preset of that name (presets: {', '.join(presets())}; "
                      "`dermsynth presets` describes them)")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def to_plain(obj: Any) -> Any:
    """A config as plain YAML/JSON-friendly values (paths as strings)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj





# --- GAN training -----------------------------------------------------------------

LOSSES = ("bce", "hinge", "wgan")
"""GAN losses (training/gan_losses.py): non-saturating BCE (the paper), hinge, Wasserstein."""


@dataclass
class LossConfig:
    """GAN loss and regularisers (see training/gan_losses.py)."""

    kind: str = "bce"
    """bce (non-saturating, the paper), hinge or wgan."""
    gp_weight: float = 0.0
    """Weight of the WGAN-GP gradient penalty on interpolates (the paper: 10; hybrid: of the pixel critic);
    0 disables."""
    gp_interval: int = 1
    """Lazy regularisation of the gradient penalty: apply it every this many D steps, weighted by the interval
    (1: every step, as the paper; `best`: 16, as StyleGAN2 does for R1)."""
    r1_gamma: float = 0.0
    """R1 penalty weight gamma (the penalty is gamma/2 * E||grad D(x)||^2; hybrid: of the pixel critic);
    0 disables."""
    r1_interval: int = 16
    """Lazy regularisation: apply R1 every this many D steps, weighted by the interval."""
    mode_seeking: float = 0.0
    """Weight of MSGAN's mode-seeking term in G's loss (pairs of images of one class from two noises must
    differ); 0 disables."""
    pixel_weight: float = 1.0
    """hybrid discriminator: weight of the pixel critic's adversarial term, in D's loss and G's alike."""
    feature_weight: float = 1.0
    """hybrid discriminator: weight of the frozen-feature heads' adversarial term, in D's loss and G's alike."""

    def problems(self) -> list[str]:
        out = []
        if self.kind not in LOSSES:
            out.append(f"loss.kind {self.kind!r} is not one of {LOSSES}")
        if self.gp_weight < 0 or self.r1_gamma < 0 or self.mode_seeking < 0:
            out.append("loss.gp_weight, loss.r1_gamma and loss.mode_seeking must be >= 0")
        if self.pixel_weight < 0 or self.feature_weight < 0 or self.pixel_weight + self.feature_weight == 0:
            out.append("loss.pixel_weight and loss.feature_weight must be >= 0, not both 0")
        if self.gp_interval < 1:
            out.append("loss.gp_interval must be >= 1")
        if self.r1_interval < 1:
            out.append("loss.r1_interval must be >= 1")
        return out


@dataclass
class OptimConfig:
    """Adam for both networks, with separate learning rates."""

    g_lr: float = 2e-4
    """Generator learning rate."""
    d_lr: float = 2e-4
    """Discriminator learning rate."""
    betas: tuple[float, float] = (0.5, 0.999)
    """Adam betas (the paper and DCGAN: 0.5, 0.999)."""

    def problems(self) -> list[str]:
        self.betas = tuple(float(b) for b in self.betas)
        out = []
        if self.g_lr <= 0 or self.d_lr <= 0:
            out.append("optim.g_lr and optim.d_lr must be > 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            out.append(f"optim.betas must be two numbers in [0, 1), got {self.betas}")
        return out


CLASS_SAMPLING = {"uniform": 0.0, "sqrt": 0.5, "balanced": 1.0}  # per-image weight = class size ** -power


@dataclass
class TrainConfig:
    """Length, batch, augmentation, EMA, logging and checkpointing of a GAN run."""

    batch_size: int = 64
    """Images per step over all processes (each of W processes takes batch_size / W)."""
    epochs: float = 100.0
    """Training length in passes over the train part (ignored when total_kimg is set)."""
    total_kimg: float | None = None
    """Training length in thousands of real images shown to D; overrides epochs."""
    max_minutes: float | None = None
    """Stop cleanly (with a checkpoint) after this much training time in total, resumed sessions included;
    for equal-time comparisons."""
    seed: int = 0
    """Seed of weights, noise, augmentation and data order (process r uses seed + r for noise)."""
    dihedral: bool = False
    """Random flips and 90-degree rotations of real images (8x data, label-preserving)."""
    diffaugment: str = ""
    """DiffAugment policy for D's inputs, real and fake: any of color,translation,cutout."""
    class_sampling: str = "uniform"
    """How real images are drawn: uniform (each image once per epoch), sqrt (each class in proportion to the
    square root of its size, with replacement) or balanced (every class equally often, with replacement)."""
    ema_halflife_kimg: float = 0.0
    """Half-life of the generator's weight EMA in kimg; 0 makes the EMA a plain copy of G."""
    ema_rampup: float | None = 0.05
    """Early in training the half-life is at most this fraction of the kimg seen so far (StyleGAN2's
    ramp-up), so the EMA does not average over the first, fast-changing generators; None disables."""
    tick_kimg: float = 1.0
    """Write a stats line every this many kimg."""
    snapshot_ticks: int = 10
    """Sample grid, checkpoint and inference snapshot every this many ticks (and at the end)."""
    keep_checkpoints: int = 3
    """How many full training states to keep (newest)."""
    amp: str = "auto"
    """Mixed precision: auto (bf16 where the device has native bf16: a CUDA GPU, a CPU with AVX-512 BF16, AMX or
    Arm BF16; fp32 elsewhere, checked at start-up and recorded in run.json), bf16 or none."""
    channels_last: bool = False
    """Use the channels_last memory format."""
    grid_columns: int = 8
    """Samples per class in the snapshot grids."""
    divergence_max_loss: float = 1e6
    """Stop (keeping the last checkpoint) when a loss's magnitude passes this; NaN and inf always stop."""
    divergence_max_grad_norm: float = 1e6
    """Stop when G's or D's gradient norm passes this."""
    divergence_zero_grad_steps: int = 50
    """Stop when G's gradient norm stays exactly 0 for this many steps in a row (G has stopped learning:
    D saturated); 0 disables."""

    def problems(self) -> list[str]:
        out = check_policy(self.diffaugment)
        if self.batch_size < 2:
            out.append("train.batch_size must be >= 2")
        if self.total_kimg is None and self.epochs <= 0:
            out.append("train.epochs must be > 0")
        if self.total_kimg is not None and self.total_kimg <= 0:
            out.append("train.total_kimg must be > 0")
        if self.amp not in ("auto", "bf16", "none"):
            out.append(f"train.amp {self.amp!r} is not auto, bf16 or none")
        if self.class_sampling not in CLASS_SAMPLING:
            out.append(f"train.class_sampling {self.class_sampling!r} is not one of {', '.join(CLASS_SAMPLING)}")
        if self.tick_kimg <= 0 or self.snapshot_ticks < 1 or self.keep_checkpoints < 1:
            out.append("train.tick_kimg, train.snapshot_ticks and train.keep_checkpoints must be positive")
        if self.ema_halflife_kimg < 0:
            out.append("train.ema_halflife_kimg must be >= 0")
        if self.ema_rampup is not None and self.ema_rampup <= 0:
            out.append("train.ema_rampup must be > 0 or null")
        if self.divergence_max_loss <= 0 or self.divergence_max_grad_norm <= 0 or self.divergence_zero_grad_steps < 0:
            out.append("train.divergence_max_loss and train.divergence_max_grad_norm must be > 0, "
                       "train.divergence_zero_grad_steps >= 0")
        return out


@dataclass
class GanConfig:
    """Everything a GAN run needs besides the data path and the run folder."""

    data: DataConfig
    split: SplitConfig
    generator: GeneratorConfig
    discriminator: DiscriminatorConfig
    loss: LossConfig
    optim: OptimConfig
    train: TrainConfig
    name: str = "custom"
    """Preset name, for logs and reports."""


GAN_SECTIONS = {
    "data": DataConfig,
    "split": SplitConfig,
    "generator": GeneratorConfig,
    "discriminator": DiscriminatorConfig,
    "loss": LossConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
}


def parse_assignments(items: list[str] | tuple[str, ...], flag: str, example: str,
                      sectioned: bool = False) -> dict[str, Any]:
    """``["seeds=[0,1]"]`` -> ``{"seeds": [0, 1]}``; ``sectioned``: ``["train.epochs=2"]`` -> ``{"train":
    {"epochs": 2}}``. Values are parsed as YAML; every bad item is named at once."""
    out: dict[str, Any] = {}
    problems = []
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not key.strip() or (sectioned and not (dot and section and name)):
            problems.append(f"{flag} {item!r}: expected {'SECTION.' if sectioned else ''}KEY=VALUE, e.g. {example}")
            continue
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as e:
            problems.append(f"{flag} {item!r}: the value is not valid YAML ({getattr(e, 'problem', None) or e})")
            continue
        if sectioned:
            out.setdefault(section, {})[name] = value
        else:
            out[key.strip()] = value
    _raise_if(problems, f"{flag} option(s)")
    return out


def build_sections(
    raw: dict[str, Any],
    overrides: list[str] | None,
    data_root: str | Path | None,
    section_classes: dict[str, type],
    follow_resolution: tuple[str, ...],
) -> tuple[str, dict[str, Any], list[str]]:
    """Preset dict + ``--set`` overrides -> (name, section configs, problems), checking every section.

    Each value is typed by its field's annotation (:func:`typed_values`); a section with mistyped values is
    not built, its problems are listed with every other section's. Sections named in ``follow_resolution``
    take data.resolution unless the preset sets their own.
    """
    raw = dict(raw)
    problems = []
    for section, values in parse_assignments(overrides or [], "--set", "train.epochs=2", sectioned=True).items():
        if section not in section_classes:
            problems.append(f"--set: unknown section {section!r} (known: {', '.join(section_classes)})")
        elif raw.get(section) is None:
            raw[section] = values
        elif isinstance(raw[section], dict):
            raw[section] = {**raw[section], **values}
        # else: a section that is not a mapping is named below
    name = raw.pop("name", "custom")
    if not isinstance(name, str):
        problems.append(f"name: expected text, got {name!r}")
    unknown = sorted(set(raw) - set(section_classes), key=str)
    if unknown:
        problems.append(f"unknown section(s): {', '.join(map(str, unknown))}")
    sections: dict[str, Any] = {}
    for section, cls in section_classes.items():
        values = raw.get(section)
        if values is not None and not isinstance(values, dict):
            problems.append(f"{section}: expected a mapping of options, got {values!r}")
            continue
        values = dict(values or {})
        if section == "data" and data_root is not None:
            values["root"] = data_root
        if section in follow_resolution and "data" in sections:
            values.setdefault("resolution", sections["data"].resolution)
        typed, found = typed_values(cls, values, section)
        if found:  # the constructor's own checks assume typed values
            problems += found
            continue
        try:
            sections[section] = cls(**typed)
        except ValueError as e:
            problems.append(f"{section}: {e}")
            continue
        if hasattr(sections[section], "problems"):
            problems += sections[section].problems()
    return name, sections, problems


def gan_config(raw: dict[str, Any], overrides: list[str] | None = None,
               data_root: str | Path | None = None) -> GanConfig:
    """Build and check a :class:`GanConfig` from a preset's dict; every problem is reported at once."""
    name, sections, problems = build_sections(raw, overrides, data_root, GAN_SECTIONS, ("generator", "discriminator"))
    if not problems:
        loss = sections["loss"]
        if sections["discriminator"].arch != "hybrid" and (loss.pixel_weight, loss.feature_weight) != (1, 1):
            problems.append("loss.pixel_weight and loss.feature_weight weigh the two heads of a hybrid "
                            f"discriminator; discriminator.arch is {sections['discriminator'].arch}")
        res = sections["data"].resolution
        if sections["generator"].resolution != res or sections["discriminator"].resolution != res:
            problems.append(
                f"generator.resolution ({sections['generator'].resolution}) and discriminator.resolution "
                f"({sections['discriminator'].resolution}) must equal data.resolution ({res})"
            )
    _raise_if(problems, "GAN config")
    return GanConfig(name=name, **sections)


# --- Judge classifier training -------------------------------------------------------

IMBALANCE = ("oversample", "weighted_loss", "none")


@dataclass
class ClassifierTrainConfig:
    """Length, batch, optimiser, class balance, augmentation and checkpointing of a classifier run."""

    epochs: int = 50
    """Passes over the train part (an oversampled epoch draws as many images as the train part has)."""
    batch_size: int = 64
    """Images per step."""
    optimizer: str = "adam"
    """adam, adamw or sgd (momentum 0.9, Nesterov)."""
    lr: float = 1e-3
    """Peak learning rate."""
    lr_schedule: str = "constant"
    """constant, or cosine (decays to 0 at the last epoch; a function of the epoch, so resume is exact)."""
    warmup_epochs: int = 0
    """Raise the learning rate linearly, step by step, from lr / steps to lr over this many first epochs;
    a cosine schedule then decays over the remaining epochs. 0: no warm-up."""
    weight_decay: float = 0.0
    """Weight decay (decoupled for adamw)."""
    label_smoothing: float = 0.0
    """Cross-entropy label smoothing."""
    imbalance: str = "oversample"
    """oversample (class-balanced sampling with replacement, the paper), weighted_loss
    (cross-entropy weighted inversely to class frequency) or none."""
    dihedral: bool = True
    """Random flips and 90-degree rotations (a lesion photographed from above has no "up")."""
    color_jitter: float = 0.1
    """Largest relative change of brightness, contrast and saturation per image; 0 disables."""
    random_resized_crop: float = 0.0
    """Random resized crops: the smallest share of the image's area a crop keeps (aspect 3/4..4/3,
    resized back to the resolution); 0 disables."""
    seed: int = 0
    """Seed of weights, data order, dropout and augmentation."""
    select: str = "average"
    """Which weights classifier.pt holds: average (the mean of the weights of the last ``average_epochs`` epochs
    of the fixed schedule: nothing is chosen on the val part, whose rare classes hold a dozen images each) or
    best (the epoch with the best val balanced accuracy)."""
    average_epochs: int = 5
    """select average: how many last epochs are averaged (all of them when the run is shorter)."""
    patience: int = 0
    """select best: stop when val balanced accuracy has not improved for this many epochs; 0 never stops early."""
    checkpoint_epochs: int = 1
    """Write a full training state every this many epochs (and at the end)."""
    keep_checkpoints: int = 3
    """How many full training states to keep (newest)."""
    amp: str = "auto"
    """Mixed precision: auto (bf16 where the device has native bf16: a CUDA GPU, a CPU with AVX-512 BF16, AMX or
    Arm BF16; fp32 elsewhere, checked at start-up and recorded in run.json), bf16 or none."""

    def problems(self) -> list[str]:
        out = []
        if self.epochs < 1 or self.batch_size < 2:
            out.append("train.epochs must be >= 1 and train.batch_size >= 2")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            out.append(f"train.optimizer {self.optimizer!r} is not adam, adamw or sgd")
        if self.lr <= 0 or self.weight_decay < 0:
            out.append("train.lr must be > 0 and train.weight_decay >= 0")
        if self.lr_schedule not in ("constant", "cosine"):
            out.append(f"train.lr_schedule {self.lr_schedule!r} is not constant or cosine")
        if not 0 <= self.label_smoothing < 1:
            out.append("train.label_smoothing must be in [0, 1)")
        if self.imbalance not in IMBALANCE:
            out.append(f"train.imbalance {self.imbalance!r} is not one of {', '.join(IMBALANCE)}")
        if not 0 <= self.color_jitter < 1:
            out.append("train.color_jitter must be in [0, 1)")
        if not 0 <= self.random_resized_crop <= 1:
            out.append("train.random_resized_crop must be in [0, 1] (0 disables)")
        if not 0 <= self.warmup_epochs <= self.epochs:
            out.append("train.warmup_epochs must be in [0, train.epochs]")
        if self.select not in ("average", "best"):
            out.append(f"train.select {self.select!r} is not average or best")
        if self.average_epochs < 1:
            out.append("train.average_epochs must be >= 1")
        if self.patience and self.select != "best":
            out.append("train.patience stops on the best val epoch: it needs train.select best")
        if self.patience < 0 or self.checkpoint_epochs < 1 or self.keep_checkpoints < 1:
            out.append("train.patience must be >= 0, train.checkpoint_epochs and train.keep_checkpoints >= 1")
        if self.amp not in ("auto", "bf16", "none"):
            out.append(f"train.amp {self.amp!r} is not auto, bf16 or none")
        return out


@dataclass
class ClassifierRunConfig:
    """Everything a classifier run needs besides the data path and the run folder."""

    data: DataConfig
    split: SplitConfig
    model: ClassifierConfig
    train: ClassifierTrainConfig
    name: str = "custom"
    """Preset name, for logs and reports."""


CLASSIFIER_SECTIONS = {
    "data": DataConfig,
    "split": SplitConfig,
    "model": ClassifierConfig,
    "train": ClassifierTrainConfig,
}


def classifier_config(
    raw: dict[str, Any], overrides: list[str] | None = None, data_root: str | Path | None = None
) -> ClassifierRunConfig:
    """Build and check a :class:`ClassifierRunConfig` from a preset's dict; every problem is reported at once."""
    name, sections, problems = build_sections(raw, overrides, data_root, CLASSIFIER_SECTIONS, ("model",))
    if "split" in sections and sections["split"].fractions[1] == 0:
        problems.append("split.fractions: the val share must be above 0 (the best epoch is chosen on val)")
    if "model" in sections and "data" in sections and sections["model"].resolution != sections["data"].resolution:
        problems.append(
            f"model.resolution ({sections['model'].resolution}) must equal data.resolution "
            f"({sections['data'].resolution})"
        )
    _raise_if(problems, "classifier config")
    return ClassifierRunConfig(name=name, **sections)


# Options added after a study format was fixed, with the value that keeps the earlier behaviour: at that value
# they are left out of a stage's settings, so a study trained before they existed stays up to date (and its
# trained GAN is not replaced) when dermsynth is upgraded.
NEUTRAL_ADDITIONS = {
    "generator": {"arch": "dcgan"},
    "discriminator": {"arch": "dcgan", "backbone_resolution": None, "head_channels": 128, "cmap_dim": 64,
                      "mbstd_group": 0, "pixel_channels": 32},
    "loss": {"mode_seeking": 0.0, "pixel_weight": 1.0, "feature_weight": 1.0},
    "data": {"allow_synthetic": False, "label_conflicts": "refuse", "follow_links": False},
    "train": {"class_sampling": "uniform", "warmup_epochs": 0, "random_resized_crop": 0.0},
}


def result_settings(cfg: Any) -> Any:
    """What decides a run's results: a resolved config (dataclass or its YAML dict) as JSON values without
    where the data, cache and pretrained weights live, nor the divergence guard's bounds (they stop a run that
    fails, they change nothing a finished run computed). The data enter a study's keys by their content
    fingerprint, so moved or copied data change nothing; options at the neutral value of
    :data:`NEUTRAL_ADDITIONS` are left out."""
    plain = json.loads(json.dumps(to_plain(cfg)))
    for key in ("root", "cache_dir"):
        plain.get("data", {}).pop(key, None)
    plain.get("discriminator", {}).pop("backbone_weights", None)
    plain.get("model", {}).pop("backbone_weights", None)
    for key in [k for k in plain.get("train", {}) if k.startswith("divergence_")]:
        del plain["train"][key]
    for section, neutral in NEUTRAL_ADDITIONS.items():
        values = plain.get(section)
        if isinstance(values, dict):
            for key, value in neutral.items():
                if key in values and values[key] == value:
                    del values[key]
    return plain
