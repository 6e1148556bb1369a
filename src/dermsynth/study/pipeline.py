"""``dermsynth run``: the whole study from data to a self-contained HTML report.

    dermsynth run --config configs/run-demo.yaml --out runs/demo            # built-in phantom data
    dermsynth run --config configs/run-ham10000.yaml --data DIR --out RUN   # real data

Stages, in order (``--stages`` runs a subset):

    prepare    read the data, print the class table, build the caches
    split      the lesion-grouped split (``split.json``), shared by every stage
    gan        train the GAN (``gan/``)
    judge      train the judge classifier (``judge/``), which scores Table III
    feature_judge  train the classifier whose penultimate features are the judge space of the
               generative metrics (``feature-judge/``), or use the judge's own (``preset: judge``)
    generate   export synthetic images with a class grid (``synthetic/``)
    detection  Table III (``eval/table3/``)
    metrics    FID/KID/precision/recall per class and memorisation (``eval/``)
    probe      the utility probe with its known-answer controls, minutes (``eval/probe/``)
    utility    classifiers trained on real images, and with synthetic ones in each arm (``eval/utility/``)
    report     ``report.html``

Each finished stage leaves ``stages/<stage>.json`` with a key: a hash of its
settings and of the keys of the stages it reads. A stage whose key is
unchanged and whose outputs exist is skipped; a changed one runs again. A
training stage that was interrupted resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from dermsynth.checkpoint import list_states
from dermsynth.config import classifier_config, find_preset, gan_config, load_yaml, result_settings, to_plain
from dermsynth.data.cache import default_cache_dir, load_cache
from dermsynth.data.index import DataChecks, open_index
from dermsynth.data.phantom import METADATA_NAME as PHANTOM_METADATA
from dermsynth.data.phantom import make_phantom
from dermsynth.data.splits import load_split, make_split, save_split
from dermsynth.data.summary import format_class_table
from dermsynth.errors import ConfigError, DataError, UsageError
from dermsynth.evaluation.detection import evaluate_detection
from dermsynth.evaluation.gan import EvaluationConfig, evaluate_gan
from dermsynth.evaluation.probe import probe_generator
from dermsynth.evaluation.utility import UtilityConfig, run_utility, utility_config
from dermsynth.generate import generate_images
from dermsynth.models.discriminator import sees_imagenet_features
from dermsynth.schema import replaced
from dermsynth.storage import (
    LOCK,
    FolderError,
    FolderLock,
    atomic_write_json,
    atomic_write_text,
    check_folder,
    clear_folder,
    earlier_format,
    is_owned,
    remove_folder,
    settings_key,
    storage_error,
    write_marker,
)
from dermsynth.study.config import SAME_AS_JUDGE, Preset, UtilitySection, load_study, section_settings
from dermsynth.study.layout import StudyLayout
from dermsynth.study.report import write_report
from dermsynth.study.stages import STAGES
from dermsynth.training.classifier_loop import train_classifier
from dermsynth.training.gan_loop import train_gan
from dermsynth.training.runs import CONFIG_YAML, RunOptions, hardware, versions

class Study:
    """One ``dermsynth run``: resolves every stage's settings up front, then runs the stages."""

    def __init__(self, config_path: str | Path, out: str | Path, data: str | Path | None = None,
                 progress: bool = True, checks: DataChecks | None = None) -> None:
        self.cfg, self.base = load_study(config_path)
        # The study file's data checks, with what the command line changed on top; every stage reads with them.
        self.checks = replaced(self.cfg.data_checks, **(checks.changed() if checks else {}))
        self.out = Path(out)
        self.paths = StudyLayout(self.out)
        self.progress = progress
        self.data = Path(data) if data is not None else self.paths.phantom_data
        self.uses_phantom = data is None
        # Check every preset now, so a typo fails before hours of training.
        problems = []
        try:
            self.gan_cfg = gan_config(self._with_split(self.cfg.gan), [*self.cfg.gan.set, *self.checks.sets()],
                                      data_root=self.data)
        except (ConfigError, DataError) as e:
            problems.append(f"gan: {e}")
        self.feature_judge_cfg = None  # the judge's own network
        for name in ("judge", "feature_judge", "utility"):
            section = getattr(self.cfg, name)
            if name == "feature_judge" and section.preset == SAME_AS_JUDGE:
                if section.set:
                    problems.append("feature_judge: 'set' needs a preset of its own "
                                    "(preset: judge uses the judge as is)")
                continue
            try:
                cfg = classifier_config(self._with_split(section), [*section.set, *self.checks.sets()],
                                        data_root=self.data)
                setattr(self, f"{name}_cfg", cfg)
            except (ConfigError, DataError) as e:
                problems.append(f"{name}: {e}")
        try:  # the utility options alone, checked (and the baseline arm added)
            self.utility = utility_config({name: getattr(self.cfg.utility, name)
                                           for name in UtilityConfig.model_fields})
        except ConfigError as e:
            problems.append(str(e))
        if not problems:
            problems += self._space_problems()
        if problems:
            raise ConfigError("invalid study config:\n  - " + "\n  - ".join(problems))
        self.keys: dict[str, str] = {}

    def _space_problems(self) -> list[str]:
        """The judge space must not share ImageNet features with a projected or hybrid discriminator."""
        space = self.feature_judge_cfg or self.judge_cfg
        if ("judge" in self.cfg.metrics.spaces and space.model.arch == "effnet"
                and sees_imagenet_features(self.gan_cfg.discriminator.arch)):
            which = "the judge" if self.feature_judge_cfg is None else "feature_judge"
            return [f"{which} ({space.name}) is EfficientNet-Lite0 from ImageNet weights, the features the "
                    f"{self.gan_cfg.discriminator.arch} "
                    "discriminator trains the generator against: its judge-space FID would not be independent. "
                    "Set feature_judge to a classifier trained from scratch (e.g. classifier-paper.yaml)"]
        return []

    def feature_judge_path(self) -> Path:
        """The classifier.pt whose penultimate features are the judge space."""
        return self.paths.judge_classifier if self.feature_judge_cfg is None else self.paths.feature_judge_classifier

    def _path(self, name: str) -> Path:
        """A path from the study file: relative to its folder, or absolute; else a shipped preset's name."""
        path = Path(name)
        path = path if path.is_absolute() else self.base / path
        return path if path.is_file() else find_preset(name)

    def _with_split(self, section: Preset | UtilitySection) -> dict[str, Any]:
        """A preset's YAML with the study's split in place of its own (the overrides come on top)."""
        return {**load_yaml(self._path(section.preset)), "split": to_plain(self.cfg.split)}

    # --- stage bookkeeping ----------------------------------------------------------

    def stage_key(self, stage: str) -> str:
        extra = self.data_fingerprint if stage == "prepare" else None
        return settings_key([stage, STAGE[stage].settings(self), self._upstream(stage), extra])

    def _upstream(self, stage: str) -> list[str | None]:
        """The keys of the stages ``stage`` reads."""
        return [self.keys.get(s) or self._recorded(s) for s in STAGE[stage].inputs(self)]

    def _recorded(self, stage: str) -> str | None:
        marker = self.paths.stage_record(stage)
        return json.loads(marker.read_text()).get("key") if marker.is_file() else None

    def _done(self, stage: str, key: str) -> bool:
        return self._recorded(stage) == key and all(p.exists() for p in STAGE[stage].outputs(self))

    # --- running ------------------------------------------------------------------

    def run(self, stages: tuple[str, ...] | None = None, overwrite: bool = False) -> Path:
        check_folder(self.out, "study")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise storage_error(e, self.out) from None
        with FolderLock(self.out / LOCK, f"study folder {self.out}"):  # one `dermsynth run` per study at a time
            entries = {p.name for p in self.out.iterdir()} - {LOCK}
            if entries and not is_owned(self.out, "study"):
                raise FolderError(f"{self.out} exists, is not empty and is not a dermsynth study folder; "
                                  "choose another --out")
            earlier = earlier_format(self.out) if entries else None
            if earlier and not overwrite:
                raise FolderError(f"{self.out} is a study of an earlier dermsynth ({earlier}) whose stage keys "
                                  "are computed differently: continuing it would retrain every stage. Pass "
                                  "--overwrite to start it afresh, or choose another --out")
            if overwrite and entries:
                clear_folder(self.out, "study")
                entries = set()
            if not entries:
                write_marker(self.out, "study")
            return self._run(STAGES if stages is None else stages)

    def _run(self, stages: tuple[str, ...]) -> Path:
        self.paths.stages.mkdir(exist_ok=True)
        if self.uses_phantom and not (self.data / PHANTOM_METADATA).is_file():
            make_phantom(self.data, per_class=self.cfg.phantom.per_class, size=self.cfg.phantom.size,
                         seed=self.cfg.phantom.seed, overwrite=True)
        self.index = open_index(self.data, hints="flags", **self.checks.readers())
        self.data_fingerprint = self.index.fingerprint(content=True)
        timings = self._load_provenance().get("stage_seconds", {})
        self._write_provenance(timings)  # this run's config from the start: every stage (the report too) reads it
        for stage in STAGES:
            key = self.stage_key(stage)
            self.keys[stage] = key
            if stage not in stages:
                continue
            if self._done(stage, key):
                print(f"[{stage}] up to date, skipped", flush=True)
                continue
            print(f"[{stage}] running", flush=True)
            start = time.perf_counter()
            STAGE[stage].run(self, key)
            seconds = round(time.perf_counter() - start, 1)
            # Re-read: another `dermsynth run --stages ...` on this folder may have recorded its stages meanwhile.
            timings = {**self._load_provenance().get("stage_seconds", {}), stage: seconds}
            atomic_write_json(self.paths.stage_record(stage), {"key": key, "seconds": seconds,
                                                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            self._write_provenance(timings)
            print(f"[{stage}] done in {seconds:.0f} s", flush=True)
        return self.paths.report

    def _load_provenance(self) -> dict:
        path = self.paths.provenance
        return json.loads(path.read_text()) if path.is_file() else {}

    def _write_provenance(self, timings: dict) -> None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        split_file = self.paths.split
        payload = {
            "study": to_plain(self.cfg),
            "data": str(self.data),
            "phantom_data": self.uses_phantom,
            "data_fingerprint": self.data_fingerprint,
            "data_checks": self.checks.changed(),  # what was let through that is refused by default
            "data_warnings": self.index.warnings,
            # The hash of the split's parts, as split.json, run.json and every classifier.pt name it.
            "split_sha256": load_split(split_file).sha256() if split_file.is_file() else None,
            "gan_config": to_plain(self.gan_cfg),
            "judge_config": to_plain(self.judge_cfg),
            "feature_judge_config": (SAME_AS_JUDGE if self.feature_judge_cfg is None
                                     else to_plain(self.feature_judge_cfg)),
            "versions": versions(),
            "hardware": hardware(device),
            "stage_seconds": timings,
            "total_seconds": round(sum(timings.values()), 1),
        }
        atomic_write_text(self.paths.provenance, json.dumps(payload, indent=1, default=str))

    def _training_options(self, stage: str, folder: Path, key: str, cfg):
        """Resume an interrupted run of the same settings; replace one of other settings.

        The study's own run continues under the same stage key, or when only a larger time cap
        (``train.max_minutes``) changed, its inputs (split, data) unchanged: it trains on from where it stopped.
        A run folder trained outside the study (for example under torchrun) with exactly the study's resolved
        config counts as the same run and is continued; one with other settings is refused, never deleted.
        """
        started = self.paths.stage_started(stage)
        recipe = settings_key([stage, _beyond_time_cap(cfg), self._upstream(stage)])
        before = _started_record(started)
        saved = folder / CONFIG_YAML
        same = before.get("key") == key
        if not same and before.get("recipe") == recipe and saved.is_file():
            same = _cap_raised(yaml.safe_load(saved.read_text()), cfg)
        if not same and not started.is_file() and saved.is_file():
            same = result_settings(yaml.safe_load(saved.read_text())) == result_settings(cfg)
            if not same:
                raise FolderError(f"{folder} holds a run the study did not start, trained with other settings than "
                                  f"the study's {stage} preset; move it away (or delete it) and run again")
        has_state = bool(list_states(folder / "checkpoints"))
        if not (same and has_state):  # the study's own sub-folder, nothing to continue (refused while in use)
            remove_folder(folder)
        started.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(started, {"key": key, "recipe": recipe})
        return RunOptions(out=folder, split_file=self.paths.split,
                          resume="auto" if same and has_state else None, progress=self.progress)

    def stage_prepare(self, key: str) -> None:
        print(format_class_table(self.index), flush=True)
        resolutions = {self.gan_cfg.data.resolution, self.judge_cfg.data.resolution}
        if self.feature_judge_cfg is not None:
            resolutions.add(self.feature_judge_cfg.data.resolution)
        for resolution in sorted(resolutions):
            load_cache(self.index, resolution, self.gan_cfg.data.crop, self.gan_cfg.data.cache_dir,
                       progress=self.progress)
        atomic_write_json(self.paths.data_summary, {
            "data": str(self.data), "source": self.index.source, "phantom": self.uses_phantom,
            "class_table": self.index.class_table(), "images": len(self.index),
            "lesions": len({r.lesion_id for r in self.index.records}), "warnings": self.index.warnings,
        })

    def stage_split(self, key: str) -> None:
        split = make_split(self.index, self.cfg.split.fractions, self.cfg.split.seed)
        save_split(split, self.paths.split, self.index)

    def stage_gan(self, key: str) -> None:
        train_gan(self.gan_cfg, self._training_options("gan", self.paths.gan, key, self.gan_cfg))

    def stage_judge(self, key: str) -> None:
        train_classifier(self.judge_cfg, self._training_options("judge", self.paths.judge, key, self.judge_cfg))

    def stage_feature_judge(self, key: str) -> None:
        if self.feature_judge_cfg is None:
            print("[feature_judge] the judge's own features are the judge space", flush=True)
            return
        train_classifier(self.feature_judge_cfg,
                         self._training_options("feature_judge", self.paths.feature_judge, key, self.feature_judge_cfg))

    def stage_generate(self, key: str) -> None:
        generate_images(self.paths.generator, self.paths.synthetic, per_class=self.cfg.generate.per_class,
                        seed=self.cfg.generate.seed, overwrite=True, progress=self.progress)

    def stage_detection(self, key: str) -> None:
        evaluate_detection(self.paths.judge_classifier, self.paths.table3, generator=self.paths.generator,
                           data_root=self.data,
                           per_class=self.cfg.detection.per_class, seed=self.cfg.detection.seed,
                           progress=self.progress, checks=self.checks)

    def stage_metrics(self, key: str) -> None:
        evaluate_gan(self.paths.generator, self.data, self.paths.eval, EvaluationConfig(
            measures=self.cfg.metrics.measures, spaces=self.cfg.metrics.spaces,
            judge=self.feature_judge_path(), split_file=self.paths.split,
            feature_cache=default_cache_dir() / "features", checks=self.checks), progress=self.progress)

    def stage_probe(self, key: str) -> None:
        probe_generator(self.paths.generator, self.data, self.paths.split, self.paths.probe, self.cfg.probe,
                        self.checks, default_cache_dir() / "features", self.progress)

    def stage_utility(self, key: str) -> None:
        # Each classifier checks its own fingerprint: only changed ones retrain.
        external = self.cfg.utility.external
        run_utility(self.paths.generator, self.data, self.paths.split, self.utility_cfg, self.paths.utility,
                    utility=self.utility, judge=self.paths.judge_classifier,
                    external=(Path(external) if Path(external).is_absolute() else self.base / external)
                    if external else None, progress=self.progress)

    def stage_report(self, key: str) -> None:
        write_report(self.out)


def _beyond_time_cap(cfg: Any) -> Any:
    """A run's settings but its time cap (``train.max_minutes``), which stops a run without changing its recipe."""
    plain = result_settings(cfg)
    plain.get("train", {}).pop("max_minutes", None)
    return plain


def _cap_raised(saved: Any, cfg: Any) -> bool:
    """Whether ``cfg`` only raises (or lifts) the time cap of the run ``saved``: continuing it then trains on, where
    a lower cap would leave a run trained past its recorded cap."""
    before = (to_plain(saved).get("train") or {}).get("max_minutes")
    now = to_plain(cfg)["train"].get("max_minutes")
    return _beyond_time_cap(saved) == _beyond_time_cap(cfg) and before is not None and (now is None or now >= before)


def _started_record(path: Path) -> dict:
    """What a training stage was started with: its key and its recipe (the key but the time cap)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


@dataclass(frozen=True)
class Stage:
    """One stage of a study: the stages whose keys enter its own, what it writes (all present = done), the
    settings that decide whether it must run again, and the method that runs it."""

    name: str
    inputs: Callable[[Study], tuple[str, ...]]
    outputs: Callable[[Study], list[Path]]
    settings: Callable[[Study], Any]
    run: Callable[[Study, str], None]


def _own_features(study: Study) -> bool:
    return study.feature_judge_cfg is None


STAGE_TABLE: tuple[Stage, ...] = (
    # The data enter by their content fingerprint (stage_key), not by path: moved or copied data are the same.
    Stage("prepare", lambda s: (), lambda s: [s.paths.data_summary],
          lambda s: {"phantom": section_settings(s.cfg.phantom) if s.uses_phantom else None,
                     **({"data_checks": s.checks.changed()} if s.checks.changed() else {})}, Study.stage_prepare),
    Stage("split", lambda s: ("prepare",), lambda s: [s.paths.split], lambda s: section_settings(s.cfg.split),
          Study.stage_split),
    Stage("gan", lambda s: ("split",), lambda s: [s.paths.generator], lambda s: result_settings(s.gan_cfg),
          Study.stage_gan),
    Stage("judge", lambda s: ("split",), lambda s: [s.paths.judge_classifier],
          lambda s: result_settings(s.judge_cfg), Study.stage_judge),
    Stage("feature_judge", lambda s: ("split", "judge") if _own_features(s) else ("split",),
          lambda s: [s.feature_judge_path()],
          lambda s: SAME_AS_JUDGE if _own_features(s) else result_settings(s.feature_judge_cfg),
          Study.stage_feature_judge),
    Stage("generate", lambda s: ("gan",), lambda s: [s.paths.grid],
          lambda s: section_settings(s.cfg.generate), Study.stage_generate),
    Stage("detection", lambda s: ("gan", "judge"), lambda s: [s.paths.table3_json],
          lambda s: section_settings(s.cfg.detection), Study.stage_detection),
    # The judge space is the feature judge's, or the judge's own when there is none.
    Stage("metrics", lambda s: ("gan", "judge") if _own_features(s) else ("gan", "feature_judge"),
          lambda s: [s.paths.evaluation], lambda s: section_settings(s.cfg.metrics),
          Study.stage_metrics),
    # The filter arm's synthetic images are the ones the judge accepts.
    Stage("probe", lambda s: ("gan",), lambda s: [s.paths.probe_json], lambda s: section_settings(s.cfg.probe),
          Study.stage_probe),
    Stage("utility", lambda s: ("gan", "judge") if "filter" in s.utility.arms else ("gan",),
          lambda s: [s.paths.utility_json],
          lambda s: {**section_settings(s.cfg.utility), "classifier": result_settings(s.utility_cfg)},
          Study.stage_utility),
    Stage("report", lambda s: STAGES[:-1],
          lambda s: [s.paths.report], lambda s: {"version": 1, "name": s.cfg.name}, Study.stage_report),
)
STAGE = {stage.name: stage for stage in STAGE_TABLE}
if tuple(STAGE) != STAGES:
    raise RuntimeError(f"STAGE_TABLE names {tuple(STAGE)}; study/stages.py names {STAGES}: make them one list")


def run_study(config: str | Path, out: str | Path, data: str | Path | None = None,
              stages: tuple[str, ...] | None = None, progress: bool = True, overwrite: bool = False,
              checks: DataChecks | None = None) -> Path:
    """Run (or continue) a study; returns the report's path. ``overwrite`` starts a study folder afresh;
    ``checks`` lifts refusals of the data on top of the study file's ``data_checks``."""
    stages = STAGES if stages is None else stages
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise UsageError(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGES)}")
    return Study(config, out, data, progress, checks).run(stages, overwrite)
