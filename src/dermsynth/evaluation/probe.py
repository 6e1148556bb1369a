"""A fast utility probe with known-answer controls: frozen ImageNet features and a logistic head per arm and seed.

The fine-tuned utility study (:mod:`dermsynth.evaluation.utility`) trains a network per arm and seed: hours, and
a seed spread of several points. The probe asks the same question in seconds per run. Every image (real or
synthetic) becomes the pooled 1280 features of the frozen EfficientNet-Lite0 from its ImageNet weights; a
multinomial logistic head (class-balanced, L2, full-batch L-BFGS for a fixed number of iterations: no epoch is
picked on the tiny rare-class val part, and the fit is convex, so it does not depend on an initial seed) is fitted
per arm and seed on the train part, and scored on the real test part. The arms:

- ``real``: the real train part (the baseline);
- ``half``: **positive control**: half of the train lesions of each class (a fresh half per seed). The gain of
  ``real`` over ``half`` is the effect of doubling real data: an instrument that cannot see it cannot see a
  generator's effect of that size either;
- ``shuffled``: **negative control**: ``real`` topped up as ``topup`` is, but with real train images drawn from
  every class at random and labelled with the class they top up: images with no information about their class,
  which must not show a gain;
- ``topup``: ``real`` plus synthetic images topping every class up to ``topup_to`` train images;
- ``synthetic``: ``synthetic_per_class`` synthetic images of each class only: the Classification Accuracy Score
  (train on synthetic, test on real; Ravuri and Vinyals, NeurIPS 2019).

Seeds vary what each arm draws (the half, the shuffled images, which images of one synthetic pool). Each arm's
paired difference from the baseline gets a 95 % interval that covers training and test sampling at once: a
bootstrap that resamples the seeds and, jointly, the test part by lesion (a lesion's images stay together), with
the minimum detectable effect (80 % power, two-sided 5 %) beside it. Cross-fitted (:func:`run_crossfit`), every
image is a test image once; the interval is then conditional on the folds' fits, whose train parts overlap (the
dealing of the folds is not resampled).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from tqdm import tqdm

from dermsynth.data.index import CLASSES
from dermsynth.schema import Integer, Items, Number, Section

PROBE_ARMS = ("real", "half", "shuffled", "topup", "synthetic")
CONTROLS = {"half": "positive control", "shuffled": "negative control"}
BASELINE = "real"
Z_POWER = 1.959964 + 0.841621
"""z(0.975) + z(0.80): the minimum detectable effect in standard errors (two-sided 5 %, 80 % power)."""


PROBE_JSON = "probe.json"


class ProbeConfig(Section):
    """What the probe fits, how often, and on which features."""

    arms: Items[Literal[PROBE_ARMS]] = Field(PROBE_ARMS, description=(
        "Arms to fit; the baseline, real, is always fitted."))
    seeds: Integer = Field(20, ge=2, description="Fits per arm; each draws its own half, shuffled images and "
                                                 "synthetic noise.")
    topup_to: Integer = Field(500, ge=0, description="topup and shuffled: top each class up to this many train "
                                                     "images.")
    synthetic_per_class: Integer = Field(500, ge=1, description=(
        "synthetic: images of each class (the Classification Accuracy Score)."))
    feature_resolution: Literal[32, 64, 128, 224, 256] = Field(128, description=(
        "Side the images are resized to (bilinear) before the backbone."))
    l2: Number = Field(1e-3, ge=0, description=(
        "Weight of the squared weights in the head's loss (features standardised on the arm's train images)."))
    iterations: Integer = Field(200, ge=1, description="L-BFGS iterations of every fit (a fixed schedule).")
    bootstrap: Integer = Field(2000, ge=100, description="Bootstrap draws of the intervals.")
    synthetic_seed: Integer = Field(1000, description="Noise seed of the synthetic images.")

    @field_validator("arms")
    @classmethod
    def _with_baseline(cls, arms: tuple[str, ...]) -> tuple[str, ...]:
        return arms if BASELINE in arms else (BASELINE, *arms)


class Lite0Features:
    """Pooled EfficientNet-Lite0 ImageNet features of uint8 (N, H, W, 3) images, as a feature extractor."""

    name = "lite0"

    def __init__(self, resolution: int = 128, batch: int = 64, weights: str | Path | None = None) -> None:
        from dermsynth.models.efficientnet import load_lite0

        self.model, self.resolution, self.batch = load_lite0(weights), resolution, batch
        self.settings = f"lite0-imagenet-pooled-{resolution}px"

    @torch.inference_mode()
    def __call__(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        out = []
        for i in tqdm(range(0, len(images), self.batch), desc="lite0 features", disable=not progress, unit="batch"):
            # np.array copies the rows of a read-only (memory-mapped) cache: torch warns on a read-only array.
            x = torch.as_tensor(np.array(images[i: i + self.batch], dtype=np.float32)).permute(0, 3, 1, 2)
            x = F.interpolate(x, size=self.resolution, mode="bilinear", align_corners=False, antialias=True)
            out.append(self.model.forward_features((x - 127.0) / 128.0).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 1280), np.float32)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, iterations: int, classes: int = len(CLASSES)):
    """A class-balanced multinomial logistic head on standardised ``x``; returns a predict(features) -> labels."""
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    xt = torch.from_numpy((x - mean) / std).double()
    yt = torch.from_numpy(y.astype(np.int64))
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    weight = torch.from_numpy(np.where(counts > 0, len(y) / (classes * np.maximum(counts, 1)), 0.0))
    w = torch.zeros(classes, x.shape[1], dtype=torch.float64, requires_grad=True)  # (C, D): F.linear's backward
    # computes grad_out.T @ x, ten times faster on a CPU than the x.T @ grad_out of an (D, C) weight
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(F.linear(xt, w, b), yt, weight=weight) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w_, b_ = w.detach().numpy(), b.detach().numpy()
    return lambda features: (((features - mean) / std) @ w_.T + b_).argmax(axis=1)


def lesion_weights(lesions: list[str], draws: int, rng: np.random.Generator) -> np.ndarray:
    """(draws, N) bootstrap weights of N test images: lesions drawn with replacement, each image weighted by how
    often its lesion was drawn (row 0 is the test part as it is)."""
    names, of = np.unique(np.asarray(lesions), return_inverse=True)
    counts = rng.multinomial(len(names), np.full(len(names), 1 / len(names)), size=draws - 1)
    return np.concatenate([np.ones((1, len(lesions))), counts[:, of]]).astype(np.float64)


def balanced_accuracies(correct: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                        classes: int = len(CLASSES)) -> np.ndarray:
    """Balanced accuracy of each run (rows of boolean ``correct`` (S, N)) under each weighting (B, N): (S, B)."""
    present = [c for c in range(classes) if (labels == c).any()]
    masks = np.stack([labels == c for c in present], axis=1).astype(np.float64)  # (N, C)
    totals = weights @ masks  # (B, C)
    hits = np.einsum("bn,snc->sbc", weights, correct[:, :, None] * masks[None])
    return (hits / np.maximum(totals, 1e-12)[None]).mean(axis=2)


def paired_difference(arm: np.ndarray, base: np.ndarray, rng: np.random.Generator) -> dict:
    """``arm`` and ``base``: (S, B) balanced accuracies by seed and bootstrap weighting (column 0 the test part as
    it is). The mean paired difference, its 95 % interval (seeds resampled with each test draw), standard error
    and minimum detectable effect, in balanced-accuracy points (percent)."""
    diff = (arm - base) * 100
    seeds = rng.integers(0, diff.shape[0], size=(diff.shape[1] - 1, diff.shape[0]))
    draws = diff[seeds, np.arange(1, diff.shape[1])[:, None]].mean(axis=1)
    se = float(draws.std(ddof=1))
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"mean": float(diff[:, 0].mean()), "ci95": [float(low), float(high)], "se": se,
            "half_width": float((high - low) / 2), "mde": Z_POWER * se,
            "per_seed": [float(d) for d in diff[:, 0]]}


def half_of_lesions(lesions: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows of a random half of each class's lesions (at least one lesion per class)."""
    keep = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        names = np.unique(lesions[labels == c])
        chosen = rng.choice(names, size=max(1, len(names) // 2), replace=False)
        keep |= (labels == c) & np.isin(lesions, chosen)
    return np.flatnonzero(keep)


def topup_counts(labels: np.ndarray, topup_to: int) -> dict[int, int]:
    counts = np.bincount(labels, minlength=len(CLASSES))
    return {c: int(max(0, topup_to - counts[c])) for c in range(len(CLASSES))}


def pool_sizes(train_labels: np.ndarray, cfg: ProbeConfig) -> dict[int, int]:
    """Synthetic images per class to generate once for every seed: twice what one fit draws."""
    top = topup_counts(train_labels, cfg.topup_to)
    need = {c: max(top[c] if "topup" in cfg.arms else 0,
                   cfg.synthetic_per_class if "synthetic" in cfg.arms else 0) for c in top}
    return {c: 2 * n for c, n in need.items()}


def run_probe(train: dict, test: dict, cfg: ProbeConfig, pool: tuple[np.ndarray, np.ndarray] | None = None,
              progress: bool = True) -> dict:
    """Fit every arm ``cfg.seeds`` times and compare each with the baseline.

    ``train``/``test``: ``features`` (N, D), ``labels`` (N,) and ``lesions`` (N ids). ``pool``: features and
    labels of generated images (:func:`pool_sizes` per class, for topup and synthetic); each seed draws its
    images from it without replacement, so the seeds vary which synthetic images a fit sees."""
    return run_crossfit([(train, test, pool)], cfg, progress)


def run_crossfit(folds: list[tuple[dict, dict, tuple[np.ndarray, np.ndarray] | None]], cfg: ProbeConfig,
                 progress: bool = True) -> dict:
    """:func:`run_probe` over the folds of a cross-fitting (:func:`~dermsynth.data.splits.lesion_folds`), each
    (train, test, pool): every arm and seed is fitted on each fold's train part and scored on its test part, and
    the answers of all folds are pooled, so balanced accuracy and its interval are taken over every image the
    folds test. A pool must come from a generator that saw no image of its fold's test part."""
    if any(pool is None for *_, pool in folds) and {"topup", "synthetic"} & set(cfg.arms):
        raise ValueError("the topup and synthetic arms need a pool of synthetic images")
    tested: set = set()
    for i, (train, test, _) in enumerate(folds):  # pooled answers are only sound if each lesion is tested once
        lesions = set(test["lesions"])
        if lesions & set(train["lesions"]):
            whose = f"fold {i}: its" if len(folds) > 1 else "the"
            raise ValueError(f"{whose} train part holds lesions of its own test part")
        if lesions & tested:
            raise ValueError(f"fold {i}: its test part shares lesions with an earlier fold's")
        tested |= lesions
    bar = tqdm(total=len(folds) * len(cfg.arms) * cfg.seeds, desc="probe fits", disable=not progress)
    answers = [_fit_arms(train, test, cfg, pool, fold, bar) for fold, (train, test, pool) in enumerate(folds)]
    bar.close()
    correct = {a: [np.concatenate([fold[a][s] for fold in answers]) for s in range(cfg.seeds)] for a in cfg.arms}
    test_labels = np.concatenate([np.asarray(test["labels"]) for _, test, _ in folds])
    test_lesions = [les for _, test, _ in folds for les in test["lesions"]]
    rng = np.random.default_rng(0)
    weights = lesion_weights(test_lesions, cfg.bootstrap, rng)
    arms, differences = compare_arms(correct, test_labels, weights, rng)
    verdict = controls_verdict(differences)
    result = {"config": cfg.model_dump(), "n_train": int(len(folds[0][0]["labels"])),
              "n_test": int(len(test_labels)), "n_test_lesions": int(len(set(test_lesions))), "arms": arms,
              "differences": differences, "controls": verdict, "unit": "balanced accuracy, percentage points"}
    if len(folds) > 1:  # n_train: the first fold's
        result["folds"] = len(folds)
    return result


def _fit_arms(train: dict, test: dict, cfg: ProbeConfig, pool, fold: int, bar) -> dict[str, list[np.ndarray]]:
    """One fold's fits: per arm, the right answers (N,) on ``test`` of each seed."""
    px, py = pool if pool is not None else (None, None)

    def synthetic(counts: dict[int, int], draw: np.random.Generator):
        # A folder may hold fewer images of a class than asked for: then all of them.
        rows = [draw.choice(np.flatnonzero(py == c), size=min(n, int((py == c).sum())), replace=False)
                for c, n in counts.items() if n]
        rows = np.concatenate(rows) if rows else np.zeros(0, dtype=int)
        return px[rows], py[rows]

    x, y, lesions = train["features"], np.asarray(train["labels"]), np.asarray(train["lesions"])
    test_labels = np.asarray(test["labels"])
    top = topup_counts(y, cfg.topup_to)
    correct: dict[str, list[np.ndarray]] = {a: [] for a in cfg.arms}
    for seed in range(cfg.seeds):
        draw = np.random.default_rng(10_000 + seed if fold == 0 else (10_000 + seed, fold))
        for arm in cfg.arms:
            if arm == "real" and seed > 0:  # a convex fit on the same data: the same head every seed
                correct[arm].append(correct[arm][0])
                bar.update()
                continue
            if arm in ("real", "half"):
                rows = np.arange(len(y)) if arm == "real" else half_of_lesions(lesions, y, draw)
                fx, fy = x[rows], y[rows]
            elif arm == "shuffled":
                picks = {c: draw.choice(len(y), size=n) for c, n in top.items() if n}
                fx = np.concatenate([x, *[x[p] for p in picks.values()]])
                fy = np.concatenate([y, *[np.full(len(p), c) for c, p in picks.items()]])
            elif arm == "topup":
                sx, sy = synthetic(top, draw)
                fx, fy = np.concatenate([x, sx]), np.concatenate([y, sy])
            else:  # synthetic only
                fx, fy = synthetic({c: cfg.synthetic_per_class for c in top}, draw)
            predict = fit_logistic(fx, fy, cfg.l2, cfg.iterations)
            correct[arm].append(predict(test["features"]) == test_labels)
            bar.update()
    return correct


def compare_arms(correct: dict[str, list[np.ndarray]], labels: np.ndarray, weights: np.ndarray,
                 rng: np.random.Generator) -> tuple[dict, dict]:
    """Every arm's balanced accuracy (percent, mean and sd over seeds) and its paired difference from the
    baseline (:func:`paired_difference`), from ``correct``: per arm, one boolean (N,) array of right answers on
    the test images per seed, seeds in the same order in every arm; ``weights``: :func:`lesion_weights`. The
    positive control reads as the gain of all the real lesions over half of them (real minus half)."""
    scores = {a: balanced_accuracies(np.stack(v), labels, weights) for a, v in correct.items()}
    arms = {a: {"balanced_accuracy_mean": float(s[:, 0].mean() * 100),
                "balanced_accuracy_std": float(s[:, 0].std(ddof=1) * 100) if len(s) > 1 else 0.0,
                "role": CONTROLS.get(a, "baseline" if a == BASELINE else "arm")} for a, s in scores.items()}
    differences = {}
    for a in scores:
        if a == BASELINE:
            continue
        n = min(len(scores[a]), len(scores[BASELINE]))
        d = paired_difference(scores[a][:n], scores[BASELINE][:n], rng)
        if a == "half":
            d = {**d, "mean": -d["mean"], "ci95": [-d["ci95"][1], -d["ci95"][0]],
                 "per_seed": [-v for v in d["per_seed"]], "sign": "real minus half"}
        differences[a] = d
    return arms, differences


def controls_verdict(differences: dict) -> dict:
    """Whether the known answers came out: the positive control's gain above zero, the negative control's interval
    not above zero; and what that says about the other arms."""
    out: dict = {}
    if "half" in differences:
        low = differences["half"]["ci95"][0]
        out["positive_resolved"] = bool(low > 0)
    if "shuffled" in differences:
        out["negative_no_gain"] = bool(differences["shuffled"]["ci95"][0] <= 0)
    if out.get("positive_resolved") and out.get("negative_no_gain", True):
        mdes = [d["mde"] for a, d in differences.items() if a not in CONTROLS]
        out["statement"] = (f"The controls came out as known: the instrument resolves the gain of doubling the real "
                            f"data ({differences['half']['mean']:+.1f} points)"
                            + (f" and detects effects of about {max(mdes):.1f} points or more in the other arms"
                               if mdes else "") + ".")
    elif "half" in differences:
        out["statement"] = ("A control did not come out as known: this run cannot tell a gain from noise; read no "
                            "arm's difference as an effect.")
    return out


def probe_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """The probe's table: every arm, its role, its score and its paired difference from the baseline."""
    names = {"real": "real train part (baseline)", "half": "half the train lesions (positive control: real "
             "minus half)", "shuffled": "top-up with class-shuffled real images (negative control)",
             "topup": "top-up with synthetic images", "synthetic": "synthetic only (CAS)"}
    rows = []
    for arm, a in result["arms"].items():
        d = result["differences"].get(arm)
        rows.append([names.get(arm, arm), f"{a['balanced_accuracy_mean']:.1f} +- {a['balanced_accuracy_std']:.1f}",
                     "" if d is None else f"{d['mean']:+.2f}",
                     "" if d is None else f"[{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]",
                     "" if d is None else f"{d['mde']:.2f}"])
    return ["arm", "balanced accuracy % (mean +- sd over seeds)", "difference (points)", "95 % interval", "MDE"], rows


def probe_caption(result: dict) -> str:
    """What the probe's table shows, in a sentence or three."""
    folds = result.get("folds", 1)
    parts = (f"{result['n_train']} real train and {result['n_test']} real test images" if folds == 1 else
             f"{folds} lesion-grouped folds, each trained on the others (about {result['n_train']} real images) "
             f"and tested on its own: {result['n_test']} real test images in all")
    return (f"{result['config']['seeds']} seeds per arm; {parts} ({result['n_test_lesions']} lesions); balanced "
            "accuracy on the real test images in percent. "
            "The interval resamples the seeds and the test lesions together; MDE is the smallest difference it "
            "would detect with 80 % power." + ("" if folds == 1 else " The folds' fits themselves are not "
                                                "resampled: the interval is conditional on them."))


def probe_markdown(result: dict) -> str:
    """The probe's table and its statement of what the controls showed, as Markdown."""
    from dermsynth.tables import markdown_table

    lines = ["# Utility probe (frozen EfficientNet-Lite0 features, logistic head)", "", probe_caption(result), "",
             *markdown_table(*probe_rows(result)), ""]
    if result["controls"].get("statement"):
        lines += [result["controls"]["statement"], ""]
    lines += [f"**Data taken in on request:** {w}." for w in result.get("data_warnings", [])]
    return "\n".join(lines)


def probe_data(data_root, split_file, resolution: int, crop: str = "center", checks=None,
               feature_cache: str | Path | None = None, extractor: Lite0Features | None = None,
               progress: bool = True, hints: str | None = None):
    """The real train and test parts of a split as the probe's inputs (features cached by image content); returns
    (train, test, extractor, index, split)."""
    from dermsynth.data.splits import load_split
    from dermsynth.metrics.features import extract

    split = load_split(split_file)
    index, cached = _open_real(data_root, resolution, crop, checks, progress, hints)
    extractor = extractor or Lite0Features()
    parts = {}
    for part in ("train", "test"):
        rows = cached.part_rows(split.parts, part)
        parts[part] = {"features": extract(extractor, np.asarray(cached.images[rows]), feature_cache, progress),
                       "labels": np.asarray(cached.labels[rows]),
                       "lesions": [cached.lesion_ids[i] for i in rows]}
    return parts["train"], parts["test"], extractor, index, split


def crossfit_data(data_root, folds: int, seed: int, resolution: int, crop: str = "center", checks=None,
                  feature_cache: str | Path | None = None, extractor: Lite0Features | None = None,
                  progress: bool = True, hints: str | None = None):
    """Every real image of a dataset as the inputs of a cross-fitted probe (:func:`run_crossfit`): the features of
    all images once, then each fold's (train, test); returns (parts, extractor, index, splits), ``splits`` the
    folds' :class:`~dermsynth.data.splits.Split` (train: the other folds; test: the fold)."""
    from dermsynth.data.splits import lesion_folds
    from dermsynth.metrics.features import extract

    index, cached = _open_real(data_root, resolution, crop, checks, progress, hints)
    splits = lesion_folds(index, folds, seed)  # a bad fold count is refused before the features are computed
    extractor = extractor or Lite0Features()
    features = extract(extractor, np.asarray(cached.images), feature_cache, progress)
    labels = np.asarray(cached.labels)

    def part(split, name):
        rows = cached.part_rows(split.parts, name)
        return {"features": features[rows], "labels": labels[rows], "lesions": [cached.lesion_ids[i] for i in rows]}

    return [(part(s, "train"), part(s, "test")) for s in splits], extractor, index, splits


def _open_real(data_root, resolution: int, crop: str, checks, progress: bool, hints: str | None):
    """The dataset's index (its warnings printed) and its decoded images at ``resolution``."""
    from dermsynth.data.cache import load_cache
    from dermsynth.data.index import DataChecks, open_index

    index = open_index(data_root, hints=hints, **(checks or DataChecks()).readers())
    for warning in index.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return index, load_cache(index, resolution, crop, progress=progress)


def probe_generator(generator, data_root, split_file, out: str | Path, cfg: ProbeConfig | None = None,
                    checks=None, feature_cache: str | Path | None = None, progress: bool = True,
                    hints: str | None = None) -> dict:
    """The probe of a generator snapshot on the split it was trained on (or of another source of synthetic
    images, a folder's, say: :mod:`~dermsynth.evaluation.sources`); writes ``out``/probe.json and probe.md."""
    import json

    from dermsynth.evaluation.sources import FolderSource, GeneratorSource
    from dermsynth.storage import atomic_write_text

    cfg = cfg or ProbeConfig()
    out = Path(out)
    source = generator if isinstance(generator, (GeneratorSource, FolderSource)) else GeneratorSource(generator)
    train, test, extractor, index, split = probe_data(
        data_root, split_file, source.resolution, "center", checks, feature_cache,
        Lite0Features(cfg.feature_resolution), progress, hints)
    checked = source.check(split, index)
    sizes = pool_sizes(train["labels"], cfg)
    drawn = {c: source.draw(c, n, cfg.synthetic_seed) for c, n in sizes.items() if n}
    py = np.concatenate([np.full(len(x), c) for c, x in drawn.items()] or [np.zeros(0, dtype=int)])
    px = (extractor(np.concatenate(list(drawn.values())), progress=progress) if len(py)
          else np.zeros((0, 1280), np.float32))
    result = run_probe(train, test, cfg, (px, py), progress)
    result.update(generator=source.name, generator_sha256=source.fingerprint, generator_check=checked,
                  split_sha256=split.sha256(), features=extractor.settings,
                  data_checks=(checks.changed() if checks else {}), data_warnings=index.warnings)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / PROBE_JSON, json.dumps(result, indent=1))
    atomic_write_text(out / "probe.md", probe_markdown(result))
    return result
