"""CSGM's squared-norm regulariser, applied to the W+ latents."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from brgm.core.terms import Latents, Prior


@attrs.define(kw_only=True, eq=False)
class L2Prior(Prior):
    """CSGM's λ‖·‖² regulariser on W+: the sum of squares of every latent entry.

    ``E(ws) = Σ_{l, c} ws[l, c]²``, the squared Frobenius norm of the ``[num_ws, w_dim]`` latents of a sample
    (``num_ws·‖w‖²`` for a tiled ``w``). Bora et al. put ``‖z‖²`` on the Gaussian input ``z`` (weight 0.001 in
    their CelebA runs); here it acts on ``w``, whose mean is not 0, so it pulls towards the origin rather than
    towards the mean of ``w`` (for that, use ``gaussian``).
    """

    name: ClassVar[str] = "l2"

    def energy(self, latents: Latents) -> torch.Tensor:
        """``ws [N, num_ws, w_dim]`` -> ``[N]``, non-negative."""
        return latents.ws.square().sum(dim=(1, 2))
