"""Exceptions raised by brgm. Each carries a message meant for the user, not a traceback reader."""

from __future__ import annotations


class BrgmError(Exception):
    """Base class of every error brgm raises on purpose."""


class ConfigError(BrgmError, ValueError):
    """A bad component name, key or value. The CLI turns it into exit status 2."""


class ShapeError(BrgmError, ValueError):
    """An input whose shape, dimensionality or dtype a component cannot accept."""


class PluginError(BrgmError):
    """A plugin that cannot be registered: a duplicate name or a hook that matches no spec."""


class WeightsNotFoundError(BrgmError, FileNotFoundError):
    """A weight file that is not where brgm looks for it."""


class CheckpointError(BrgmError, ValueError):
    """A checkpoint that cannot be read: unknown format, truncated, corrupted or unsafe."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that references code brgm will not run."""


class NonFiniteEnergyError(BrgmError, FloatingPointError):
    """The energy became NaN or infinite during a reconstruction."""


class ImageFileError(BrgmError, ValueError):
    """An image, volume or measurement file that cannot be read or written: missing, of an unknown format,
    corrupt, or of a layout brgm does not accept. The message names the file and what is accepted."""


class DivergenceWarning(UserWarning):
    """A reconstruction's energy ended far above where it started: the solver diverged (learning rate too high)."""


class CollapseWarning(UserWarning):
    """A sampler's posterior draws of an item are all the same image: its standard deviation says nothing."""
