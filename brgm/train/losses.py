"""StyleGAN2's losses: the non-saturating logistic GAN loss and the R1 gradient penalty on real images.

With ``D`` giving logits ``l``: the discriminator minimises ``softplus(l(fake)) + softplus(-l(real))``, the
generator minimises ``softplus(-l(fake))``, and R1 adds ``gamma / 2 · ||∇_x l(real)||²`` (Mescheder et al. 2018),
evaluated lazily every ``interval`` steps and scaled by ``interval`` (Karras et al. 2020, "lazy regularisation").
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss, mean over the batch: ``softplus(-l(fake))``."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic discriminator loss, mean over the batch: ``softplus(l(fake)) + softplus(-l(real))``."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(discriminate: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """``||∇_x D(x)||²`` per real image ``x [N, ...]`` -> ``[N]``, with a graph for the discriminator's update.

    ``discriminate`` maps images to logits ``[N, 1]`` (augmentation included, as ADA does).
    """
    real = real.detach().requires_grad_(True)
    logits = discriminate(real)
    (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    return grad.square().flatten(1).sum(1)


def auto_r1_gamma(resolution: int, batch: int) -> float:
    """StyleGAN2-ADA's default R1 weight: ``0.0002 · resolution² / batch``."""
    return 0.0002 * resolution**2 / batch
