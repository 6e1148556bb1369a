"""Typed configs: one pydantic model per section, a description per field, checked up front.

Every check runs before any work starts and all problems are reported at once, one line each with its dotted
path (:class:`ConfigError`). Presets are YAML files in ``configs/``; a run saves its resolved config next to its
outputs. ``--set SECTION.KEY=VALUE`` values are typed by the section's model (:func:`parse_assignments`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, Strict, field_validator, model_validator

from dermsynth.augment import check_policy
from dermsynth.data import FORMATS
from dermsynth.data.cache import CROPS, ON_CORRUPT, RESOLUTIONS
from dermsynth.data.index import LABEL_CONFLICTS, DataChecks
from dermsynth.errors import ConfigError
from dermsynth.models.classifier import ClassifierConfig
from dermsynth.models.discriminator import DiscriminatorConfig
from dermsynth.models.generator import GeneratorConfig
from dermsynth.schema import MAX_SEED  # noqa: F401 (commands import it from here)
from dermsynth.schema import (
    FilePath,
    Float,
    Integer,
    Number,
    Section,
    Seed,
    annotation_at,
    option_value,
    raise_problems,
    read_yaml,
    validated,
)


class DataConfig(Section):
    """Where the images are and how they are turned into training tensors."""

    root: FilePath = Field(Path("data/phantom"), description=(
        "Data root: a HAM10000-layout folder, class folders, or a DermaMNIST .npz."))
    format: Literal[FORMATS] = Field("auto", description=(
        "Reader: auto, ham10000, folder or dermamnist."))
    resolution: Literal[RESOLUTIONS] = Field(64, description=(
        "Square training resolution in pixels: 32, 64, 128 or 256."))
    crop: Literal[CROPS] = Field("center", description=(
        "center (centre square), full (squeeze whole image) or pad (letterbox)."))
    cache_dir: FilePath | None = Field(None, description=(
        "Preprocessing cache folder; None means $DERMSYNTH_CACHE or ~/.cache/dermsynth."))
    on_corrupt: Literal[ON_CORRUPT] = Field("skip", description=(
        "Undecodable image files: skip (listed in the cache's skipped.csv) or fail."))
    allow_synthetic: bool = Field(False, description=(
        "Train on images dermsynth generated (its export marker, metadata column or file tag): refused unless "
        "true, since they are not patients' images; the run's config.yaml records it."))
    label_conflicts: Literal[LABEL_CONFLICTS] = Field("refuse", description=(
        "A lesion filed under two diagnoses: refuse the data, drop the lesion, or keep its most frequent "
        "diagnosis (majority; a tie drops the lesion)."))
    follow_links: bool = Field(False, description=(
        "Read images behind symbolic links that lead outside the data root (refused unless true)."))

    def checks(self) -> DataChecks:
        """The reader's refusals this config lifts."""
        return DataChecks(allow_synthetic=self.allow_synthetic, label_conflicts=self.label_conflicts,
                          follow_links=self.follow_links)


Share = Annotated[Float, Field(ge=0)]


class SplitConfig(Section):
    """How the lesion-grouped train/val/test split is drawn."""

    fractions: Annotated[tuple[Share, Share, Share], Strict(False)] = Field((0.7, 0.1, 0.2), description=(
        "Shares of images in train, val and test (per class, grouped by lesion)."))
    seed: Seed = Field(0, description="Seed of the split; the same seed and data give the same split.")

    @model_validator(mode="after")
    def _shares(self) -> SplitConfig:
        if abs(sum(self.fractions) - 1) > 1e-6:
            raise_problems([("fractions", f"must sum to 1, got {sum(self.fractions):g}")])
        if self.fractions[0] == 0:
            raise_problems([("fractions", "the train share must be above 0")])
        return self


class PhantomConfig(Section):
    """Procedural phantom data (not medical data) for demos and tests."""

    per_class: Integer = Field(100, ge=1, description="Images per class.")
    size: Integer = Field(128, ge=1, description="Image width in pixels.")
    seed: Seed = Field(0, description="Seed; the same seed gives byte-identical files.")


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
    """A config file's sections (booleans true or false only); a file that is not UTF-8 YAML text, is empty or
    is not a mapping is refused in one line naming it."""
    path = Path(path)
    try:
        data = read_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the config as UTF-8") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if data is None:
        raise ConfigError(f"{path}: the config file is empty (no sections); write the options it changes, or "
                          "use a shipped preset (`dermsynth presets`)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def to_plain(obj: Any) -> Any:
    """A config as plain YAML/JSON-friendly values (paths as strings, tuples as lists)."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
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


class LossConfig(Section):
    """GAN loss and regularisers (see training/gan_losses.py)."""

    kind: Literal[LOSSES] = Field("bce", description="bce (non-saturating, the paper), hinge or wgan.")
    gp_weight: Number = Field(0.0, ge=0, description=(
        "Weight of the WGAN-GP gradient penalty on interpolates (the paper: 10; hybrid: of the pixel critic); "
        "0 disables."))
    gp_interval: Integer = Field(1, ge=1, description=(
        "Lazy regularisation of the gradient penalty: apply it every this many D steps, weighted by the interval "
        "(1: every step, as the paper; `best`: 16, as StyleGAN2 does for R1)."))
    r1_gamma: Number = Field(0.0, ge=0, description=(
        "R1 penalty weight gamma (the penalty is gamma/2 * E||grad D(x)||^2; hybrid: of the pixel critic); "
        "0 disables."))
    r1_interval: Integer = Field(16, ge=1, description=(
        "Lazy regularisation: apply R1 every this many D steps, weighted by the interval."))
    mode_seeking: Number = Field(0.0, ge=0, description=(
        "Weight of MSGAN's mode-seeking term in G's loss (pairs of images of one class from two noises must "
        "differ); 0 disables."))
    pixel_weight: Number = Field(1.0, ge=0, description=(
        "hybrid discriminator: weight of the pixel critic's adversarial term, in D's loss and G's alike."))
    feature_weight: Number = Field(1.0, ge=0, description=(
        "hybrid discriminator: weight of the frozen-feature heads' adversarial term, in D's loss and G's alike."))

    @model_validator(mode="after")
    def _some_weight(self) -> LossConfig:
        if self.pixel_weight + self.feature_weight == 0:
            raise_problems([("feature_weight", "pixel_weight and feature_weight must not both be 0")])
        return self


Beta = Annotated[Float, Field(ge=0, lt=1)]


class OptimConfig(Section):
    """Adam for both networks, with separate learning rates."""

    g_lr: Number = Field(2e-4, gt=0, description="Generator learning rate.")
    d_lr: Number = Field(2e-4, gt=0, description="Discriminator learning rate.")
    betas: Annotated[tuple[Beta, Beta], Strict(False)] = Field((0.5, 0.999), description=(
        "Adam betas (the paper and DCGAN: 0.5, 0.999)."))


CLASS_SAMPLING = {"uniform": 0.0, "sqrt": 0.5, "balanced": 1.0}  # per-image weight = class size ** -power

AMP = ("auto", "bf16", "none")
AMP_HELP = ("Mixed precision: auto (bf16 where the device has native bf16: a CUDA GPU, a CPU with AVX-512 BF16, "
            "AMX or Arm BF16; fp32 elsewhere, checked at start-up and recorded in run.json), bf16 or none.")


class TrainConfig(Section):
    """Length, batch, augmentation, EMA, logging and checkpointing of a GAN run."""

    batch_size: Integer = Field(64, ge=2, description=(
        "Images per step over all processes (each of W processes takes batch_size / W)."))
    epochs: Number = Field(100.0, gt=0, description=(
        "Training length in passes over the train part (ignored when total_kimg is set)."))
    total_kimg: Number | None = Field(None, gt=0, description=(
        "Training length in thousands of real images shown to D; overrides epochs."))
    max_minutes: Number | None = Field(None, gt=0, description=(
        "Stop cleanly (with a checkpoint) after this much training time in total, resumed sessions included; "
        "for equal-time comparisons."))
    seed: Seed = Field(0, description=(
        "Seed of weights, noise, augmentation and data order (process r uses seed + r for noise)."))
    dihedral: bool = Field(False, description=(
        "Random flips and 90-degree rotations of real images (8x data, label-preserving)."))
    diffaugment: str = Field("", description=(
        "DiffAugment policy for D's inputs, real and fake: any of color,translation,cutout."))
    class_sampling: Literal[tuple(CLASS_SAMPLING)] = Field("uniform", description=(
        "How real images are drawn: uniform (each image once per epoch), sqrt (each class in proportion to the "
        "square root of its size, with replacement) or balanced (every class equally often, with replacement)."))
    ema_halflife_kimg: Number = Field(0.0, ge=0, description=(
        "Half-life of the generator's weight EMA in kimg; 0 makes the EMA a plain copy of G."))
    ema_rampup: Number | None = Field(0.05, gt=0, description=(
        "Early in training the half-life is at most this fraction of the kimg seen so far (StyleGAN2's "
        "ramp-up), so the EMA does not average over the first, fast-changing generators; None disables."))
    tick_kimg: Number = Field(1.0, gt=0, description="Write a stats line every this many kimg.")
    snapshot_ticks: Integer = Field(10, ge=1, description=(
        "Sample grid, checkpoint and inference snapshot every this many ticks (and at the end)."))
    keep_checkpoints: Integer = Field(3, ge=1, description="How many full training states to keep (newest).")
    amp: Literal[AMP] = Field("auto", description=AMP_HELP)
    channels_last: bool = Field(False, description="Use the channels_last memory format.")
    grid_columns: Integer = Field(8, ge=1, description="Samples per class in the snapshot grids.")
    divergence_max_loss: Number = Field(1e6, gt=0, description=(
        "Stop (keeping the last checkpoint) when a loss's magnitude passes this; NaN and inf always stop."))
    divergence_max_grad_norm: Number = Field(1e6, gt=0, description=(
        "Stop when G's or D's gradient norm passes this."))
    divergence_zero_grad_steps: Integer = Field(50, ge=0, description=(
        "Stop when G's gradient norm stays exactly 0 for this many steps in a row (G has stopped learning: "
        "D saturated); 0 disables."))

    @field_validator("diffaugment")
    @classmethod
    def _policy(cls, policy: str) -> str:
        unknown = check_policy(policy)
        if unknown:
            raise ValueError("; ".join(unknown))
        return policy


def _follow_resolution(values: Any, sections: tuple[str, ...]) -> Any:
    """``sections`` take data.resolution unless they set their own (a wrong one is named once, under data)."""
    if not isinstance(values, dict):
        return values
    data = values.get("data")
    if isinstance(data, DataConfig):
        resolution = data.resolution
    elif isinstance(data, dict) or data is None:
        resolution = (data or {}).get("resolution", DataConfig.model_fields["resolution"].default)
    else:
        return values
    if isinstance(resolution, bool) or resolution not in RESOLUTIONS:
        return values
    values = dict(values)
    for section in sections:
        given = values.get(section)
        if given is None or (isinstance(given, dict) and "resolution" not in given):
            values[section] = {**(given or {}), "resolution": resolution}
    return values


class GanConfig(Section):
    """Everything a GAN run needs besides the data path and the run folder."""

    data: DataConfig = Field(default_factory=DataConfig, description=DataConfig.__doc__)
    split: SplitConfig = Field(default_factory=SplitConfig, description=SplitConfig.__doc__)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig, description=(
        "Architecture of the generator; its resolution follows data.resolution unless set."))
    discriminator: DiscriminatorConfig = Field(default_factory=DiscriminatorConfig, description=(
        "Architecture of the discriminator; its resolution follows data.resolution unless set."))
    loss: LossConfig = Field(default_factory=LossConfig, description=LossConfig.__doc__)
    optim: OptimConfig = Field(default_factory=OptimConfig, description=OptimConfig.__doc__)
    train: TrainConfig = Field(default_factory=TrainConfig, description=TrainConfig.__doc__)
    name: str = Field("custom", description="Preset name, for logs and reports.")

    @model_validator(mode="before")
    @classmethod
    def _resolutions(cls, values: Any) -> Any:
        return _follow_resolution(values, ("generator", "discriminator"))

    @model_validator(mode="after")
    def _sections_agree(self) -> GanConfig:
        found = []
        if self.discriminator.arch != "hybrid":
            found += [(f"loss.{name}", "weighs a head of a hybrid discriminator; discriminator.arch is "
                       f"{self.discriminator.arch}") for name in ("pixel_weight", "feature_weight")
                      if getattr(self.loss, name) != 1]
        res = self.data.resolution
        found += [(f"{section}.resolution", f"must equal data.resolution ({res}), got {network.resolution}")
                  for section, network in (("generator", self.generator), ("discriminator", self.discriminator))
                  if network.resolution != res]
        raise_problems(found)
        return self


def parse_assignments(items: list[str] | tuple[str, ...], flag: str, example: str,
                      model: type[BaseModel] | None = None, sectioned: bool = False) -> dict[str, Any]:
    """``["seeds=[0,1]"]`` -> ``{"seeds": [0, 1]}``; ``sectioned``: ``["train.epochs=2"]`` -> ``{"train":
    {"epochs": 2}}``. Each value is typed by ``model``'s field (:func:`~dermsynth.schema.option_value`: YAML with
    booleans true or false only, text as written where the field holds text); every bad item is named at once."""
    out: dict[str, Any] = {}
    problems = []
    for item in items:
        key, sep, text = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not key.strip() or (sectioned and not (dot and section and name)):
            problems.append(f"{flag} {item!r}: expected {'SECTION.' if sectioned else ''}KEY=VALUE, e.g. {example}")
            continue
        loc = (section, name) if sectioned else (key.strip(),)
        try:
            value = option_value(text, annotation_at(model, loc) if model else None)
        except yaml.YAMLError as e:
            problems.append(f"{flag} {item!r}: the value is not valid YAML ({getattr(e, 'problem', None) or e})")
            continue
        if sectioned:
            out.setdefault(section, {})[name] = value
        else:
            out[key.strip()] = value
    if problems:
        raise ConfigError(f"invalid {flag} option(s):\n  - " + "\n  - ".join(problems))
    return out


def _with_overrides(model: type[BaseModel], raw: dict[str, Any], overrides: list[str] | None,
                    data_root: str | Path | None) -> dict[str, Any]:
    """A preset's dict with ``--set`` overrides and the data root on top."""
    raw = dict(raw)
    for section, values in parse_assignments(overrides or [], "--set", "train.epochs=2", model, True).items():
        if raw.get(section) is None:
            raw[section] = values
        elif isinstance(raw[section], dict):
            raw[section] = {**raw[section], **values}
        # else: a section that is not a mapping is named when the config is checked
    if data_root is not None and (raw.get("data") is None or isinstance(raw["data"], dict)):
        raw["data"] = {**(raw.get("data") or {}), "root": data_root}
    return raw


def gan_config(raw: dict[str, Any], overrides: list[str] | None = None,
               data_root: str | Path | None = None) -> GanConfig:
    """Build and check a :class:`GanConfig` from a preset's dict, the disk included (the discriminator's
    weights file); every problem is reported at once."""
    return validated(GanConfig, _with_overrides(GanConfig, raw, overrides, data_root), "invalid GAN config",
                     context={"disk": True})


# --- Judge classifier training -------------------------------------------------------

IMBALANCE = ("oversample", "weighted_loss", "none")


class ClassifierTrainConfig(Section):
    """Length, batch, optimiser, class balance, augmentation and checkpointing of a classifier run."""

    epochs: Integer = Field(50, ge=1, description=(
        "Passes over the train part (an oversampled epoch draws as many images as the train part has)."))
    batch_size: Integer = Field(64, ge=2, description="Images per step.")
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adam", description="adam, adamw or sgd (momentum 0.9, "
                                                                           "Nesterov).")
    lr: Number = Field(1e-3, gt=0, description="Peak learning rate.")
    lr_schedule: Literal["constant", "cosine"] = Field("constant", description=(
        "constant, or cosine (decays to 0 at the last epoch; a function of the epoch, so resume is exact)."))
    warmup_epochs: Integer = Field(0, ge=0, description=(
        "Raise the learning rate linearly, step by step, from lr / steps to lr over this many first epochs; "
        "a cosine schedule then decays over the remaining epochs. 0: no warm-up."))
    weight_decay: Number = Field(0.0, ge=0, description="Weight decay (decoupled for adamw).")
    label_smoothing: Number = Field(0.0, ge=0, lt=1, description="Cross-entropy label smoothing.")
    imbalance: Literal[IMBALANCE] = Field("oversample", description=(
        "oversample (class-balanced sampling with replacement, the paper), weighted_loss "
        "(cross-entropy weighted inversely to class frequency) or none."))
    dihedral: bool = Field(True, description=(
        'Random flips and 90-degree rotations (a lesion photographed from above has no "up").'))
    color_jitter: Number = Field(0.1, ge=0, lt=1, description=(
        "Largest relative change of brightness, contrast and saturation per image; 0 disables."))
    random_resized_crop: Number = Field(0.0, ge=0, le=1, description=(
        "Random resized crops: the smallest share of the image's area a crop keeps (aspect 3/4..4/3, "
        "resized back to the resolution); 0 disables."))
    seed: Seed = Field(0, description="Seed of weights, data order, dropout and augmentation.")
    select: Literal["average", "best"] = Field("average", description=(
        "Which weights classifier.pt holds: average (the mean of the weights of the last ``average_epochs`` "
        "epochs of the fixed schedule: nothing is chosen on the val part, whose rare classes hold a dozen images "
        "each) or best (the epoch with the best val balanced accuracy)."))
    average_epochs: Integer = Field(5, ge=1, description=(
        "select average: how many last epochs are averaged (all of them when the run is shorter)."))
    patience: Integer = Field(0, ge=0, description=(
        "select best: stop when val balanced accuracy has not improved for this many epochs; 0 never stops "
        "early."))
    checkpoint_epochs: Integer = Field(1, ge=1, description=(
        "Write a full training state every this many epochs (and at the end)."))
    keep_checkpoints: Integer = Field(3, ge=1, description="How many full training states to keep (newest).")
    amp: Literal[AMP] = Field("auto", description=AMP_HELP)

    @model_validator(mode="after")
    def _agree(self) -> ClassifierTrainConfig:
        found = []
        if self.warmup_epochs > self.epochs:
            found.append(("warmup_epochs", f"must be <= epochs ({self.epochs}), got {self.warmup_epochs}"))
        if self.patience and self.select != "best":
            found.append(("patience", "stops on the best val epoch: it needs select best"))
        raise_problems(found)
        return self


class ClassifierRunConfig(Section):
    """Everything a classifier run needs besides the data path and the run folder."""

    data: DataConfig = Field(default_factory=DataConfig, description=DataConfig.__doc__)
    split: SplitConfig = Field(default_factory=SplitConfig, description=SplitConfig.__doc__)
    model: ClassifierConfig = Field(default_factory=ClassifierConfig, description=(
        "Architecture of the classifier; its resolution follows data.resolution unless set."))
    train: ClassifierTrainConfig = Field(default_factory=ClassifierTrainConfig,
                                         description=ClassifierTrainConfig.__doc__)
    name: str = Field("custom", description="Preset name, for logs and reports.")

    @model_validator(mode="before")
    @classmethod
    def _resolutions(cls, values: Any) -> Any:
        return _follow_resolution(values, ("model",))

    @model_validator(mode="after")
    def _sections_agree(self) -> ClassifierRunConfig:
        found = []
        if self.split.fractions[1] == 0:
            found.append(("split.fractions", "the val share must be above 0 (the best epoch is chosen on val)"))
        if self.model.resolution != self.data.resolution:
            found.append(("model.resolution", f"must equal data.resolution ({self.data.resolution}), "
                                              f"got {self.model.resolution}"))
        raise_problems(found)
        return self


def classifier_config(
    raw: dict[str, Any], overrides: list[str] | None = None, data_root: str | Path | None = None
) -> ClassifierRunConfig:
    """Build and check a :class:`ClassifierRunConfig` from a preset's dict; every problem is reported at once."""
    return validated(ClassifierRunConfig, _with_overrides(ClassifierRunConfig, raw, overrides, data_root),
                     "invalid classifier config", context={"disk": True})


def result_settings(cfg: Any) -> Any:
    """What decides a run's results: a resolved config (a model or its YAML dict) as JSON values without
    where the data, cache and pretrained weights live, nor the divergence guard's bounds (they stop a run that
    fails, they change nothing a finished run computed). The data enter a study's keys by their content
    fingerprint, so moved or copied data change nothing. Every other option counts, at whatever value."""
    plain = json.loads(json.dumps(to_plain(cfg)))
    for key in ("root", "cache_dir"):
        plain.get("data", {}).pop(key, None)
    plain.get("discriminator", {}).pop("backbone_weights", None)
    plain.get("model", {}).pop("backbone_weights", None)
    for key in [k for k in plain.get("train", {}) if k.startswith("divergence_")]:
        del plain["train"][key]
    return plain
