"""GAN training throughput at 64 px, batch 64, on CPU: dermsynth's loop against a plain one.

    python benchmarks/gan_throughput.py [--data ../shared/data/ham10000-200x150] [--steps 12]

Each variant runs in its own process (so peak memory is its own) and trains the
`paper` preset's networks and losses (BCE + gradient penalty 10, spectral norm)
for a few warm-up steps, then times --steps steps:

- plain: a notebook-style loop: a torch Dataset that opens, crops and resizes
  each JPEG with PIL on every step, a DataLoader, and the same G and D;
- dermsynth: ``Trainer.train_step`` fed from the uint8 cache, in fp32, with
  channels_last, and with bf16 autocast;
- data only: the same two data paths producing batches with no training, which
  is the share of a step that a GPU would leave to the CPU.

Prints one JSON line per variant (images/s, peak RSS) and the ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def plain(data: str, steps: int, warmup: int, data_only: bool = False) -> float:
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    from dermsynth.config import gan_config, load_yaml
    from dermsynth.data import open_index
    from dermsynth.models.discriminator import Discriminator
    from dermsynth.models.generator import Generator

    cfg = gan_config(load_yaml(HERE / "configs" / "paper.yaml"), data_root=data)
    records = open_index(data).records

    class JpegDataset(Dataset):
        def __len__(self):
            return len(records)

        def __getitem__(self, i):
            img = Image.open(records[i].path).convert("RGB")
            w, h = img.size
            s = min(w, h)
            img = img.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2)).resize((64, 64), Image.LANCZOS)
            x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(64, 64, 3)
            return x.permute(2, 0, 1).float() / 127.5 - 1, records[i].label

    torch.manual_seed(0)
    G, D = Generator(cfg.generator), Discriminator(cfg.discriminator)
    opt_G = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    loader = DataLoader(JpegDataset(), batch_size=64, shuffle=True, drop_last=True)
    it = iter(loader)
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        real, labels = next(it)
        if data_only:
            continue
        z = torch.randn(64, 100)
        fake = G(z, labels)
        d_real, d_fake = D(real, labels), D(fake.detach(), labels)
        loss_D = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
            F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
        alpha = torch.rand(64, 1, 1, 1)
        x_hat = (alpha * real + (1 - alpha) * fake.detach()).requires_grad_(True)
        (grad,) = torch.autograd.grad(D(x_hat, labels).sum(), x_hat, create_graph=True)
        loss_D = loss_D + 10 * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        opt_D.zero_grad()
        loss_D.backward()
        opt_D.step()
        d_gen = D(fake, labels)
        loss_G = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
        opt_G.zero_grad()
        loss_G.backward()
        opt_G.step()
    return steps * 64 / (time.perf_counter() - start)


def dermsynth(data: str, steps: int, warmup: int, extra: list[str], data_only: bool = False) -> float:
    import numpy as np
    import torch

    from dermsynth.config import gan_config, load_yaml
    from dermsynth.data import open_index
    from dermsynth.data.cache import load_cache
    from dermsynth.training.gan_loop import Trainer

    cfg = gan_config(load_yaml(HERE / "configs" / "paper.yaml"), extra, data_root=data)
    cached = load_cache(open_index(data), 64, progress=False)
    trainer = Trainer(cfg, torch.device("cpu"))
    trainer.load_data(np.asarray(cached.images), cached.labels)
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        if data_only:
            trainer.next_batch()
            continue
        trainer.train_step()
    return steps * 64 / (time.perf_counter() - start)


VARIANTS = {
    "plain (PIL decode per step, DataLoader)": None,
    "dermsynth fp32": [],
    "dermsynth channels_last": ["train.channels_last=true"],
    "dermsynth bf16 autocast": ["train.amp=bf16"],
    "dermsynth bf16 + channels_last": ["train.amp=bf16", "train.channels_last=true"],
    "data only: plain (PIL decode per step, DataLoader)": None,
    "data only: dermsynth (uint8 cache)": [],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HERE.parent / "shared" / "data" / "ham10000-200x150"))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant is not None:
        extra = VARIANTS[args.variant]
        data_only = args.variant.startswith("data only")
        steps = args.steps * 10 if data_only else args.steps
        ips = plain(args.data, steps, args.warmup, data_only) if extra is None else \
            dermsynth(args.data, steps, args.warmup, extra, data_only)
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"variant": args.variant, "images_per_s": round(ips, 2), "peak_rss_mib": round(peak_mib)}))
        return
    results = []
    for name in VARIANTS:
        out = subprocess.run([sys.executable, __file__, "--data", args.data, "--steps", str(args.steps),
                              "--warmup", str(args.warmup), "--variant", name],
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    base = results[0]["images_per_s"]
    for r in results[1:-2]:
        print(f"{r['variant']}: {r['images_per_s'] / base:.2f}x the plain loop")
    print(f"data pipeline alone: {results[-1]['images_per_s'] / results[-2]['images_per_s']:.0f}x the plain DataLoader")


if __name__ == "__main__":
    main()
