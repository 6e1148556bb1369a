#!/usr/bin/env bash
# One prepared GPU run (issue 12): CUDA tests, GAN throughput, a few minutes of each candidate preset (best,
# projected, hybrid), FID/KID 10k of each.
#
#   benchmarks/gpu_run.sh PACK_DIR RESULTS_DIR [--smoke] [--train-minutes 4] [--n-fid 10000]
#
# On a machine with one CUDA GPU and PyTorch, without network: the packed wheels (PACK_DIR/wheels, made by
# benchmarks/device_pack.sh) are installed into a scratch folder and dermsynth is used from this checkout's
# src/ (no build step, nothing fetched). Every step prints its time; a failing step is recorded in
# RESULTS_DIR/gpu_run.json and the run goes on. --smoke: the same on CPU with phantom data, in about a minute.
set -uo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 PACK_DIR RESULTS_DIR [--smoke] [gpu_run.py options]" >&2
  exit 2
fi
PACK=$1
RESULTS=$2
shift 2
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
SITE=${TMPDIR:-/tmp}/dermsynth-site-$$
mkdir -p "$RESULTS"
start=$(date +%s)
if ls "$PACK"/wheels/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$PACK"/wheels/*.whl || echo "warning: installing the packed wheels failed; going on" >&2
fi
echo "[install] done in $(( $(date +%s) - start )) s"
export PYTHONPATH="$REPO/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
"$PY" "$REPO/benchmarks/gpu_run.py" "$PACK" "$RESULTS" "$@" 2>&1 | tee "$RESULTS/gpu_run.log"
status=${PIPESTATUS[0]}
rm -rf "$SITE"
echo "[total] $(( $(date +%s) - start )) s"
exit "$status"
