"""The model card beside every generator snapshot: its fields, the data's terms, metrics added by evaluate gan."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from dermsynth.config import find_preset, gan_config, load_yaml
from dermsynth.evaluation.gan import card_metrics
from dermsynth.model_card import CARD, FACTS, HAM10000_TERMS, OTHER_TERMS, render
from dermsynth.training import gan_loop
from tests.conftest import TINY_GAN, write_ham


def test_training_writes_the_card_with_what_the_weights_learnt_from(tiny_gan):
    card = (tiny_gan / CARD).read_text()
    facts = json.loads((tiny_gan / FACTS).read_text())
    run = json.loads((tiny_gan / "run.json").read_text())
    assert facts["preset"] == "data-efficient" and facts["resolution"] == 32 and facts["classes"][0] == "nv"
    assert facts["data"]["split_sha256"] == run["split_sha256"] and facts["data"]["train_images"] == run["train_images"]
    assert sum(facts["data"]["train_images_per_class"].values()) == run["train_images"]
    assert facts["training"]["steps"] > 0 and facts["training"]["kimg"] > 0
    assert facts["training"]["hardware"].endswith(", 1 process(es)")  # DDP runs count their processes
    assert facts["terms"] == OTHER_TERMS  # phantom data: not HAM10000's terms
    for text in ("synthetic (GAN-generated), not a patient's", "## Training data", "## Intended use",
                 "Not for diagnosis", "## Terms", run["split_sha256"][:16], "## Measured"):
        assert text in card, text
    # (tiny_gan is shared: another test's evaluate gan may have added metrics already)
    assert "Nothing yet" in render({**facts, "metrics": {}})


def test_evaluate_gan_adds_its_figures_and_ham10000_data_gets_its_licence(tiny_gan, tmp_path):
    import shutil

    shutil.copytree(tiny_gan, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints", ".dermsynth*"))
    report = {"n_generated": 10, "n_real_train": 10,
              "feature_spaces": {"inception": {"generated_vs_train": {"fid": {"overall": {"fid": 123.456}},
                                                                      "kid": {"overall": {"kid": 0.0456}}}}}}
    assert card_metrics(tmp_path / "run" / "generator.pt", report)
    card = (tmp_path / "run" / CARD).read_text()
    assert "inception FID 123.5" in card and "inception KID x1000 45.6" in card
    assert not card_metrics(tmp_path / "elsewhere" / "generator.pt", report)  # no card there: nothing written
    # A run on HAM10000 (its lesion ids) says the dataset's CC BY-NC-SA terms.
    from dermsynth.config import gan_config, load_yaml
    from dermsynth.training.gan_loop import RunOptions, train_gan

    ham = write_ham(tmp_path / "ham", per_class=4)
    cfg = gan_config(load_yaml(Path(__file__).resolve().parents[1] / "configs/paper.yaml"),
                     TINY_GAN + ["train.total_kimg=0.016"], data_root=ham)
    run = train_gan(cfg, RunOptions(out=tmp_path / "ham-run", progress=False))
    assert json.loads((run / FACTS).read_text())["terms"] == HAM10000_TERMS
    assert "CC BY-NC-SA 4.0" in (run / CARD).read_text()


def test_the_hardware_line_names_the_gpu_and_the_process_count(monkeypatch):
    monkeypatch.setattr(gan_loop, "hardware", lambda device: {"device": "cuda:0", "gpu": "NVIDIA H100", "world_size": 4,
                                                              "torch_threads": 8})
    index = SimpleNamespace(root="data/x", source="folder", fingerprint=lambda: "f", records=[])
    facts = gan_loop._card_facts(gan_config(load_yaml(find_preset("demo"))), index, SimpleNamespace(sha256=lambda: "s"),
                                 np.zeros(3, np.int64), torch.device("cuda:0"))
    assert facts["training"]["hardware"] == "NVIDIA H100, 4 process(es)"
