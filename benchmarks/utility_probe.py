"""The utility probe on HAM10000: its known-answer controls, the interval it reaches, and a generator's arms.

    python benchmarks/utility_probe.py --resolution 64 --out runs/probe64
    python benchmarks/utility_probe.py --resolution 32 --generator runs/ttq32/hybrid/snapshots/min-40.pt \\
        --out runs/probe32-hybrid
    python benchmarks/utility_probe.py --resolution 64 --folds 5 --out runs/probe64-folds5

Draws (or reads) the lesion-grouped split, caches the frozen EfficientNet-Lite0 features of the real train and
test parts, fits every arm ``--seeds`` times (:mod:`dermsynth.evaluation.probe`) and writes ``OUT/probe.json``
and ``OUT/probe.md`` with the wall-clock time of each step and the machine. Without ``--generator`` only the
baseline and the two controls run: what the instrument can resolve, before any generator is asked.

``--folds K`` cross-fits the controls instead of using one split: K lesion-grouped folds of the whole dataset
(each fold's split saved under ``OUT/folds/``), each tested by fits on the other folds, so every image is scored
once and the interval is taken over all of them (a generator's arms would need K generators, one trained on each
fold's train part, so this is for the controls only).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

HAM = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ham10000-200x150"


def main() -> None:
    from dermsynth.data.cache import default_cache_dir
    from dermsynth.data.index import open_index
    from dermsynth.data.splits import make_split, save_split
    from dermsynth.evaluation.probe import (Lite0Features, ProbeConfig, crossfit_data, probe_data, probe_generator,
                                            probe_markdown, run_crossfit, run_probe)
    from dermsynth.storage import atomic_write_text
    from dermsynth.training.runs import hardware

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HAM)
    parser.add_argument("--split", type=Path, default=None, help="split.json [default: draw seed 0, 70/10/20]")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--generator", type=Path, default=None)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--feature-resolution", type=int, default=128)
    parser.add_argument("--folds", type=int, default=None, help="cross-fit the controls over K lesion-grouped folds")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.folds is not None and (args.generator is not None or args.split is not None):
        parser.error("--folds draws its own folds and fits the controls only: no --split or --generator")
    if args.folds is not None and args.folds < 2:
        parser.error(f"--folds: cross-fitting needs at least 2 folds, got {args.folds}")
    args.out.mkdir(parents=True, exist_ok=True)
    split = args.split
    if split is None and args.folds is None:
        split = args.out / "split.json"
        index = open_index(args.data)
        save_split(make_split(index, (0.7, 0.1, 0.2), 0), split, index)
    cache = default_cache_dir() / "features"
    start = time.perf_counter()
    if args.generator is not None:
        if args.resolution != 64:
            print("note: --resolution is the generator's own with --generator")
        result = probe_generator(args.generator, args.data, split, args.out,
                                 ProbeConfig(seeds=args.seeds, feature_resolution=args.feature_resolution),
                                 feature_cache=cache)
    elif args.folds is not None:
        cfg = ProbeConfig(arms=("real", "half", "shuffled"), seeds=args.seeds,
                          feature_resolution=args.feature_resolution)
        folds, _, index, splits = crossfit_data(args.data, args.folds, 0, args.resolution, feature_cache=cache,
                                                extractor=Lite0Features(cfg.feature_resolution))
        for i, fold_split in enumerate(splits):
            save_split(fold_split, args.out / "folds" / f"fold-{i}" / "split.json", index)
        features_s = time.perf_counter() - start
        result = run_crossfit([(train, test, None) for train, test in folds], cfg)
        result["features_s"] = round(features_s, 1)
    else:
        cfg = ProbeConfig(arms=("real", "half", "shuffled"), seeds=args.seeds,
                          feature_resolution=args.feature_resolution)
        train, test, *_ = probe_data(args.data, split, args.resolution, feature_cache=cache,
                                     extractor=Lite0Features(cfg.feature_resolution))
        features_s = time.perf_counter() - start
        result = run_probe(train, test, cfg)
        result["features_s"] = round(features_s, 1)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["machine"] = hardware(torch.device("cpu"))
    atomic_write_text(args.out / "probe.json", json.dumps(result, indent=1))
    atomic_write_text(args.out / "probe.md", probe_markdown(result) + f"\n{result['seconds']:.0f} s in all "
                      f"({torch.get_num_threads()} threads).\n")
    print((args.out / "probe.md").read_text())


if __name__ == "__main__":
    main()
