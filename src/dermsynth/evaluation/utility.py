"""Utility of synthetic images: does adding them help a classifier on real patients' images?

Trains the utility classifier (by default the EfficientNet judge with its full classical augmentation:
the baseline any practitioner already has), for each of several seeds, in each *arm*:

- ``real``: the real train part of the split only (the baseline every other arm is compared with);
- ``half``: **positive control**: half of the train lesions of each class (a fresh half per seed); the gain of
  ``real`` over it is the effect of doubling the real data, which the study must resolve to be trusted;
- ``shuffled``: **negative control**: ``real`` topped up as ``topup`` is, with real train images drawn from every
  class at random and labelled with the class they top up (no information about their class): no gain expected;
- ``topup``: plus synthetic images topping every class up to ``topup_to`` train images;
- ``ratio``: plus ``ratio`` synthetic images per real image of each class;
- ``balanced``: real and ``synthetic_per_class`` synthetic images of each class, every batch drawn
  class-balanced with ``real_fraction`` of each class's draws real;
- ``pretrain``: trained ``pretrain_epochs`` epochs on ``synthetic_per_class`` synthetic images of each
  class, then fine-tuned on the real train part with the full schedule;
- ``filter``: ``topup`` with only synthetic images that a judge places in their intended class with
  probability at least ``filter_confidence``;
- ``synthetic``: ``synthetic_per_class`` synthetic images of each class only (train on synthetic,
  test on real).

Every classifier is scored on the same real test part (leakage guard included) and, with
``external``, on every image of an external dataset in HAM10000 layout. For each arm the paired
difference from ``real`` gets a 95 % interval that covers training and test sampling at once (seeds resampled
jointly with the test lesions, :func:`~dermsynth.evaluation.probe.compare_arms`) and the minimum detectable
effect, in balanced-accuracy points; each class's recall change keeps a t-interval over seeds. The generator
must not have seen any val or test image or lesion of the study's split (checked from the ids its snapshot
records). Finished trainings are reused, so an interrupted study picks up where it stopped.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from dermsynth.checkpoint import list_states
from dermsynth.config import ClassifierRunConfig, result_settings
from dermsynth.data.index import CLASSES, DataChecks, open_index
from dermsynth.data.splits import load_split
from dermsynth.evaluation.classification import (
    check_no_leakage,
    classification_metrics,
    score_dataset,
)
from dermsynth.evaluation.detection import at_judge_resolution
from dermsynth.figures import pyplot, save_figure
from dermsynth.evaluation.sources import FolderSource, GeneratorSource, check_held_out
from dermsynth.models.classifier import load_classifier, predict_proba
from dermsynth.errors import DataError, FolderError, UsageError
from dermsynth.schema import Integer, Items, Number, Section, Seed, raise_problems, replaced, validated
from dermsynth.storage import atomic_write_json, atomic_write_text, is_owned, remove_folder, settings_key, sha256_file
from dermsynth.tables import markdown_table, percent
from dermsynth.training.classifier_loop import CLASSIFIER_FILE, train_classifier
from dermsynth.training.runs import RUN_JSON, RunOptions

UTILITY_JSON, UTILITY_PNG = "utility.json", "utility.png"
ARMS = ("real", "half", "shuffled", "topup", "ratio", "balanced", "pretrain", "filter", "synthetic")
BASELINE = "real"


class UtilityConfig(Section):
    """Which arms a utility study trains, with how many seeds, and each strategy's setting."""

    arms: Items[Literal[ARMS]] = Field(("real", "half", "shuffled", "topup", "synthetic"), description=(
        "Arms to train (see the module's docstring); ``real`` is the baseline and always trained; ``half`` and "
        "``shuffled`` are the known-answer controls."))
    seeds: Items[Seed] = Field((0, 1, 2), min_length=1, description=(
        "A classifier per arm and seed; paired differences from ``real`` are taken seed by seed."))
    topup_to: Integer = Field(500, ge=0, description="topup and filter: top each class up to this many train images.")
    ratio: Number = Field(0.5, ge=0, description="ratio: synthetic images added per real train image of each class.")
    real_fraction: Number = Field(0.5, ge=0, le=1, description=(
        "balanced: the share of each class's draws that are real images."))
    pretrain_epochs: Integer = Field(5, ge=1, description=(
        "pretrain: epochs on synthetic images before fine-tuning on real ones."))
    filter_confidence: Number = Field(0.5, ge=0, le=1, description=(
        "filter: the judge's least probability for the intended class."))
    filter_max_draws: Integer = Field(20, ge=1, description=(
        "filter: at most this many candidates per image wanted (fewer kept if too few pass)."))
    synthetic_per_class: Integer = Field(500, ge=1, description=(
        "synthetic, balanced and pretrain: synthetic images of each class."))
    synthetic_seed: Integer = Field(1000, description=(
        "Noise seed of the synthetic images (one pool: image k of a class is the same in every arm)."))

    @model_validator(mode="after")
    def _each_once(self) -> UtilityConfig:
        raise_problems([(name, f"{what} is named twice") for name, what in (("arms", "an arm"), ("seeds", "a seed"))
                        if len(set(getattr(self, name))) != len(getattr(self, name))])
        return self


def utility_config(values: dict | None = None) -> UtilityConfig:
    """A checked :class:`UtilityConfig` from a dict (a study's ``utility`` section without its preset), with the
    baseline arm added."""
    cfg = validated(UtilityConfig, values or {}, "invalid utility config", prefix=("utility",))
    if BASELINE not in cfg.arms:
        cfg = replaced(cfg, arms=(BASELINE, *cfg.arms))
    return cfg


def synthetic_counts(real_counts: dict[str, int], arm: str, cfg: UtilityConfig) -> dict[str, int]:
    """Synthetic train images per class in an arm (for ``filter``: the images wanted after filtering)."""
    if arm in (BASELINE, "half"):
        return {c: 0 for c in CLASSES}
    if arm in ("topup", "filter", "shuffled"):
        return {c: max(0, cfg.topup_to - real_counts.get(c, 0)) for c in CLASSES}
    if arm == "ratio":
        return {c: int(round(cfg.ratio * real_counts.get(c, 0))) for c in CLASSES}
    return {c: cfg.synthetic_per_class for c in CLASSES}  # balanced, pretrain, synthetic


def _folder_name(arm: str, seed: int, part: str = "") -> str:
    return f"{arm}{part}-seed{seed}"


def check_external(external: Path, split, index, generator_ids: list[str], checks: DataChecks = DataChecks()) -> str:
    """Refuse an external test set sharing an image or lesion with the split's train part or the generator's
    train images (before anything trains); returns its content fingerprint."""
    ext = open_index(external, lesions_required=False, **checks.readers())
    lesion_of = {r.image_id: r.lesion_id for r in index.records}
    train = set(split.parts["train"]) | set(generator_ids)
    check_no_leakage([r.image_id for r in ext.records], [r.lesion_id for r in ext.records],
                     {"train_image_ids": sorted(train), "train_lesion_ids": sorted({lesion_of[i] for i in train
                                                                                    if i in lesion_of})},
                     f"external set {external}")
    return ext.fingerprint()


def filter_images(images: np.ndarray, label: int, judge, threshold: float) -> np.ndarray:
    """The images whose judge probability for ``label`` is at least ``threshold`` (boolean mask)."""
    model, meta = judge
    proba = predict_proba(model, at_judge_resolution(images, int(meta["resolution"]), meta["crop"]))
    return proba[:, label] >= threshold


class Controls:
    """What the known-answer arms train on, per seed: ``half``'s split (half of each class's train lesions, the
    val and test parts unchanged) and ``shuffled``'s images (real train images of any class, labelled with the
    class they top up)."""

    def __init__(self, index, split, cfg: ClassifierRunConfig, out: Path, real_counts: dict[str, int],
                 utility: UtilityConfig) -> None:
        from dermsynth.data.cache import load_cache

        self.split, self.out, self.real_counts, self.utility = split, out, real_counts, utility
        cached = load_cache(index, cfg.data.resolution, cfg.data.crop, cfg.data.cache_dir, progress=False)
        self.rows = cached.part_rows(split.parts, "train")
        self.cached = cached
        self.ids = np.array([cached.image_ids[i] for i in self.rows])
        self.lesions = np.array([cached.lesion_ids[i] for i in self.rows])
        self.labels = np.asarray(cached.labels[self.rows])

    def half_split(self, seed: int) -> Path:
        from dermsynth.data.splits import Split, save_split
        from dermsynth.evaluation.probe import half_of_lesions

        keep = half_of_lesions(self.lesions, self.labels, np.random.default_rng(20_000 + seed))
        parts = {**self.split.parts, "train": sorted(self.ids[keep].tolist())}
        path = self.out / f"half-seed{seed}.split.json"
        save_split(Split(parts=parts, seed=self.split.seed, fractions=self.split.fractions,
                         data_root=self.split.data_root, source=f"half of the train lesions (seed {seed})"), path)
        return path

    def shuffled(self, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
        draw = np.random.default_rng(30_000 + seed)
        counts = synthetic_counts(self.real_counts, "shuffled", self.utility)
        picks = {CLASSES.index(c): draw.choice(len(self.rows), size=n) for c, n in counts.items() if n}
        if not picks:
            return None
        rows = np.concatenate([self.rows[p] for p in picks.values()])
        return np.asarray(self.cached.images[rows]), np.concatenate([np.full(len(p), c) for c, p in picks.items()])


def run_utility(
    generator: str | Path | GeneratorSource | FolderSource,
    data_root: str | Path,
    split_file: str | Path,
    cfg: ClassifierRunConfig,
    out: str | Path,
    utility: UtilityConfig | None = None,
    judge: str | Path | None = None,
    external: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Train and score every arm and seed of ``utility`` into ``out``; returns what utility.json holds (the runs,
    their summary, the generator check, the filter's acceptance and, with ``external``, its summary).
    ``generator``: a snapshot's path, or the source of the synthetic images (a folder's, say).

    Every run folder records what made it (its fingerprint): a run whose settings, generator, split or
    synthetic images changed is trained again, one that matches is reused, and a new external set only
    adds its scores.
    """
    utility = utility or utility_config()
    out = Path(out)
    source = generator if isinstance(generator, (GeneratorSource, FolderSource)) else GeneratorSource(generator)
    check_filter_judge(utility, judge)
    index = open_index(data_root, **cfg.data.checks().readers())  # the classifier config's data checks
    split = load_split(split_file)
    part_of = split.part_of()
    real_counts = {c: 0 for c in CLASSES}
    for r in index.records:
        if part_of.get(r.image_id) == "train":
            real_counts[r.dx] += 1
    checked = source.check(split, index)
    if source.resolution != cfg.data.resolution:
        raise DataError(f"the synthetic images are {source.resolution} px; the classifier config wants "
                        f"{cfg.data.resolution} px")
    judge_model = None
    if "filter" in utility.arms:
        judge_model = load_classifier(judge)
        check_held_out(judge_model[1]["train_image_ids"], judge_model[1]["train_lesion_ids"], split, index,
                       f"the filter's judge {judge}")
    scoring = None
    if external is not None:
        scoring = {"data": str(external), "fingerprint": check_external(
            Path(external), split, index, source.train_image_ids(split),
            cfg.data.checks())}
    out.mkdir(parents=True, exist_ok=True)

    # One synthetic pool for all arms and seeds: image k of class c is the same everywhere.
    need = {c: max((synthetic_counts(real_counts, a, utility)[c] for a in utility.arms
                    if a not in ("filter", "half", "shuffled")), default=0) for c in CLASSES}
    pool = {c: source.draw(CLASSES.index(c), n, utility.synthetic_seed) for c, n in need.items() if n > 0}
    filtered, acceptance = _filtered_pool(source, real_counts, utility, judge_model) if judge_model else ({}, {})
    sources = {"generator": source.fingerprint, "split": split.sha256(),
               "judge": sha256_file(judge) if judge_model else None}

    chosen = {}  # per arm and class: views into the pools (one arm's images are joined at a time, below)
    for arm in utility.arms:
        counts = synthetic_counts(real_counts, arm, utility)
        drawn = filtered if arm == "filter" else pool
        chosen[arm] = {c: drawn[c][: counts[c]] for c in CLASSES if counts[c] > 0 and c in drawn}
    used = {arm: {c: int(len(images.get(c, ()))) for c in CLASSES} for arm, images in chosen.items()}
    controls = Controls(index, split, cfg, out, real_counts, utility) if {"half", "shuffled"} & set(utility.arms) \
        else None
    runs = []
    for seed in utility.seeds:  # seed by seed: a study stopped early has every arm for the first seeds
        for arm in utility.arms:
            synthetic = (np.concatenate(list(chosen[arm].values())), np.concatenate(
                [np.full(len(x), CLASSES.index(c)) for c, x in chosen[arm].items()])) if chosen[arm] else None
            arm_split = Path(split_file)
            if arm == "half":
                arm_split = controls.half_split(seed)
            elif arm == "shuffled":
                synthetic = controls.shuffled(seed)
                used[arm] = {c: 0 if synthetic is None else int((synthetic[1] == CLASSES.index(c)).sum())
                             for c in CLASSES}
            made_by = _fingerprint(arm, seed, cfg, utility, sources, used[arm])
            record = _train_arm(arm, seed, cfg, utility, out, arm_split, data_root, synthetic, scoring,
                                made_by, progress)
            runs.append({**record, "synthetic_per_class": used[arm]})
    result = {"runs": runs, "summary": summarise(runs, utility.arms, "test"), "real_train_per_class": real_counts,
              "generator": source.name, "generator_check": checked, "classifier": cfg.name,
              "config": utility.model_dump(), "filter_acceptance": acceptance or None,
              # what the classifier config's data checks let through that is refused by default, and what it was
              "data_checks": cfg.data.checks().changed(), "data_warnings": index.warnings}
    if external is not None:
        result["external"] = {"data": str(external), "summary": summarise(runs, utility.arms, "external")}
    atomic_write_json(out / UTILITY_JSON, result)
    atomic_write_text(out / "utility.md", utility_markdown(result))
    plot_utility(result, out / UTILITY_PNG)
    return result


def check_filter_judge(utility: UtilityConfig, judge: str | Path | None) -> None:
    """The filter arm keeps the synthetic images a judge recognises: refused without one."""
    if "filter" in utility.arms and judge is None:
        raise UsageError("the filter arm needs a judge (--judge, a classifier.pt) to keep the synthetic images it "
                         "recognises")


def evaluate_utility(source: GeneratorSource | FolderSource, data_root: str | Path, split_file: str | Path,
                     out: str | Path, probe=None, classifier: ClassifierRunConfig | None = None,
                     utility: UtilityConfig | None = None, judge: str | Path | None = None,
                     external: str | Path | None = None, checks: DataChecks = DataChecks(),
                     feature_cache: str | Path | None = None, progress: bool = True,
                     hints: str | None = None) -> dict:
    """The utility of ``source``'s images on the real test part: the probe (frozen EfficientNet-Lite0 features and
    a logistic head, 20 seeds in minutes; ``probe``: its :class:`~dermsynth.evaluation.probe.ProbeConfig`) into
    ``out``/probe, and with ``classifier`` the fine-tuned study of :func:`run_utility` (hours) into ``out``/study."""
    from dermsynth.evaluation.probe import probe_generator

    out = Path(out)
    if classifier is not None:  # before the probe's minutes
        check_filter_judge(utility or utility_config(), judge)
    result = {"probe": probe_generator(source, data_root, split_file, out / "probe", probe, checks, feature_cache,
                                       progress, hints)}
    if classifier is not None:
        result["study"] = run_utility(source, data_root, split_file, classifier, out / "study", utility, judge,
                                      external, progress)
    return result


ARM_OPTIONS = {
    "real": (),
    "half": (),
    "shuffled": ("topup_to",),
    "topup": ("topup_to", "synthetic_seed"),
    "ratio": ("ratio", "synthetic_seed"),
    "balanced": ("real_fraction", "synthetic_per_class", "synthetic_seed"),
    "pretrain": ("pretrain_epochs", "synthetic_per_class", "synthetic_seed"),
    "filter": ("topup_to", "filter_confidence", "filter_max_draws", "synthetic_seed"),
    "synthetic": ("synthetic_per_class", "synthetic_seed"),
}
"""The options each arm's classifier depends on (real depends on none: a new generator keeps the baseline)."""


def _fingerprint(arm: str, seed: int, cfg: ClassifierRunConfig, utility: UtilityConfig, sources: dict,
                 used: dict[str, int]) -> str:
    """What made an arm's classifier for a seed: if any of it changes, the classifier is trained again."""
    payload = {"arm": arm, "seed": seed, "classifier": result_settings(cfg), "split": sources["split"],
               "options": {k: getattr(utility, k) for k in ARM_OPTIONS[arm]}}
    if arm not in (BASELINE, "half", "shuffled"):  # the controls use real images only
        payload.update(generator=sources["generator"], synthetic_per_class=used)
    if arm == "filter":
        payload["judge"] = sources["judge"]
    return settings_key(payload)


def _filtered_pool(source, real_counts: dict[str, int], utility: UtilityConfig,
                   model: tuple) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per class, the first images of the synthetic stream that the judge (``model``: a loaded classifier and
    its snapshot's entries) accepts, as many as the arm wants from at most ``filter_max_draws`` times as many
    drawn, and the share of drawn images accepted."""
    pool, acceptance = {}, {}
    for c, n in synthetic_counts(real_counts, "filter", utility).items():
        if n == 0:
            continue
        label = CLASSES.index(c)
        drawn = source.draw(label, n * utility.filter_max_draws, utility.synthetic_seed)
        keep = filter_images(drawn, label, model, utility.filter_confidence)
        pool[c], acceptance[c] = drawn[keep][:n], round(float(keep.mean()), 4)
        if len(pool[c]) < n:
            print(f"warning: filter: only {len(pool[c])} of the {n} {c} images wanted pass the judge at "
                  f"{utility.filter_confidence} ({len(drawn)} drawn)", file=sys.stderr)
    return pool, acceptance


def _scores(run_dir: Path, data_root, split: str, checks: DataChecks) -> dict:
    model, meta = load_classifier(run_dir / CLASSIFIER_FILE)
    scored = score_dataset(model, meta, data_root, split, progress=False, checks=checks,
                           whose=f"the utility classifier {run_dir}'s split")
    m = classification_metrics(scored.labels, scored.proba)
    return {"balanced_accuracy": m["balanced_accuracy"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
            "recall": {c: m["per_class"][c]["recall"] for c in CLASSES},
            # per test image, for the bootstrap over test lesions: its id, lesion, label and predicted class
            "images": {"image_ids": scored.image_ids, "lesion_ids": scored.lesion_ids,
                       "labels": scored.labels.tolist(), "predicted": scored.proba.argmax(1).tolist()}}


def _train_arm(arm: str, seed: int, cfg: ClassifierRunConfig, utility: UtilityConfig, out: Path, split_file: Path,
               data_root, synthetic, scoring: dict | None, made_by: str, progress: bool) -> dict:
    """Train (or reuse) one arm's classifier for one seed and score it; the record is saved beside it.

    Runs made by other settings (another fingerprint beside them, or none: made before fingerprints) are
    trained again; an unfinished one of the same settings resumes; an external set the record was not
    scored on is scored and added."""
    run_dir = out / _folder_name(arm, seed)
    stage_dir = out / _folder_name(arm, seed, "-synthetic-stage")
    result_file = run_dir / "utility.json"
    made_by_file = run_dir.with_name(run_dir.name + ".made-by")  # beside it: written before training starts
    if (run_dir.exists() or stage_dir.exists()) and \
            (not made_by_file.is_file() or made_by_file.read_text() != made_by):
        print(f"note: {run_dir.name} was made by other settings (or by an older version); training it again",
              file=sys.stderr)
        for folder in (run_dir, stage_dir):
            _discard(folder)
    record = json.loads(result_file.read_text()) if result_file.is_file() else None
    if record is None:
        atomic_write_text(made_by_file, made_by)
        seeded = replaced(cfg, train=replaced(cfg.train, seed=seed))
        init_from = None
        if arm == "pretrain":
            stage = replaced(seeded, train=replaced(
                seeded.train, epochs=utility.pretrain_epochs,
                warmup_epochs=min(seeded.train.warmup_epochs, utility.pretrain_epochs)))
            _train_once(stage, stage_dir, split_file, progress, synthetic=synthetic, use_real=False)
            init_from = stage_dir / CLASSIFIER_FILE
        _train_once(seeded, run_dir, split_file, progress,
                    synthetic=None if arm in (BASELINE, "pretrain") else synthetic,
                    use_real=arm != "synthetic",
                    synthetic_share=1 - utility.real_fraction if arm == "balanced" else None,
                    init_from=init_from)
        record = {"arm": arm, "seed": seed, "made_by": made_by,
                  **_scores(run_dir, data_root, "test", cfg.data.checks())}
    if scoring is not None and record.get("external", {}).get("fingerprint") != scoring["fingerprint"]:
        record["external"] = {**scoring, **_scores(run_dir, scoring["data"], "all", cfg.data.checks())}
    atomic_write_text(result_file, json.dumps(record, indent=1))
    return record


def _discard(folder: Path) -> None:
    """Delete a classifier run of this study's own; anything else in its place is refused, never deleted."""
    if folder.exists() and not is_owned(folder, "classifier-run"):
        raise FolderError(f"{folder} is in the way of a utility run and is not a dermsynth classifier run; "
                          "move it away or choose another --out")
    remove_folder(folder)


def _train_once(cfg: ClassifierRunConfig, run_dir: Path, split_file: Path, progress: bool, **kwargs) -> None:
    if (run_dir / CLASSIFIER_FILE).is_file() and (run_dir / RUN_JSON).is_file() and \
            "finished" in json.loads((run_dir / RUN_JSON).read_text()):
        return  # a finished stage (the synthetic pre-training of an arm whose fine-tuning stopped)
    resume = "auto" if list_states(run_dir / "checkpoints") else None
    if resume is None:
        _discard(run_dir)  # a start of this study's own that never saved a state (refused while in use)
    train_classifier(cfg, RunOptions(out=run_dir, split_file=split_file, resume=resume, progress=progress), **kwargs)


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """The ``level`` t-interval of the mean of ``values`` (None for fewer than two values)."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return None
    mean, sd = float(np.mean(values)), float(np.std(values, ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def summarise(runs: list[dict], arms: tuple[str, ...], where: str = "test") -> dict:
    """Per arm: mean and sd over seeds; per arm but the baseline: the paired differences from it by seed,
    their mean and 95 % t-interval, for balanced accuracy and each class's recall. ``where`` is ``test``
    (the split's test part) or ``external``."""
    score = (lambda r: r) if where == "test" else (lambda r: r.get("external"))  # noqa: E731
    out: dict = {"arms": {}, "differences": {}}
    for arm in arms:
        rs = [r for r in runs if r["arm"] == arm and score(r) is not None]
        if not rs:
            continue
        bal = [score(r)["balanced_accuracy"] for r in rs]
        recall = {c: [score(r)["recall"][c] for r in rs if score(r)["recall"][c] is not None] for c in CLASSES}
        out["arms"][arm] = {
            "seeds": [r["seed"] for r in rs],
            "balanced_accuracy_mean": float(np.mean(bal)),
            "balanced_accuracy_std": float(np.std(bal, ddof=1)) if len(bal) > 1 else 0.0,
            "recall_mean": {c: float(np.mean(v)) if v else None for c, v in recall.items()},
            "recall_std": {c: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for c, v in recall.items()},
        }
    base = {r["seed"]: score(r) for r in runs if r["arm"] == BASELINE and score(r) is not None}
    for arm in arms:
        if arm == BASELINE:
            continue
        pairs = [(score(r), base[r["seed"]]) for r in runs
                 if r["arm"] == arm and score(r) is not None and r["seed"] in base]
        if not pairs:
            continue
        diffs = [a["balanced_accuracy"] - b["balanced_accuracy"] for a, b in pairs]
        interval = t_interval(diffs)
        recall = {}
        for c in CLASSES:
            d = [a["recall"][c] - b["recall"][c] for a, b in pairs
                 if a["recall"][c] is not None and b["recall"][c] is not None]
            ci = t_interval(d)
            recall[c] = {"mean": float(np.mean(d)) if d else None, "ci95": list(ci) if ci else None}
        out["differences"][arm] = {
            "seeds": len(diffs), "per_seed": diffs, "balanced_accuracy_mean": float(np.mean(diffs)),
            "balanced_accuracy_ci95": list(interval) if interval else None,
            "above_zero": bool(interval and interval[0] > 0), "recall": recall,
        }
    if where == "test":
        joint = joint_bootstrap(runs, arms)
        if joint is not None:
            for arm, d in joint["differences"].items():
                if arm in out["differences"]:
                    out["differences"][arm]["bootstrap"] = d
            out["controls"] = joint["controls"]
            out["n_test_lesions"] = joint["n_test_lesions"]
    return out


def joint_bootstrap(runs: list[dict], arms: tuple[str, ...], draws: int = 2000) -> dict | None:
    """Each arm's paired difference from the baseline with a 95 % interval over seeds and test lesions together,
    and the minimum detectable effect (points of balanced accuracy), from the runs' per-image predictions on
    the test part; None when the runs do not carry them (or were scored on different images)."""
    from dermsynth.evaluation.probe import compare_arms, controls_verdict, lesion_weights

    base = [r for r in runs if r["arm"] == BASELINE and "images" in r]
    if not base:
        return None
    ref = base[0]["images"]
    correct: dict[str, list[np.ndarray]] = {}
    for arm in arms:
        for r in sorted((r for r in runs if r["arm"] == arm), key=lambda r: r["seed"]):
            if "images" not in r or r["images"]["image_ids"] != ref["image_ids"]:
                return None
            correct.setdefault(arm, []).append(np.asarray(r["images"]["predicted"]) == np.asarray(ref["labels"]))
    rng = np.random.default_rng(0)
    weights = lesion_weights(ref["lesion_ids"], draws, rng)
    _, differences = compare_arms(correct, np.asarray(ref["labels"]), weights, rng)
    return {"differences": differences, "controls": controls_verdict(differences),
            "n_test_lesions": len(set(ref["lesion_ids"]))}


ROLES = {"real": "baseline", "half": "positive control (real minus half)",
         "shuffled": "negative control (class-shuffled real top-up)"}


def _ci(ci) -> str:
    return "n/a (one seed)" if not ci else f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def _difference_cells(d: dict | None) -> list[str]:
    """Paired difference, its 95 % interval and the MDE, in points: the joint bootstrap's where the runs carry
    their predictions, else the t-interval over seeds (test sampling not in it) and no MDE."""
    if d is None:
        return ["", "", ""]
    if "bootstrap" in d:
        b = d["bootstrap"]
        return [f"{b['mean']:+.1f}", f"[{b['ci95'][0]:+.1f}, {b['ci95'][1]:+.1f}]", f"{b['mde']:.1f}"]
    return [percent(d["balanced_accuracy_mean"], signed=True), _ci(d["balanced_accuracy_ci95"]) + " (seeds only)", ""]


def summary_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    """The summary as table headers and rows of text, for the Markdown file and the HTML report alike; every
    number in percent or percentage points."""
    headers = ["arm", "role", "seeds", "balanced accuracy % (mean ± sd)", "difference from real (points)",
               "95 % interval (seeds and test lesions)", "MDE (points)", *[f"{c} recall % (change)" for c in CLASSES]]
    rows = []
    for arm, s in summary["arms"].items():
        d = summary["differences"].get(arm)
        recall = [percent(s["recall_mean"][c]) + ("" if d is None or d["recall"][c]["mean"] is None else
                                               f" ({percent(d['recall'][c]['mean'], signed=True)})") for c in CLASSES]
        rows.append([arm, ROLES.get(arm, "synthetic arm"), str(len(s["seeds"])),
                     f"{percent(s['balanced_accuracy_mean'])} ± {percent(s['balanced_accuracy_std'])}",
                     *_difference_cells(d), *recall])
    return headers, rows


def summary_markdown(summary: dict) -> list[str]:
    return markdown_table(*summary_rows(summary))


def utility_markdown(result: dict) -> str:
    lines = ["# Utility of synthetic images", "",
             f"Classifier {result['classifier']}; generator {result['generator']} ({result['generator_check']}).", ""]
    lines += ["On the test part of the split:", ""] + summary_markdown(result["summary"])
    if "external" in result:
        lines += ["", f"On every image of the external set {result['external']['data']}:", ""]
        lines += summary_markdown(result["external"]["summary"])
    if result.get("filter_acceptance"):
        lines += ["", "filter: share of drawn images the judge accepted: "
                  + ", ".join(f"{c} {100 * v:.1f} %" for c, v in result["filter_acceptance"].items())]
    statement = result["summary"].get("controls", {}).get("statement")
    if statement:
        lines += ["", statement]
    lines += ["", "Balanced accuracy: mean ± standard deviation over seeds, in %. Differences: arm minus real, seed "
              "by seed, in percentage points (the positive control: real minus half), with a 95 % interval from a "
              "bootstrap that resamples the seeds and the test lesions together (a lesion's images stay "
              "together), so it covers both the variation between trainings and the sampling of the test set; "
              "MDE: the smallest difference it would detect with 80 % power. Recall changes in brackets."]
    return "\n".join(lines) + "\n"


def plot_utility(result: dict, path: str | Path) -> None:
    """Left: balanced accuracy per arm in % (mean ± sd over seeds). Right: each arm's difference from real in
    percentage points, for balanced accuracy (the joint bootstrap's 95 % interval where the runs carry their
    predictions) and each class's recall (t-interval over seeds); every interval cut to what the measure can
    take (0-100 %, +-100 points)."""
    plt = pyplot()

    summary = result["summary"]
    arms = list(summary["arms"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4), dpi=110, gridspec_kw={"width_ratios": [1, 2]})
    means = np.array([100 * summary["arms"][a]["balanced_accuracy_mean"] for a in arms])
    stds = np.array([100 * summary["arms"][a]["balanced_accuracy_std"] for a in arms])
    err = np.stack([np.minimum(stds, means), np.minimum(stds, 100 - means)])
    colours = ["grey" if a == BASELINE else "C2" if a == "half" else "C3" if a == "shuffled" else "C0" for a in arms]
    left.bar(range(len(arms)), means, yerr=err, capsize=3, color=colours)
    left.set_xticks(range(len(arms)), arms, rotation=30)
    left.set_ylim(0, 100)
    left.set_ylabel("balanced accuracy %, real test images")
    left.grid(axis="y", alpha=0.3)
    diffs = summary["differences"]
    labels = ["balanced\naccuracy", *CLASSES]
    width = 0.8 / max(len(diffs), 1)
    for i, (arm, d) in enumerate(diffs.items()):
        if "bootstrap" in d:
            b = d["bootstrap"]
            first = (b["mean"], b["ci95"])
        else:
            ci = d["balanced_accuracy_ci95"]
            first = (100 * d["balanced_accuracy_mean"], None if ci is None else [100 * ci[0], 100 * ci[1]])
        values = [first, *[(None if d["recall"][c]["mean"] is None else 100 * d["recall"][c]["mean"],
                            None if d["recall"][c]["ci95"] is None else [100 * v for v in d["recall"][c]["ci95"]])
                           for c in CLASSES]]
        x = np.arange(len(labels)) + (i - (len(diffs) - 1) / 2) * width
        mean = np.array([np.nan if m is None else m for m, _ in values])
        err = np.array([[0, 0] if ci is None or m is None else
                        [m - max(ci[0], -100), min(ci[1], 100) - m] for m, ci in values]).T
        right.bar(x, mean, width, yerr=err, capsize=2, label=ROLES.get(arm, arm) if arm in ROLES else arm)
    right.axhline(0, color="black", lw=0.8)
    right.set_xticks(range(len(labels)), labels)
    right.set_ylabel("arm minus real, percentage points")
    right.set_title("Differences from the real-only baseline (balanced accuracy: 95 % interval over seeds and test "
                    "lesions; recall: over seeds)", fontsize=8)
    right.legend(fontsize=7)
    right.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
