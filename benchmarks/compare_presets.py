"""Compare GAN runs (for example `paper` and `best` at equal time) through a judge classifier.

    python benchmarks/compare_presets.py --judge runs/judge/classifier.pt \\
        --data ../shared/data/ham10000-200x150 runs/cmp-paper runs/cmp-best

For each run's ``generator.pt``: draw --per-class images of every class (seed
0), and report per class and on average over classes

- detection %: share the judge classifies as the intended class (Table III);
- confidence %: the judge's mean probability for the intended class;
- judge-FD: Frechet distance between the generated images and the real train
  images of that class in the judge's penultimate feature space (lower is
  better);
- with --inception: in the standard Inception-v3 space, the FID and the
  (unbiased) KID of all generated images against the real train part, and the
  mean over classes of the per-class KID (KID, unlike FID, is unbiased at 100
  images per class, so the per-class figure is comparable between runs).

As a floor, the same FD is computed between the real val+test images and the
real train images of each class. Prints Markdown and writes JSON (--out).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--judge", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--inception", action="store_true", help="also Inception FID/KID (slow on CPU)")
    parser.add_argument("--feature-cache", type=Path, default=None,
                        help="real-image feature cache [default: $DERMSYNTH_CACHE/features]")
    args = parser.parse_args()

    from dermsynth.data import CLASSES, open_index
    from dermsynth.data.cache import default_cache_dir, load_cache
    from dermsynth.data.splits import load_split
    from dermsynth.evaluation.detection import detection_rows
    from dermsynth.generate import load_generator, sample
    from dermsynth.metrics.frechet import fid
    from dermsynth.models.classifier import (
        load_classifier,
        penultimate_features,
        predict_proba,
    )

    judge, meta = load_classifier(args.judge)
    index = open_index(args.data)
    cached = load_cache(index, meta["resolution"], meta.get("crop", "center"), progress=False)
    rows = cached.rows()
    split = load_split(args.runs[0] / "split.json")
    train = np.array(sorted(rows[i] for i in split.parts["train"] if i in rows))
    held = np.array(sorted(rows[i] for p in ("val", "test") for i in split.parts[p] if i in rows))
    real_train_f = penultimate_features(judge, np.asarray(cached.images[train]))
    real_held_f = penultimate_features(judge, np.asarray(cached.images[held]))
    train_y, held_y = cached.labels[train], cached.labels[held]

    inception = real_train_i = None
    if args.inception:
        from dermsynth.metrics.features import extract
        from dermsynth.metrics.inception import InceptionFeatures
        from dermsynth.metrics.kid import kid

        inception = InceptionFeatures()
        real_train_i = extract(inception, np.asarray(cached.images[train]),
                               args.feature_cache or default_cache_dir() / "features", progress=True)

    results = {"floor (real val+test vs train)": {
        c: {"judge_fd": fid(real_held_f[held_y == k], real_train_f[train_y == k])["fid"]}
        for k, c in enumerate(CLASSES)}}
    for run in args.runs:
        G, snap = load_generator(run / "generator.pt")
        info = json.loads((run / "run.json").read_text())
        per_class = {}
        generated = []
        for k, c in enumerate(CLASSES):
            images = sample(G, k, args.per_class, args.seed)
            if images.shape[1] != meta["resolution"]:
                raise SystemExit(f"{run}: generator makes {images.shape[1]} px images, "
                                 f"judge wants {meta['resolution']}")
            table3 = detection_rows({c: predict_proba(judge, images)}, None)[0]  # Table III's own row
            feats = penultimate_features(judge, images)
            per_class[c] = {
                "detection_pct": table3["detection_pct"],
                "confidence_pct": table3["avg_confidence_pct"],
                "judge_fd": fid(feats, real_train_f[train_y == k])["fid"],
            }
            generated.append(images)
        if inception is not None:
            fake_i = inception(np.concatenate(generated), progress=True)
            fake_y = np.repeat(np.arange(len(CLASSES)), args.per_class)
            per_class["_inception"] = {
                "fid": fid(real_train_i, fake_i)["fid"],
                "kid_x1000": 1000 * kid(real_train_i, fake_i)["kid"],
                "mean_class_kid_x1000": float(np.mean([
                    1000 * kid(real_train_i[train_y == k], fake_i[fake_y == k])["kid"] for k in range(len(CLASSES))])),
            }
        per_class["_run"] = {"kimg": info.get("kimg"), "minutes": round(info.get("elapsed_s", 0) / 60, 1),
                             "preset": snap.get("preset")}
        results[str(run)] = per_class

    print("| run | kimg | min | " + " | ".join(f"{c} det% / FD" for c in CLASSES) + " | mean det% | mean FD |")
    print("|---" * (len(CLASSES) + 5) + "|")
    for name, res in results.items():
        cells = []
        for c in CLASSES:
            det = res[c].get("detection_pct")
            cells.append(("" if det is None else f"{det:.0f} / ") + f"{res[c]['judge_fd']:.1f}")
        dets = [res[c]["detection_pct"] for c in CLASSES if "detection_pct" in res[c]]
        fds = [res[c]["judge_fd"] for c in CLASSES]
        run_info = res.get("_run", {})
        print(f"| {name} | {run_info.get('kimg', '')} | {run_info.get('minutes', '')} | " + " | ".join(cells)
              + f" | {np.mean(dets) if dets else float('nan'):.1f} | {np.mean(fds):.1f} |")
    if args.inception:
        print("\n| run | Inception FID (all vs train) | KID x1000 | mean per-class KID x1000 |\n|---|---|---|---|")
        for name, res in results.items():
            if "_inception" in res:
                i = res["_inception"]
                print(f"| {name} | {i['fid']:.1f} | {i['kid_x1000']:.1f} | {i['mean_class_kid_x1000']:.1f} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
