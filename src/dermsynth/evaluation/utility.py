"""Utility of synthetic images: does adding them help a classifier on real patients' images?

Trains the judge architecture, for each of several seeds, on

- ``real``: the real train part of the split;
- ``real+synthetic``: the same plus synthetic images (by default topping every
  class up to ``topup_to`` train images, so the minority classes gain most);
- ``synthetic``: synthetic images only (``synthetic_per_class`` of each class;
  train on synthetic, test on real);

and scores every model on the same real test part (leakage guard included).
Reports the mean and standard deviation over seeds of balanced accuracy and
per-class recall, and the paired difference real+synthetic minus real.
Finished trainings are reused, so an interrupted study picks up where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from dermsynth.config import ClassifierRunConfig
from dermsynth.data.index import CLASSES, open_index
from dermsynth.data.splits import load_split
from dermsynth.evaluation.classification import classification_metrics, score_dataset
from dermsynth.generate import load_generator, sample
from dermsynth.models.classifier import load_classifier
from dermsynth.training.classifier_loop import train_classifier
from dermsynth.storage import atomic_write_json, atomic_write_text, remove_folder
from dermsynth.training.checkpoint import list_states
from dermsynth.training.runs import RunOptions

SETTINGS = ("real", "real+synthetic", "synthetic")


def synthetic_counts(real_counts: dict[str, int], setting: str, topup_to: int, synthetic_per_class: int) -> dict[str, int]:
    """Synthetic images per class for a setting."""
    if setting == "real":
        return {c: 0 for c in CLASSES}
    if setting == "synthetic":
        return {c: synthetic_per_class for c in CLASSES}
    return {c: max(0, topup_to - real_counts.get(c, 0)) for c in CLASSES}


def run_utility(
    generator: str | Path,
    data_root: str | Path,
    split_file: str | Path,
    cfg: ClassifierRunConfig,
    out: str | Path,
    seeds: tuple[int, ...] = (0, 1, 2),
    settings: tuple[str, ...] = SETTINGS,
    topup_to: int = 500,
    synthetic_per_class: int = 500,
    synthetic_seed: int = 1000,
    progress: bool = True,
) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = open_index(data_root)
    split = load_split(split_file)
    part_of = split.part_of()
    real_counts = {c: 0 for c in CLASSES}
    for r in index.records:
        if part_of.get(r.image_id) == "train":
            real_counts[r.dx] += 1
    G, _ = load_generator(generator)
    if G.cfg.resolution != cfg.data.resolution:
        raise ValueError(f"the generator makes {G.cfg.resolution} px images; the classifier config wants "
                         f"{cfg.data.resolution} px")
    # One synthetic pool for all settings and seeds: image k of class c is the same everywhere.
    need = {c: max(synthetic_counts(real_counts, s, topup_to, synthetic_per_class)[c] for s in settings)
            for c in CLASSES}
    pool = {c: sample(G, CLASSES.index(c), n, synthetic_seed) for c, n in need.items() if n > 0}

    runs = []
    for setting in settings:
        counts = synthetic_counts(real_counts, setting, topup_to, synthetic_per_class)
        images = [pool[c][: counts[c]] for c in CLASSES if counts[c] > 0]
        labels = [np.full(counts[c], CLASSES.index(c)) for c in CLASSES if counts[c] > 0]
        synthetic = (np.concatenate(images), np.concatenate(labels)) if images else None
        for seed in seeds:
            run_dir = out / f"{setting.replace('+', '-plus-')}-seed{seed}"
            result_file = run_dir / "utility.json"
            if result_file.is_file():
                runs.append(json.loads(result_file.read_text()))
                continue
            seeded = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))
            resume = "auto" if list_states(run_dir / "checkpoints") else None
            if resume is None:
                remove_folder(run_dir)  # a start of this study's own that never saved a state (refused while in use)
            train_classifier(seeded, RunOptions(out=run_dir, split_file=Path(split_file), resume=resume,
                                                progress=progress),
                             synthetic=synthetic, use_real=setting != "synthetic")
            model, meta = load_classifier(run_dir / "classifier.pt")
            scored = score_dataset(model, meta, data_root, "test", progress=False)
            metrics = classification_metrics(scored.labels, scored.proba)
            record = {
                "setting": setting, "seed": seed, "synthetic_per_class": counts,
                "balanced_accuracy": metrics["balanced_accuracy"], "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                "recall": {c: metrics["per_class"][c]["recall"] for c in CLASSES},
            }
            atomic_write_text(result_file, json.dumps(record, indent=1))
            runs.append(record)
    summary = summarise(runs, settings)
    atomic_write_json(out / "utility.json", {"runs": runs, "summary": summary, "real_train_per_class": real_counts})
    atomic_write_text(out / "utility.md", utility_markdown(summary))
    plot_utility(summary, out / "utility.png")
    return summary


def summarise(runs: list[dict], settings: tuple[str, ...]) -> dict:
    out: dict = {}
    for setting in settings:
        rs = [r for r in runs if r["setting"] == setting]
        if not rs:
            continue
        bal = np.array([r["balanced_accuracy"] for r in rs])
        out[setting] = {
            "seeds": [r["seed"] for r in rs],
            "balanced_accuracy_mean": float(bal.mean()), "balanced_accuracy_std": float(bal.std(ddof=1)) if len(bal) > 1 else 0.0,
            "recall_mean": {c: float(np.mean([r["recall"][c] or 0.0 for r in rs])) for c in CLASSES},
            "recall_std": {c: float(np.std([r["recall"][c] or 0.0 for r in rs], ddof=1)) if len(rs) > 1 else 0.0
                           for c in CLASSES},
        }
    if "real" in out and "real+synthetic" in out:
        by_seed = {r["seed"]: r for r in runs if r["setting"] == "real"}
        diffs = [r["balanced_accuracy"] - by_seed[r["seed"]]["balanced_accuracy"]
                 for r in runs if r["setting"] == "real+synthetic" and r["seed"] in by_seed]
        out["difference_real+synthetic_minus_real"] = {
            "balanced_accuracy_mean": float(np.mean(diffs)),
            "balanced_accuracy_std": float(np.std(diffs, ddof=1)) if len(diffs) > 1 else 0.0,
            "per_seed": diffs,
            "recall_mean": {c: out["real+synthetic"]["recall_mean"][c] - out["real"]["recall_mean"][c] for c in CLASSES},
        }
    return out


def utility_markdown(summary: dict) -> str:
    head = "| training data | balanced accuracy | " + " | ".join(f"{c} recall" for c in CLASSES) + " |"
    lines = [head, "|---" * (len(CLASSES) + 2) + "|"]
    for setting, s in summary.items():
        if setting.startswith("difference"):
            cells = [f"{100 * s['recall_mean'][c]:+.1f}" for c in CLASSES]
            lines.append(f"| real+synthetic minus real (paired) | {100 * s['balanced_accuracy_mean']:+.1f} "
                         f"± {100 * s['balanced_accuracy_std']:.1f} | " + " | ".join(cells) + " |")
            continue
        cells = [f"{100 * s['recall_mean'][c]:.1f} ± {100 * s['recall_std'][c]:.1f}" for c in CLASSES]
        lines.append(f"| {setting} (n={len(s['seeds'])}) | {100 * s['balanced_accuracy_mean']:.1f} ± "
                     f"{100 * s['balanced_accuracy_std']:.1f} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Mean ± standard deviation over seeds, in %, on the real test part (lesion-grouped split).")
    return "\n".join(lines) + "\n"


def plot_utility(summary: dict, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = [s for s in summary if not s.startswith("difference")]
    labels = ["balanced\naccuracy", *CLASSES]
    x = np.arange(len(labels))
    width = 0.8 / max(len(settings), 1)
    fig, ax = plt.subplots(figsize=(10, 3.8), dpi=110)
    for i, setting in enumerate(settings):
        s = summary[setting]
        means = [s["balanced_accuracy_mean"], *[s["recall_mean"][c] for c in CLASSES]]
        stds = [s["balanced_accuracy_std"], *[s["recall_std"][c] for c in CLASSES]]
        ax.bar(x + (i - (len(settings) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=setting)
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1)
    ax.set_ylabel("on real test images")
    ax.set_title("Utility: classifiers trained with and without synthetic images (recall per class)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
