"""The paper's Table III: does a judge classifier recognise each class of generated lesions?

    dermsynth evaluate detection --generator RUN/generator.pt --judge JUDGE/classifier.pt \\
        --data DIR --per-class 100 --classes nv,bcc,mel,bkl
    dermsynth evaluate detection --images EXPORT --judge JUDGE/classifier.pt --data DIR

For each class: the images judged, the successful detection % (the judge's top
class is the intended class), the average confidence % (the judge's mean
probability for the intended class) and, beside them, the judge's recall on
the real test images of that class, the ceiling a perfect generator would
reach. The paper's published figures are printed alongside. Images come from a
generator snapshot (``dermsynth.generate.sample``: the same seed gives the same
images) or from a folder in HAM10000 layout (a ``dermsynth generate`` export,
``dx`` naming the intended class). Written as ``table3.md``, ``table3.csv``
and ``table3.json``.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dermsynth.data.cache import crop_resize
from dermsynth.data.index import CLASS_TO_LABEL, CLASSES, DataChecks, check_nonempty, open_index
from dermsynth.errors import UsageError
from dermsynth.evaluation.classification import check_no_leakage, classification_metrics, score_dataset
from dermsynth.generate import load_generator, parse_classes, sample, trained_against
from dermsynth.model_card import add_metrics
from dermsynth.models.classifier import TTA, load_classifier, predict_proba
from dermsynth.models.discriminator import sees_imagenet_features
from dermsynth.storage import atomic_write_text, sha256_file
from dermsynth.tables import number

PAPER_TABLE3: dict[str, dict[str, float]] = {
    "nv": {"detection_pct": 63.41, "avg_confidence_pct": 88.34},
    "bcc": {"detection_pct": 29.73, "avg_confidence_pct": 99.90},
    "mel": {"detection_pct": 11.63, "avg_confidence_pct": 86.20},
    "bkl": {"detection_pct": 16.13, "avg_confidence_pct": 80.21},
}
"""The published Table III (percent), for comparison; the paper reports these four classes."""

TABLE3_JSON = "table3.json"

COLUMNS = (
    ("class", "class"),
    ("images", "images"),
    ("detection_pct", "detection %"),
    ("avg_confidence_pct", "avg confidence %"),
    ("real_test_recall_pct", "real-test recall % (ceiling)"),
    ("real_test_images", "real-test images"),
    ("paper_detection_pct", "paper detection %"),
    ("paper_avg_confidence_pct", "paper avg confidence %"),
)


def at_judge_resolution(images: np.ndarray, resolution: int, crop: str) -> np.ndarray:
    """uint8 (N, H, W, 3) at the judge's resolution (resized the way the cache does it when needed)."""
    if images.shape[1:3] == (resolution, resolution):
        return images
    return np.stack([crop_resize(Image.fromarray(im), resolution, crop) for im in images])


def images_from_generator(
    G, classes: list[str], per_class: int, seed: int, resolution: int, crop: str, device: str = "cpu",
) -> dict[str, np.ndarray]:
    """``per_class`` uint8 images of each class from a loaded generator, as ``dermsynth generate`` draws them."""
    if per_class < 1:
        raise UsageError(f"--per-class must be >= 1, got {per_class}")
    return {
        name: at_judge_resolution(sample(G, CLASS_TO_LABEL[name], per_class, seed, device=device), resolution, crop)
        for name in classes
    }


def images_from_folder(
    folder: str | Path, classes: list[str] | None, resolution: int, crop: str, meta: dict
) -> dict[str, np.ndarray]:
    """The images of a HAM10000-layout folder by intended class (``dx``), cropped and resized for the judge.

    ``classes`` None takes every class the folder has. Real images that the
    judge was trained on are refused (the leakage guard).
    """
    # Its warnings are not shown: an export's grid.png is an expected orphan. Generated images are expected here.
    index = open_index(folder, synthetic="expected")
    check_no_leakage([r.image_id for r in index.records], [r.lesion_id for r in index.records], meta,
                     f"images in {folder}")
    if classes is None:
        classes = [c for c in CLASSES if any(r.dx == c for r in index.records)]
    check_nonempty(index, tuple(classes))
    out = {}
    for name in classes:
        rows = [i for i, r in enumerate(index.records) if r.dx == name]
        out[name] = np.stack([crop_resize(index.open_image(i), resolution, crop) for i in rows])
    return out


def detection_rows(
    judged: dict[str, np.ndarray], real_recall: dict[str, tuple[float | None, int]] | None
) -> list[dict]:
    """Table III rows from the judge's probabilities (N, 7) per intended class."""
    rows = []
    for name, proba in judged.items():
        label = CLASS_TO_LABEL[name]
        recall, n_real = (real_recall or {}).get(name, (None, 0))
        paper = PAPER_TABLE3.get(name, {})
        rows.append({
            "class": name,
            "images": int(len(proba)),
            "detection_pct": round(100 * float((proba.argmax(1) == label).mean()), 2),
            "avg_confidence_pct": round(100 * float(proba[:, label].mean()), 2),
            "real_test_recall_pct": None if recall is None else round(100 * recall, 2),
            "real_test_images": n_real if real_recall is not None else None,
            "paper_detection_pct": paper.get("detection_pct"),
            "paper_avg_confidence_pct": paper.get("avg_confidence_pct"),
        })
    return rows


def _cell(value) -> str:
    return number(value, 2, missing="—") if isinstance(value, float) or value is None else str(value)


def table3_markdown(rows: list[dict], info: dict) -> str:
    lines = [
        "# Table III: detection of generated lesions by the judge classifier",
        "",
        f"Judge: `{info['judge']['path']}` (best epoch {info['judge']['best_epoch']}, val balanced accuracy "
        f"{100 * info['judge']['val_balanced_accuracy']:.2f}%). Images: {info['source']['description']}.",
        "",
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---|" + "---:|" * (len(COLUMNS) - 1),
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[key]) for key, _ in COLUMNS) + " |")
    lines += ["", *[f"- {note}" for note in info["notes"]]]
    return "\n".join(lines) + "\n"


def evaluate_detection(
    judge: str | Path,
    out: str | Path,
    generator: str | Path | None = None,
    images: str | Path | None = None,
    data_root: str | Path | None = None,
    per_class: int = 100,
    classes: str | None = None,
    seed: int = 0,
    fmt: str = "auto",
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    tta: str = "none",
    checks: DataChecks = DataChecks(),
    hints: str | None = None,
) -> list[dict]:
    """Judge generated images per class (from ``generator`` or an ``images`` folder); write Table III to ``out``.

    ``tta`` (flips or dihedral) averages the judge's probabilities over flipped views, for the generated
    images and the real test images of the ceiling alike. ``checks`` and ``hints``: how ``data_root`` is read
    (:func:`~dermsynth.evaluation.classification.score_dataset`)."""
    if tta not in TTA:
        raise UsageError(f"--tta {tta!r} is not one of {', '.join(TTA)}")
    if (generator is None) == (images is None):
        raise UsageError("give exactly one of --generator (a generator snapshot) or --images (a generated folder)")
    judge = Path(judge)
    model, meta = load_classifier(judge, device)
    resolution, crop = int(meta["resolution"]), meta["crop"]
    if generator is not None:
        names = parse_classes(classes)
        G, snapshot = load_generator(generator, device)
        by_class = images_from_generator(G, names, per_class, seed, resolution, crop, device)
        source = {"generator": str(generator), "generator_sha256": sha256_file(generator), "seed": seed,
                  "per_class": per_class,
                  "description": f"{per_class} per class from `{generator}`, seed {seed}"}
    else:
        names = parse_classes(classes) if classes else None
        by_class = images_from_folder(images, names, resolution, crop, meta)
        source = {"images": str(images), "description": f"the HAM10000-layout folder `{images}`"}

    real_recall = None
    notes = [
        "detection %: share of the generated images whose top class under the judge is the intended class.",
        "avg confidence %: the judge's mean probability for the intended class.",
    ]
    if data_root is not None:
        scored = score_dataset(model, meta, data_root, "test", fmt, cache_dir, progress, tta, checks, hints,
                               whose=f"the judge {judge}'s split")
        per_class_metrics = classification_metrics(scored.labels, scored.proba, tuple(meta["classes"]))["per_class"]
        real_recall = {name: (m["recall"], m["support"]) for name, m in per_class_metrics.items()}
        notes.append("real-test recall %: the judge's recall on the real images of that class in the test part of "
                     "its own lesion-grouped split; a perfect generator's detection % would approach it.")
    else:
        notes.append("real-test recall % is empty: pass --data DIR (the judge's data) to fill in the ceiling.")
        print("warning: no --data given; the real-test recall (ceiling) column is left empty", file=sys.stderr)
    effnet = meta["model_config"].get("arch") == "effnet"
    if generator is not None and effnet and sees_imagenet_features(trained_against(snapshot)):
        shared = ("the judge is EfficientNet-Lite0 from ImageNet weights, the network whose features the "
                  f"{trained_against(snapshot)} "
                  "discriminator trained this generator against: its detection rates favour this generator and "
                  "are not an independent measure; judge it with a classifier trained from scratch as well.")
        notes.append(shared)
        print(f"warning: {shared}", file=sys.stderr)
    notes.append("paper columns: the published Table III, printed for comparison only; the paper's judge was "
                 "scored on an image-level split drawn after oversampling, so its figures are not directly "
                 "comparable.")

    judged = {name: predict_proba(model, imgs, tta=tta) for name, imgs in by_class.items()}
    if tta != "none":
        notes.append(f"test-time augmentation: the judge's probabilities are the mean over {TTA[tta]} flipped views "
                     "of each image, generated and real alike.")
    rows = detection_rows(judged, real_recall)
    info = {
        "tta": tta,
        "judge": {"path": str(judge), "sha256": sha256_file(judge), "best_epoch": meta["best_epoch"],
                  "val_balanced_accuracy": meta["val_balanced_accuracy"], "split_sha256": meta["split_sha256"]},
        "source": source,
        "real_test": {"data_root": str(data_root)} if data_root is not None else None,
        "paper": PAPER_TABLE3,
        "notes": notes,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / TABLE3_JSON, json.dumps({"rows": rows, **info}, indent=1))
    atomic_write_text(out / "table3.md", table3_markdown(rows, info))
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=[key for key, _ in COLUMNS])
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    atomic_write_text(out / "table3.csv", table.getvalue())
    if generator is not None:  # the headline figure in the model card beside the generator (if it has one)
        add_metrics(generator, {"Table III mean detection %": round(float(np.mean([r["detection_pct"]
                                                                                  for r in rows])), 1)},
                    f"evaluate detection, {per_class} images per class, judge {judge.name}")
    return rows
