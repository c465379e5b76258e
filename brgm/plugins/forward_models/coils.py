"""Coil sensitivity maps for multi-coil MRI: simulated birdcage maps, or maps read from a file."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brgm.core.errors import ConfigError

#: radius of the simulated coil ring, in units of the half field of view (the coils sit outside the image)
BIRDCAGE_RADIUS = 1.5


def birdcage(coils: int, spatial: Sequence[int]) -> np.ndarray:
    """Simulated maps ``[coils, *spatial]`` (complex128) of ``coils`` loops evenly spaced on a ring around the
    (H, W) plane of the image (at the middle slice of a volume): each map falls off as the inverse distance to
    its coil and turns in phase around it. The maps are normalised so that ``Σ_c |S_c|² = 1`` everywhere, hence
    the root-sum-of-squares of fully sampled coil images is the image itself."""
    axes = np.meshgrid(*[(np.arange(n) + 0.5 - n / 2) / (n / 2) for n in spatial], indexing="ij")
    rows, cols = axes[-2], axes[-1]
    depth2 = axes[0] ** 2 if len(spatial) == 3 else 0.0
    angles = 2.0 * np.pi * np.arange(coils) / coils
    maps = []
    for angle in angles:
        d_rows = rows - BIRDCAGE_RADIUS * np.sin(angle)
        d_cols = cols - BIRDCAGE_RADIUS * np.cos(angle)
        distance = np.sqrt(d_rows**2 + d_cols**2 + depth2)
        maps.append(np.exp(1j * (angle + np.arctan2(d_rows, d_cols))) / distance)
    maps = np.stack(maps)
    return maps / np.sqrt((np.abs(maps) ** 2).sum(axis=0, keepdims=True))


def checked_maps(maps: np.ndarray, what: str) -> np.ndarray:
    """User maps as complex128 ``[coils, *spatial]``; a :class:`ConfigError` for any other shape or non-finite
    values."""
    maps = np.asarray(maps)
    if maps.ndim not in (3, 4) or not np.issubdtype(maps.dtype, np.number):
        raise ConfigError(
            f"{what} must be a numeric array [coils, *spatial] with 2 or 3 spatial axes, got dtype {maps.dtype} "
            f"and shape {list(maps.shape)}"
        )
    maps = maps.astype(np.complex128)
    if not np.isfinite(maps).all():
        raise ConfigError(f"{what} holds non-finite values")
    return maps
