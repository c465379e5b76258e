"""MRI: undersampled Cartesian k-space, single-coil or multi-coil, of 2D images and 3D volumes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import attrs
import numpy as np
import torch

from brgm.core import noise_level
from brgm.core.errors import ConfigError, ShapeError
from brgm.core.operators import LinearForwardModel, check_image_shape, check_real_image, forward_model
from brgm.core.params import interval, one_of, to_tuple
from brgm.plugins.forward_models import coils as coil_maps
from brgm.plugins.forward_models import sampling
from brgm.plugins.forward_models.cache import TensorCache
from brgm.plugins.forward_models.fft import fft_centered, ifft_centered
from brgm.plugins.forward_models.files import read_array
from brgm.plugins.forward_models.params import MAX_SEED, array_or_name, existing_file, integer


def _optional_fractions(value: object) -> tuple[float, ...] | None:
    return None if value is None else to_tuple(float)(value)


@forward_model
class KSpace(TensorCache, LinearForwardModel):
    """MRI: undersampled Cartesian k-space y = M·F(S·x) with fastMRI masks, single- or multi-coil, 2D/3D.

    ``F`` is the centred orthonormal FFT over every spatial axis, ``M`` a sampling mask on the phase-encode grid
    and ``S`` the coil sensitivities. Shapes: single-coil ``x [N, C, *spatial] -> y [N, C, *spatial]`` (complex,
    each channel separately); multi-coil ``x [N, 1, *spatial] -> y [N, coils, *spatial]``.

    - ``mask``: ``random``, ``equispaced``, ``equispaced_fraction`` (fastMRI's mask functions, exact semantics and
      seeding), ``gaussian`` (variable density) or ``poisson`` (Poisson disc); see
      :mod:`brgm.plugins.forward_models.sampling`.
    - ``acceleration``, ``center_fraction``: one value each, or equal-length lists from which ``seed`` picks one
      pair as fastMRI does; ``center_fraction`` defaults to 0.08 below 8× and 0.04 from 8×.
    - ``phase_encode_dims``: 1 samples lines along the last axis (W), 2 samples points of the (H, W) plane with
      the first axis of a volume as the readout; default 1 for images, 2 for volumes (our addition to fastMRI).
    - ``coils`` > 1 simulates birdcage sensitivity maps (normalised to ``Σ|S|² = 1``); ``coil_maps`` takes maps
      ``[coils, *spatial]`` from an array or a ``.npy`` file instead.

    The adjoint is ``Re Σ_c conj(S_c)·F⁻¹(M·y_c)`` (the real part because images are real). The naive inverse
    is the zero-filled image: ``|F⁻¹(M·y)|`` for one coil, the root-sum-of-squares over coils for several.
    """

    name: ClassVar[str] = "kspace"
    complex_output: ClassVar[bool] = True

    acceleration: tuple[float, ...] = attrs.field(
        default=(4.0,), converter=to_tuple(float), validator=interval(1.0)
    )
    center_fraction: tuple[float, ...] | None = attrs.field(
        default=None, converter=_optional_fractions, validator=interval(0.0, 1.0, open_lo=True, open_hi=True)
    )
    mask: str = attrs.field(default="random", validator=one_of(sampling.MASKS))
    seed: int = attrs.field(default=0, validator=integer(0, MAX_SEED))
    phase_encode_dims: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(integer(1, 2))
    )
    coils: int = attrs.field(default=1, validator=integer(1, 128))
    coil_maps: str | np.ndarray | None = attrs.field(default=None, converter=array_or_name)
    _maps: np.ndarray | None = attrs.field(init=False, repr=False)

    @_maps.default
    def _user_maps(self) -> np.ndarray | None:
        """The coil maps given as an array or a ``.npy`` file; None for simulated ones."""
        if isinstance(self.coil_maps, str):
            path = existing_file("coil_maps", self.coil_maps, "a .npy file or an array [coils, *spatial]")
            return coil_maps.checked_maps(read_array(path), f"coil_maps file {self.coil_maps!r}")
        return None if self.coil_maps is None else coil_maps.checked_maps(self.coil_maps, "coil_maps")

    def __attrs_post_init__(self) -> None:
        if not self.acceleration:
            raise ConfigError("acceleration needs at least one value")
        if self.center_fraction is not None and len(self.center_fraction) != len(self.acceleration):
            raise ConfigError(
                f"center_fraction and acceleration are paired and need the same length, got "
                f"{list(self.center_fraction)} and {list(self.acceleration)}"
            )
        if self.mask == "equispaced" and not all(a.is_integer() for a in self.acceleration):
            raise ConfigError(
                f"mask='equispaced' samples every acceleration-th line: acceleration must be an integer, "
                f"got {list(self.acceleration)} (use mask='equispaced_fraction' for others)"
            )
        if self._maps is not None and self.coils not in (1, len(self._maps)):
            raise ConfigError(f"coils={self.coils} disagrees with the {len(self._maps)} coil_maps given")

    @property
    def center_fractions(self) -> tuple[float, ...]:
        """The centre fraction paired with each acceleration (fastMRI's defaults where none was given)."""
        if self.center_fraction is not None:
            return self.center_fraction
        return tuple(sampling.default_center_fraction(a) for a in self.acceleration)

    @property
    def multicoil(self) -> bool:
        return self._maps is not None or self.coils > 1

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        shape = check_image_shape(self, shape)
        spatial, dims = shape[2:], len(shape) - 2
        grid_dims = self._grid_dims(dims)
        if grid_dims > dims:
            raise ShapeError(
                f"phase_encode_dims={grid_dims} needs inputs with at least {grid_dims} spatial axes, "
                f"got shape {list(shape)}"
            )
        accepted = sampling.GRID_DIMS[self.mask]
        if grid_dims not in accepted:
            raise ShapeError(
                f"mask={self.mask!r} samples a {' or '.join(f'{d}D' for d in accepted)} phase-encode grid, but "
                f"{dims}D inputs of shape {list(shape)} give a {grid_dims}D grid: set phase_encode_dims="
                f"{accepted[0]}" + ("" if accepted[0] <= dims else " and use 3D volumes")
            )
        if self.mask == "equispaced_fraction":
            n = spatial[-1]
            for fraction, acceleration in zip(self.center_fractions, self.acceleration, strict=True):
                n_low, _ = sampling.centre_lines(n, fraction)
                if n_low * acceleration >= n:
                    raise ShapeError(
                        f"mask='equispaced_fraction': the {n_low} centre lines (center_fraction {fraction}) of "
                        f"{n} already reach 1/{acceleration:g} of the lines; lower center_fraction or acceleration"
                    )
        if not self.multicoil:
            return shape
        if shape[1] != 1:
            raise ShapeError(
                f"multi-coil k-space takes single-channel images [N, 1, *spatial], got {list(shape)}"
            )
        maps_spatial = tuple(spatial) if self._maps is None else self._maps.shape[1:]
        if maps_spatial != tuple(spatial):
            raise ShapeError(
                f"coil_maps cover spatial shape {list(maps_spatial)} but the input's is {list(spatial)} "
                f"(input shape {list(shape)})"
            )
        return (shape[0], self.coils if self._maps is None else len(self._maps), *spatial)

    def _grid_dims(self, dims: int) -> int:
        return self.phase_encode_dims if self.phase_encode_dims is not None else dims - 1

    def mask_array(self, spatial: Sequence[int]) -> np.ndarray:
        """The boolean sampling mask over the phase-encode grid (the last 1 or 2 axes of ``spatial``)."""
        grid = tuple(spatial)[-self._grid_dims(len(spatial)) :]
        return sampling.sampling_mask(self.mask, grid, self.center_fractions, self.acceleration, self.seed)

    def sampling_mask(self, shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
        """The boolean mask for inputs of ``shape`` ``[N, C, *spatial]``, as a tensor on ``device`` that
        broadcasts against the measurement (``[1, 1, *spatial]`` with size-1 readout axes)."""
        spatial = tuple(self.output_shape(shape)[2:])
        device = torch.device(device)

        def build() -> torch.Tensor:
            mask = self.mask_array(spatial)
            return torch.as_tensor(mask, device=device).reshape(
                1, 1, *(1,) * (len(spatial) - mask.ndim), *mask.shape
            )

        return self.cached(("mask", spatial, device), build)

    def sensitivity_maps(
        self, spatial: Sequence[int], device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        """The coil maps ``[1, coils, *spatial]`` as a complex tensor (multi-coil only)."""

        def build() -> torch.Tensor:
            maps = self._maps if self._maps is not None else coil_maps.birdcage(self.coils, spatial)
            return torch.as_tensor(maps, dtype=dtype, device=device)[None]

        return self.cached(("maps", tuple(spatial), device, dtype), build)

    def _check_measurement(self, y: torch.Tensor) -> tuple[int, ...]:
        if not y.is_complex():
            raise ShapeError(
                f"forward model {self.name!r} takes complex k-space measurements, got dtype {y.dtype}"
            )
        shape = check_image_shape(self, y.shape)
        image_shape = (shape[0], 1 if self.multicoil else shape[1], *shape[2:])
        if self.output_shape(image_shape) != shape:
            raise ShapeError(f"k-space of shape {list(shape)} does not match {self.coils} coils")
        return shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_real_image(self, x)
        spatial = x.shape[2:]
        image = x.to(x.dtype.to_complex())
        if self.multicoil:
            image = image * self.sensitivity_maps(spatial, x.device, image.dtype)
        return fft_centered(image, len(spatial)) * self.sampling_mask(x.shape, x.device)

    def measured(self, shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
        return self.sampling_mask(self._image_shape(shape), device)

    def estimate_sigma(self, y: torch.Tensor) -> torch.Tensor:
        """σ per real and imaginary part from the measured periphery of k-space (see
        :func:`brgm.core.noise_level.kspace_sigma`)."""
        return noise_level.kspace_sigma(y, self.measured(y.shape, y.device))

    def _image_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        return (shape[0], 1, *shape[2:]) if self.multicoil else tuple(shape)

    def _coil_images(self, y: torch.Tensor) -> torch.Tensor:
        """``F⁻¹(M·y)``: complex coil (or channel) images ``[N, coils, *spatial]``."""
        self._check_measurement(y)
        return ifft_centered(self.keep_measured(y), y.ndim - 2)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        images = self._coil_images(y)
        if self.multicoil:
            maps = self.sensitivity_maps(y.shape[2:], y.device, y.dtype)
            images = (maps.conj() * images).sum(dim=1, keepdim=True)
        return images.real

    def naive_inverse(self, y: torch.Tensor) -> torch.Tensor:
        images = self._coil_images(y)
        if self.multicoil:
            return images.abs().square().sum(dim=1, keepdim=True).sqrt()
        return images.abs()
