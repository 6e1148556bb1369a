"""Scoring a judge classifier honestly: the leakage guard, scikit-learn metrics, a confusion-matrix figure.

    dermsynth evaluate-classifier --checkpoint RUN/classifier.pt --data DIR --split test
    dermsynth evaluate-classifier --checkpoint RUN/classifier.pt --data EXTERNAL --split all

``--split test`` (or ``val``) scores the part of the classifier's own saved
split; ``--split all`` scores every image of a dataset, so an external test set
in HAM10000 layout is used as is. Either way the leakage guard runs first: a
score is refused when any scored image, or any other image of a scored lesion,
was in the classifier's train part. The output folder gets ``metrics.json``,
``metrics.md``, ``confusion.png`` (counts and row-normalised) and
``predictions.csv``.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from dermsynth.data.cache import load_cache
from dermsynth.data.index import CLASSES, DataChecks, open_index
from dermsynth.data.splits import SCORED_PARTS, Split
from dermsynth.errors import DataError, LeakageError, UsageError
from dermsynth.figures import pyplot, save_figure
from dermsynth.models.classifier import TTA, Classifier, load_classifier, predict_proba
from dermsynth.storage import atomic_write_text, sha256_file
from dermsynth.tables import percent

EVAL_SPLITS = SCORED_PARTS


def check_no_leakage(image_ids: list[str], lesion_ids: list[str], meta: dict, what: str = "scored set") -> None:
    """Refuse when any image id or lesion id of the scored set is in the classifier's train part."""
    shared_images = sorted(set(image_ids) & set(meta["train_image_ids"]))
    shared_lesions = sorted(set(lesion_ids) & set(meta["train_lesion_ids"]))
    if not shared_images and not shared_lesions:
        return
    found = []
    if shared_images:
        examples = ", ".join(shared_images[:3])
        found.append(f"{len(shared_images)} of its {len(set(image_ids))} image id(s) (e.g. {examples})")
    if shared_lesions:
        found.append(f"{len(shared_lesions)} lesion id(s) (e.g. {', '.join(shared_lesions[:3])})")
    raise LeakageError(
        f"refusing to score the {what}: {' and '.join(found)} are in the classifier's train part; "
        "a score on training images, or on other photographs of training lesions, overstates accuracy"
    )


@dataclass
class Scored:
    """The classifier's probabilities for a set of real images, with their ids and true labels."""

    image_ids: list[str]
    lesion_ids: list[str]
    labels: np.ndarray
    """int64 (N,), indices into CLASSES."""
    proba: np.ndarray
    """float32 (N, 7)."""
    data_root: str
    data_fingerprint: str
    split: str


def score_dataset(
    model: Classifier,
    meta: dict,
    data_root: str | Path,
    split: str = "test",
    fmt: str = "auto",
    cache_dir: str | Path | None = None,
    progress: bool = True,
    tta: str = "none",
    checks: DataChecks = DataChecks(),
    hints: str | None = None,
    whose: str = "the classifier's split",
) -> Scored:
    """Score the ``split`` part of the classifier's saved split (or ``all`` images) of a dataset.

    Images come from the uint8 cache at the classifier's resolution and crop.
    The leakage guard runs before anything is scored. ``tta`` averages the
    probabilities over flipped views (:data:`dermsynth.models.classifier.TTA`). ``checks`` says what the reader
    lets through (:class:`~dermsynth.data.index.DataChecks`), ``hints`` how a refusal names the options,
    ``whose`` whose split a refusal names (a judge's, a utility classifier's).
    """
    if split not in EVAL_SPLITS:
        raise UsageError(f"--split {split!r} is not one of {', '.join(EVAL_SPLITS)}")
    index = open_index(data_root, fmt, lesions_required=split != "all",  # an external set may lack lesion ids
                       hints=hints, **checks.readers())
    for warning in index.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if split == "all":
        wanted = None
    else:
        saved = Split(parts=meta["split_parts"], seed=int(meta["split_seed"]), fractions={})
        records = saved.indices(index, split, whose)  # refuses data that lacks the split's images
        wanted = {index.records[i].image_id for i in records}
        if not wanted:
            raise DataError(f"{whose} has no {split} images")
    cached = load_cache(index, meta["resolution"], meta["crop"], cache_dir, "skip", progress=progress)
    rows = np.array([i for i, image_id in enumerate(cached.image_ids) if wanted is None or image_id in wanted],
                    dtype=np.int64)
    if wanted is not None and len(rows) < len(wanted):
        print(f"warning: {len(wanted) - len(rows)} {split} image(s) could not be decoded and are not scored",
              file=sys.stderr)
    image_ids = [cached.image_ids[i] for i in rows]
    lesion_ids = [cached.lesion_ids[i] for i in rows]
    what = f"images of {data_root}" if split == "all" else f"{split} images of {data_root}"
    check_no_leakage(image_ids, lesion_ids, meta, what)
    return Scored(
        image_ids=image_ids,
        lesion_ids=lesion_ids,
        labels=np.asarray(cached.labels[rows], dtype=np.int64),
        proba=predict_proba(model, np.asarray(cached.images[rows]), tta=tta),
        data_root=str(data_root),
        data_fingerprint=index.fingerprint(),
        split=split,
    )


def _number(x) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def classification_metrics(labels: np.ndarray, proba: np.ndarray, classes: tuple[str, ...] = CLASSES) -> dict:
    """Accuracy, balanced accuracy, per-class precision/recall/F1/AUC, macro-F1 and macro AUC (scikit-learn).

    Classes absent from ``labels`` get null recall, F1 and AUC and are left out
    of the macro averages; a class never predicted gets null precision. The
    one-vs-rest AUC of class c scores ``proba[:, c]`` against "is c"; its macro
    average is over the classes that have both positives and negatives.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise DataError("there are no images to score")
    pred = proba.argmax(1)
    every = list(range(len(classes)))
    present = sorted(set(labels.tolist()))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, pred, labels=every, zero_division=np.nan
    )
    per_class = {}
    for c, name in enumerate(classes):
        positives = labels == c
        auc = roc_auc_score(positives, proba[:, c]) if 0 < positives.sum() < len(labels) else None
        per_class[name] = {
            "support": int(support[c]),
            "predicted": int((pred == c).sum()),
            "precision": _number(precision[c]),
            "recall": _number(recall[c]) if support[c] else None,
            "f1": _number(f1[c]) if support[c] else None,
            "auc_ovr": _number(auc),
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true" is expected here
        balanced = balanced_accuracy_score(labels, pred)
    aucs = [v["auc_ovr"] for v in per_class.values() if v["auc_ovr"] is not None]
    shares = np.bincount(labels, minlength=len(classes)) / len(labels)
    return {
        "n_images": int(len(labels)),
        "accuracy": _number(accuracy_score(labels, pred)),
        "balanced_accuracy": _number(balanced),
        "macro_f1": _number(f1_score(labels, pred, labels=present, average="macro", zero_division=0)),
        "macro_auc_ovr": _number(np.mean(aucs)) if aucs else None,
        "majority_class": classes[int(shares.argmax())],
        "majority_baseline_accuracy": _number(shares.max()),
        "per_class": per_class,
        "classes": list(classes),
        "confusion_matrix": confusion_matrix(labels, pred, labels=every).tolist(),
    }


def _fmt(x: float | None) -> str:
    return percent(x, 2, missing="—")


def metrics_markdown(metrics: dict, title: str) -> str:
    """The metrics as a Markdown summary and a per-class table."""
    lines = [
        f"# {title}",
        "",
        f"{metrics['n_images']} images. Percentages.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| accuracy | {_fmt(metrics['accuracy'])} |",
        f"| balanced accuracy (mean per-class recall) | {_fmt(metrics['balanced_accuracy'])} |",
        f"| macro-F1 | {_fmt(metrics['macro_f1'])} |",
        f"| macro AUC, one-vs-rest | {_fmt(metrics['macro_auc_ovr'])} |",
        f"| accuracy of always answering {metrics['majority_class']} | {_fmt(metrics['majority_baseline_accuracy'])} |",
        "",
        "| class | images | predicted | precision | recall | F1 | AUC (one-vs-rest) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in metrics["per_class"].items():
        lines.append(
            f"| {name} | {row['support']} | {row['predicted']} | {_fmt(row['precision'])} | {_fmt(row['recall'])} "
            f"| {_fmt(row['f1'])} | {_fmt(row['auc_ovr'])} |"
        )
    return "\n".join(lines) + "\n"


def plot_confusion(matrix: list[list[int]], classes: list[str], path: str | Path, title: str = "") -> Path:
    """Confusion matrix as counts and row-normalised (each row: how the images of a true class were labelled)."""
    plt = pyplot()

    counts = np.asarray(matrix, dtype=np.float64)
    rows = counts.sum(1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.full_like(counts, np.nan), where=rows > 0)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), dpi=110)
    panels = (
        (axes[0], counts, counts / max(counts.max(), 1), "counts", lambda v: f"{int(v)}"),
        (axes[1], normalised, np.nan_to_num(normalised), "row-normalised (recall on the diagonal)",
         lambda v: f"{v:.2f}"),
    )
    for ax, values, shown, name, text in panels:
        ax.imshow(shown, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(classes)):
            for j in range(len(classes)):
                if np.isfinite(values[i, j]):
                    ax.text(j, i, text(values[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if shown[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(classes)), classes)
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name, fontsize=10)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def evaluate_classifier(
    checkpoint: str | Path,
    data_root: str | Path,
    split: str = "test",
    out: str | Path | None = None,
    fmt: str = "auto",
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    tta: str = "none",
    checks: DataChecks = DataChecks(),
    hints: str | None = None,
) -> dict:
    """Score a ``classifier.pt`` on ``split`` of a dataset; writes metrics and figure to ``out``; returns the metrics.

    ``out`` defaults to ``<checkpoint folder>/eval-<split>/`` (``eval-<split>-tta-<tta>/`` with test-time
    augmentation, so that both can be kept).
    """
    checkpoint = Path(checkpoint)
    if tta not in TTA:
        raise UsageError(f"--tta {tta!r} is not one of {', '.join(TTA)}")
    model, meta = load_classifier(checkpoint, device)
    scored = score_dataset(model, meta, data_root, split, fmt, cache_dir, progress, tta, checks, hints,
                           whose=f"the classifier {checkpoint}'s split")
    metrics = classification_metrics(scored.labels, scored.proba, tuple(meta["classes"]))
    default_name = f"eval-{split}" if tta == "none" else f"eval-{split}-tta-{tta}"
    out = Path(out) if out is not None else checkpoint.parent / default_name
    out.mkdir(parents=True, exist_ok=True)
    metrics.update(
        split=split,
        tta=tta,
        tta_views=TTA[tta],
        data_root=str(data_root),
        data_fingerprint=scored.data_fingerprint,
        same_data_as_training=scored.data_fingerprint == meta.get("data_fingerprint"),
        checkpoint=str(checkpoint),
        checkpoint_sha256=sha256_file(checkpoint),
        classifier_split_sha256=meta["split_sha256"],
        classifier_best_epoch=meta["best_epoch"],
        leakage_check="passed: no scored image or lesion is in the classifier's train part",
    )
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    what = {"test": "test part of its split", "val": "val part (used to pick the epoch)", "all": "all images"}[split]
    title = f"{checkpoint.name} on the {what} of {data_root}"
    if tta != "none":
        title += f", test-time augmentation: mean of {TTA[tta]} {tta} views"
    atomic_write_text(out / "metrics.md", metrics_markdown(metrics, title))
    plot_confusion(metrics["confusion_matrix"], metrics["classes"], out / "confusion.png", title)
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["image_id", "lesion_id", "dx", "predicted", *[f"p_{c}" for c in meta["classes"]]])
    for image_id, lesion, label, p in zip(scored.image_ids, scored.lesion_ids, scored.labels, scored.proba):
        writer.writerow([image_id, lesion, meta["classes"][label], meta["classes"][int(p.argmax())],
                         *[f"{v:.6f}" for v in p]])
    atomic_write_text(out / "predictions.csv", table.getvalue())
    metrics["out"] = str(out)
    return metrics
