"""Stored recalibration of a sampler's standard deviation, per configuration (``brgm calibrate``).

A posterior std is honest when the central ``ℓ`` interval ``mean ± z_ℓ·std`` (``z_ℓ = Φ⁻¹((1 + ℓ)/2)``) covers
the truth on a share ``ℓ`` of the pixels. Split-conformal recalibration (Angelopoulos & Bates 2022, "A gentle
introduction to conformal prediction") fits one factor ``k_ℓ`` per level on pairs with a known truth: the
⌈(n + 1)·ℓ⌉-th smallest of the scores ``|mean − truth| / (z_ℓ·std)`` over the ``n`` foreground pixels
(:func:`brgm.core.diagnostics.foreground`) of every pair, so that ``mean ± z_ℓ·k_ℓ·std`` covers ``ℓ`` of them.
One factor per level, since errors need not be Gaussian in units of the std.

A :class:`Calibration` belongs to one configuration: its :func:`configuration_key` is the run's resolved
configuration without what does not change the posterior (seeds, batching, device, the loaded generator's
contract); :func:`find` picks the entry of a configuration. Their files: :mod:`brgm.core.io.calibrations`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch

from brgm.core.diagnostics import COVERAGE_LEVELS, foreground, level_name
from brgm.core.errors import ConfigError

#: the configuration groups a calibration is keyed by (execution, device and seeds do not change the posterior)
KEY_GROUPS = ("preset", "gen", "fwd", "like", "prior", "solver")
#: fields left out of every component of the key
UNKEYED = frozenset({"seed", "model"})


def configuration_key(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a resolved configuration (``Problem.config``) a calibration holds for: :data:`KEY_GROUPS`,
    every component without :data:`UNKEYED` fields, as JSON reads it back (tuples as lists)."""

    def strip(component: Any) -> Any:
        if isinstance(component, list):
            return [strip(c) for c in component]
        if isinstance(component, dict):
            return {k: v for k, v in component.items() if k not in UNKEYED}
        return component

    return json.loads(json.dumps({group: strip(config.get(group)) for group in KEY_GROUPS}))


def _z(level: float) -> float:
    return float(torch.special.ndtri(torch.tensor(0.5 + level / 2, dtype=torch.float64)))


def conformal_factor(scores: torch.Tensor, level: float) -> float:
    """The ⌈(n + 1)·level⌉-th smallest of ``n`` scores (the largest when that rank passes ``n``): the
    split-conformal factor for ``level`` in (0, 1), made larger by 10⁻¹² of itself so that the pixel at that
    rank is inside its interval despite rounding (``error ≤ z·k·std``)."""
    flat = scores.flatten().double().sort().values
    if flat.numel() == 0:
        raise ConfigError("a calibration needs at least one foreground pixel with a known truth")
    rank = min(flat.numel(), math.ceil((flat.numel() + 1) * level))
    return float(flat[rank - 1]) * (1 + 1e-12)


def scores(mean: torch.Tensor, std: torch.Tensor, truth: torch.Tensor, level: float) -> torch.Tensor:
    """``|mean − truth| / (z_level·std)`` per entry, 0 where the error is 0 and inf where only the std is 0."""
    error = (mean.double() - truth.double()).abs()
    scale = _z(level) * std.double()
    return torch.where(error == 0, 0.0, error / scale)


@attrs.frozen
class Calibration:
    """Factors on a sampler's std, one per interval level, fitted for one configuration.

    Attributes:
        factors: ``{"90": k₉₀, "50": k₅₀}``: the ``ℓ`` interval is ``mean ± z_ℓ·k_ℓ·std``; each > 0.
        key: the configuration it was fitted for (:func:`configuration_key`).
        pairs: how many images with a known truth it was fitted on.
        pixels: how many foreground pixels they had.
        fitted_on: what the pairs were, in words.
        source: the file it was read from (``""`` when not read from one); not part of the stored entry.
    """

    factors: dict[str, float]
    key: dict[str, Any]
    pairs: int
    pixels: int
    fitted_on: str = ""
    source: str = attrs.field(default="", eq=False)

    @property
    def std_factor(self) -> float:
        """The factor on the written (calibrated) std: the 90 % level's, so that ``mean ± 1.645·std`` is the
        calibrated 90 % interval."""
        return self.factors["90"]

    def entry(self) -> dict[str, Any]:
        """Its entry in a calibration file."""
        return {
            "key": self.key,
            "factors": self.factors,
            "pairs": self.pairs,
            "pixels": self.pixels,
            "fitted_on": self.fitted_on,
        }

    def describe(self) -> dict[str, Any]:
        """What ``config.json`` and ``metrics.json`` record of it: its entry without the key, and its file."""
        return {k: v for k, v in self.entry().items() if k != "key"} | {"file": self.source}


def fit(
    means: torch.Tensor,
    stds: torch.Tensor,
    truths: torch.Tensor,
    key: Mapping[str, Any],
    *,
    fitted_on: str = "",
    levels: Sequence[float] = COVERAGE_LEVELS,
) -> Calibration:
    """The split-conformal :class:`Calibration` of posterior means and stds ``[N, C, *spatial]`` against their
    truths (in [0, 1]), pooled over the foreground pixels of all ``N`` pairs."""
    if not means.shape == stds.shape == truths.shape:
        raise ConfigError(
            f"means {list(means.shape)}, stds {list(stds.shape)} and truths {list(truths.shape)} differ"
        )
    region = foreground(truths)
    factors = {
        level_name(level): conformal_factor(scores(means, stds, truths, level)[region], level)
        for level in levels
    }
    for name, k in factors.items():
        if not math.isfinite(k) or k <= 0:
            raise ConfigError(
                f"the {name} % factor came out {k}: the std is 0 on too many foreground pixels with an error "
                "(collapsed draws?); a calibration cannot fix that"
            )
    return Calibration(factors, dict(key), int(means.shape[0]), int(region.sum()), fitted_on)


def find(calibrations: Sequence[Calibration], config: Mapping[str, Any]) -> Calibration | None:
    """The calibration fitted for the configuration ``config`` (a resolved ``Problem.config``), or None."""
    key = configuration_key(config)
    return next((c for c in calibrations if c.key == key), None)
