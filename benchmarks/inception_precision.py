"""Inception feature extraction on CPU: fp32 against channels_last, frozen TorchScript and bf16 autocast.

    python benchmarks/inception_precision.py [--threads 2] [--n 50]

Times each variant on the same --n random 64 px images (after one warm-up batch)
and prints its speed and the largest absolute change of the 2048 features
against fp32. A variant that moves the features changes FID values, which then
cannot be compared with published ones.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from dermsynth.metrics.inception import InceptionFeatures

    extractor = InceptionFeatures(device="cpu")  # a CPU benchmark, also on a machine with a GPU
    images = np.random.default_rng(0).integers(0, 256, (args.n, 64, 64, 3), dtype=np.uint8)
    x = extractor.preprocess(images)
    net = extractor.net
    frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.load(str(extractor.path)).eval()))

    def bf16(batch):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return net(batch).float()

    variants = {
        "fp32 (used)": net,
        "channels_last": lambda batch: net(batch.contiguous(memory_format=torch.channels_last)),
        "frozen + optimize_for_inference": frozen,
        "bf16 autocast": bf16,
    }
    with torch.no_grad():
        reference = net(x).double()
        for name, fn in variants.items():
            fn(x[:10])
            start = time.perf_counter()
            out = fn(x).double()
            seconds = time.perf_counter() - start
            print(f"{name:34s} {args.n / seconds:6.1f} img/s   max |change| {(out - reference).abs().max().item():.3g}"
                  f" (largest feature {reference.abs().max().item():.2f})")


if __name__ == "__main__":
    main()
