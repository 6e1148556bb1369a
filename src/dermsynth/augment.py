"""Augmentation on image tensors in [-1, 1], shape (N, 3, H, W).

``dihedral`` applies the 8 flips and 90-degree rotations to real training
images (a lesion photographed from above has no "up"); it runs before the
discriminator sees a batch. ``diff_augment`` is DiffAugment (Zhao et al. 2020):
the same differentiable colour, translation and cutout transforms applied to
real and fake images alike, in the D and G steps, so the discriminator cannot
memorise the ~10k training images and the generator is not taught the
augmentations. All randomness comes from torch's global generator, whose state
the checkpoints save.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def dihedral(x: torch.Tensor) -> torch.Tensor:
    """Random flips and 90-degree rotations, one of 8 per image."""
    n = x.shape[0]
    k = torch.randint(0, 4, (n,), device=x.device)
    flip = torch.rand(n, device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    out = x.clone()
    for quarter in (1, 2, 3):
        sel = k == quarter
        if sel.any():
            out[sel] = torch.rot90(x[sel], quarter, dims=(2, 3))
    return out


def random_resized_crop(x: torch.Tensor, min_scale: float, ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Crop a random window of each image and resize it back to the image's size (bilinear); 0 disables.

    The window covers a share of the image's area drawn uniformly from
    [``min_scale``, 1], with an aspect ratio drawn log-uniformly from ``ratio``
    (clipped so that it fits), at a uniform position inside the image. One
    affine resampling of the whole batch; the randomness is torch's global generator.
    """
    if min_scale <= 0:
        return x
    n = x.shape[0]
    area = min_scale + (1 - min_scale) * torch.rand(n, device=x.device)
    log_lo, log_hi = torch.log(torch.tensor(ratio, dtype=torch.float64)).tolist()
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, device=x.device))
    width = torch.sqrt(area * aspect).clamp(max=1.0)  # shares of the image's width and height
    height = (area / width).clamp(max=1.0)
    # The affine grid maps the output's [-1, 1] onto the window: scale by its size, shift inside the image.
    cx = (1 - width) * (2 * torch.rand(n, device=x.device) - 1)
    cy = (1 - height) * (2 * torch.rand(n, device=x.device) - 1)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = width, cx
    theta[:, 1, 1], theta[:, 1, 2] = height, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


DIHEDRAL_VIEWS = 8


def dihedral_view(x: torch.Tensor, view: int) -> torch.Tensor:
    """The ``view``-th of the 8 flips and rotations (0 is the identity; 0-3 are the flips: none, h, v, both)."""
    if view in (1, 3, 5, 7):
        x = x.flip(3)
    if view in (2, 3, 6, 7):
        x = x.flip(2)
    if view >= 4:
        x = x.transpose(2, 3)
    return x


def color_jitter(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Scale brightness, saturation and contrast of each image by factors in [1 - s, 1 + s]; x in [-1, 1]."""
    if strength <= 0:
        return x
    n = x.shape[0]
    factor = lambda: 1 + strength * (2 * torch.rand(n, 1, 1, 1, device=x.device) - 1)  # noqa: E731
    y = (x + 1) / 2 * factor()  # brightness
    grey = y.mean(dim=1, keepdim=True)
    y = grey + (y - grey) * factor()  # saturation
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = mean + (y - mean) * factor()  # contrast
    return y.clamp(0, 1) * 2 - 1


def diff_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """Apply the comma-separated ``policy`` (any of color, translation, cutout); '' is identity."""
    for name in [p.strip() for p in policy.split(",") if p.strip()]:
        x = _AUGMENTS[name](x)
    return x


def check_policy(policy: str) -> list[str]:
    bad = [p.strip() for p in policy.split(",") if p.strip() and p.strip() not in POLICIES]
    return [f"unknown DiffAugment policy {b!r} (known: {', '.join(POLICIES)})" for b in bad]


def _color(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    r = lambda: torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype)  # noqa: E731
    x = x + (r() - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (r() * 2) + mean  # saturation
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    x = (x - mean) * (r() + 0.5) + mean  # contrast
    return x


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    # Shift by (dy, dx), zero-filled: gather from a padded copy.
    yy = torch.clamp(gy[None] + dy + 1, 0, h + 1)
    xx = torch.clamp(gx[None] + dx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    flat = padded.permute(0, 2, 3, 1)  # (N, H+2, W+2, C)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return flat[batch, yy, xx].permute(0, 3, 1, 2).contiguous()


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    inside = ((gy[None] - cy + ch // 2).clamp(0) < ch) & ((gy[None] - cy + ch // 2) >= 0)
    inside &= ((gx[None] - cx + cw // 2) < cw) & ((gx[None] - cx + cw // 2) >= 0)
    return x * (~inside)[:, None].to(x.dtype)


_AUGMENTS = {"color": _color, "translation": _translation, "cutout": _cutout}
