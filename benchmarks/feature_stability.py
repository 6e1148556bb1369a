"""How steady the judge's feature space is: one generator measured with two noise seeds, and a run's curve.

    python benchmarks/feature_stability.py --runs runs/ttq32 --judge runs/judge-paper-32/classifier.pt \\
        --out runs/stability32

For every snapshot ``RUN/snapshots/min-*.pt`` of every run under ``--runs``, ``--n`` images in the real train
part's class proportions are drawn with each of ``--seeds`` noise seeds and put in the judge's penultimate space,
read three ways:

- ``raw``: the features as they are (what ``evaluate gan`` used before this benchmark);
- ``standardised``: each feature divided by its standard deviation over the real train part (features that are
  constant there, dead ReLUs, dropped), so no handful of large-valued units decides the distance;
- ``kid``: KID x1000 on the standardised features.

Beside each: the real floors at the same sample size (half vs half of the train part subsampled to ``--n``, and
``--n`` real test images vs the train part), the two seeds' spread (``|a - b| / mean``) and the diagnostics of
the space (dimensions, dead ones, the variance share of the five largest). Writes ``OUT/stability.json`` and
``OUT/stability.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HAM = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ham10000-200x150"


def proportional(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(len(labels), size=min(n, len(labels)), replace=False))


def main() -> None:
    import torch

    from dermsynth.data import CLASSES, open_index
    from dermsynth.data.cache import default_cache_dir, load_cache
    from dermsynth.data.splits import load_split
    from dermsynth.evaluation.gan import JudgeFeatures
    from dermsynth.evaluation.sources import generate_like
    from dermsynth.generate import load_generator
    from dermsynth.metrics.features import extract
    from dermsynth.metrics.frechet import fid
    from dermsynth.metrics.kid import kid
    from dermsynth.storage import atomic_write_text
    from dermsynth.tables import markdown_table
    from dermsynth.training.runs import cpu_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="a time_to_quality.py output folder")
    parser.add_argument("--judge", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=HAM)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = sorted(p for p in args.runs.iterdir() if (p / "snapshots").is_dir())
    split = load_split(runs[0] / "run" / "split.json")
    index = open_index(args.data)
    judge = JudgeFeatures(args.judge)
    resolution = judge.meta["resolution"]
    cached = load_cache(index, resolution, progress=False)
    part = {p: cached.part_rows(split.parts, p) for p in ("train", "test")}
    train, train_labels = np.asarray(cached.images[part["train"]]), cached.labels[part["train"]]
    cache = default_cache_dir() / "features"
    f_train = extract(judge, train, cache, progress=True)
    f_test = extract(judge, np.asarray(cached.images[part["test"]]), cache, progress=True)
    std = f_train.std(axis=0)
    alive = std > 1e-6 * max(std.max(), 1e-12)
    variances = np.sort(f_train.var(axis=0))[::-1]
    diagnostics = {"dims": int(f_train.shape[1]), "dead": int((~alive).sum()),
                   "top5_variance_share": float(variances[:5].sum() / variances.sum())}

    def views(x: np.ndarray) -> dict[str, np.ndarray]:
        return {"raw": x, "standardised": x[:, alive] / std[alive]}

    real = views(f_train)
    rng = np.random.default_rng(0)
    sub = rng.permutation(len(f_train))
    unseen = views(f_test[proportional(f_test, args.n, rng)])
    half_a, half_b = views(f_train[sub[: args.n]]), views(f_train[sub[args.n: 2 * args.n]])

    def scores(fake: dict[str, np.ndarray]) -> dict:
        return {"raw": fid(real["raw"], fake["raw"])["fid"],
                "standardised": fid(real["standardised"], fake["standardised"])["fid"],
                "kid": 1000 * kid(real["standardised"], fake["standardised"],
                                  subset_size=min(1000, len(fake["raw"])))["kid"]}

    result = {"machine": cpu_model(), "torch_threads": torch.get_num_threads(), "judge": str(args.judge),
              "n": args.n, "seeds": seeds, "diagnostics": diagnostics,
              "floors": {"half_vs_half": {"raw": fid(half_a["raw"], half_b["raw"])["fid"],
                                          "standardised": fid(half_a["standardised"], half_b["standardised"])["fid"],
                                          "kid": 1000 * kid(half_a["standardised"], half_b["standardised"],
                                                            subset_size=min(1000, args.n))["kid"]},
                         "test_vs_train": scores(unseen)},
              "runs": {}}
    labels = np.repeat(np.arange(len(CLASSES)), np.bincount(train_labels, minlength=len(CLASSES)))
    labels = labels[proportional(labels, args.n, np.random.default_rng(1))]
    for run in runs:
        snaps = sorted(run.glob("snapshots/min-*.pt"), key=lambda p: float(p.stem.split("-", 1)[1]))
        for snap in snaps:
            G, _ = load_generator(snap)
            by_seed = {s: scores(views(judge(generate_like(G, labels, s)))) for s in seeds}
            row = {"by_seed": by_seed}
            for view in ("raw", "standardised", "kid"):
                values = [by_seed[s][view] for s in seeds]
                row[f"{view}_spread"] = float((max(values) - min(values)) / abs(np.mean(values)))
            result["runs"].setdefault(run.name, {})[snap.stem] = row
            print(run.name, snap.stem, json.dumps(row), flush=True)

    rows = []
    for run, snaps in result["runs"].items():
        for snap, row in snaps.items():
            rows.append([run, snap, *[" / ".join(f"{row['by_seed'][s][v]:.1f}" for s in seeds) +
                                      f" ({100 * row[f'{v}_spread']:.1f} %)" for v in ("raw", "standardised", "kid")]])
    floors = result["floors"]
    lines = [f"# Judge feature space: two noise seeds ({result['machine']})", "",
             f"{args.n} generated images per seed (seeds {', '.join(map(str, seeds))}); judge `{args.judge}`: "
             f"{diagnostics['dims']} features, {diagnostics['dead']} dead on the real train part, the five largest "
             f"hold {100 * diagnostics['top5_variance_share']:.0f} % of the variance.", "",
             *markdown_table(["run", "snapshot", "FD raw: seeds (spread)", "FD standardised: seeds (spread)",
                              "KID x1000 standardised: seeds (spread)"], rows), "",
             "Floors at the same size: " + "; ".join(
                 f"{name.replace('_', ' ')}: FD raw {f['raw']:.1f}, FD standardised {f['standardised']:.1f}, "
                 f"KID x1000 {f['kid']:.2f}" for name, f in floors.items()), ""]
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "stability.json", json.dumps(result, indent=1, default=float))
    atomic_write_text(args.out / "stability.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
