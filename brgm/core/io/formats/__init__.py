"""The file formats :mod:`brgm.core.io` reads and writes: :class:`FileFormat` components, registered through the
``register_formats`` hook. brgm's own (:mod:`.builtin`) come one module per family: ``raster`` (PNG, JPEG, TIFF),
``dicom`` (a file or a series directory), ``nifti`` and ``arrays`` (``.npy``, ``.pt``).

Each reader returns the data channel-first as a NumPy array ``[C, *spatial]`` (intensities in [0, 1], or complex
k-space) with its :class:`~brgm.core.io.formats.meta.Meta`; each writer takes the same and writes it back in the
file's units. Use them through :func:`brgm.core.io.load` and :func:`brgm.core.io.save`.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from brgm.core.io.formats.meta import Meta


def _suffixes(value: Any) -> tuple[str, ...]:
    return tuple(str(suffix).lower() for suffix in value)


def _dotted(_instance: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    bad = [suffix for suffix in value if not suffix.startswith(".") or len(suffix) < 2]
    if bad:
        raise ValueError(f"{attribute.name} must be suffixes like '.png', got {bad!r}")


@attrs.frozen(kw_only=True)
class FileFormat(abc.ABC):
    """A file format: the suffixes that select it and how to read and write it.

    Attributes:
        name: the registry name, also :attr:`Meta.format <brgm.core.io.formats.meta.Meta.format>` of what it
            reads (``png``, ``nifti``, ...).
        label: how messages name it in the list of what brgm reads (``NIfTI (.nii, .nii.gz)``); formats with
            the same label are listed once.
        description: one line for ``brgm plugins``.
        suffixes: the lower-case suffixes it claims (``.nii``, ``.nii.gz``); none for a directory format that
            takes any directory (a DICOM series).
        output_suffix: the suffix of the outputs written in this format (default: the first suffix).
        directory: whether a file of this format is a directory (written into a temporary directory that takes
            the output's place).
        complex_data: whether it holds brgm's arrays as they are, complex k-space included; such formats are
            written without an input's intensity window or grid.
    """

    name: str
    label: str
    description: str
    suffixes: tuple[str, ...] = attrs.field(default=(), converter=_suffixes, validator=_dotted)
    output_suffix: str = attrs.field(
        default=attrs.Factory(lambda self: self.suffixes[0] if self.suffixes else "", takes_self=True)
    )
    directory: bool = False
    complex_data: bool = False

    @abc.abstractmethod
    def read(self, path: Path, percentiles: tuple[float, float] | None) -> tuple[np.ndarray, Meta]:
        """``[C, *spatial]`` float32 intensities in [0, 1] (or complex64 k-space) and the :class:`Meta` of the
        file or directory ``path``; ``percentiles`` ``(lo, hi)`` asks for a clipped percentile window where
        the format windows its data (None: its usual window). Raises :class:`~brgm.core.errors.ImageFileError`."""

    @abc.abstractmethod
    def write(self, path: Path, x: np.ndarray, meta: Meta) -> None:
        """Write ``x [C, *spatial]`` to ``path`` (a temporary file or new directory that then takes the output's
        place) in the units, type and geometry of ``meta``'s input. Raises
        :class:`~brgm.core.errors.ImageFileError`."""
