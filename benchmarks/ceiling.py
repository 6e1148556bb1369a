"""How near each preset's training step runs to the machine's arithmetic ceiling, in one run.

    python benchmarks/ceiling.py --threads 2 --out runs/ceiling        # every preset at 32 and 64 px
    python benchmarks/ceiling.py --smoke --out runs/ceiling-smoke        # under a minute: the plumbing only

1. **The ceiling**: GFLOP/s of a dense matmul and of the convolutions the presets are made of (the DCGAN's 4x4
   stride-2 conv and transposed conv, a 3x3 conv, a depthwise 3x3 conv as in EfficientNet-Lite0's blocks), each
   forward and backward, in fp32 and in bf16 (autocast), with ``--threads`` threads. The ceiling of a precision is
   its fastest op.
2. **Each preset** at each resolution: a Trainer on random uint8 images (the data path is not what is measured;
   gan_throughput.py measures it), FLOPs per image of its training step counted by torch's ``FlopCounterMode``
   (matmuls and convolutions, forward and backward, both phases, averaged over a whole lazy-regularisation cycle:
   ``loss.gp_interval`` / ``loss.r1_interval`` steps), images/s over ``--steps`` timed steps, the achieved GFLOP/s
   and its fraction of the ceiling of the precision the step runs in (``train.amp: auto``: bf16 where the CPU has
   native bf16, else fp32; ``--amp`` overrides).

Writes ``OUT/ceiling.json`` and ``OUT/ceiling.md`` (the table, with the CPU named and whether it has native bf16).
Compare figures only from one run: other processes on the machine lower them all.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

HERE = Path(__file__).resolve().parents[1]
PRESETS = ("paper", "best", "data-efficient", "projected", "hybrid")


def conv_backward_flops(grad_out, inp, weight, *args, out_val=None, **kwargs) -> int:
    """FLOPs of ``aten.convolution_backward``: each gradient asked for (input, weight) costs one forward pass,
    2 * batch * positions * weight.numel(), the positions being the output's (the input's for a transposed conv).
    torch 2.13's own formula counts a grouped conv's backward as if it were dense (240x too much for a depthwise
    conv of 240 channels)."""
    transposed, mask = args[4], args[7]
    positions = (inp if transposed else grad_out).shape[2:].numel()
    return 2 * grad_out.shape[0] * positions * weight.numel() * (int(mask[0]) + int(mask[1]))


class FlopCount(TorchDispatchMode):
    """FLOPs of the matmuls and convolutions run inside it, by torch's own formulas (``FlopCounterMode``'s
    registry) but for the backward of convolutions (:func:`conv_backward_flops`). FlopCounterMode itself cannot be
    used: its module hooks refuse the double backward of a gradient penalty."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        formula = conv_backward_flops if packet is torch.ops.aten.convolution_backward else flop_registry.get(packet)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


def count_flops(fn) -> int:
    with FlopCount() as counter:
        fn()
    return counter.total


def rate(fn, seconds: float, warmup: int = 1) -> float:
    """Calls of ``fn`` per second, timed for at least ``seconds`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed


def ops(batch: int, size: int, smoke: bool) -> dict:
    """The ops of the ceiling: name -> a forward-and-backward closure builder for a dtype."""
    n = 512 if smoke else 2048

    def matmul(dtype):
        a = torch.randn(n, n, dtype=dtype, requires_grad=True)
        b = torch.randn(n, n, dtype=dtype)
        return lambda: (a @ b).sum().backward()

    def conv(kind: str, channels: int, spatial: int):
        def build(dtype):
            x = torch.randn(batch, channels, spatial, spatial, dtype=dtype, requires_grad=True)
            if kind == "down4x4":
                w = torch.randn(2 * channels, channels, 4, 4, dtype=dtype, requires_grad=True)
                return lambda: F.conv2d(x, w, stride=2, padding=1).sum().backward()
            if kind == "up4x4":
                w = torch.randn(channels, channels // 2, 4, 4, dtype=dtype, requires_grad=True)
                return lambda: F.conv_transpose2d(x, w, stride=2, padding=1).sum().backward()
            if kind == "3x3":
                w = torch.randn(channels, channels, 3, 3, dtype=dtype, requires_grad=True)
                return lambda: F.conv2d(x, w, padding=1).sum().backward()
            w = torch.randn(channels, 1, 3, 3, dtype=dtype, requires_grad=True)  # depthwise
            return lambda: F.conv2d(x, w, padding=1, groups=channels).sum().backward()
        return build

    s = size // 2
    return {"matmul": matmul, "conv 4x4 stride 2 (D)": conv("down4x4", 128, s),
            "conv-transpose 4x4 stride 2 (G)": conv("up4x4", 256, s // 2), "conv 3x3": conv("3x3", 128, s),
            "depthwise 3x3": conv("depthwise", 240, s)}


def measure_ceiling(threads: int, seconds: float, smoke: bool) -> dict:
    torch.set_num_threads(threads)
    out: dict = {}
    for name, build in ops(16 if smoke else 64, 32 if smoke else 64, smoke).items():
        out[name] = {}
        for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            fn = build(dtype)
            flops = count_flops(fn)
            out[name][precision] = round(flops * rate(fn, seconds) / 1e9, 1)
    return out


def measure_preset(preset: str, resolution: int, amp: str, steps: int, warmup: int, threads: int) -> dict:
    from dermsynth.config import gan_config, load_yaml
    from dermsynth.training.gan_loop import Trainer
    from dermsynth.training.runs import resolve_amp

    torch.set_num_threads(threads)
    overrides = [f"data.resolution={resolution}", f"train.amp={amp}"]
    cfg = gan_config(load_yaml(HERE / "configs" / f"{preset}.yaml"), overrides, data_root=".")
    trainer = Trainer(cfg, torch.device("cpu"))
    batch = cfg.train.batch_size
    rng = np.random.default_rng(0)
    trainer.load_data(rng.integers(0, 255, (8 * batch, resolution, resolution, 3), dtype=np.uint8),
                      np.arange(8 * batch) % 7)
    cycle = max(cfg.loss.gp_interval if cfg.loss.gp_weight > 0 else 1,
                cfg.loss.r1_interval if cfg.loss.r1_gamma > 0 else 1)
    flops = count_flops(lambda: [trainer.train_step() for _ in range(cycle)]) / (cycle * batch)
    for _ in range(warmup):
        trainer.train_step()
    timed = max(steps, cycle)  # whole cycles where the step is lazy, so the timing holds its share of penalties
    timed -= timed % cycle
    start = time.perf_counter()
    for _ in range(timed):
        trainer.train_step()
    seconds = (time.perf_counter() - start) / timed
    return {"preset": preset, "resolution": resolution, "amp": resolve_amp(amp, torch.device("cpu")),
            "gflop_per_image": round(flops / 1e9, 3), "images_per_s": round(batch / seconds, 2),
            "gflops": round(flops * batch / seconds / 1e9, 1), "batch": batch, "steps_timed": timed,
            "lazy_cycle": cycle}


def markdown(result: dict) -> str:
    from dermsynth.tables import markdown_table

    m = result["machine"]
    ceiling = result["ceiling"]
    lines = [f"# Training near the ceiling ({m['cpu']}, {result['threads']} threads)", "",
             f"torch {m['torch']}; native bf16: {'yes' if m['native_bf16'] else 'no'}. Ceiling ops: forward and "
             "backward, GFLOP/s.", "",
             *markdown_table(["op", "fp32 GFLOP/s", "bf16 GFLOP/s"],
                             [[op, f"{v['fp32']:.1f}", f"{v['bf16']:.1f}"] for op, v in ceiling["ops"].items()]),
             "", f"Ceiling (fastest op): fp32 {ceiling['fp32']:.1f}, bf16 {ceiling['bf16']:.1f} GFLOP/s.", "",
             *markdown_table(["preset", "px", "precision", "GFLOP / image (step)", "images/s", "GFLOP/s",
                              "fraction of ceiling"],
                             [[r["preset"], str(r["resolution"]), r["amp"], f"{r['gflop_per_image']:.3f}",
                               f"{r['images_per_s']:.1f}", f"{r['gflops']:.1f}", f"{r['fraction']:.2f}"]
                              for r in result["presets"]]), ""]
    return "\n".join(lines)


def main() -> None:
    from dermsynth.storage import atomic_write_text
    from dermsynth.training.runs import cpu_model, native_bf16

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--resolutions", default="32,64")
    parser.add_argument("--amp", default="auto", choices=("auto", "bf16", "none"))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing of each ceiling op and precision")
    parser.add_argument("--smoke", action="store_true", help="small ops, paper at 32 px, 2 steps: under a minute")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.smoke:
        args.presets, args.resolutions, args.steps, args.warmup, args.seconds = "paper", "32", 2, 1, 0.2
    cpu = torch.device("cpu")
    ops_ = measure_ceiling(args.threads, args.seconds, args.smoke)
    ceiling = {"ops": ops_, **{p: max(v[p] for v in ops_.values()) for p in ("fp32", "bf16")}}
    rows = []
    for resolution in (int(r) for r in args.resolutions.split(",")):
        for preset in args.presets.split(","):
            row = measure_preset(preset, resolution, args.amp, args.steps, args.warmup, args.threads)
            row["fraction"] = round(row["gflops"] / ceiling["bf16" if row["amp"] == "bf16" else "fp32"], 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"machine": {"cpu": cpu_model(), "native_bf16": native_bf16(cpu), "torch": torch.__version__,
                          "python": platform.python_version()},
              "threads": args.threads, "smoke": args.smoke, "ceiling": ceiling, "presets": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "ceiling.json", json.dumps(result, indent=1))
    atomic_write_text(args.out / "ceiling.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
