"""Calibration files: JSON lists of :class:`~brgm.core.calibration.Calibration` entries (never code), read with
bounds (:func:`load`), written atomically (:func:`save`), and the one a run applies (:func:`choose`)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from brgm.core.calibration import Calibration, find
from brgm.core.errors import ConfigError
from brgm.core.io.files import write_json

#: a calibration file larger than this is refused unread
MAX_FILE_BYTES = 4 << 20


def _entry(raw: Any, where: str, source: str) -> Calibration:
    if not isinstance(raw, dict) or not {"key", "factors", "pairs", "pixels"} <= raw.keys():
        raise ConfigError(f"{where}: an entry needs key, factors, pairs and pixels")
    factors = raw["factors"]
    if not isinstance(factors, dict) or "90" not in factors:
        raise ConfigError(f"{where}: factors must map levels ('90', '50') to numbers")
    for name, k in factors.items():
        if not isinstance(k, (int, float)) or not math.isfinite(k) or k <= 0:
            raise ConfigError(f"{where}: factor {name!r} must be a finite number > 0, got {k!r:.40}")
    if not isinstance(raw["key"], dict):
        raise ConfigError(f"{where}: key must be a configuration mapping")
    return Calibration(
        {str(k): float(v) for k, v in factors.items()},
        raw["key"],
        int(raw["pairs"]),
        int(raw["pixels"]),
        str(raw.get("fitted_on", "")),
        source,
    )


def load(path: str | Path) -> list[Calibration]:
    """The calibrations of a file written by :func:`save`, or a :class:`ConfigError` naming what is wrong (a
    file over :data:`MAX_FILE_BYTES` is refused unread)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"calibration file {path}: {size} bytes, more than {MAX_FILE_BYTES}")
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"calibration file {path} cannot be read: {err}") from None
    if not isinstance(raw, list):
        raise ConfigError(f"calibration file {path}: expected a list of calibrations")
    return [_entry(item, f"{path} entry {i}", str(path)) for i, item in enumerate(raw)]


def save(path: str | Path, calibration: Calibration) -> None:
    """Add ``calibration`` to the file at ``path`` (created), replacing an entry of the same key; atomic."""
    path = Path(path)
    kept = [c for c in (load(path) if path.exists() else []) if c.key != calibration.key]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, [c.entry() for c in [*kept, calibration]])


#: the ``--calibration`` choices besides a file
CHOICES = ("auto", "none")


def choose(
    choice: str | Path, shipped: Path | None, config: Mapping[str, Any], *, samples: bool = True
) -> tuple[Calibration | None, str]:
    """The calibration a run applies, and a note saying which (or why none) for the log and ``metrics.json``.

    Args:
        choice: ``"auto"`` (the one ``shipped`` holds for ``config``, if any), ``"none"`` (the raw std), or a
            calibration file, which must hold one for ``config`` (else a :class:`ConfigError`).
        shipped: the generator's own calibration file (``GeneratorSource.calibration_file()``), or None.
        config: the run's resolved configuration (``Problem.config``).
        samples: whether the solver samples the posterior; a MAP solve has no std to calibrate (None, "").
    """
    if not samples:
        if str(choice) not in CHOICES:
            raise ConfigError(f"--calibration {choice}: the solver gives no std to calibrate; use a sampler")
        return None, ""
    if str(choice) == "none":
        return None, "calibration=none: the std written is the sampler's own (uncalibrated)"
    path = shipped if str(choice) == "auto" else Path(choice)
    found = None if path is None else find(load(path), config)
    if found is not None:
        factors = ", ".join(f"k{name} = {k:.3g}" for name, k in found.factors.items())
        return (
            found,
            f"std calibrated with {path} ({factors}; fitted on {found.fitted_on or 'unstated pairs'})",
        )
    if str(choice) != "auto":
        raise ConfigError(
            f"calibration file {path} holds no calibration for this configuration (gen, fwd, like, prior and "
            "solver settings must all match; fit one with brgm calibrate)"
        )
    return None, (
        "no calibration fitted for this configuration: the std written is the sampler's own, uncalibrated "
        "(fit one with brgm calibrate, then pass --calibration FILE)"
    )
