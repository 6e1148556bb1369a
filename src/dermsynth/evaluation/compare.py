"""Several evaluated image sets side by side.

``dermsynth evaluate compare EVAL_DIR... --out OUT`` reads the ``evaluation.json`` that ``evaluate gan`` or
``evaluate images`` wrote in each folder and writes ``compare.md``, ``compare.json`` and ``compare.png`` (each
feature space's FID with its 95 % interval beside the real-vs-real floors). Sets compare only where they were
measured alike: the same split, resolution and feature spaces; a set that differs is refused, naming the
folder and what differs. Where ``evaluate utility --out`` wrote its probe into the same folder
(``probe/probe.json``), the probe's differences are compared too.
"""

from __future__ import annotations

import json
from pathlib import Path

from dermsynth.errors import DataError, UsageError
from dermsynth.evaluation.gan import EVALUATION_JSON
from dermsynth.figures import save_figure
from dermsynth.storage import atomic_write_text
from dermsynth.tables import markdown_table, number

ALIKE = ("split_sha256", "resolution")
"""What every compared evaluation must share (their real sets are then the same)."""


def load_evaluation(folder: str | Path) -> dict:
    """The ``evaluation.json`` of one evaluated set, refused in one line where it is missing or unreadable, with
    the probe ``evaluate utility`` wrote beside it (``probe/probe.json``) where there is one."""
    path = Path(folder) / EVALUATION_JSON
    if not path.is_file():
        raise DataError(f"{folder}: no evaluation.json (make one with `dermsynth evaluate gan` or "
                        "`dermsynth evaluate images`)")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not an evaluation written by dermsynth ({e})") from None
    if not isinstance(report, dict) or "feature_spaces" not in report:
        raise DataError(f"{path}: not an evaluation written by dermsynth (no feature_spaces)")
    probe = Path(folder) / "probe" / "probe.json"
    if probe.is_file():
        try:
            report["probe"] = json.loads(probe.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{probe}: not a probe written by dermsynth ({e})") from None
    return report


def compare_rows(reports: dict[str, dict]) -> dict:
    """Per set, per feature space: FID with its interval, KID, precision and recall, the memorisation share;
    the floors once per space (the sets share their real images); and the probe's differences where run."""
    first = next(iter(reports.values()))
    for name, report in reports.items():
        differ = [k for k in ALIKE if report.get(k) != first.get(k)]
        if differ:
            raise DataError(f"{name}: measured unlike the first set ({', '.join(differ)} differ): sets compare only "
                            "on the same split and resolution")
    spaces = [s for s in first["feature_spaces"] if all(s in r["feature_spaces"] for r in reports.values())]
    if not spaces:
        raise DataError("the sets share no feature space (evaluate them with the same --judge and Inception)")
    out: dict = {"split_sha256": first.get("split_sha256"), "resolution": first.get("resolution"), "spaces": {},
                 "sets": {name: {"source": r.get("generator") or r.get("images"), "n_generated": r["n_generated"]}
                          for name, r in reports.items()}}
    for space in spaces:
        rows, floors = {}, {}
        for name, report in reports.items():
            block = report["feature_spaces"][space]
            gen = block["generated_vs_train"]
            fid = gen.get("fid", {}).get("overall", {})
            rows[name] = {"fid": fid.get("fid"), "fid_ci95": fid.get("fid_ci95"),
                          "kid_x1000": None if "kid" not in gen else 1000 * gen["kid"]["overall"]["kid"],
                          "precision": gen.get("prdc", {}).get("overall", {}).get("precision"),
                          "recall": gen.get("prdc", {}).get("overall", {}).get("recall"),
                          "memorised_pct": block.get("memorisation", {}).get("flagged_pct")}
            for label, key in (("half vs half", "floor_half_vs_half"), ("test vs train", "floor_test_vs_train")):
                value = block.get(key, {}).get("fid", {}).get("overall", {}).get("fid")
                if value is not None:
                    floors.setdefault(label, {})[name] = value
        out["spaces"][space] = {"sets": rows, "floors": floors}
    probes = {name: r["probe"]["differences"] for name, r in reports.items() if "probe" in r}
    if probes:
        out["probe"] = probes
    return out


def compare_markdown(table: dict, figure: str | None = None) -> str:
    lines = ["# Image sets side by side", "",
             f"Every set measured against the real train part of split `{str(table['split_sha256'])[:12]}` at "
             f"{table['resolution']} px; lower FID and KID are nearer the real images.", ""]
    lines += markdown_table(["set", "source", "images"],
                            [[n, f"`{s['source']}`", s["n_generated"]] for n, s in table["sets"].items()])
    if figure:
        lines += ["", f"![FID of each set with its 95 % interval; dashed: the real-vs-real floors]({figure})"]
    for space, block in table["spaces"].items():
        rows = []
        for name, r in block["sets"].items():
            ci = r["fid_ci95"]
            rows.append([name, number(r["fid"], 2, missing="-"),
                         f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "-", number(r["kid_x1000"], 2, missing="-"),
                         number(r["precision"], 3, missing="-"), number(r["recall"], 3, missing="-"),
                         number(r["memorised_pct"], 2, missing="-")])
        lines += ["", f"## {space} features", "",
                  *markdown_table(["set", "FID", "FID 95 % interval", "KID x1000", "precision", "recall",
                                   "memorised %"], rows)]
        for label, values in block["floors"].items():
            shown = ", ".join(f"{name} {value:.2f}" for name, value in values.items())
            lines.append(f"\nFloor, real vs real ({label}; the test images as many as the set's): {shown}.")
    if "probe" in table:
        rows = [[name, arm, f"{d['mean']:+.1f}", f"[{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}]"]
                for name, diffs in table["probe"].items() for arm, d in diffs.items()]
        lines += ["", "## Utility probe: paired differences from the real baseline (balanced-accuracy points)", "",
                  *markdown_table(["set", "arm", "difference", "95 % interval"], rows),
                  "", "half reads as the gain of all the real lesions over half of them (the positive control); "
                  "shuffled is the negative control."]
    return "\n".join(lines) + "\n"


def plot_compare(table: dict, path: str | Path) -> Path:
    """One panel per feature space: each set's FID with its 95 % interval, the floors as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spaces = list(table["spaces"])
    fig, axes = plt.subplots(1, len(spaces), figsize=(4.2 * len(spaces), 3.2), squeeze=False)
    for ax, space in zip(axes[0], spaces):
        block = table["spaces"][space]
        names = list(block["sets"])
        fids = [block["sets"][n]["fid"] or 0.0 for n in names]
        bounds = [block["sets"][n]["fid_ci95"] or (f, f) for n, f in zip(names, fids)]
        errors = [[max(f - low, 0.0) for f, (low, _) in zip(fids, bounds)],
                  [max(high - f, 0.0) for f, (_, high) in zip(fids, bounds)]]
        ax.bar(range(len(names)), fids, yerr=errors, capsize=4, color="#4c72b0")
        for (label, values), style in zip(block["floors"].items(), ("--", ":")):
            ax.axhline(min(values.values()), linestyle=style, color="k", linewidth=1, label=f"floor: {label}")
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("FID (95 % interval)")
        ax.set_title(f"{space} features", fontsize=10)
        if block["floors"]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def compare_evaluations(folders: list[str | Path], out: str | Path) -> dict:
    """Read each folder's evaluation, write ``compare.md``, ``compare.json`` and ``compare.png`` to ``out``."""
    folders = [Path(f) for f in folders]
    if len(folders) < 2:
        raise UsageError("give at least two evaluated folders to compare")
    reports: dict[str, dict] = {}
    for folder in folders:
        name = folder.resolve().name  # a set is named by its folder
        if name in reports:
            raise UsageError(f"two sets are named {name!r} (their folders' names): rename one folder")
        reports[name] = load_evaluation(folder)
    table = compare_rows(reports)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "compare.json", json.dumps(table, indent=1, default=float))
    plot_compare(table, out / "compare.png")
    atomic_write_text(out / "compare.md", compare_markdown(table, "compare.png"))
    return table
