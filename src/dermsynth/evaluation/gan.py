"""``dermsynth evaluate gan`` and ``evaluate images``: the generative metrics of a generator, or of a folder of
images any tool made, in one command, each also alone (Table III and utility are commands of their own:
``evaluate detection``, ``evaluate utility``).

For a generator snapshot and its data (the split is the one the GAN trained on,
``split.json`` next to ``generator.pt``, unless given), or for a folder of images
(HAM10000 layout or one folder per class, any size, brought to ``--resolution``;
the split is given):

- ``fid``, ``kid``, ``prdc``: overall and per class (intra-class, averaged),
  in each feature space: the FID Inception network and, with ``--judge``, the
  judge's penultimate features. Generated images follow the real train part's
  class counts (a folder's images are taken as they are). As floors, the same
  metrics between two random halves of the real train part, and between real
  test images and the train part at the evaluated set's size (where the test
  part has that many): what real images unseen in training score.
- ``memorisation``: nearest-training distances of synthetic vs real test images,
  near-copies flagged, figure of the closest pairs (Inception space if available).

Writes ``evaluation.json`` and ``evaluation.md`` (and the memorisation figures) to ``--out``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermsynth.data.cache import load_cache
from dermsynth.data.index import CLASSES, DataChecks, open_index
from dermsynth.data.splits import load_split
from dermsynth.evaluation.sources import FolderSource, GeneratorSource
from dermsynth.metrics import REGISTRY, overall_table, per_class, per_class_table
from dermsynth.metrics.features import Standardiser, extract
from dermsynth.metrics.frechet import fid_bootstrap
from dermsynth.metrics.inception import InceptionFeatures, WeightsError
from dermsynth.metrics.memorisation import memorisation, plot_memorisation, summary
from dermsynth.model_card import add_metrics
from dermsynth.errors import DataError, UsageError
from dermsynth.storage import atomic_write_text, sha256_file
from dermsynth.tables import markdown_table

MEASURES = (*REGISTRY, "memorisation")
"""The generative metrics, each computed in every feature space: the registered metrics, and memorisation."""
SPACES = ("inception", "judge")
"""The feature spaces: the FID Inception network, the judge's penultimate layer."""
EVALUATION_JSON, EVALUATION_MD = "evaluation.json", "evaluation.md"


def parse_measures(text: str | None) -> tuple[str, ...]:
    if not text or text == "all":
        return MEASURES
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in names if m not in MEASURES]
    if unknown:
        moved = {"detection": "evaluate detection", "utility": "evaluate utility", "probe": "evaluate utility"}
        elsewhere = "".join(f" ({m} is `dermsynth {moved[m]}`)" for m in unknown if m in moved)
        raise UsageError(f"unknown measure(s) {', '.join(unknown)}; choose from {', '.join(MEASURES)} or all"
                         + elsewhere)
    return names


class JudgeFeatures:
    """The judge classifier's penultimate features, as a feature extractor."""

    name = "judge"
    standardise = True
    """Distances are taken on features standardised by the real train part (:class:`Standardiser`)."""

    def __init__(self, path: str | Path) -> None:
        from dermsynth.models.classifier import load_classifier

        self.model, self.meta = load_classifier(path)
        self.settings = f"judge-{sha256_file(path)[:16]}"

    def __call__(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        from dermsynth.models.classifier import penultimate_features

        return penultimate_features(self.model, images).astype(np.float64)


def _metric_block(measures, real, real_labels, fake, fake_labels, options: dict) -> dict:
    """Every registered metric asked for, overall and per class (classes with at least 6 images each side)."""
    block = {}
    for name, metric in REGISTRY.items():
        if name not in measures:
            continue
        kwargs = {k: options[k] for k in metric.options}
        block[name] = {"overall": metric.compute(real, fake, **kwargs),
                       **per_class(metric.compute, real, real_labels, fake, fake_labels, list(CLASSES),
                                   min_samples=6, **kwargs)}
    return block


@dataclass
class EvaluationConfig:
    """What ``evaluate gan`` measures, and with what."""

    measures: tuple[str, ...] = MEASURES
    spaces: tuple[str, ...] = SPACES
    """Feature spaces of the feature measures: the FID Inception network, the judge's penultimate layer."""
    judge: Path | None = None
    """A classifier.pt: its penultimate features are the judge space."""
    split_file: Path | None = None
    """The split the GAN trained on [default: split.json beside the generator]."""
    seed: int = 0
    """Noise seed of the generated images."""
    kid_subset: int = 1000
    fid_bootstrap: int = 30
    """Bootstrap resamples of the generated set behind each space's FID interval (0: no interval)."""
    inception_weights: Path | None = None
    feature_cache: Path | None = None
    """Folder caching real-image features."""
    checks: DataChecks = DataChecks()
    """What the data root (and the external set) may hold that is refused by default; recorded in the report."""
    hints: str | None = None
    """How a refusal names the options that lift it (:func:`~dermsynth.data.index.open_index`)."""


def evaluate_gan(generator: str | Path, data_root: str | Path, out: str | Path,
                 cfg: EvaluationConfig | None = None, progress: bool = True) -> dict:
    """``cfg``'s generative metrics of a generator snapshot, in each feature space."""
    cfg = cfg or EvaluationConfig()
    generator = Path(generator)
    split_file = Path(cfg.split_file) if cfg.split_file else generator.parent / "split.json"
    if not split_file.is_file():
        raise DataError(f"{split_file}: no split; pass --split (the split the GAN trained on)")
    return evaluate_source(GeneratorSource(generator), data_root, out, split_file, cfg, progress)


def evaluate_images(images: str | Path, data_root: str | Path, out: str | Path, cfg: EvaluationConfig,
                    resolution: int = 64, crop: str = "center", progress: bool = True) -> dict:
    """Run ``cfg``'s measures on a folder of images that any tool made (HAM10000 layout or class folders), read
    at ``resolution`` against the real data of ``cfg.split_file``."""
    if cfg.split_file is None or not Path(cfg.split_file).is_file():
        raise DataError(f"{cfg.split_file or 'no split given'}: pass --split, the split whose train part the "
                        "images' generator learned from (`dermsynth data split` writes one; a dermsynth run keeps "
                        "its split.json)")
    return evaluate_source(FolderSource(images, resolution, crop, progress), data_root, out,
                           Path(cfg.split_file), cfg, progress)


def evaluate_source(source: GeneratorSource | FolderSource, data_root: str | Path, out: str | Path,
                    split_file: Path, cfg: EvaluationConfig, progress: bool = True) -> dict:
    """``cfg``'s measures of ``source``'s images against the real data of ``split_file``; writes
    ``evaluation.json`` and ``evaluation.md`` to ``out``."""
    measures, judge, seed = cfg.measures, cfg.judge, cfg.seed
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = open_index(data_root, hints=cfg.hints, **cfg.checks.readers())
    for warning in index.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    split = load_split(split_file)
    checked = source.check(split, index)
    cached = load_cache(index, source.resolution, progress=progress)
    part = {p: cached.part_rows(split.parts, p) for p in ("train", "test")}
    train_images, train_labels = np.asarray(cached.images[part["train"]]), cached.labels[part["train"]]
    test_images, test_labels = np.asarray(cached.images[part["test"]]), cached.labels[part["test"]]
    fake_images, fake_labels = source.like(train_labels, seed)

    report: dict = {
        **source.describe(), "data_root": str(data_root), "source_check": checked,
        "split_sha256": split.sha256(), "resolution": source.resolution, "seed": seed,
        "n_real_train": int(len(train_labels)), "n_generated": int(len(fake_labels)),
        "n_real_test": int(len(test_images)), "measures": list(measures), "feature_spaces": {},
        "judge": None if judge is None else str(judge),  # its penultimate features are the judge space
        # What the user let through that is refused by default, and what the reader said about it.
        "data_checks": cfg.checks.changed(), "data_warnings": index.warnings,
    }
    wanted_spaces, spaces = cfg.spaces, []
    if "inception" in wanted_spaces:
        try:
            spaces.append(InceptionFeatures(cfg.inception_weights))
        except WeightsError as e:  # reported; the judge's space may still run
            print(f"warning: Inception features unavailable ({e}); using the judge's features only", file=sys.stderr)
            report["inception_unavailable"] = str(e)
    if judge is not None and "judge" in wanted_spaces:
        space = JudgeFeatures(judge)
        if space.model.cfg.arch == "effnet" and source.imagenet_discriminator:
            raise DataError(f"{judge} is EfficientNet-Lite0 from ImageNet weights, the features the "
                            f"{source.imagenet_discriminator} "
                            "discriminator trained this generator against: its judge-space FID would not be "
                            "independent. Pass a judge trained from scratch (e.g. configs/classifier-paper.yaml)")
        spaces.append(space)
    if not spaces:
        raise DataError("no feature space: the Inception weights are missing or not asked for, and no --judge")

    options = {"subset_size": cfg.kid_subset}  # the registered metrics' options
    # The floors: two random halves of the real train part against each other, and real test images (as many as
    # were evaluated, where the test part has them) against the train part, a sample size the evaluated set shares.
    draw = np.random.default_rng(seed)
    half = draw.permutation(len(train_labels))
    a, b = half[: len(half) // 2], half[len(half) // 2:]
    unseen = np.sort(draw.permutation(len(test_labels))[: len(fake_labels)])
    report["n_floor_test"] = int(len(unseen))
    for space in spaces:
        f_train = extract(space, train_images, cfg.feature_cache, progress)
        f_test = extract(space, test_images, cfg.feature_cache, progress)
        f_fake = space(fake_images, progress=progress)
        standardised = None
        if getattr(space, "standardise", False):
            standardised = Standardiser(f_train)
            f_train, f_test, f_fake = standardised(f_train), standardised(f_test), standardised(f_fake)
        block = {"generated_vs_train": _metric_block(measures, f_train, train_labels, f_fake, fake_labels, options),
                 "floor_half_vs_half": _metric_block(measures, f_train[a], train_labels[a], f_train[b],
                                                     train_labels[b], options),
                 "floor_test_vs_train": _metric_block(measures, f_train, train_labels, f_test[unseen],
                                                      test_labels[unseen], options)}
        if standardised is not None:
            block["standardised"] = standardised.summary
        if "fid" in measures and cfg.fid_bootstrap:
            block["generated_vs_train"]["fid"]["overall"].update(
                fid_bootstrap(f_train, f_fake, cfg.fid_bootstrap, seed))
        if "memorisation" in measures:
            result = memorisation(f_train, f_fake, f_test)
            block["memorisation"] = summary(result)
            figure = out / f"memorisation-{space.name}.png"
            plot_memorisation(result, fake_images, train_images, figure)
            block["memorisation"]["figure"] = figure.name
        report["feature_spaces"][space.name] = block

    report["elapsed_s"] = round(time.perf_counter() - start, 1)
    atomic_write_text(out / EVALUATION_JSON, json.dumps(report, indent=1, default=float))
    atomic_write_text(out / EVALUATION_MD, evaluation_markdown(report))
    if isinstance(source, GeneratorSource):
        card_metrics(source.path, report)
    return report


def evaluation_markdown(report: dict) -> str:
    if "generator" in report:
        what, made = f"`{report['generator']}`", (f"preset {report.get('preset')}, "
                                                  f"{report['generator_kimg']:.1f} kimg; ")
    else:
        what, made = f"the images in `{report['images']}`", ""
    lines = [f"# Evaluation of {what}", "",
             f"{made}{report['n_generated']} generated vs {report['n_real_train']} real train images at "
             f"{report['resolution']} px (real test: {report['n_real_test']}).", ""]
    if report.get("source_check"):
        lines += [f"Held-out check: {report['source_check']}.", ""]
    lines += [f"**Data taken in on request:** {w}." for w in report.get("data_warnings", [])]
    lines += [""] if report.get("data_warnings") else []
    for space, block in report["feature_spaces"].items():
        lines += [f"## {space} features", "", *markdown_table(*overall_table(comparisons(block)))]
        lines += ["", *[f"- {line}" for line in explain_space(block)]]
        headers, rows = per_class_table(block["generated_vs_train"], CLASSES)
        if rows:
            lines += ["", "Per class, generated vs the real train images of the class:", "",
                      *markdown_table(headers, rows)]
        if "memorisation" in block:
            mem = block["memorisation"]
            lines += ["", f"Memorisation: {mem['n_flagged']} of {mem['n_synthetic']} synthetic images "
                      f"({mem['flagged_pct']:.2f} %) lie closer to a training image than {mem['percentile']:g} % of "
                      f"real test images do; median nearest-training distance {mem['synthetic_median']:.2f} "
                      f"(synthetic) vs {mem['test_median']:.2f} (real test); ![]({mem['figure']})"]
        lines.append("")
    return "\n".join(lines) + "\n"


def card_metrics(generator: Path, report: dict) -> bool:
    """Add the headline figures of an evaluation to the model card beside the generator (if it has one)."""
    measured = {}
    for space, block in report["feature_spaces"].items():
        gen = block["generated_vs_train"]
        if "fid" in gen:
            measured[f"{space} FID"] = round(gen["fid"]["overall"]["fid"], 1)
        if "kid" in gen:
            measured[f"{space} KID x1000"] = round(1000 * gen["kid"]["overall"]["kid"], 1)
    if not measured:
        return False
    return add_metrics(generator, measured, f"evaluate gan, {report['n_generated']} generated vs "
                                            f"{report['n_real_train']} real train images")


def explain_space(block: dict) -> list[str]:
    """One line for each kind of number in a feature space's table: what it is, and how to read it."""
    gen = block["generated_vs_train"]
    lines = []
    fid = gen.get("fid", {}).get("overall", {})
    if "fid_ci95" in fid:
        low, high = fid["fid_ci95"]
        lines.append(f"FID {fid['fid']:.2f}, 95 % interval [{low:.2f}, {high:.2f}] (+- 1.96 bootstrap standard "
                     f"errors over {fid['fid_bootstrap_draws']} resamples of the generated images): another noise "
                     "seed's FID should fall within it. FID is lower for more similar sets; the floors are what "
                     "real images unseen in training score at these sample sizes.")
    if "kid" in gen:
        lines.append("KID x1000 is an unbiased estimate of a squared distance: real sets drawn alike score about 0, "
                     "and a small negative value (a floor's, often) means 0 within its noise, not better than "
                     "real.")
    if "prdc" in gen:
        lines.append("Precision: the share of generated images inside the real images' neighbourhoods (fidelity); "
                     "recall: the share of real images inside the generated ones' (diversity); density and "
                     "coverage are their outlier-robust versions; each from 0 to 1 (density can pass 1).")
    if "standardised" in block:
        z = block["standardised"]
        lines.append(f"The judge's {z['dims']} penultimate features are standardised by the real train part before "
                     f"any distance ({z['dead']} constant there are dropped; raw, the five largest held "
                     f"{100 * z['top5_variance_share']:.0f} % of the variance).")
    lines.append("Distances in one space compare only with each other: the judge's features have their own scale, "
                 "so its FID and KID are not on Inception's.")
    return lines


def comparisons(block: dict) -> dict[str, dict]:
    """A feature space's metric blocks by their row label in tables."""
    rows = {"generated vs real train": block["generated_vs_train"],
            "floor: real train half vs half": block["floor_half_vs_half"]}
    if "floor_test_vs_train" in block:
        rows["floor: real test vs real train (evaluated set's size)"] = block["floor_test_vs_train"]
    return rows

