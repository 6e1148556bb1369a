"""Training throughput of presets and variants, one process and one thread each, one after the other.

    python benchmarks/preset_throughput.py paper projected \\
        "projected discriminator.backbone_resolution=128" "projected train.amp=bf16"

Each argument is a preset name followed by optional ``SECTION.KEY=VALUE``
overrides. For each: build the Trainer on random uint8 images (the data path is
not what is measured; see gan_throughput.py for it), run --warmup steps, then
time --steps steps of ``Trainer.train_step``. Prints one JSON line per variant
(images/s, seconds per step, trainable parameters of G and D).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def measure(spec: str, steps: int, warmup: int, threads: int) -> dict:
    import numpy as np
    import torch

    from dermsynth.config import gan_config, load_yaml
    from dermsynth.training.gan_loop import Trainer

    torch.set_num_threads(threads)
    preset, *overrides = spec.split()
    cfg = gan_config(load_yaml(HERE / "configs" / f"{preset}.yaml"), overrides, data_root=".")
    trainer = Trainer(cfg, torch.device("cpu"))
    r = cfg.data.resolution
    rng = np.random.default_rng(0)
    trainer.load_data(rng.integers(0, 255, (8 * cfg.train.batch_size, r, r, 3), dtype=np.uint8),
                      np.arange(8 * cfg.train.batch_size) % 7)
    trainable = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
    params = {"G_params": trainable(trainer.G), "D_trainable": trainable(trainer.D)}  # before a G phase freezes D
    for _ in range(warmup):
        trainer.train_step()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    seconds = (time.perf_counter() - start) / steps
    return {"variant": spec, "images_per_s": round(cfg.train.batch_size / seconds, 2),
            "s_per_step": round(seconds, 3), **params, "threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.variants[0], args.steps, args.warmup, args.threads)))
        return
    for spec in args.variants:  # one process each: no variant warms the next one's caches or allocator
        out = subprocess.run([sys.executable, __file__, "--child", "--steps", str(args.steps), "--warmup",
                              str(args.warmup), "--threads", str(args.threads), spec],
                             capture_output=True, text=True)
        print(out.stdout.strip() or f'{{"variant": "{spec}", "error": {json.dumps(out.stderr[-500:])}}}', flush=True)


if __name__ == "__main__":
    main()
