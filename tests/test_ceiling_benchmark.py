"""benchmarks/ceiling.py: its smoke mode writes the table, and its FLOP count is right where torch's is not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from ceiling import count_flops  # noqa: E402


def test_flops_of_dense_grouped_and_transposed_convs_forward_and_backward():
    x = torch.randn(4, 48, 8, 8, requires_grad=True)
    dense = torch.randn(96, 48, 4, 4, requires_grad=True)
    forward = 2 * 4 * 4 * 4 * dense.numel()  # batch 4, 4x4 output positions
    assert count_flops(lambda: F.conv2d(x, dense, stride=2, padding=1)) == forward
    assert count_flops(lambda: F.conv2d(x, dense, stride=2, padding=1).sum().backward()) == 3 * forward
    depthwise = torch.randn(48, 1, 3, 3, requires_grad=True)
    forward = 2 * 4 * 8 * 8 * depthwise.numel()
    assert count_flops(lambda: F.conv2d(x, depthwise, padding=1, groups=48).sum().backward()) == 3 * forward
    up = torch.randn(48, 24, 4, 4, requires_grad=True)
    forward = 2 * 4 * 8 * 8 * up.numel()  # a transposed conv: one weight product per input position
    assert count_flops(lambda: F.conv_transpose2d(x, up, stride=2, padding=1).sum().backward()) == 3 * forward
    a, b = torch.randn(16, 32, requires_grad=True), torch.randn(32, 8)
    assert count_flops(lambda: (a @ b).sum().backward()) == 2 * (2 * 16 * 32 * 8)


def test_smoke_mode_measures_the_ceiling_and_a_preset(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ceiling.py"), "--smoke", "--threads", "1",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "ceiling.json").read_text())
    ceiling = result["ceiling"]
    assert set(ceiling["ops"]) == {"matmul", "conv 4x4 stride 2 (D)", "conv-transpose 4x4 stride 2 (G)",
                                   "conv 3x3", "depthwise 3x3"}
    assert ceiling["fp32"] == max(v["fp32"] for v in ceiling["ops"].values()) > 0
    (row,) = result["presets"]
    assert row["preset"] == "paper" and row["resolution"] == 32 and row["amp"] in ("bf16", "none")
    assert 0.5 < row["gflop_per_image"] < 1.0 and row["images_per_s"] > 0
    assert row["fraction"] == round(row["gflops"] / ceiling["bf16" if row["amp"] == "bf16" else "fp32"], 3)
    assert result["machine"]["cpu"] and "native bf16" in (tmp_path / "ceiling.md").read_text()
