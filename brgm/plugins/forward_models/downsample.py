"""Super-resolution: downsampling by an integer factor on every spatial axis."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import attrs
import numpy as np
import torch

from brgm.core.errors import ShapeError
from brgm.core.operators import (
    LinearForwardModel,
    check_image_shape,
    check_real,
    check_real_image,
    forward_model,
)
from brgm.core.params import one_of
from brgm.plugins.forward_models.cache import TensorCache
from brgm.plugins.forward_models.params import integer
from brgm.plugins.forward_models.resample import (
    antialiased_cubic_matrix,
    apply_separable,
    area_matrix,
    cubic_matrix,
)

#: method -> the matrix ``[n // factor, n]`` that shrinks one axis of size ``n``
METHODS: dict[str, Callable[[int, int], np.ndarray]] = {
    "area": lambda n, factor: area_matrix(n, factor),
    "bicubic": lambda n, factor: cubic_matrix(n, n // factor),
    "bicubic_antialiased": lambda n, factor: antialiased_cubic_matrix(n, n // factor),
}


@forward_model
class Downsample(TensorCache, LinearForwardModel):
    """Downsampling by an integer factor per spatial axis (area, bicubic or antialiased bicubic).

    ``y = R x`` with one resampling matrix per axis, ``x [N, C, *spatial] -> y [N, C, *(spatial / factor)]``;
    the factor must divide every spatial size. Methods:

    - ``area``: the mean of each ``factor``-wide block (BRGM's TensorFlow code).
    - ``bicubic``: torch's bicubic interpolation without antialiasing (BRGM's PyTorch code). At large factors it
      point-samples the image and aliases: fine detail folds into spurious low frequencies.
    - ``bicubic_antialiased``: PIL's bicubic filter stretched by the factor (the PULSE downsampler, which pads
      by reflection where this one renormalises the filter at the borders like torch and PIL).

    The adjoint multiplies by the transposed matrices, so it is exact. The naive inverse upsamples ``y`` back to
    the input size with bicubic interpolation.
    """

    name: ClassVar[str] = "downsample"

    factor: int = attrs.field(default=4, validator=integer(2, 256))
    method: str = attrs.field(default="area", validator=one_of(tuple(METHODS)))

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        shape = check_image_shape(self, shape)
        spatial = shape[2:]
        if any(n % self.factor for n in spatial):
            raise ShapeError(
                f"downsample factor {self.factor} must divide every spatial size, got spatial shape "
                f"{list(spatial)} (input shape {list(shape)})"
            )
        return (*shape[:2], *(n // self.factor for n in spatial))

    def _matrix(self, kind: str, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """``[n // factor, n]`` (``kind="down"``) or the bicubic upsampler ``[n * factor, n]`` (``"up"``)."""

        def build() -> torch.Tensor:
            if kind == "down":
                matrix = METHODS[self.method](n, self.factor)
            else:
                matrix = cubic_matrix(n, n * self.factor)
            return torch.as_tensor(matrix, dtype=dtype, device=device)

        return self.cached((kind, n, device, dtype), build)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_real_image(self, x)
        return apply_separable(x, [self._matrix("down", n, x.device, x.dtype) for n in x.shape[2:]])

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        check_real(self, y, "measurements")
        check_image_shape(self, y.shape)
        matrices = [self._matrix("down", m * self.factor, y.device, y.dtype).mT for m in y.shape[2:]]
        return apply_separable(y, matrices)

    def naive_inverse(self, y: torch.Tensor) -> torch.Tensor:
        check_real(self, y, "measurements")
        check_image_shape(self, y.shape)
        return apply_separable(y, [self._matrix("up", m, y.device, y.dtype) for m in y.shape[2:]])
