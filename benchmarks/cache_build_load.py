"""Time building and loading the preprocessing cache of HAM10000.

    python benchmarks/cache_build_load.py [--data ../shared/data/ham10000-200x150] [--resolution 64]

Builds the cache from scratch in a temporary folder (parallel decode on all
cores), then times a fresh process that reads the index and loads the cache
into memory, as a training run does at start-up. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOAD = """
import sys, time
t = time.perf_counter()
from dermsynth.data import open_index
from dermsynth.data.cache import load_cache
index = open_index(sys.argv[1])
cached = load_cache(index, int(sys.argv[2]), cache_dir=sys.argv[3], progress=False)
images = cached.images[:].copy()  # touch every byte
print(time.perf_counter() - t, images.shape[0])
"""


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(here.parent / "shared" / "data" / "ham10000-200x150"))
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from dermsynth.data import open_index
    from dermsynth.data.cache import load_cache

    with tempfile.TemporaryDirectory() as cache_dir:
        t = time.perf_counter()
        index = open_index(args.data)
        cached = load_cache(index, args.resolution, cache_dir=cache_dir, progress=False)
        build_s = time.perf_counter() - t
        loads = []
        for _ in range(args.repeats):
            out = subprocess.run([sys.executable, "-c", LOAD, args.data, str(args.resolution), cache_dir],
                                 capture_output=True, text=True, check=True)
            loads.append(float(out.stdout.split()[0]))
        print(json.dumps({
            "images": len(cached.image_ids),
            "resolution": args.resolution,
            "build_s": round(build_s, 2),
            "load_s_fresh_process": [round(x, 3) for x in loads],
            "cpu_count": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        }))


if __name__ == "__main__":
    main()
