"""Blur: convolution with a Gaussian, box, motion or user-given kernel, in 2D and 3D."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import attrs
import numpy as np
import torch

from brgm.core.errors import ConfigError, ShapeError
from brgm.core.operators import (
    LinearForwardModel,
    check_image_shape,
    check_real,
    check_real_image,
    forward_model,
)
from brgm.core.params import interval, one_of
from brgm.plugins.forward_models import kernels
from brgm.plugins.forward_models.cache import TensorCache
from brgm.plugins.forward_models.convolution import convolve_valid, convolve_valid_adjoint, kernel_spectrum
from brgm.plugins.forward_models.files import read_array
from brgm.plugins.forward_models.padding import MODES, Padding
from brgm.plugins.forward_models.params import array_or_name, existing_file, integer

KERNELS = ("gaussian", "box", "motion")
_ACCEPTED = f"one of {', '.join(map(repr, KERNELS))}, a .npy or image file, or an array"


@forward_model
class Blur(TensorCache, LinearForwardModel):
    """Blur by convolution with a Gaussian, box, motion or user kernel; reflect, circular or zero padding.

    ``y = k * x`` (a true convolution, each channel separately) on ``x [N, C, *spatial]``, same-size output:
    the input is extended by ``padding`` and the kernel's centre sample ``k[size // 2]`` (per axis) lands on
    each output sample. Kernels sum to one.

    - ``kernel="gaussian"``: isotropic, standard deviation ``sigma`` pixels, ``2·⌈3σ⌉ + 1`` wide.
    - ``kernel="box"``: the mean over ``size`` samples per axis.
    - ``kernel="motion"``: a straight path of ``length`` pixels at ``angle`` degrees in the (H, W) plane (the same
      path on every slice of a volume).
    - a ``.npy`` file, an image file (grey levels) or an array: its dimensionality must match the input's.

    The convolution runs through the FFT (:mod:`~brgm.plugins.forward_models.convolution`), whose cost does not
    grow with the kernel size. The adjoint is the transposed convolution followed by the transpose of the
    padding, so it is exact for every padding. The naive inverse is the blurred image itself.
    """

    name: ClassVar[str] = "blur"

    kernel: str | np.ndarray = attrs.field(default="gaussian", converter=array_or_name)
    sigma: float = attrs.field(default=1.0, converter=float, validator=interval(0.0, open_lo=True))
    size: int = attrs.field(default=3, validator=integer(1))
    length: float = attrs.field(default=9.0, converter=float, validator=interval(1.0))
    angle: float = attrs.field(default=0.0, converter=float, validator=interval(-360.0, 360.0))
    padding: str = attrs.field(default="reflect", validator=one_of(MODES))
    _weights: np.ndarray | None = attrs.field(init=False, repr=False)

    @_weights.default
    def _user_kernel(self) -> np.ndarray | None:
        """The normalised kernel given as an array or a file; None for a named kernel."""
        if isinstance(self.kernel, np.ndarray):
            return kernels.normalised(self.kernel, "kernel")
        if not isinstance(self.kernel, str):
            raise ConfigError(f"kernel must be {_ACCEPTED}, got {type(self.kernel).__name__}")
        if self.kernel in KERNELS:
            return None
        path = existing_file("kernel", self.kernel, _ACCEPTED)
        return kernels.normalised(read_array(path), f"kernel file {self.kernel!r}")

    def kernel_array(self, dims: int) -> np.ndarray:
        """The kernel for ``dims``-D inputs, ``[*k]`` summing to one."""
        if self._weights is not None:
            return self._weights
        if self.kernel == "gaussian":
            return kernels.gaussian(self.sigma, dims)
        if self.kernel == "box":
            return kernels.box(self.size, dims)
        return kernels.motion(self.length, self.angle, dims)

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        shape = check_image_shape(self, shape)
        dims = len(shape) - 2
        if self._weights is not None and self._weights.ndim != dims:
            raise ShapeError(
                f"blur kernel of shape {list(self._weights.shape)} is {self._weights.ndim}D and cannot blur "
                f"{dims}D inputs of shape {list(shape)}"
            )
        return shape

    def _tensors_for(
        self, spatial: tuple[int, ...], device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, tuple[int, ...], Padding]:
        """The kernel's spectrum at the padded size, the kernel shape, and the padding for ``spatial``."""

        def build() -> tuple[torch.Tensor, tuple[int, ...], Padding]:
            kernel = self.kernel_array(len(spatial))
            widths = [((k - 1) // 2, k // 2) for k in kernel.shape]
            padded = [n + k - 1 for n, k in zip(spatial, kernel.shape, strict=True)]
            spectrum = kernel_spectrum(torch.as_tensor(kernel, dtype=dtype, device=device), padded)
            return spectrum, kernel.shape, Padding.build(self.padding, spatial, widths, device)

        return self.cached((spatial, device, dtype), build)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_real_image(self, x)
        spectrum, kernel_shape, pad = self._tensors_for(tuple(x.shape[2:]), x.device, x.dtype)
        return convolve_valid(pad(x), spectrum, kernel_shape)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        check_real(self, y, "measurements")
        self.output_shape(y.shape)
        spectrum, kernel_shape, pad = self._tensors_for(tuple(y.shape[2:]), y.device, y.dtype)
        return pad.adjoint(convolve_valid_adjoint(y, spectrum, kernel_shape))

    def naive_inverse(self, y: torch.Tensor) -> torch.Tensor:
        check_real(self, y, "measurements")
        self.output_shape(y.shape)
        return y
