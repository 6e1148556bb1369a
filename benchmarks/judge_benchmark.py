"""Judges side by side: the paper CNN, the small ResNet and EfficientNet-Lite0 (64 and 128 px) on HAM10000.

Trains each judge one after another with the same threads (so each has the machine to itself), on the
lesion-grouped split seed 0 of ../shared HAM10000, then scores every one on the test part, plain and with
test-time flips, and writes one table:

    python benchmarks/judge_benchmark.py train --out runs/judges --threads 2
    python benchmarks/judge_benchmark.py table --out runs/judges

``train`` skips a judge whose run finished and continues one that stopped (``--resume auto``);
``--only NAME`` trains some of them, ``--set NAME:KEY=VALUE`` changes one judge's config (for example
``--set resnet:train.epochs=10`` to fit the hour). A judge's folder may also be a finished run made
elsewhere: ``--link NAME=PATH`` records its path instead of training it.

``table`` writes ``judges.md`` and ``judges.json`` in ``--out``: balanced accuracy, accuracy, macro-F1,
macro AUC (one-vs-rest), per-class recall, the confusion matrices (``confusion-NAME.png`` from
``evaluate-classifier``), epochs, best epoch and training minutes (the run's wall time: the sum of its
epochs' training and validation, with the threads it had).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ham10000-200x150"

JUDGES = {  # name: (config, overrides)
    "paper": ("classifier-paper.yaml", ["train.epochs=30", "train.patience=0"]),
    "resnet": ("classifier-resnet.yaml", []),
    "effnet-64": ("classifier-effnet.yaml", []),
    "effnet-128": ("classifier-effnet-128.yaml", []),
}


def _exe() -> list[str]:
    script = Path(sys.executable).with_name("dermsynth")
    return [str(script)] if script.is_file() else [shutil.which("dermsynth") or "dermsynth"]


def _folders(out: Path) -> dict[str, Path]:
    """Each judge's run folder: ``out/NAME``, or the path ``--link`` recorded in ``out/links.json``."""
    links = json.loads((out / "links.json").read_text()) if (out / "links.json").is_file() else {}
    return {name: Path(links.get(name, out / name)) for name in JUDGES}


def _finished(folder: Path) -> bool:
    info = folder / "run.json"
    return info.is_file() and "finished" in json.loads(info.read_text())


def train(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    links_file = args.out / "links.json"
    links = json.loads(links_file.read_text()) if links_file.is_file() else {}
    for item in args.link:
        name, _, path = item.partition("=")
        if name not in JUDGES or not path:
            sys.exit(f"--link {item!r}: expected NAME=PATH with NAME one of {', '.join(JUDGES)}")
        links[name] = str(Path(path).resolve())
    links_file.write_text(json.dumps(links, indent=1))
    extra: dict[str, list[str]] = {name: [] for name in JUDGES}
    for item in args.set:
        name, _, setting = item.partition(":")
        if name not in JUDGES or "=" not in setting:
            sys.exit(f"--set {item!r}: expected NAME:KEY=VALUE with NAME one of {', '.join(JUDGES)}")
        extra[name].append(setting)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    failures = []
    for name, folder in _folders(args.out).items():
        if (args.only and name not in args.only) or _finished(folder):
            continue
        config, sets = JUDGES[name]
        cmd = [*_exe(), "train-classifier", "--config", str(REPO / "configs" / config), "--data", str(args.data),
               "--out", str(folder), "--no-progress",
               *[x for s in sets + extra[name] for x in ("--set", s)]]
        if (folder / "checkpoints").is_dir():
            cmd += ["--resume", "auto"]
        print(f"[{name}] {' '.join(cmd)}", flush=True)
        with open(args.out / f"{name}.log", "a", encoding="utf-8") as log:
            done = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            failures.append(f"{name} (exit {done.returncode}; see {args.out / f'{name}.log'})")
    for failure in failures:
        print(f"failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


def table(args: argparse.Namespace) -> int:
    from dermsynth.evaluation.classification import evaluate_classifier

    rows = {}
    for name, folder in _folders(args.out).items():
        if not _finished(folder):
            print(f"[{name}] not finished: {folder}", file=sys.stderr)
            continue
        info = json.loads((folder / "run.json").read_text())
        stats = [json.loads(line) for line in (folder / "stats.jsonl").read_text().splitlines() if line.strip()]
        row = {
            "folder": str(folder),
            "resolution": _resolution(folder),
            "epochs": info["epochs"],
            "best_epoch": info["best_epoch"],
            "val_balanced_accuracy": info["best_val_balanced_accuracy"],
            "train_minutes": round(info["elapsed_s"] / 60, 1),
            "threads": info["hardware"]["torch_threads"],
            "median_images_per_s": sorted(s["images_per_s"] for s in stats)[len(stats) // 2],
        }
        for tta in ("none", "flips"):
            metrics = evaluate_classifier(folder / "classifier.pt", args.data, split="test", tta=tta,
                                          out=args.out / f"eval-{name}-{tta}", progress=False)
            shutil.copyfile(Path(metrics["out"]) / "confusion.png", args.out / f"confusion-{name}-{tta}.png")
            row[tta] = {k: metrics[k] for k in ("balanced_accuracy", "accuracy", "macro_f1", "macro_auc_ovr")}
            row[tta]["recall"] = {c: metrics["per_class"][c]["recall"] for c in metrics["classes"]}
            row[tta]["confusion_matrix"] = metrics["confusion_matrix"]
        rows[name] = row
        print(f"[{name}] test balanced accuracy {row['none']['balanced_accuracy']:.4f} "
              f"(flips {row['flips']['balanced_accuracy']:.4f})", flush=True)
    (args.out / "judges.json").write_text(json.dumps(rows, indent=1))
    (args.out / "judges.md").write_text(markdown(rows))
    if rows:
        figure(rows, args.out / "judges.png")
    print(markdown(rows))
    return 0


def _resolution(folder: Path) -> int:
    import yaml

    return int(yaml.safe_load((folder / "config.yaml").read_text())["data"]["resolution"])


def markdown(rows: dict) -> str:
    pct = lambda v: "" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = [
        "| judge | px | epochs (best) | train min (threads) | img/s | test bal. acc | with flips | accuracy | "
        "macro-F1 | macro AUC | recall nv / mel / bkl / bcc / akiec / vasc / df |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        plain, flips = r["none"], r["flips"]
        recall = " / ".join(pct(v) for v in plain["recall"].values())
        lines.append(
            f"| {name} | {r['resolution']} | {r['epochs']} ({r['best_epoch']}) | {r['train_minutes']} ({r['threads']}) "
            f"| {r['median_images_per_s']:.0f} | {pct(plain['balanced_accuracy'])} | {pct(flips['balanced_accuracy'])} "
            f"| {pct(plain['accuracy'])} | {pct(plain['macro_f1'])} | {pct(plain['macro_auc_ovr'])} | {recall} |"
        )
    return "\n".join(lines) + "\n"


def figure(rows: dict, path: Path) -> None:
    """The judges' confusion matrices side by side, each row normalised (the diagonal is the class's recall)."""
    from dermsynth.figures import pyplot

    plt = pyplot()
    import numpy as np

    from dermsynth.data.index import CLASSES

    fig, axes = plt.subplots(1, len(rows), figsize=(3.6 * len(rows), 3.8), dpi=110, squeeze=False)
    for ax, (name, r) in zip(axes[0], rows.items()):
        m = np.array(r["none"]["confusion_matrix"], dtype=float)
        m = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(m, vmin=0, vmax=1, cmap="Blues")
        for i in range(len(CLASSES)):
            for j in range(len(CLASSES)):
                ax.text(j, i, f"{100 * m[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=45, fontsize=7)
        ax.set_yticks(range(len(CLASSES)), CLASSES, fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_title(f"{name}, {r['resolution']} px: bal. acc {100 * r['none']['balanced_accuracy']:.1f} %", fontsize=8)
    axes[0][0].set_ylabel("true class (row %)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the judges one after another")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--data", type=Path, default=DATA)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--only", nargs="*", choices=list(JUDGES), default=[])
    t.add_argument("--set", action="append", default=[], help="NAME:KEY=VALUE, a config override for one judge")
    t.add_argument("--link", action="append", default=[], help="NAME=PATH, a finished run to use as that judge")
    s = sub.add_parser("table", help="score every finished judge on the test part and write the table")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--data", type=Path, default=DATA)
    args = p.parse_args()
    return train(args) if args.command == "train" else table(args)


if __name__ == "__main__":
    sys.exit(main())
