"""No process outlives its command: the cache's decoding workers end with their parent, however it ends, and
SIGINT/SIGTERM give one line and the exit status of errors.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import write_ham

REPO = Path(__file__).resolve().parents[2]

# `data prepare` whose decoding workers hang: the function is replaced before the pool forks, and pickled by its
# name, so every worker runs the slow one.
SLOW_PREPARE = textwrap.dedent("""
    import sys, time
    import dermsynth.data.cache as cache

    def slow(job):
        time.sleep(120)
        return None, "slow"

    cache._decode_file = slow
    from dermsynth.cli import main
    main(["data", "prepare", sys.argv[1], "--resolution", "32", "--cache-dir", sys.argv[2]])
""")


def children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid``, from /proc (no ps needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            # /proc/PID/stat: "pid (name) state ppid ..."; the name may hold spaces, so split after its ")".
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")


def start(tmp_path) -> tuple[subprocess.Popen, list[int]]:
    data = write_ham(tmp_path / "ham", per_class=12)  # 84 images: enough for the worker pool
    proc = subprocess.Popen([sys.executable, "-c", SLOW_PREPARE, str(data), str(tmp_path / "cache")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.time() + 60
    while time.time() < deadline and len(workers := children(proc.pid)) < 2:
        time.sleep(0.2)
    assert len(workers) >= 2, proc.communicate(timeout=10)
    time.sleep(0.5)  # the workers have started their (slow) jobs
    return proc, workers


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig, code, line", [
    (signal.SIGTERM, 143, "error: stopped by SIGTERM; nothing half-written is left: run the command again to continue "
                          "(training: with --resume auto)"),
    (signal.SIGINT, 130, "error: stopped by SIGINT (Ctrl-C); nothing half-written is left"),
    (signal.SIGKILL, -9, None),
])
def test_the_workers_end_with_their_parent_and_the_parent_says_one_line(tmp_path, sig, code, line):
    proc, workers = start(tmp_path)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code
    if line:
        assert err.strip().splitlines()[-1].startswith(line) and "Traceback" not in err
    deadline = time.time() + 10
    while time.time() < deadline and any(alive(w) for w in workers):
        time.sleep(0.2)
    assert not [w for w in workers if alive(w)], "decoding workers outlived their parent"
    assert not list((tmp_path / "cache").rglob("*.npy"))  # no partial cache


def test_a_worker_that_dies_ends_the_build_with_one_line(tmp_path):
    data = write_ham(tmp_path / "ham", per_class=12)
    script = textwrap.dedent("""
        import os, sys
        import dermsynth.data.cache as cache
        real = cache._decode_file

        def dies(job):
            if job[0].endswith("ISIC_0000005.jpg"):
                os._exit(9)  # as if killed for memory
            return real(job)

        cache._decode_file = dies
        from dermsynth.cli import main
        main(["data", "prepare", sys.argv[1], "--resolution", "32", "--cache-dir", sys.argv[2]])
    """)
    done = subprocess.run([sys.executable, "-c", script, str(data), str(tmp_path / "cache")], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (f"error: a decoding worker died while caching {data} (out of "
                                                    "memory, or killed); nothing was written: run the command again")
    assert not list((tmp_path / "cache").rglob("*.npy"))
