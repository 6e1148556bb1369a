"""Cost of FID at 64 px on this machine: Inception feature extraction and a 10k-vs-10k FID.

    python benchmarks/fid_cost.py [--data ../shared/data/ham10000-200x150] [--n 10000] [--batch 50]

Takes --n real HAM10000 images from the 64 px cache and --n "generated" ones
(the same images flipped left-right, a stand-in with the same cost), extracts
Inception pool features of both (no feature cache), and computes FID, KID and
precision/recall. Prints one JSON line with the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HERE.parent / "shared" / "data" / "ham10000-200x150"))
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()

    from dermsynth.data import open_index
    from dermsynth.data.cache import load_cache
    from dermsynth.metrics import fid, kid
    from dermsynth.metrics.inception import InceptionFeatures

    cached = load_cache(open_index(args.data), 64, progress=False)
    real = np.asarray(cached.images[: args.n])
    fake = real[:, :, ::-1].copy()
    net = InceptionFeatures(batch_size=args.batch)
    t = time.perf_counter()
    f_real = net(real, progress=True)
    t_real = time.perf_counter() - t
    t = time.perf_counter()
    f_fake = net(fake, progress=True)
    t_fake = time.perf_counter() - t
    t = time.perf_counter()
    value = fid(f_real, f_fake)["fid"]
    t_fid = time.perf_counter() - t
    t = time.perf_counter()
    k = kid(f_real, f_fake)
    t_kid = time.perf_counter() - t
    print(json.dumps({
        "n_per_side": len(real), "features_s_real": round(t_real, 1), "features_s_fake": round(t_fake, 1),
        "images_per_s": round(2 * len(real) / (t_real + t_fake), 1), "fid_s": round(t_fid, 2), "kid_s": round(t_kid, 2),
        "total_min": round((t_real + t_fake + t_fid + t_kid) / 60, 2), "fid_flip": round(value, 3),
        "kid_flip": round(k["kid"], 5), "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
