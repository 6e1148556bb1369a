"""dermsynth from a wheel, installed where no repository is: the presets travel inside the package."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_virtualenv_runs_without_the_repository(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools (a dev dependency)")
    source, dist = tmp_path / "source", tmp_path / "dist"  # built from a copy: the checkout gets no build/ folder
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(dist)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = next(dist.glob("dermsynth-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "dermsynth/presets/best.yaml" in names and "dermsynth/presets/run-demo.yaml" in names

    # A fresh virtualenv: dermsynth from the wheel; its dependencies (torch ...) are borrowed from this
    # environment through a path file (no network), which does not carry this checkout's editable install.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    target = next((venv / "lib").glob("python*/site-packages"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (target / "borrowed-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    python = venv / "bin" / "python"
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), *args], capture_output=True, text=True, cwd=work, timeout=300)

    where = run("-c", "import dermsynth; print(dermsynth.__file__)")
    assert where.returncode == 0 and where.stdout.startswith(str(target)), where.stdout + where.stderr
    listed = run("-m", "dermsynth", "presets")
    assert listed.returncode == 0 and "run-demo" in listed.stdout and "best" in listed.stdout
    dry = run("-m", "dermsynth", "train-gan", "--config", "best", "--data", str(work), "--out", str(work / "r"),
              "--dry-run")
    assert dry.returncode == 0 and "name: best" in dry.stdout, dry.stderr[-2000:]
