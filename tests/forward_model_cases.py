"""Shared by the forward-model tests: a catalogue of operator configurations and hypothesis shape strategies."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import numpy as np
from hypothesis import strategies as st

from brgm.core.operators import Chain, LinearForwardModel
from brgm.plugins.forward_models import (
    Blur,
    Downsample,
    GaussianNoise,
    Inpaint,
    KSpace,
    PoissonNoise,
    RicianNoise,
)


@attrs.frozen
class Case:
    """One operator configuration and the inputs it accepts."""

    label: str
    build: Callable[[], LinearForwardModel]
    dims: tuple[int, ...] = (2, 3)
    channels: tuple[int, ...] = (1, 3)
    #: every spatial size is a multiple of this (a downsampling factor)
    multiple: int = 1

    def __repr__(self) -> str:
        return self.label


CASES = [
    Case("downsample-area-x2", lambda: Downsample(factor=2, method="area"), multiple=2),
    Case("downsample-bicubic-x3", lambda: Downsample(factor=3, method="bicubic"), multiple=3),
    Case("downsample-antialiased-x2", lambda: Downsample(factor=2, method="bicubic_antialiased"), multiple=2),
    Case("blur-gaussian-reflect", lambda: Blur(sigma=0.7)),
    Case("blur-box4-circular", lambda: Blur(kernel="box", size=4, padding="circular")),
    Case("blur-motion-zeros", lambda: Blur(kernel="motion", length=3.5, angle=30.0, padding="zeros")),
    Case(
        "blur-array-reflect",
        lambda: Blur(kernel=np.random.default_rng(0).uniform(size=(3, 2)), padding="reflect"),
        dims=(2,),
    ),
    Case("mask-pixels", lambda: Inpaint(missing="pixels", fraction=0.3, seed=1)),
    Case("mask-strokes", lambda: Inpaint(missing="strokes", strokes=2, width=0.3)),
    Case("mask-left", lambda: Inpaint(missing="left")),
    Case("kspace-random", lambda: KSpace(acceleration=4, center_fraction=0.08, mask="random", seed=3)),
    Case("kspace-equispaced-lines", lambda: KSpace(acceleration=2, mask="equispaced", phase_encode_dims=1)),
    Case("kspace-gaussian-4coils", lambda: KSpace(acceleration=3, mask="gaussian", coils=4), channels=(1,)),
    Case("kspace-poisson-3d", lambda: KSpace(acceleration=2, mask="poisson"), dims=(3,)),
    Case("gaussian_noise", lambda: GaussianNoise(sigma=0.1)),
    Case("poisson_noise", lambda: PoissonNoise(gain=0.1)),
    Case("rician_noise", lambda: RicianNoise(sigma=0.1)),
    Case(
        "chain-blur+downsample+gaussian_noise",
        lambda: Chain([Blur(sigma=0.5), Downsample(factor=2), GaussianNoise()]),
        multiple=2,
    ),
    Case(
        "chain-mask+kspace-2coils",
        lambda: Chain([Inpaint(missing="pixels", fraction=0.2), KSpace(coils=2, mask="gaussian")]),
        channels=(1,),
    ),
]


@st.composite
def input_shapes(draw: st.DrawFn, case: Case, max_size: int | None = None) -> tuple[int, ...]:
    """``[N, C, *spatial]`` that ``case`` accepts: batch 1–3, odd and non-square spatial sizes."""
    dims = draw(st.sampled_from(case.dims))
    limit = max_size if max_size is not None else (13 if dims == 2 else 6)
    multiples = st.integers(1, max(1, limit // case.multiple))
    spatial = [case.multiple * draw(multiples) for _ in range(dims)]
    return (draw(st.integers(1, 3)), draw(st.sampled_from(case.channels)), *spatial)
