"""Built-in forward models of brgm, registered through the same hook as third-party plugins."""

from __future__ import annotations

from brgm import hookimpl
from brgm.core.operators import ForwardModel
from brgm.plugins.forward_models.blur import Blur
from brgm.plugins.forward_models.downsample import Downsample
from brgm.plugins.forward_models.inpaint import Inpaint
from brgm.plugins.forward_models.kspace import KSpace
from brgm.plugins.forward_models.noise import GaussianNoise, PoissonNoise, RicianNoise

__all__ = ["Blur", "Downsample", "GaussianNoise", "Inpaint", "KSpace", "PoissonNoise", "RicianNoise"]


@hookimpl
def register_forward_models() -> list[type[ForwardModel]]:
    return [Downsample, Blur, Inpaint, KSpace, GaussianNoise, PoissonNoise, RicianNoise]
