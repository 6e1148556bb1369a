"""GAN training throughput at 64 px: dermsynth's loop against a plain one (CPU by default, or a GPU).

    python benchmarks/gan_throughput.py [--data ../shared/data/ham10000-200x150] [--steps 12]
    python benchmarks/gan_throughput.py --device cuda --batch 256 --workers 8 --steps 50

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


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain(data: str, steps: int, warmup: int, data_only: bool = False, device: str = "cpu", batch: int = 64,
          workers: int = 0) -> float:
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
    G, D = Generator(cfg.generator).to(device), Discriminator(cfg.discriminator).to(device)
    opt_G = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    loader = DataLoader(JpegDataset(), batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                        pin_memory=device.startswith("cuda"), persistent_workers=workers > 0)

    def batches():
        while True:
            yield from loader

    it = batches()
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            start = time.perf_counter()
        real, labels = next(it)
        real, labels = real.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if data_only:
            continue
        z = torch.randn(batch, 100, device=device)
        fake = G(z, labels)
        d_real, d_fake = D(real, labels), D(fake.detach(), labels)
        loss_D = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
            F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
        alpha = torch.rand(batch, 1, 1, 1, device=device)
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
    _sync(device)
    return steps * batch / (time.perf_counter() - start)


def dermsynth(data: str, steps: int, warmup: int, extra: list[str], data_only: bool = False, device: str = "cpu",
              batch: int = 64) -> float:
    import numpy as np
    import torch

    from dermsynth.config import gan_config, load_yaml
    from dermsynth.data import open_index
    from dermsynth.data.cache import load_cache
    from dermsynth.training.gan_loop import Trainer

    amp = [] if any(e.startswith("train.amp=") for e in extra) else ["train.amp=none"]  # fp32 unless asked
    cfg = gan_config(load_yaml(HERE / "configs" / "paper.yaml"), [*extra, *amp, f"train.batch_size={batch}"],
                     data_root=data)
    cached = load_cache(open_index(data), 64, progress=False)
    trainer = Trainer(cfg, torch.device(device))
    trainer.load_data(np.asarray(cached.images), cached.labels)
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            start = time.perf_counter()
        if data_only:
            trainer.next_batch()
            continue
        trainer.train_step()
    _sync(device)
    return steps * batch / (time.perf_counter() - start)


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
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the plain loop")
    parser.add_argument("--only", type=int, default=None,
                        help="time the first N variants and the two data-only ones (a quick check)")
    parser.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant is not None:
        extra = VARIANTS[args.variant]
        data_only = args.variant.startswith("data only")
        steps = args.steps * 10 if data_only else args.steps
        ips = plain(args.data, steps, args.warmup, data_only, args.device, args.batch, args.workers) \
            if extra is None else dermsynth(args.data, steps, args.warmup, extra, data_only, args.device, args.batch)
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"variant": args.variant, "device": args.device, "batch": args.batch,
                          "images_per_s": round(ips, 2), "peak_rss_mib": round(peak_mib)}))
        return
    names = list(VARIANTS)
    if args.only is not None:
        names = names[: args.only] + names[-2:]
    results = []
    for name in names:
        out = subprocess.run([sys.executable, __file__, "--data", args.data, "--steps", str(args.steps),
                              "--warmup", str(args.warmup), "--variant", name, "--device", args.device,
                              "--batch", str(args.batch), "--workers", str(args.workers)],
                             capture_output=True, text=True)
        if out.returncode == 0:
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        else:  # one variant failing (out of memory, say) must not lose the others
            results.append({"variant": name, "device": args.device, "batch": args.batch, "images_per_s": None,
                            "error": out.stderr.strip()[-500:]})
        print(json.dumps(results[-1]), flush=True)
    ips = {r["variant"]: r["images_per_s"] for r in results}
    base = ips.get(names[0])
    for name in names[1:-2]:
        if base and ips.get(name):
            print(f"{name}: {ips[name] / base:.2f}x the plain loop")
    if ips.get(names[-1]) and ips.get(names[-2]):
        print(f"data pipeline alone: {ips[names[-1]] / ips[names[-2]]:.0f}x the plain DataLoader")


if __name__ == "__main__":
    main()
