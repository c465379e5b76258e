"""Built-in likelihoods of brgm, registered through the same hook as third-party plugins."""

from __future__ import annotations

from brgm import hookimpl
from brgm.core.terms import Likelihood
from brgm.plugins.likelihoods.kspace import KSpaceLikelihood
from brgm.plugins.likelihoods.perceptual import PerceptualLikelihood
from brgm.plugins.likelihoods.pixel import PixelLikelihood


@hookimpl
def register_likelihoods() -> list[type[Likelihood]]:
    return [PixelLikelihood, PerceptualLikelihood, KSpaceLikelihood]
