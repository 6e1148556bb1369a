"""Preprocessing cache: decode, crop and resize every image once into a uint8 array.

``load_cache(index, resolution=64)`` returns the images as an (N, S, S, 3) uint8
array (memory-mapped), building it first when it is missing or stale. The
cache folder holds ``images-<key>.npy`` and ``manifest.json``; the manifest is
written last and names the array file, so a crash mid-build leaves either the
old cache or none, never a half-written one. The key is a hash of the index
fingerprint (ids, labels, file sizes and modification times), the resolution,
the crop and the cache version, so the cache rebuilds itself when any changes.

Crops: ``center`` (default) takes the centre square of side min(width, height);
``full`` squeezes the whole image into the square (aspect changes); ``pad``
letterboxes it onto black. Resizing is antialiased (Lanczos). Corrupt or
truncated files are skipped and listed (``skipped.csv`` and the manifest), or
stop the build with ``on_corrupt="fail"``.
"""

from __future__ import annotations

import csv
import ctypes
import hashlib
import io
import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from dermsynth.data.index import CLASSES, DatasetIndex, check_nonempty
from dermsynth.errors import DataError
from dermsynth.storage import atomic_write, atomic_write_text

CACHE_VERSION = 1
RESOLUTIONS = (32, 64, 128, 256)
CROPS = ("center", "full", "pad")
ON_CORRUPT = ("skip", "fail")
"""What an undecodable image file does to a cache build: skipped (and listed) or the build stops."""


def default_cache_dir() -> Path:
    """``$DERMSYNTH_CACHE``, else ``$XDG_CACHE_HOME/dermsynth``, else ``~/.cache/dermsynth``."""
    if os.environ.get("DERMSYNTH_CACHE"):
        return Path(os.environ["DERMSYNTH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dermsynth"


@dataclass
class CachedImages:
    """Preprocessed images of an index (the rows that decoded), in index order."""

    images: np.ndarray
    """uint8 (N, S, S, 3), RGB."""
    image_ids: list[str]
    labels: np.ndarray
    """int64 (N,), indices into CLASSES."""
    lesion_ids: list[str]
    skipped: list[dict] = field(default_factory=list)
    """Files that could not be decoded: {image_id, file, error}."""
    path: Path | None = None

    def rows(self) -> dict[str, int]:
        return {image_id: i for i, image_id in enumerate(self.image_ids)}

    def part_rows(self, parts: dict[str, list[str]], part: str) -> np.ndarray:
        """Rows of the images of a split's ``part`` (``parts``: a split's parts), sorted; images that could
        not be decoded (not in the cache) are left out: :meth:`missing` lists them."""
        rows = self.rows()
        return np.array(sorted(rows[i] for i in parts[part] if i in rows), dtype=np.int64)

    def missing(self, parts: dict[str, list[str]], part: str) -> list[str]:
        """Image ids of a split's ``part`` that are not in the cache (unreadable)."""
        rows = self.rows()
        return [i for i in parts[part] if i not in rows]


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: grayscale, palette, RGBA (over black), CMYK, 16-bit, float."""
    img = ImageOps.exif_transpose(img)
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode.startswith("I") or img.mode == "F":
        # 16-bit and 32-bit grayscale: scale the full range down instead of clipping.
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if (img.mode.startswith("I;16") or arr.max(initial=0) > 255) else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    return img.convert("RGB")


def crop_resize(img: Image.Image, resolution: int, crop: str = "center") -> np.ndarray:
    """Crop to a square as ``crop`` says and resize with antialiasing; returns (S, S, 3) uint8."""
    img = to_rgb(img)
    w, h = img.size
    if crop == "center":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    elif crop == "pad":
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), (0, 0, 0))
        canvas.paste(img, ((side - w) // 2, (side - h) // 2))
        img = canvas
    elif crop != "full":
        raise ValueError(f"unknown crop {crop!r}; choose one of {CROPS}")
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


def _worker_start(main: int) -> None:
    """In each decoding worker: Ctrl-C is the main process's to handle, and the worker ends with it, however it
    ends (kill -9 included): at once where Linux can say so (PR_SET_PDEATHSIG, when the main process is the
    parent, as with fork), else within a second (its parent changes, or the main process is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent = os.getppid()  # the main process (fork) or a fork server
    if parent == main and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def alive() -> bool:
        if os.getppid() != parent:
            return False
        try:
            os.kill(main, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True

    if not alive():  # the main process died before the lines above took effect
        os._exit(1)

    def watch() -> None:
        while alive():
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """End a pool now: queued work dropped, its workers terminated (not waited for)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def _decode_file(args: tuple[str, int, str]) -> tuple[np.ndarray | None, str | None]:
    path, resolution, crop = args
    try:
        with Image.open(path) as img:
            if img.format == "JPEG" and crop == "center":
                # Let the JPEG decoder downscale by 2/4/8 while the short side stays >= 2S.
                short = min(img.size)
                if short >= 4 * resolution:
                    scale = short / (2 * resolution)
                    img.draft("RGB", (int(img.size[0] / scale), int(img.size[1] / scale)))
            img.load()
            return crop_resize(img, resolution, crop), None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return None, f"{type(e).__name__}: {e}"


def cache_key(index: DatasetIndex, resolution: int, crop: str) -> str:
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}|{resolution}|{crop}|{index.fingerprint()}".encode())
    return h.hexdigest()[:16]


def cache_folder(index: DatasetIndex, cache_dir: Path | None, resolution: int, crop: str) -> Path:
    root_tag = hashlib.sha256(str(Path(index.root).resolve()).encode()).hexdigest()[:8]
    name = f"{Path(index.root).name or 'data'}-{root_tag}-{resolution}px-{crop}"
    return Path(cache_dir or default_cache_dir()) / name


def load_cache(
    index: DatasetIndex,
    resolution: int = 64,
    crop: str = "center",
    cache_dir: str | Path | None = None,
    on_corrupt: str = "skip",
    workers: int | None = None,
    progress: bool = True,
    rebuild: bool = False,
) -> CachedImages:
    """The cached images of ``index``; builds (or rebuilds) the cache when needed."""
    problems = []
    if resolution not in RESOLUTIONS:
        problems.append(f"resolution must be one of {RESOLUTIONS}, got {resolution}")
    if crop not in CROPS:
        problems.append(f"crop must be one of {CROPS}, got {crop!r}")
    if on_corrupt not in ON_CORRUPT:
        problems.append(f"on_corrupt must be 'skip' or 'fail', got {on_corrupt!r}")
    if problems:
        raise ValueError("; ".join(problems))
    check_nonempty(index)

    folder = cache_folder(index, Path(cache_dir) if cache_dir else None, resolution, crop)
    key = cache_key(index, resolution, crop)
    manifest_path = folder / "manifest.json"
    if not rebuild and manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            manifest = {}
        if manifest.get("key") == key and (folder / manifest.get("array", "")).is_file():
            if manifest["skipped"] and on_corrupt == "fail":
                raise DataError(_corrupt_message(manifest["skipped"]))
            return _open(folder, manifest)
    return _build(index, folder, key, resolution, crop, on_corrupt, workers, progress)


def _build(index, folder, key, resolution, crop, on_corrupt, workers, progress) -> CachedImages:
    start = time.perf_counter()
    n = len(index)
    images = np.zeros((n, resolution, resolution, 3), dtype=np.uint8)
    ok = np.zeros(n, dtype=bool)
    skipped: list[dict] = []
    bar = tqdm(total=n, desc=f"caching {resolution}px", unit="img", disable=not progress, file=sys.stderr)
    try:
        if index.arrays is not None:
            for i in range(n):
                images[i] = crop_resize(index.open_image(i), resolution, crop)
                ok[i] = True
                bar.update()
        else:
            jobs = [(str(r.path), resolution, crop) for r in index.records]
            workers = workers or min(os.cpu_count() or 1, 8)
            if workers > 1 and n >= 64:
                pool = ProcessPoolExecutor(workers, initializer=_worker_start, initargs=(os.getpid(),))
                try:
                    for i, (arr, err) in enumerate(pool.map(_decode_file, jobs, chunksize=64)):
                        _collect(i, arr, err, index, images, ok, skipped)
                        bar.update()
                except BrokenProcessPool:  # a worker died (killed for memory, a decoder crash)
                    _stop_pool(pool)
                    raise DataError(f"a decoding worker died while caching {index.root} (out of memory, or "
                                    "killed); nothing was written: run the command again") from None
                except BaseException:  # stopped (an error, Ctrl-C, SIGTERM): end the workers now, queued work too
                    _stop_pool(pool)
                    raise
                pool.shutdown(wait=True)
            else:
                for i, job in enumerate(jobs):
                    _collect(i, *_decode_file(job), index, images, ok, skipped)
                    bar.update()
    finally:  # a stopped build leaves no half-drawn bar behind its error line
        bar.close()

    if skipped and on_corrupt == "fail":
        raise DataError(_corrupt_message(skipped))
    if skipped:
        print(f"warning: {_corrupt_message(skipped)}; listed in {folder / 'skipped.csv'}", file=sys.stderr)
    kept = [r for r, good in zip(index.records, ok) if good]
    lost = sorted({r.dx for r in index.records} - {r.dx for r in kept}, key=CLASSES.index)
    if lost:
        raise DataError(f"{index.root}: no images left for class(es) {', '.join(lost)} after skipping unreadable files")

    folder.mkdir(parents=True, exist_ok=True)
    array_name = f"images-{key}.npy"
    kept_images = images[ok]
    atomic_write(folder / array_name, lambda f: np.save(f, kept_images), needed_bytes=kept_images.nbytes)
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=["image_id", "file", "error"])
    writer.writeheader()
    writer.writerows(skipped)
    atomic_write_text(folder / "skipped.csv", table.getvalue())
    manifest = {
        "format": f"dermsynth-cache/{CACHE_VERSION}",
        "key": key,
        "array": array_name,
        "data_root": str(index.root),
        "source": index.source,
        "resolution": resolution,
        "crop": crop,
        "resize": "lanczos (antialiased)",
        "n_images": int(ok.sum()),
        "image_ids": [r.image_id for r in kept],
        "labels": [r.label for r in kept],
        "lesion_ids": [r.lesion_id for r in kept],
        "files": [
            {"image_id": r.image_id, "file": str(r.path.relative_to(index.root)), "bytes": r.path.stat().st_size}
            for r in kept
            if r.path is not None
        ],
        "skipped": skipped,
        "build_seconds": round(time.perf_counter() - start, 2),
    }
    atomic_write_text(folder / "manifest.json", json.dumps(manifest))
    for old in folder.glob("images-*.npy"):
        if old.name != array_name:
            old.unlink(missing_ok=True)
    return _open(folder, manifest)


def _collect(i, arr, err, index, images, ok, skipped) -> None:
    if arr is None:
        r = index.records[i]
        skipped.append({"image_id": r.image_id, "file": str(r.path), "error": err})
    else:
        images[i] = arr
        ok[i] = True


def _corrupt_message(skipped: list[dict]) -> str:
    names = ", ".join(Path(s["file"]).name for s in skipped[:5])
    more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    return f"{len(skipped)} image file(s) could not be decoded: {names}{more}"


def _open(folder: Path, manifest: dict) -> CachedImages:
    images = np.load(folder / manifest["array"], mmap_mode="r")
    return CachedImages(
        images=images,
        image_ids=manifest["image_ids"],
        labels=np.asarray(manifest["labels"], dtype=np.int64),
        lesion_ids=manifest["lesion_ids"],
        skipped=manifest["skipped"],
        path=folder,
    )
