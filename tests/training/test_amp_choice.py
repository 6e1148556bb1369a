"""train.amp: auto picks bf16 from the CPU's own flags (mocked both ways) and records its choice in run.json."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

from dermsynth.config import gan_config, load_yaml
from dermsynth.training import runs
from dermsynth.training.gan_loop import RunOptions, train_gan
from tests.conftest import TINY_GAN

REPO = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
ZEN4 = "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse avx avx2 avx512f avx512_bf16 avx512_vnni\n"
XEON = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU\nflags\t\t: fpu sse avx avx2 avx512f avx512_vnni\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize("cpuinfo, native", [(ZEN4, True), (XEON, False), (ARM, True), ("", False)])
def test_auto_is_bf16_only_where_the_cpu_has_native_bf16(monkeypatch, cpuinfo, native):
    monkeypatch.setattr(runs, "_cpuinfo", lambda: cpuinfo)
    assert runs.native_bf16(CPU) is native
    assert runs.resolve_amp("auto", CPU) == ("bf16" if native else "none")
    assert runs.resolve_amp("none", CPU) == "none" and runs.resolve_amp("bf16", CPU) == "bf16"
    context = runs.autocast("auto", CPU)()
    if native:
        assert isinstance(context, torch.autocast) and context.fast_dtype == torch.bfloat16
    else:
        assert isinstance(context, nullcontext)
    assert runs.cpu_model().endswith(" +bf16") is native


@pytest.mark.parametrize("cpuinfo, used", [(ZEN4, "bf16"), (XEON, "none")])
def test_run_json_records_what_auto_chose(phantom_data, tmp_path, monkeypatch, cpuinfo, used):
    monkeypatch.setattr(runs, "_cpuinfo", lambda: cpuinfo)
    cfg = gan_config(load_yaml(REPO / "configs" / "best.yaml"), TINY_GAN + ["train.total_kimg=0.016"],
                     data_root=phantom_data)
    train_gan(cfg, RunOptions(out=tmp_path / "run", progress=False))
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["amp"] == {"asked": "auto", "used": used}
    assert info["hardware"]["native_bf16"] is (used == "bf16")
