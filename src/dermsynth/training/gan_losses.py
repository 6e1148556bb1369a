"""GAN losses and regularisers, kept outside the networks and the loop.

Losses work on the discriminator's logits, or on a tuple of them, one per head
(a hybrid discriminator's pixel and feature heads): :func:`d_losses` and
:func:`g_losses` give one term per head, which the loop weighs. Regularisers
judge the first head only (for a hybrid D, the pixel critic: a gradient through
the frozen feature network would cost its double backward and regularise
nothing that is trained there).

- ``bce``: binary cross-entropy with a non-saturating generator loss (the
  paper; the generator maximises log D(G(z)), the usual Keras GAN set-up);
- ``hinge``: hinge loss for D, -D(G(z)) for G (SAGAN, BigGAN);
- ``wgan``: Wasserstein loss, to pair with the gradient penalty (WGAN-GP).

Regularisers: the gradient penalty of WGAN-GP on random interpolates of real
and fake images (weight 10 in the paper), and R1 (Mescheder et al. 2018) on
real images, applied lazily every ``r1_interval`` D steps with its weight
scaled by the interval (StyleGAN2). For the generator, the mode-seeking term
of MSGAN (Mao et al., CVPR 2019) against a generator that ignores its noise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dermsynth.config import LOSSES


Logits = torch.Tensor | tuple[torch.Tensor, ...]


def heads(logits: Logits) -> tuple[torch.Tensor, ...]:
    """A discriminator's output as a tuple of its heads' logits, each in float32."""
    return tuple(x.float() for x in logits) if isinstance(logits, tuple) else (logits.float(),)


def d_losses(kind: str, real_logits: Logits, fake_logits: Logits) -> list[torch.Tensor]:
    """D's loss for each head."""
    return [d_loss(kind, r, f) for r, f in zip(heads(real_logits), heads(fake_logits), strict=True)]


def g_losses(kind: str, fake_logits: Logits) -> list[torch.Tensor]:
    """G's loss for each head."""
    return [g_loss(kind, f) for f in heads(fake_logits)]


def d_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    if kind == "bce":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    if kind == "wgan":
        return fake_logits.mean() - real_logits.mean()
    raise ValueError(f"unknown loss {kind!r}; choose one of {LOSSES}")


def g_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    if kind == "bce":
        return F.softplus(-fake_logits).mean()
    if kind in ("hinge", "wgan"):
        return -fake_logits.mean()
    raise ValueError(f"unknown loss {kind!r}; choose one of {LOSSES}")


def per_image(logits: torch.Tensor) -> torch.Tensor:
    """One logit per image: (N,) as it is, patch logits (N, P) averaged, as the losses average them."""
    return logits.reshape(len(logits), -1).mean(dim=1)


def gradient_penalty(D, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] on x_hat uniformly between real and fake images."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    logits = heads(D(x_hat, labels))[0]
    (grad,) = torch.autograd.grad(per_image(logits).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def r1_penalty(real_logits: Logits, real: torch.Tensor) -> torch.Tensor:
    """E[||grad_x D(x)||^2] on real images, of the first head; ``real`` must require grad before D(real)."""
    (grad,) = torch.autograd.grad(per_image(heads(real_logits)[0]).sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1).mean()


def mode_seeking(fake: torch.Tensor, z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """MSGAN's term, to minimise: 1 / (mean over pairs (i, i + N/2) of |G(z1) - G(z2)|_1 / |z1 - z2|_1), with
    both distances averaged over their elements.

    The two halves of the batch must have the same labels, pair by pair; the term grows (up to 1 / eps) as the
    generator gives one image whatever its noise.
    """
    h = len(fake) // 2
    image_gap = (fake[:h] - fake[h: 2 * h]).abs().flatten(1).mean(dim=1)
    noise_gap = (z[:h] - z[h: 2 * h]).abs().mean(dim=1)
    return 1 / ((image_gap / noise_gap).mean() + eps)
