"""Time to quality: train presets side by side for the same minutes, then measure each snapshot.

    python benchmarks/time_to_quality.py train --presets paper,projected --minutes 10,20,40,60 \\
        --resolution 64 --out runs/ttq64
    python benchmarks/time_to_quality.py evaluate --out runs/ttq64 --judge runs/judge-paper/classifier.pt

``train`` runs ``dermsynth train-gan`` for every preset at once, each in its own
process with ``--threads`` threads, on the same data, split and seed. A run stops
at each mark of ``--minutes`` (``train.max_minutes`` counts training time only,
over resumed sessions), its EMA generator is copied to
``OUT/PRESET/snapshots/min-M.pt``, and it resumes up to the next mark.

``evaluate`` measures every snapshot (``--n`` generated images in the real train
part's class proportions, seed 0) and writes ``OUT/time_to_quality.json``,
``OUT/time_to_quality.md`` and ``OUT/time_to_quality.png`` (FID against minutes,
one line per preset, in both feature spaces):

- Inception FID and KID against the real train part (real features cached), and
  precision/recall (k=3);
- the same in the feature space of the paper-CNN judge (``--judge``), a network
  trained on HAM10000 alone with no ImageNet weights, so a discriminator built on
  ImageNet features cannot lower it by matching ImageNet statistics alone
  (Kynkaanniemi et al., ICLR 2023);
- per-class Inception FID, and per-class diversity: the mean pairwise Inception
  distance of a class's generated images divided by the same for its real train
  images (1 = as diverse as real; a collapsed class is near 0);
- Table III (detection by the judge, 100 images per class, with the judge's real
  test recall as the ceiling);
- memorisation (share of generated images nearer a training image than 99 % of
  real test images are) in both spaces, at the last snapshot.

Wall-clock figures depend on the machine and on what else runs: compare presets
only from one ``train`` call.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HAM = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ham10000-200x150"


def train(args: argparse.Namespace) -> None:
    marks = sorted(float(m) for m in args.minutes.split(","))
    arms = {p.strip(): (p.strip(), []) for p in args.presets.split(",") if p.strip()}
    for arm in args.arm:
        label, _, rest = arm.partition("=")
        preset, *sets = rest.split(",")
        if not label or not preset or label in arms:
            sys.exit(f"--arm {arm!r}: expected a new LABEL=PRESET[,SECTION.KEY=VALUE...]")
        arms[label] = (preset, sets)
    configs = Path(__file__).resolve().parents[1] / "configs"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    script = Path(sys.executable).with_name("dermsynth")
    exe = [str(script)] if script.is_file() else [shutil.which("dermsynth") or "dermsynth"]
    failures: list[str] = []

    def run_preset(label: str) -> None:
        preset, own_sets = arms[label]
        run = args.out / label
        (run / "snapshots").mkdir(parents=True, exist_ok=True)
        log = open(run.with_suffix(".log"), "a", encoding="utf-8")
        for i, mark in enumerate(marks):
            snap = run / "snapshots" / f"min-{mark:g}.pt"
            if snap.is_file():
                continue
            cmd = [*exe, "train-gan", "--config", str(configs / f"{preset}.yaml"), "--data", str(args.data),
                   "--out", str(run / "run"), "--no-progress",
                   "--set", f"data.resolution={args.resolution}", "--set", f"train.max_minutes={mark}",
                   *[x for s in [*args.set, *own_sets] for x in ("--set", s)]]
            if (run / "run" / "checkpoints").is_dir():
                cmd += ["--resume", "auto"]
            print(f"[{label}] training to minute {mark:g}", flush=True)
            done = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            if done.returncode != 0:
                failures.append(f"{label} (exit {done.returncode} before minute {mark:g}; see {log.name})")
                return
            shutil.copyfile(run / "run" / "generator.pt", snap)
            info = json.loads((run / "run" / "run.json").read_text())
            print(f"[{label}] minute {mark:g}: {info.get('kimg', 0):.1f} kimg", flush=True)
        log.close()

    side_by_side(run_preset, list(arms), failures)


def side_by_side(job, items: list, failures: list[str]) -> None:
    """``job(item)`` for every item at the same time (threads driving subprocesses); exit listing failures."""
    threads = [threading.Thread(target=job, args=(item,)) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        sys.exit("failed: " + "; ".join(failures))


def _pairwise_mean(features: np.ndarray, limit: int = 500, seed: int = 0) -> float:
    """Mean Euclidean distance between distinct feature vectors (at most ``limit`` of them, drawn at random)."""
    import torch

    if len(features) < 2:
        return float("nan")
    if len(features) > limit:
        features = features[np.random.default_rng(seed).choice(len(features), limit, replace=False)]
    return float(torch.pdist(torch.as_tensor(features, dtype=torch.float64)).mean())


def mean_saturation(images: np.ndarray) -> np.ndarray:
    """Mean HSV saturation of each uint8 (N, H, W, 3) image, in [0, 1]."""
    x = images.astype(np.float32)
    hi, lo = x.max(axis=-1), x.min(axis=-1)
    return np.where(hi > 0, (hi - lo) / np.maximum(hi, 1), 0).mean(axis=(1, 2))


def proportional_labels(labels: np.ndarray, n: int, classes: int) -> np.ndarray:
    """``n`` labels in the proportions of ``labels`` (largest remainder), sorted."""
    share = np.bincount(labels, minlength=classes) / len(labels) * n
    counts = np.floor(share).astype(int)
    counts[np.argsort(counts - share)[: n - counts.sum()]] += 1
    return np.repeat(np.arange(classes), counts)


def _space_block(real, real_labels, fake, fake_labels, classes) -> dict:
    from dermsynth.metrics import METRICS, per_class

    return {
        "fid": METRICS["fid"](real, fake)["fid"],
        "kid": METRICS["kid"](real, fake, subset_size=min(1000, len(fake)))["kid"],
        **{k: v for k, v in METRICS["prdc"](real, fake).items() if k in ("precision", "recall", "density",
                                                                          "coverage")},
        # At 2,000 images the rarest class has about 23: its FID is biased upwards; compare it between runs only.
        "per_class_fid": {c: v["fid"] for c, v in per_class(METRICS["fid"], real, real_labels, fake, fake_labels,
                                                            classes, min_samples=20)["per_class"].items()},
        # 1 = the class's generated images are as spread out as its real ones; a collapsed class is near 0.
        "per_class_diversity": {
            c: _pairwise_mean(fake[fake_labels == k]) / _pairwise_mean(real[real_labels == k])
            for k, c in enumerate(classes) if (fake_labels == k).sum() >= 10},
    }


def evaluate(args: argparse.Namespace) -> None:
    from dermsynth.data import CLASSES, open_index
    from dermsynth.data.cache import default_cache_dir, load_cache
    from dermsynth.data.splits import load_split
    from dermsynth.evaluation.detection import evaluate_detection
    from dermsynth.evaluation.gan import JudgeFeatures
    from dermsynth.evaluation.sources import generate_like
    from dermsynth.generate import load_generator
    from dermsynth.metrics.features import Standardiser, extract
    from dermsynth.metrics.inception import InceptionFeatures
    from dermsynth.metrics.memorisation import memorisation, summary

    cache = args.feature_cache or default_cache_dir() / "features"
    runs = sorted(p for p in args.out.iterdir() if (p / "snapshots").is_dir())
    if args.presets:
        runs = [r for r in runs if r.name in args.presets.split(",")]
    splits = {r.name: load_split(r / "run" / "split.json") for r in runs}
    if len({s.sha256() for s in splits.values()}) != 1:
        sys.exit("the runs trained on different splits; they cannot be compared")
    split = next(iter(splits.values()))
    index = open_index(args.data)
    resolution = load_generator(next(runs[0].glob("snapshots/*.pt")))[0].cfg.resolution
    cached = load_cache(index, resolution, progress=False)
    rows = cached.rows()
    part = {p: np.array(sorted(rows[i] for i in split.parts[p] if i in rows)) for p in ("train", "test")}
    train_images, train_labels = np.asarray(cached.images[part["train"]]), cached.labels[part["train"]]
    test_images = np.asarray(cached.images[part["test"]])
    fake_labels = proportional_labels(train_labels, args.n, len(CLASSES))
    saturation_p99 = float(np.percentile(mean_saturation(train_images), 99))

    spaces = {"judge": JudgeFeatures(args.judge)} if args.judge else {}
    inception_minutes = None if not args.inception_minutes else {float(m) for m in args.inception_minutes.split(",")}
    if args.inception_minutes != "":
        spaces["inception"] = InceptionFeatures(device=args.device)
    real = {name: extract(space, train_images, cache, progress=True) for name, space in spaces.items()}
    # The judge's features are standardised by the real train part, as evaluate gan does (tables made before
    # 2026-12-05 measured its raw features).
    scale = {name: Standardiser(real[name]) if getattr(space, "standardise", False) else (lambda x: x)
             for name, space in spaces.items()}
    real = {name: scale[name](f) for name, f in real.items()}

    results: dict = {"runs": {}}
    for run in runs:
        snaps = sorted(run.glob("snapshots/min-*.pt"), key=lambda p: float(p.stem.split("-", 1)[1]))
        info = json.loads((run / "run" / "run.json").read_text())
        for snap in snaps:
            minute = float(snap.stem.split("-", 1)[1])
            G, meta = load_generator(snap)
            key = f"{minute:g}"
            entry = results["runs"].setdefault(run.name, {}).setdefault(key, {})
            entry.update(minute=minute, kimg=meta.get("images_seen", 0) / 1000, snapshot=str(snap))
            fake = generate_like(G, fake_labels, seed=0)
            # Colour outliers: generated images more saturated than 99 % of the real train images are.
            entry["saturation_outliers_pct"] = float(100 * (mean_saturation(fake) > saturation_p99).mean())
            for name, space in spaces.items():
                if name == "inception" and inception_minutes is not None and minute not in inception_minutes:
                    if snap == snaps[-1]:
                        print(f"note: no Inception measures (memorisation included) for {run.name} minute {key}")
                    continue
                t0 = time.perf_counter()
                # Generated images' features are cached in OUT, not beside the real data's: a rerun costs nothing
                # and the shared cache does not fill with one benchmark's samples.
                f_fake = scale[name](extract(space, fake, args.out / "features", progress=True))
                entry[name] = _space_block(real[name], train_labels, f_fake, fake_labels, list(CLASSES))
                if snap == snaps[-1]:  # memorisation: at the last snapshot only
                    f_test = scale[name](extract(space, test_images, cache, progress=True))
                    mem = summary(memorisation(real[name], f_fake, f_test))
                    entry[name]["memorisation_flagged_pct"] = mem["flagged_pct"]
                print(f"[{run.name}] minute {key} {name}: FID {entry[name]['fid']:.1f} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            if args.judge:
                table3 = evaluate_detection(args.judge, run / "table3" / f"min-{key}", generator=snap,
                                            data_root=args.data, progress=False)
                entry["table3"] = {r["class"]: {"detection_pct": r["detection_pct"],
                                                "ceiling_pct": r["real_test_recall_pct"]} for r in table3}
            results["runs"][run.name][key] = entry
        results["runs"][run.name]["_hardware"] = info.get("hardware")
    results.update(n_generated=args.n, n_real_train=int(len(train_labels)), resolution=resolution,
                   judge=str(args.judge) if args.judge else None, split_sha256=split.sha256(), data=str(args.data))
    (args.out / "time_to_quality.json").write_text(json.dumps(results, indent=1, default=float))
    (args.out / "time_to_quality.md").write_text(markdown(results))
    plot(results, args.out / "time_to_quality.png")
    print((args.out / "time_to_quality.md").read_text())


def _snapshots(results: dict, preset: str) -> list[dict]:
    return sorted((v for k, v in results["runs"][preset].items() if not k.startswith("_")),
                  key=lambda e: e["minute"])


def markdown(results: dict) -> str:
    from dermsynth.data import CLASSES

    lines = [f"{results['n_generated']} generated images (real train proportions) vs {results['n_real_train']} real "
             f"train images at {results['resolution']} px; judge `{results['judge']}`.", "",
             "| preset | minute | kimg | Inception FID | KID x1000 | precision | recall | judge FD | judge KID x1000 "
             "| min class diversity (Inception) | min detection / ceiling | colour outliers % |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    f = lambda v, d=1: "" if v is None else f"{v:.{d}f}"  # noqa: E731
    for preset in sorted(results["runs"]):
        for e in _snapshots(results, preset):
            inc, jud = e.get("inception", {}), e.get("judge", {})
            div = inc.get("per_class_diversity") or {}
            ratios = [v["detection_pct"] / v["ceiling_pct"] for v in e.get("table3", {}).values() if v["ceiling_pct"]]
            lines.append(
                f"| {preset} | {e['minute']:g} | {e['kimg']:.1f} | {f(inc.get('fid'))} | "
                f"{f(None if inc.get('kid') is None else 1000 * inc['kid'], 2)} | {f(inc.get('precision'), 3)} | "
                f"{f(inc.get('recall'), 3)} | {f(jud.get('fid'))} | "
                f"{f(None if jud.get('kid') is None else 1000 * jud['kid'], 0)} | "
                f"{f(min(div.values()) if div else None, 2)} | {f(min(ratios) if ratios else None, 2)} | "
                f"{f(e.get('saturation_outliers_pct'))} |")
    lines += ["", "Per class at the last snapshot (Inception FID / diversity / detection % of ceiling %):", ""]
    lines += ["| preset | " + " | ".join(CLASSES) + " | memorisation % (Inception / judge) |",
              "|---|" + "---|" * (len(CLASSES) + 1)]
    for preset in sorted(results["runs"]):
        e = _snapshots(results, preset)[-1]
        inc, jud, t3 = e.get("inception", {}), e.get("judge", {}), e.get("table3", {})
        cells = [f"{f(inc.get('per_class_fid', {}).get(c))} / {f(inc.get('per_class_diversity', {}).get(c), 2)} / "
                 f"{f(t3.get(c, {}).get('detection_pct'), 0)} of {f(t3.get(c, {}).get('ceiling_pct'), 0)}"
                 for c in CLASSES]
        mem = (f"{f(e.get('inception', {}).get('memorisation_flagged_pct'), 2)} / "
               f"{f(jud.get('memorisation_flagged_pct'), 2)}")
        lines.append(f"| {preset} ({e['minute']:g} min) | " + " | ".join(cells) + f" | {mem} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, out_png: Path) -> None:
    from dermsynth.figures import pyplot

    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    for ax, space, title in ((axes[0], "inception", "Inception FID (ImageNet features)"),
                             (axes[1], "judge", "judge-space FD (HAM10000-only CNN)")):
        for preset in sorted(results["runs"]):
            points = [(e["minute"], e[space]["fid"]) for e in _snapshots(results, preset) if space in e]
            if points:
                ax.plot(*zip(*points), marker="o", label=preset)
        ax.set_xlabel("training minutes (one CPU thread each, side by side)")
        ax.set_title(title, fontsize=10)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)


def sheet(args: argparse.Namespace) -> None:
    """A labelled grid of a snapshot's synthetic images (safe to publish) and, beside it, real train images of
    the same classes (patients' images: written to --real-out, which must lie outside the repository or under
    its git-ignored runs/)."""
    from PIL import Image

    from dermsynth.data import CLASSES, open_index
    from dermsynth.data.cache import load_cache
    from dermsynth.data.splits import load_split
    from dermsynth.figures import labelled_grid, save_synthetic_image
    from dermsynth.generate import load_generator, sample

    G, meta = load_generator(args.snapshot)
    fake = np.concatenate([sample(G, k, args.per_class, args.seed) for k in range(len(CLASSES))])
    title = f"{meta.get('preset')} after {meta.get('images_seen', 0) / 1000:.1f} kimg ({args.snapshot.name})"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_synthetic_image(labelled_grid(fake, list(CLASSES), title), args.out, preset=meta.get("preset"))
    print(f"synthetic grid: {args.out}")
    if args.real_out is None:
        return
    repo = Path(__file__).resolve().parents[1]
    real_out = args.real_out.resolve()
    if real_out.is_relative_to(repo) and not real_out.is_relative_to(repo / "runs"):
        sys.exit(f"{args.real_out}: real images are patients' data; write them outside the repository or "
                 "under runs/ (git-ignored)")
    split = load_split(args.snapshot.parents[1] / "run" / "split.json")
    index = open_index(args.data)
    cached = load_cache(index, G.cfg.resolution, progress=False)
    rows = cached.rows()
    train = np.array(sorted(rows[i] for i in split.parts["train"] if i in rows))
    rng = np.random.default_rng(args.seed)
    real = np.concatenate([np.asarray(cached.images[np.sort(rng.choice(train[cached.labels[train] == k],
                                                                         args.per_class, replace=False))])
                           for k in range(len(CLASSES))])
    real_grid = labelled_grid(real, list(CLASSES), "real train images (HAM10000)", synthetic=False)
    real_grid = np.asarray(real_grid).copy()
    fake_grid = np.asarray(labelled_grid(fake, list(CLASSES), title))
    h = max(real_grid.shape[0], fake_grid.shape[0])
    pad = lambda a: np.pad(a, ((0, h - a.shape[0]), (0, 0), (0, 0)), constant_values=255)  # noqa: E731
    real_out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([pad(real_grid), pad(fake_grid)], axis=1)).save(real_out)
    print(f"real (left) beside synthetic (right): {real_out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train presets side by side with snapshots at fixed minutes")
    p.add_argument("--presets", default="paper,projected")
    p.add_argument("--minutes", default="10,20,40,60")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="threads per preset")
    p.add_argument("--data", type=Path, default=HAM)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="extra override for every preset (repeatable)")
    p.add_argument("--arm", action="append", default=[], metavar="LABEL=PRESET[,SECTION.KEY=VALUE...]",
                   help="a variant of a preset trained beside the others under its own label, e.g. "
                        "hybrid-uniform=hybrid,train.class_sampling=uniform (repeatable)")
    p.set_defaults(fn=train)
    p = sub.add_parser("evaluate", help="measure every snapshot of a train call's runs")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--judge", type=Path, default=None,
                   help="paper-CNN classifier.pt trained on the same split (without it: Inception only, no Table III; "
                        "useful to fill the feature cache early)")
    p.add_argument("--data", type=Path, default=HAM)
    p.add_argument("--n", type=int, default=2000, help="generated images per snapshot")
    p.add_argument("--presets", default=None, help="comma-separated subset of the runs")
    p.add_argument("--inception-minutes", default=None,
                   help="snapshots (minutes) to measure in Inception space [default: all; '' for none]")
    p.add_argument("--feature-cache", type=Path, default=None)
    p.add_argument("--device", default=None)
    p.set_defaults(fn=evaluate)
    p = sub.add_parser("sheet", help="sample grid of a snapshot, optionally beside real images")
    p.add_argument("--snapshot", type=Path, required=True, help="OUT/PRESET/snapshots/min-M.pt")
    p.add_argument("--out", type=Path, required=True, help="PNG of synthetic images (tagged synthetic)")
    p.add_argument("--real-out", type=Path, default=None,
                   help="PNG of real (left) beside synthetic (right); outside the repo or under runs/")
    p.add_argument("--data", type=Path, default=HAM)
    p.add_argument("--per-class", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=sheet)
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
