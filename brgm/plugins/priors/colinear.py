"""BRGM's colinearity prior: the W+ layers should point the same way."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
import torch.nn.functional as F

from brgm.core.params import interval, one_of
from brgm.core.terms import Latents, Prior


@attrs.define(kw_only=True, eq=False)
class ColinearPrior(Prior):
    """BRGM's colinearity prior: |1 − cos| between every pair of W+ layers, averaged (TF) or summed (PyTorch).

    ``E(ws) = R_{i, j} |1 − cos(ws[i], ws[j])|`` over all ``num_ws × num_ws`` ordered pairs (the diagonal
    included, where it is 0), with ``R`` the mean (``reduction="mean"``, BRGM-TF, values in [0, 2]) or the sum
    (``reduction="sum"``, BRGM-PyTorch, values in [0, 2·num_ws²]). It is the negative log of BRGM's von Mises
    density on the angles between layers up to constants. A zero layer has cosine 0 with every layer. The
    default weight 0.03 pairs with the default ``pixel`` likelihood; BRGM's weights are in its presets.
    """

    name: ClassVar[str] = "colinear"
    weight: float = attrs.field(default=0.03, converter=float, validator=interval(0.0))
    reduction: str = attrs.field(default="mean", validator=one_of(("mean", "sum")))

    def energy(self, latents: Latents) -> torch.Tensor:
        """``ws [N, num_ws, w_dim]`` -> ``[N]``."""
        unit = F.normalize(latents.ws, dim=-1)
        cosines = unit @ unit.transpose(1, 2)
        distance = (1 - cosines).abs()
        return distance.mean(dim=(1, 2)) if self.reduction == "mean" else distance.sum(dim=(1, 2))
