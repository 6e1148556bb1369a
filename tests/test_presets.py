"""Every shipped preset resolves with its loader; `best` is `paper` plus the EMA, and samples with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dermsynth.config import classifier_config, gan_config, load_yaml
from dermsynth.study.pipeline import Study

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_preset_resolves(path, tmp_path):
    raw = yaml.safe_load(path.read_text())
    if path.name.startswith("run-"):
        study = Study(path, tmp_path / "study")  # resolves the GAN, judge and utility presets it names
        assert study.gan_cfg.name and study.judge_cfg.name
    elif path.name.startswith("classifier-"):
        assert classifier_config(raw).name == raw["name"]
    else:
        assert gan_config(raw).name == raw["name"]


def test_best_trains_exactly_like_paper_and_differs_only_in_its_ema():
    paper, best = (gan_config(load_yaml(CONFIGS / f"{n}.yaml")) for n in ("paper", "best"))
    for section in (name for name in type(paper).model_fields if name not in ("name", "train")):
        assert getattr(paper, section) == getattr(best, section), section
    differ = {name for name in type(paper.train).model_fields
              if getattr(paper.train, name) != getattr(best.train, name)}
    assert differ == {"ema_halflife_kimg"} and paper.train.ema_halflife_kimg == 0 < best.train.ema_halflife_kimg


def test_projected_preset_is_the_documented_design():
    cfg = gan_config(load_yaml(CONFIGS / "projected.yaml"))
    assert (cfg.generator.arch, cfg.discriminator.arch) == ("fastgan", "projected")
    assert cfg.generator.conditioning == "embedding" and cfg.discriminator.mbstd_group > 0
    assert cfg.loss.kind == "hinge" and cfg.loss.mode_seeking > 0 and cfg.loss.gp_weight == cfg.loss.r1_gamma == 0
    assert set(cfg.train.diffaugment.split(",")) == {"color", "translation", "cutout"}
    assert cfg.train.class_sampling == "sqrt" and cfg.train.ema_halflife_kimg > 0
    assert tuple(cfg.optim.betas) == (0.0, 0.99)
