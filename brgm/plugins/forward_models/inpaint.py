"""Inpainting: pixels outside an observed region are replaced by a fill value."""

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
from brgm.core.params import interval, to_tuple
from brgm.plugins.forward_models import regions
from brgm.plugins.forward_models.cache import TensorCache
from brgm.plugins.forward_models.files import IMAGE_SUFFIXES, read_array
from brgm.plugins.forward_models.params import MAX_SEED, array_or_name, existing_file, integer

GENERATED = (*regions.HALVES, "box", "strokes", "pixels")
_ACCEPTED = f"one of {', '.join(map(repr, GENERATED))}, a mask image or .npy file, or an array"


@forward_model
class Inpaint(TensorCache, LinearForwardModel):
    """Inpainting: missing pixels (a half, boxes, brush strokes, random pixels or a mask file) set to fill.

    ``y = m ⊙ x + (1 − m)·fill`` on ``x [N, C, *spatial]``, with one mask ``m [*spatial]`` shared by every
    image and channel (True = observed). ``missing`` selects it:

    - ``left``, ``right``, ``top``, ``bottom``: that half of the image (H, W axes; volumes too);
    - ``box``: the boxes in ``box`` (``2·dims`` fractions per box: low corner then high corner);
    - ``strokes``: ``strokes`` random brush strokes ``width`` (fraction of the smallest side) wide, from ``seed``;
    - ``pixels``: exactly ``round(fraction·size)`` random pixels, from ``seed``;
    - a mask file or array: BRGM's rule, black (the minimum of the first channel) = missing; a boolean array is
      used as is. Its shape must equal the input's spatial shape.

    With ``fill = 0`` (default) the operator is linear and self-adjoint (``Aᴴ = A``); BRGM filled with a
    constant (1.0 in its own range), which makes it affine: :meth:`adjoint` is then the adjoint of the linear
    part ``m ⊙ ·``, the transposed Jacobian that gradients use. The naive inverse is the observed pixels with
    ``fill`` elsewhere; :meth:`observed` gives the mask, e.g. to merge a reconstruction with the observation.
    """

    name: ClassVar[str] = "mask"

    missing: str | np.ndarray = attrs.field(default="right", converter=array_or_name)
    box: tuple[float, ...] = attrs.field(
        default=(0.25, 0.25, 0.75, 0.75), converter=to_tuple(float), validator=interval(0.0, 1.0)
    )
    strokes: int = attrs.field(default=4, validator=integer(1, 1000))
    width: float = attrs.field(default=0.1, converter=float, validator=interval(0.0, 1.0, open_lo=True))
    fraction: float = attrs.field(default=0.5, converter=float, validator=interval(0.0, 1.0))
    seed: int = attrs.field(default=0, validator=integer(0, MAX_SEED))
    fill: float = attrs.field(default=0.0, converter=float, validator=interval())
    _given: np.ndarray | None = attrs.field(init=False, repr=False)

    @_given.default
    def _user_mask(self) -> np.ndarray | None:
        """The mask given as an array or a file; None for a generated one."""
        if isinstance(self.missing, np.ndarray):
            return regions.from_array(self.missing, "missing")
        if not isinstance(self.missing, str):
            raise ConfigError(f"missing must be {_ACCEPTED}, got {type(self.missing).__name__}")
        if self.missing in GENERATED:
            return None
        path = existing_file("missing", self.missing, _ACCEPTED)
        array = read_array(path, channels=True)
        if path.suffix.lower() in IMAGE_SUFFIXES and array.ndim == 3:
            array = array[..., 0]
        return regions.from_array(array, f"mask file {self.missing!r}")

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        shape = check_image_shape(self, shape)
        spatial, dims = shape[2:], len(shape) - 2
        if self._given is not None and self._given.shape != spatial:
            raise ShapeError(
                f"the mask has shape {list(self._given.shape)} but the input's spatial shape is {list(spatial)} "
                f"(input shape {list(shape)})"
            )
        if self._given is None and self.missing == "box":
            per_box = 2 * dims
            if len(self.box) % per_box:
                raise ShapeError(
                    f"box needs {per_box} numbers per box (low corner then high corner) for {dims}D inputs, "
                    f"got {len(self.box)}: {list(self.box)}"
                )
            for start in range(0, len(self.box), per_box):
                low, high = self.box[start : start + dims], self.box[start + dims : start + per_box]
                if any(lo >= hi for lo, hi in zip(low, high, strict=True)):
                    raise ShapeError(
                        f"box corners must satisfy low < high on every axis, got {list(self.box)}"
                    )
        return shape

    def mask_array(self, spatial: Sequence[int]) -> np.ndarray:
        """The boolean mask ``[*spatial]`` (True = observed) for inputs of that spatial shape."""
        spatial = tuple(spatial)
        if self._given is not None:
            return self._given
        if self.missing in regions.HALVES:
            return regions.half(spatial, self.missing)
        if self.missing == "box":
            return regions.boxes(spatial, self.box)
        if self.missing == "strokes":
            return regions.strokes(spatial, self.strokes, self.width, self.seed)
        return regions.pixels(spatial, self.fraction, self.seed)

    def observed(self, shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
        """The boolean mask for inputs of ``shape`` ``[N, C, *spatial]``, as ``[1, 1, *spatial]`` on ``device``
        (True = observed), ready to broadcast against images."""
        spatial = self.output_shape(shape)[2:]
        device = torch.device(device)

        def build() -> torch.Tensor:
            return torch.as_tensor(self.mask_array(spatial), device=device)[None, None]

        return self.cached((spatial, device), build)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_real_image(self, x)
        return torch.where(self.observed(x.shape, x.device), x, self.fill)

    def measured(self, shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
        return self.observed(shape, device)

    @property
    def unmeasured_value(self) -> float:  # type: ignore[override]
        return self.fill

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        check_real(self, y, "measurements")
        return torch.where(self.observed(y.shape, y.device), y, 0.0)

    def naive_inverse(self, y: torch.Tensor) -> torch.Tensor:
        check_real(self, y, "measurements")
        return self.keep_measured(y)
