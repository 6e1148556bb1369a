"""The model card beside every generator snapshot: what it is, what it learnt from, under which terms.

Training writes ``MODEL_CARD.md`` (and its facts as ``model_card.json``) next to ``generator.pt`` whenever
it writes the snapshot; ``dermsynth evaluate gan`` adds the metrics it measured. The card says what the
weights were trained on (dataset, split hash, classes and counts), how long and on what, what they are for
(research, data-augmentation studies; never diagnosis) and the data's terms, which derived weights and
images may carry.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from dermsynth.storage import atomic_write_json, atomic_write_text

CARD = "MODEL_CARD.md"
FACTS = "model_card.json"

HAM10000_TERMS = (
    "HAM10000 (Tschandl et al., Sci. Data 5, 180161, 2018; Harvard Dataverse doi:10.7910/DVN/DBW86T) is "
    "licensed CC BY-NC-SA 4.0. Weights trained on it, and the images they generate, may carry its "
    "non-commercial and share-alike terms: check them before any use beyond non-commercial research, and "
    "credit the dataset."
)
OTHER_TERMS = ("The terms of the training data apply to these weights and the images they generate, as far as "
               "they carry them: check the dataset's licence before sharing or using them.")


def write_model_card(generator: Path, facts: dict[str, Any]) -> Path:
    """Write the card beside ``generator`` from ``facts``: a new snapshot, so no metrics yet (those of earlier
    weights would not describe it)."""
    folder = Path(generator).parent
    facts = {**facts, "metrics": {}}
    atomic_write_json(folder / FACTS, facts)
    atomic_write_text(folder / CARD, render(facts))
    return folder / CARD


def add_metrics(generator: Path, measured: dict[str, Any], source: str) -> bool:
    """Record ``measured`` ({name: value}) under ``source`` in the card beside ``generator``; False if there
    is no card there (a snapshot made before cards, or moved without its card)."""
    folder = Path(generator).parent
    facts = _facts(folder)
    if not facts:
        return False
    facts.setdefault("metrics", {})[source] = {"measured": time.strftime("%Y-%m-%d %H:%M"), **measured}
    atomic_write_json(folder / FACTS, facts)
    atomic_write_text(folder / CARD, render(facts))
    return True


def _facts(folder: Path) -> dict[str, Any]:
    path = folder / FACTS
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def render(facts: dict[str, Any]) -> str:
    data, training = facts.get("data", {}), facts.get("training", {})
    counts = data.get("train_images_per_class", {})
    lines = [
        f"# Model card: dermsynth generator `{facts.get('preset', '?')}`",
        "",
        "**Every image this generator makes is synthetic (GAN-generated), not a patient's. dermsynth marks each "
        "exported file as synthetic.**",
        "",
        "## What it is",
        "",
        f"- A class-conditional generator of {facts.get('resolution', '?')} px dermoscopy-like images, classes "
        f"{', '.join(facts.get('classes', []))}; dermsynth {facts.get('dermsynth_version', '?')}.",
        f"- Architecture: generator `{facts.get('generator_arch', '?')}` (latent {facts.get('z_dim', '?')}), "
        f"trained against discriminator `{facts.get('discriminator_arch', '?')}`"
        + (" (frozen ImageNet EfficientNet-Lite0 features: judge it with networks trained from scratch too)"
           # models.discriminator.IMAGENET_ARCHS (a base module: it cannot import models)
           if facts.get("discriminator_arch") in ("projected", "hybrid") else "") + ".",
        f"- Preset `{facts.get('preset', '?')}`, seed {facts.get('seed', '?')}; the resolved config is the run's "
        "`config.yaml`.",
        "",
        "## Training data",
        "",
        f"- Dataset: {data.get('name', '?')} (reader `{data.get('source', '?')}`), fingerprint "
        f"`{str(data.get('fingerprint', '?'))[:16]}`.",
        f"- The train part of the lesion-grouped split `{str(data.get('split_sha256', '?'))[:16]}` only: "
        f"{data.get('train_images', '?')} images"
        + (": " + ", ".join(f"{c} {n}" for c, n in counts.items()) if counts else "") + ".",
        "- The snapshot records the train image and lesion ids; `dermsynth` refuses to use it in a utility study "
        "whose val or test part it saw.",
        "",
        "## Training",
        "",
        f"- {training.get('steps', '?')} steps, {training.get('kimg', '?')} kimg (thousands of real images shown), "
        f"{training.get('minutes', '?')} minutes of training.",
        f"- Hardware: {training.get('hardware', '?')}; torch {training.get('torch', '?')}.",
        "",
        "## Measured",
        "",
    ]
    metrics = facts.get("metrics", {})
    if metrics:
        for source, values in metrics.items():
            shown = ", ".join(f"{k} {v}" for k, v in values.items() if k != "measured")
            lines.append(f"- {source} ({values.get('measured', '?')}): {shown}.")
    else:
        lines.append("- Nothing yet: `dermsynth evaluate gan --generator <this generator.pt> ...` adds FID/KID and "
                     "`evaluate detection` Table III here.")
    lines += [
        "",
        "## Intended use",
        "",
        "- Research: studies of synthetic data for dermoscopy classifiers (data augmentation, class balance), "
        "generative-model evaluation, teaching.",
        "- Not for diagnosis, not for any clinical decision, and not as a stand-in for patients' images in a "
        "validation or test set.",
        "- Known limits: short training runs give images far from real ones (see the README's measured FID and "
        "utility figures); classes with few train images (see the counts above) are learnt least well.",
        "",
        "## Terms",
        "",
        f"- {facts.get('terms', OTHER_TERMS)}",
        "",
    ]
    return "\n".join(lines)
