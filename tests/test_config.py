"""Configs read by pydantic models give what the hand-written checks gave: every shipped preset resolves to the
same values and types as its YAML writes them, saved configs read back to the same settings, and a study's stage
keys are the ones studies made before recorded (so none of them retrains after an upgrade)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from dermsynth.config import PRESETS, classifier_config, gan_config, load_yaml, result_settings, to_plain
from dermsynth.study.pipeline import STAGES, Study

RUN_PRESETS = sorted(p for p in PRESETS.glob("*.yaml") if not p.name.startswith("run-"))


def _build(path: Path, *overrides: str):
    build = classifier_config if path.name.startswith("classifier-") else gan_config
    return build(load_yaml(path), list(overrides))


def _same(written, resolved) -> bool:
    """A value as the YAML wrote it and as the config resolved it: equal, and of the same type (10 stays an int,
    a list becomes a list of the same items)."""
    if isinstance(written, list):
        return isinstance(resolved, list) and len(written) == len(resolved) and all(map(_same, written, resolved))
    return written == resolved and type(written) is type(resolved)


@pytest.mark.parametrize("path", RUN_PRESETS, ids=lambda p: p.name)
def test_a_preset_resolves_to_the_values_it_writes_and_reads_back_the_same(path):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    plain = to_plain(_build(path))
    for section, values in raw.items():
        if isinstance(values, dict):
            for key, value in values.items():
                assert _same(value, plain[section][key]), f"{section}.{key}: {value!r} -> {plain[section][key]!r}"
    saved = yaml.safe_load(yaml.safe_dump(plain, sort_keys=False))  # a run's config.yaml
    assert result_settings(saved) == result_settings(_build(path))
    assert to_plain(type(_build(path)).model_validate(saved)) == plain  # and read back as a config


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def test_the_papers_presets_have_the_settings_they_always_had():
    # Pinned at folder format 2 (every option hashed). Changing paper.yaml or classifier-paper.yaml on purpose
    # changes them: update them then (and know that studies using them will retrain).
    assert _digest(result_settings(_build(PRESETS / "paper.yaml"))) == "6576d9a031e5c758"
    assert _digest(result_settings(_build(PRESETS / "classifier-paper.yaml"))) == "9eedd344957fe871"


PINNED_STUDY = {
    "name": "pinned", "gan": {"preset": "paper.yaml", "set": ["train.epochs=3", "loss.r1_gamma=1"]},
    "judge": {"preset": "classifier-paper.yaml", "set": ["train.epochs=2"]},
    "feature_judge": {"preset": "classifier-paper.yaml", "set": ["train.seed=1"]},
    "utility": {"preset": "classifier-paper.yaml", "seeds": [0, 1], "ratio": 0.5, "real_fraction": 0.25},
    "phantom": {"per_class": 30}, "split": {"fractions": [0.6, 0.2, 0.2], "seed": 4},
    "generate": {"per_class": 8}, "detection": {"seed": 3}, "metrics": {"measures": ["fid"]},
    "data_checks": {"allow_synthetic": True},
}
PINNED_KEYS = {  # this study's keys since folder format 2 (every option hashed; data fingerprint "data")
    "prepare": "acd9483cfb52e6f6", "split": "ef413d4a865413e0", "gan": "9082b15fa6ef61e3",
    "judge": "032f49d9990a3ada", "feature_judge": "febc8333238b4b27", "generate": "b92951ce85e80db0",
    "detection": "7a689d30cb1d5456", "metrics": "7d72103055b51130", "probe": "d0d56f4a22b0111d",
    "utility": "9fd1b3cdefc1ad05", "report": "022b8773fb0a08b8",
}


def test_a_studys_stage_keys_are_the_ones_recorded_before(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(PINNED_STUDY))
    study = Study(path, tmp_path / "out")
    study.data_fingerprint = "data"
    for stage in STAGES:
        study.keys[stage] = study.stage_key(stage)
    assert study.keys == PINNED_KEYS


@pytest.mark.parametrize("name", ["run-demo.yaml", "run-ham10000.yaml"])
def test_a_shipped_study_reads_back_from_its_provenance(name, tmp_path):
    study = Study(PRESETS / name, tmp_path / "out")
    study.data_fingerprint = "data"
    keys = [study.stage_key(stage) for stage in STAGES]
    saved = json.loads(json.dumps(to_plain(study.cfg)))  # provenance.json's "study"
    again = Study(PRESETS / name, tmp_path / "out")
    assert type(study.cfg).model_validate(saved) == study.cfg == again.cfg
    again.data_fingerprint = "data"
    assert [again.stage_key(stage) for stage in STAGES] == keys
