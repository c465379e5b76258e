"""Built-in priors of brgm, registered through the same hook as third-party plugins."""

from __future__ import annotations

from brgm import hookimpl
from brgm.core.terms import Prior
from brgm.plugins.priors.colinear import ColinearPrior
from brgm.plugins.priors.deviation import DeviationPrior
from brgm.plugins.priors.gaussian import GaussianPrior
from brgm.plugins.priors.l2 import L2Prior
from brgm.plugins.priors.noise_reg import NoiseRegPrior


@hookimpl
def register_priors() -> list[type[Prior]]:
    return [GaussianPrior, ColinearPrior, NoiseRegPrior, L2Prior, DeviationPrior]
