"""A plugin the test suite registers: a tiny, fast, differentiable generator and a trivial forward model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import attrs
import numpy as np
import torch
from torch import nn

from brgm import hookimpl
from brgm.core.checkpoints import CheckpointReader
from brgm.core.generator import Generator, GeneratorSource, NoiseMode
from brgm.core.operators import LinearForwardModel
from brgm.core.params import interval
from brgm.core.presets import Preset
from brgm.core.terms import Latents, Likelihood, Prior


class TinyGenerator(Generator):
    """``x = tanh(flatten(ws) · S)``: a linear-tanh map from W+ to an image, seeded, for fast tests."""

    def __init__(
        self,
        img_shape: tuple[int, ...] = (8, 8),
        channels: int = 1,
        num_ws: int = 4,
        w_dim: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.z_dim, self.w_dim, self.num_ws, self.img_channels = w_dim, w_dim, num_ws, channels
        self.img_shape = tuple(img_shape)
        pixels = channels * math.prod(img_shape)
        self.map_weight = nn.Parameter(torch.randn(w_dim, w_dim, generator=gen) / math.sqrt(w_dim))
        self.synth_weight = nn.Parameter(
            torch.randn(num_ws * w_dim, pixels, generator=gen) / math.sqrt(num_ws * w_dim)
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def mapping(
        self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
    ) -> torch.Tensor:
        w = torch.nn.functional.leaky_relu(z.to(self.map_weight.dtype) @ self.map_weight, 0.2)
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
        ws[:, :cutoff] = self.w_avg.lerp(ws[:, :cutoff], truncation_psi)
        return ws

    def synthesis(self, ws: torch.Tensor, noise_mode: NoiseMode = "const") -> torch.Tensor:
        x = torch.tanh(ws.flatten(1).to(self.synth_weight.dtype) @ self.synth_weight)
        return x.view(ws.shape[0], self.img_channels, *self.img_shape)

    def w_stats(self, n: int = 10000, seed: int = 123) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.from_numpy(np.random.RandomState(seed).randn(n, self.z_dim)).float().to(self.device)
        with torch.no_grad():
            w = self.mapping(z)[:, 0]
        mean = w.mean(0)
        return mean, ((w - mean) ** 2).sum().div(n).sqrt()


@attrs.define(kw_only=True, eq=False)
class TinySource(GeneratorSource):
    """A tiny linear-tanh generator for tests (random weights, seeded)."""

    name: ClassVar[str] = "tiny"
    size: int = attrs.field(default=8, validator=interval(2, 64))
    depth: int = attrs.field(default=0, validator=interval(0, 64))
    channels: int = attrs.field(default=1, validator=interval(1, 4))
    seed: int = 0

    def load(self, readers: Sequence[CheckpointReader] = ()) -> Generator:
        shape = (self.size, self.size) if self.depth == 0 else (self.depth, self.size, self.size)
        return TinyGenerator(shape, channels=self.channels, seed=self.seed).eval()


@attrs.define(kw_only=True, eq=False)
class Scale(LinearForwardModel):
    """Multiplies the image by a constant (a trivially linear test operator)."""

    name: ClassVar[str] = "test_scale"
    factor: float = attrs.field(default=0.5, converter=float, validator=interval(0, open_lo=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.factor

    def naive_inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y / self.factor


@attrs.define(kw_only=True, eq=False)
class SumOfSquares(Likelihood):
    """Sum of squared differences of real measurements (a test data term)."""

    name: ClassVar[str] = "test_sse"

    def energy(self, pred: torch.Tensor, target: torch.Tensor, forward_model: object) -> torch.Tensor:
        return (pred - target).square().flatten(1).sum(1)


@attrs.define(kw_only=True, eq=False)
class Spread(Prior):
    """Sum of squared deviations of the W+ layers from their mean layer (a test prior)."""

    name: ClassVar[str] = "test_spread"

    def energy(self, latents: Latents) -> torch.Tensor:
        ws = latents.ws
        return (ws - ws.mean(1, keepdim=True)).square().flatten(1).sum(1)


TEST_PRESET = Preset(
    name="test-preset",
    description="A preset of the test plugin.",
    select={"like": "test_sse", "prior": "test_spread"},
    values={
        "like.test_sse.weight": 2.0,
        "prior.test_spread.weight": 0.5,
        "solver.steps": 7,
        "fwd.test_scale.factor": 3,
    },
    notes="weights chosen for the tests",
)


@hookimpl
def register_generators() -> list[type]:
    return [TinySource]


@hookimpl
def register_forward_models() -> list[type]:
    return [Scale]


@hookimpl
def register_likelihoods() -> list[type]:
    return [SumOfSquares]


@hookimpl
def register_priors() -> list[type]:
    return [Spread]


@hookimpl
def register_presets() -> list[Preset]:
    return [TEST_PRESET]
