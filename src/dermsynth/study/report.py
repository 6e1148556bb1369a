"""The study report: one HTML file with its figures embedded, readable offline.

``write_report(study_dir)`` reads what the pipeline's stages left in a study folder
(any missing part is shown as "not run") and writes ``study_dir/report.html``.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from dermsynth.data.index import CLASSES
from dermsynth.evaluation.gan import comparisons
from dermsynth.metrics import overall_table, per_class_table
from dermsynth.storage import atomic_write_text
from dermsynth.study.layout import StudyLayout
from dermsynth.tables import number

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
.warn { background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.6em 1em; }
.note { color: #555; font-size: 0.92em; } .missing { color: #a00; }
code, pre { background: #f6f6f6; } pre { padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
"""


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _img(path: Path, caption: str, fig_id: str) -> str:
    if not path.is_file():
        return f'<p class="missing" id="{fig_id}">{html.escape(caption)}: not run</p>'
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure id="{fig_id}"><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(headers: list[str], rows: list[list], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _cell(value) -> str:
    if value is None or isinstance(value, float):
        return number(value, 3 if value is None or abs(value) < 10 else 1, missing="–")
    return str(value)


def _missing(what: str, section_id: str) -> str:
    return f'<p class="missing" id="{section_id}">{html.escape(what)}: not run.</p>'


def _data_section(paths: StudyLayout) -> str:
    summary = _read(paths.data_summary)
    if summary is None:
        return _missing("Data summary", "class-table")
    rows = [[r["dx"], r["name"], r["images"], r["lesions"]] for r in summary["class_table"]]
    rows.append(["total", "", summary["images"], summary["lesions"]])
    out = "<h2>Data</h2>"
    if summary.get("phantom"):
        out += ('<p class="warn">These are <b>phantom data</b>: procedurally drawn lesions, <b>not medical data</b>. '
                "Nothing here says anything about skin; run on HAM10000 for real results.</p>")
    for warning in summary.get("warnings", []):  # what the study took in because it was told to
        out += f'<p class="warn">Taken in on request: {html.escape(warning)}.</p>'
    out += f"<p>{html.escape(summary['data'])} ({summary['source']}). The paper's Table II:</p>"
    out += _table(["dx", "class", "images", "lesions"], rows, "class-table")
    split = _read(paths.split)
    if split is not None:
        srows = [[r["dx"], *[r[f"{p}_images"] for p in ("train", "val", "test")],
                  *[r[f"{p}_lesions"] for p in ("train", "val", "test")]] for r in split.get("per_class", [])]
        out += (f"<p>Lesion-grouped split (seed {split['seed']}, sha256 (of its parts) {split['sha256'][:12]}): "
                "no lesion in two parts.</p>")
        out += _table(["dx", "train images", "val images", "test images", "train lesions", "val lesions",
                       "test lesions"], srows, "split-table")
    return out


def _gan_section(paths: StudyLayout) -> str:
    info = _read(paths.gan_record)
    out = "<h2>GAN training</h2>"
    if info is None:
        return out + _missing("GAN training", "loss-curves")
    out += (f"<p>Preset <code>{html.escape(str(info.get('preset')))}</code>: {info.get('steps', '?')} steps, "
            f"{info.get('kimg', 0):.1f} kimg, {info.get('elapsed_s', 0) / 60:.1f} min on "
            f"{html.escape(str(info['hardware'].get('gpu') or info['hardware']['device']))}.</p>")
    out += _img(paths.loss_curves, "Loss curves (the paper's Fig. 5)", "loss-curves")
    out += _img(paths.grid, "Synthetic images, one row per class (the paper's Fig. 4)",
                "sample-grid")
    return out


def _table3_section(paths: StudyLayout) -> str:
    t3 = _read(paths.table3_json)
    out = "<h2>Table III: does the judge recognise each generated class?</h2>"
    if t3 is None:
        return out + _missing("Table III", "table3")
    rows = [[r["class"], r["images"], r["detection_pct"], r["avg_confidence_pct"], r["real_test_recall_pct"],
             r["paper_detection_pct"], r["paper_avg_confidence_pct"]] for r in t3["rows"]]
    out += _table(["class", "images", "detection %", "avg confidence %", "judge's real-test recall % (ceiling)",
                   "paper detection %", "paper avg confidence %"], rows, "table3")
    out += "<ul class='note'>" + "".join(f"<li>{html.escape(n)}</li>" for n in t3["notes"]) + "</ul>"
    return out


def _metrics_section(paths: StudyLayout) -> str:
    ev = _read(paths.evaluation)
    out = "<h2>Generative metrics</h2>"
    if ev is None:
        return out + _missing("FID/KID/precision/recall", "metrics")
    out += (f"<p>{ev['n_generated']} generated vs {ev['n_real_train']} real train images "
            f"(class counts matched), {ev['resolution']} px. Lower FID/KID is better; precision and recall "
            "near the floor's are good. The floor compares two halves of the real train part.</p>")
    for space, block in ev["feature_spaces"].items():
        out += f"<h3>{html.escape(space)} features</h3>"
        if space == "judge":
            feature = (_read(paths.provenance) or {}).get("feature_judge_config", "judge")
            which = ("the judge's (the Table III classifier)" if feature in (None, "judge")
                     else f"a classifier of their own ({html.escape(str(feature.get('name')))}, feature-judge/)")
            out += f"<p>Penultimate-layer features of {which}.</p>"
        out += _table(*overall_table(comparisons(block), missing="–"), f"metrics-{space}")
        headers, rows = per_class_table(block["generated_vs_train"], CLASSES, missing="–")
        if rows:
            out += _table(headers, rows, f"per-class-{space}")
        if "memorisation" in block:
            mem = block["memorisation"]
            out += (f"<p id='memorisation-{space}'>Memorisation ({space}): {mem['n_flagged']} of {mem['n_synthetic']} "
                    f"synthetic images ({mem['flagged_pct']:.2f} %) are closer to a training image than "
                    f"{mem['percentile']:g} % of real test images are (an independent generator flags about "
                    f"{mem['percentile']:g} %). Median nearest-training distance: {mem['synthetic_median']:.2f} "
                    f"synthetic, {mem['test_median']:.2f} real test.</p>")
            out += _img(paths.eval / mem["figure"], f"Memorisation check in {space} space: distances and the "
                        "closest synthetic/training pairs", f"memorisation-figure-{space}")
    return out


def _probe_section(paths: StudyLayout) -> str:
    from dermsynth.evaluation.probe import probe_caption, probe_rows

    probe = _read(paths.probe_json)
    out = "<h2>Utility probe: a fast instrument with known answers</h2>"
    if probe is None:
        return out + _missing("Utility probe", "probe")
    out += (f"<p>Frozen EfficientNet-Lite0 features and a logistic head, fitted per arm and seed. "
            f"{html.escape(probe_caption(probe))} The positive control (all real train lesions against half of "
            "them) must show a gain and the negative control (class-shuffled real images) none: only then can "
            "the other arms be read.</p>")
    out += _table(*probe_rows(probe), "probe")
    statement = probe.get("controls", {}).get("statement")
    if statement:
        out += f"<p class='note'>{html.escape(statement)}</p>"
    return out


def _utility_section(paths: StudyLayout) -> str:
    from dermsynth.evaluation.utility import summary_rows

    ut = _read(paths.utility_json)
    out = "<h2>Utility: does adding synthetic images help on real test images?</h2>"
    if ut is None:
        return out + _missing("Utility study", "utility")
    out += (f"<p>Classifier {html.escape(str(ut['classifier']))}, one per arm and seed, scored on the real test "
            "part; each arm's paired difference from <em>real</em> (the same classifier on real images only, same "
            "seed) with its 95 % interval from a bootstrap over seeds and test lesions together.</p>")
    out += _table(*summary_rows(ut["summary"]), "utility")
    if "external" in ut:
        out += f"<h3>External test set: {html.escape(ut['external']['data'])}</h3>"
        out += _table(*summary_rows(ut["external"]["summary"]), "utility-external")
    out += _img(paths.utility_figure, "Balanced accuracy per arm (mean ± sd over seeds) and the "
                "paired differences from real with 95 % intervals", "utility-figure")
    return out


def _provenance_section(paths: StudyLayout) -> str:
    prov = _read(paths.provenance)
    out = "<h2>Provenance</h2>"
    if prov is None:
        return out + _missing("Provenance", "provenance")
    times = prov.get("stage_seconds", {})
    rows = [[stage, seconds] for stage, seconds in times.items()]
    rows.append(["total", prov.get("total_seconds")])
    out += (f"<p>Data fingerprint {prov['data_fingerprint'][:16]}; split sha256 (of its parts) "
            f"{(prov.get('split_sha256') or '')[:12]}; seed of the split {prov['study']['split'].get('seed')}, "
            f"of the GAN {prov['gan_config']['train']['seed']}, "
            f"of the judge {prov['judge_config']['train']['seed']}.</p>")
    out += _table(["package", "version"], [[k, v] for k, v in prov["versions"].items()], "versions")
    out += _table(["hardware", ""], [[k, v] for k, v in prov["hardware"].items()], "hardware")
    out += _table(["stage", "seconds"], rows, "timings")
    out += "<details><summary>Resolved configuration</summary><pre>" + html.escape(
        json.dumps({"study": prov["study"], "gan": prov["gan_config"], "judge": prov["judge_config"],
                    "feature_judge": prov.get("feature_judge_config", "judge")}, indent=1)
    ) + "</pre></details>"
    return out


def write_report(run: str | Path) -> Path:
    paths = StudyLayout(Path(run))
    prov = _read(paths.provenance) or {}
    name = (prov.get("study") or {}).get("name", paths.root.name)
    body = "".join([
        f"<h1>dermsynth report: {html.escape(name)}</h1>",
        '<p class="note">Every generated image in this report and in <code>synthetic/</code> is synthetic '
        "(GAN-generated) and marked as such in its metadata; none is a patient's image.</p>",
        _data_section(paths), _gan_section(paths), _table3_section(paths), _metrics_section(paths),
        _probe_section(paths), _utility_section(paths), _provenance_section(paths),
    ])
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>dermsynth: {html.escape(name)}"
            f"</title><style>{CSS}</style></head><body>{body}</body></html>")
    return atomic_write_text(paths.report, page)
