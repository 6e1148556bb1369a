"""A study's config: which presets train the GAN and the judges, what is measured, and on which data.

A study file (``configs/run-demo.yaml``, ``configs/run-ham10000.yaml``) is read into :class:`StudyConfig`, every
problem named at once with its dotted path; :func:`section_settings` gives a section as the values its stage key
hashes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from dermsynth.config import PhantomConfig, SplitConfig, load_yaml, to_plain
from dermsynth.data.index import DataChecks
from dermsynth.evaluation.gan import MEASURES, SPACES
from dermsynth.evaluation.probe import ProbeConfig
from dermsynth.evaluation.utility import UtilityConfig
from dermsynth.schema import Integer, Items, Section, Seed, validated

SAME_AS_JUDGE = "judge"
"""``feature_judge.preset`` value: the judge's own penultimate features are the judge space (no second network)."""


class Preset(Section):
    """A preset (a path relative to the study file, or absolute) and its --set overrides."""

    preset: str = Field(description="A preset: a path relative to the study file, an absolute one, or a shipped "
                                    "preset's name.")
    set: Items[str] = Field((), description=(
        "Overrides of the preset's options, as --set takes them: SECTION.KEY=VALUE."))


class Sampling(Section):
    """How many images per class, drawn from which noise seed."""

    per_class: Integer = Field(100, ge=1, description="Images per class.")
    seed: Seed = Field(0, description="Noise seed of the images.")


class MetricsSection(Section):
    """Generative metrics to compute (fid, kid, prdc, memorisation) and their feature spaces (inception, judge)."""

    measures: Items[Literal[MEASURES]] = Field(MEASURES, description=(
        "Generative metrics to compute: " + ", ".join(MEASURES) + "."))
    spaces: Items[Literal[SPACES]] = Field(SPACES, description=(
        "Their feature spaces: inception (the FID Inception network), judge (the feature judge's penultimate "
        "layer)."))


class UtilitySection(UtilityConfig):
    """The utility study: its classifier preset and overrides, the options of
    :class:`~dermsynth.evaluation.utility.UtilityConfig`, and ``external``, a dataset in HAM10000 layout
    that scores every arm too."""

    preset: str = Field("classifier-paper.yaml", description="The utility classifier's preset.")
    set: Items[str] = Field((), description="Overrides of its options, as --set takes them: SECTION.KEY=VALUE.")
    external: str | None = Field(None, description=(
        "A dataset in HAM10000 layout (relative to the study file, or absolute) that scores every arm too."))


class StudyConfig(Section):
    """A whole study: which presets train the GAN and the judges, and what is measured."""

    name: str = Field("study", description="Name shown in the report.")
    phantom: PhantomConfig = Field(default_factory=lambda: PhantomConfig(per_class=60, size=64), description=(
        "Phantom data drawn when no --data is given (not medical data)."))
    split: SplitConfig = Field(default_factory=SplitConfig, description="The lesion-grouped split every stage "
                                                                        "shares.")
    gan: Preset = Field(default_factory=lambda: Preset(preset="best.yaml"), description="GAN preset and overrides.")
    judge: Preset = Field(default_factory=lambda: Preset(preset="classifier-resnet.yaml"), description=(
        "Judge classifier preset and overrides: the classifier that scores Table III."))
    feature_judge: Preset = Field(default_factory=lambda: Preset(preset=SAME_AS_JUDGE), description=(
        "The classifier whose penultimate features are the judge space of FID/KID/PRDC and memorisation: "
        "``judge`` (the judge itself) or a classifier preset and overrides, trained in feature-judge/. A network "
        "pretrained on ImageNet is refused there when the GAN's discriminator sees ImageNet features (projected): "
        "the measure would share the features the generator was trained against."))
    generate: Sampling = Field(default_factory=Sampling, description="Synthetic export: images per class and "
                                                                     "noise seed.")
    detection: Sampling = Field(default_factory=Sampling, description="Table III: images per class and noise "
                                                                      "seed.")
    metrics: MetricsSection = Field(default_factory=MetricsSection, description=MetricsSection.__doc__)
    probe: ProbeConfig = Field(default_factory=ProbeConfig, description=(
        "The utility probe: frozen EfficientNet-Lite0 features and a logistic head per arm and seed, with the "
        "known-answer controls (minutes, where the fine-tuned utility study takes hours)."))
    utility: UtilitySection = Field(default_factory=UtilitySection, description=UtilitySection.__doc__)
    data_checks: DataChecks = Field(default_factory=DataChecks, description=(
        "What the data (and the utility's external set) may hold that every stage refuses by default: synthetic "
        "images (allow_synthetic), lesions under two diagnoses (label_conflicts: drop or majority), images behind "
        "links leading outside the data root (follow_links). ``dermsynth run``'s flags of the same names add to "
        "it."))

    @model_validator(mode="before")
    @classmethod
    def _study_defaults(cls, values: Any) -> Any:
        """A section the file writes changes the options it names; the others keep the study's defaults (which
        differ from the sections' own for the phantom data and the presets)."""
        if not isinstance(values, dict):
            return values
        values = dict(values)
        for name in ("phantom", "gan", "judge", "feature_judge"):
            if isinstance(values.get(name), dict):
                default = cls.model_fields[name].default_factory()
                values[name] = {**{k: getattr(default, k) for k in type(default).model_fields}, **values[name]}
        return values


def section_settings(section: Any) -> Any:
    """A study section as the JSON values its stage key hashes."""
    return json.loads(json.dumps(to_plain(section)))


def load_study(path: str | Path) -> tuple[StudyConfig, Path]:
    """A study file as a typed :class:`StudyConfig`, every problem named at once, and the file's folder."""
    path = Path(path)
    return validated(StudyConfig, load_yaml(path), f"{path}: invalid study config"), path.parent
