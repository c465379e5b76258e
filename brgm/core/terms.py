"""Energy terms of a reconstruction problem: likelihoods (data terms) and priors (on the latents).

Every term returns a per-sample energy ``[N]`` so that a batch of measurements is a batch of independent
problems. Terms are attrs classes; ``weight`` (λ for likelihoods, μ for priors) multiplies the energy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import attrs
import torch

from brgm.core.params import interval

if TYPE_CHECKING:
    from brgm.core.generator import Generator
    from brgm.core.operators import ForwardModel


@attrs.define(kw_only=True, eq=False)
class Latents:
    """The variables a solver optimises.

    Attributes:
        ws: W+ latents ``[N, num_ws, w_dim]``.
        noises: the generator's noise inputs ``[N, 1, *shape]`` (see ``Generator.noise_inputs``) when the
            solver optimises them (a prior with ``needs_noise``, such as ``noise_reg``), else None.
        deviation: an image-space deviation ``[N, C, *spatial]`` added to the generator's intensities when the
            solver optimises one (a prior with ``needs_deviation``, such as ``deviation``), else None.
    """

    ws: torch.Tensor
    noises: list[torch.Tensor] | None = None
    deviation: torch.Tensor | None = None


@attrs.define(kw_only=True, eq=False)
class Term:
    """Shared by likelihoods and priors: a name, a one-line description (the docstring) and a weight."""

    name: ClassVar[str] = ""
    weight: float = attrs.field(default=1.0, converter=float, validator=interval(0.0))

    def bind(self, generator: Generator, forward_model: ForwardModel) -> None:
        """Called once when a problem is composed: precompute what the term needs (latent statistics,
        networks) and reject incompatible pieces with a clear error. The default does nothing."""


@attrs.define(kw_only=True, eq=False)
class Likelihood(Term):
    """A data term ``L(f(G(w)), y)`` comparing the predicted measurement with the observed one.

    A likelihood that sets ``uses_sigma`` is also given the measurement's noise level: its :meth:`energy` is
    called with ``sigma [N]`` (see :meth:`brgm.core.problem.Problem.noise_level`), and :attr:`given_sigma` may
    name one the user set.
    """

    #: True for likelihoods whose energy takes the noise level ``sigma [N]``
    uses_sigma: ClassVar[bool] = False

    @property
    def given_sigma(self) -> float | None:
        """The noise level the user gave this term (it then overrides every other source), or None (the
        default)."""
        return None

    def energy(self, pred: torch.Tensor, target: torch.Tensor, forward_model: ForwardModel) -> torch.Tensor:
        """``pred``, ``target``: measurements shaped like ``forward_model``'s output -> unweighted energy ``[N]``."""
        raise NotImplementedError


@attrs.define(kw_only=True, eq=False)
class Prior(Term):
    """An energy ``E(w)`` on the latents.

    A prior that sets ``uses_image`` is also given the reconstruction ``x [N, C, *spatial]`` (the generator's
    intensities plus the deviation, :meth:`brgm.core.problem.Problem.image`): its :meth:`energy` is called with it.
    """

    #: True for priors on the generator's noise inputs: the solver then optimises them with ``ws``
    needs_noise: ClassVar[bool] = False
    #: True for priors on an image-space deviation: the solver then optimises one with ``ws``
    needs_deviation: ClassVar[bool] = False
    #: True for priors whose energy also takes the reconstruction ``x``
    uses_image: ClassVar[bool] = False

    def energy(self, latents: Latents) -> torch.Tensor:
        """Latents of a batch of N -> unweighted energy ``[N]``."""
        raise NotImplementedError

    def minimise_deviation(
        self,
        forward_model: ForwardModel,
        base: torch.Tensor,
        y: torch.Tensor,
        sigma: torch.Tensor,
        deviation: torch.Tensor,
    ) -> torch.Tensor | None:
        """For a prior on the image-space deviation (``needs_deviation``): the deviation ``[N, C, *spatial]``
        minimising ``‖f(base + d) − y‖² / (2σ²) + weight·E(d)`` with the generator's image ``base`` fixed, from
        ``deviation``; None when the prior has no such solve for ``forward_model`` (the solver's own deviation
        is then kept)."""
        return None
