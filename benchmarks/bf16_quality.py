"""Does bf16 autocast change what a GAN learns? fp32 and bf16 side by side, same seed, equal images.

Trains a preset twice on ../shared HAM10000 (same split, seed and number of images; one thread each,
at the same time), then lays the two generators out the way ``time_to_quality.py evaluate`` reads
them, so both are scored by the same measures (Inception and judge FID_2k, Table III ...):

    python benchmarks/bf16_quality.py --preset projected --kimg 12.8 --out runs/bf16-projected
    python benchmarks/time_to_quality.py evaluate --out runs/bf16-projected --judge runs/judge-paper/classifier.pt

The evaluation's "minute" column is 0 for both (they are compared at equal images, not time); its kimg column
says how many images each saw. Training seconds are in each run's run.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_to_quality import side_by_side  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="projected")
    p.add_argument("--kimg", type=float, default=12.8, help="thousands of real images shown to D, for both")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="threads per run")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ham10000-200x150")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    script = Path(sys.executable).with_name("dermsynth")
    exe = [str(script)] if script.is_file() else [shutil.which("dermsynth") or "dermsynth"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    failures: list[str] = []

    def run(amp: str) -> None:
        folder = args.out / f"{args.preset}-{'fp32' if amp == 'none' else amp}"
        (folder / "snapshots").mkdir(parents=True, exist_ok=True)
        cmd = [*exe, "train-gan", "--config", str(REPO / "configs" / f"{args.preset}.yaml"), "--data",
               str(args.data), "--out", str(folder / "run"), "--no-progress",
               "--set", f"data.resolution={args.resolution}", "--set", f"train.total_kimg={args.kimg}",
               "--set", f"train.amp={amp}"]
        with open(folder.with_suffix(".log"), "a", encoding="utf-8") as log:
            done = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            failures.append(f"{folder.name} (exit {done.returncode}; see {folder.with_suffix('.log')})")
            return
        shutil.copyfile(folder / "run" / "generator.pt", folder / "snapshots" / "min-0.pt")
        print(f"[{folder.name}] done", flush=True)

    side_by_side(run, ["none", "bf16"], failures)


if __name__ == "__main__":
    main()
