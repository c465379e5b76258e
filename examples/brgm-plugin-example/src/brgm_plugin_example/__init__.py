"""An example brgm plugin: one forward model and one prior, registered through brgm's hooks."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from brgm import hookimpl
from brgm.core.errors import ShapeError
from brgm.core.operators import LinearForwardModel, check_image_shape
from brgm.core.params import interval
from brgm.core.terms import Latents, Prior

__version__ = "0.1.0"


@attrs.define(kw_only=True, eq=False)
class RowSkip(LinearForwardModel):
    """Keeps every ``step``-th image row (a line-skipping acquisition); missing rows are zero."""

    name: ClassVar[str] = "row_skip"
    step: int = attrs.field(default=2, converter=int, validator=interval(2, 64))

    def output_shape(self, shape):
        shape = check_image_shape(self, shape)
        if shape[-2] < self.step:
            raise ShapeError(f"row_skip: step {self.step} is larger than the {shape[-2]} rows")
        return shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = torch.zeros(x.shape[-2], 1, dtype=x.dtype, device=x.device)
        keep[:: self.step] = 1
        return x * keep

    adjoint = forward  # a diagonal 0/1 operator is self-adjoint
    naive_inverse = forward


@attrs.define(kw_only=True, eq=False)
class Sphere(Prior):
    """Keeps every W+ vector near the sphere of radius sqrt(w_dim) (PULSE's constraint as an energy)."""

    name: ClassVar[str] = "sphere"

    def energy(self, latents: Latents) -> torch.Tensor:
        ws = latents.ws
        radius = ws.norm(dim=-1) / ws.shape[-1] ** 0.5
        return (radius - 1).square().mean(dim=-1)


@hookimpl
def register_forward_models():
    return [RowSkip]


@hookimpl
def register_priors():
    return [Sphere]
