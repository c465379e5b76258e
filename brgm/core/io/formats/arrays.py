"""brgm's own array files: ``.npy`` (NumPy, read without pickle) and ``.pt`` (one tensor, read with
:func:`~brgm.core.safe_torch.safe_torch_load`: ``torch.load(weights_only=True)`` after a bounded scan).

They hold channel-first data in brgm's units: real intensities in [0, 1] taken as they are, or complex k-space.
Layout by number of dimensions: 2 is ``(H, W)``, 3 is ``(C, H, W)``, 4 is ``(C, D, H, W)`` and 5 is
``(1, C, D, H, W)``; a single-channel volume is therefore ``(1, D, H, W)``, which is what :func:`write` produces.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import attrs
import numpy as np
import torch

from brgm.core.errors import ImageFileError
from brgm.core.io.formats import FileFormat
from brgm.core.io.formats.meta import AS_STORED, Meta
from brgm.core.safe_torch import safe_torch_load

LAYOUT = "(H, W), (C, H, W), (C, D, H, W) or (1, C, D, H, W)"


def _channels_first(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 2:
        return array[None]
    if array.ndim in (3, 4):
        return array
    if array.ndim == 5 and array.shape[0] == 1:
        return array[0]
    raise ImageFileError(f"{path}: an array of shape {list(array.shape)} is not an image; expected {LAYOUT}")


def read(path: Path, fmt: str) -> tuple[np.ndarray, Meta]:
    """``[C, *spatial]`` float32 intensities or complex64 k-space, and its :class:`Meta`."""
    try:
        if fmt == "npy":
            # memory-mapped first: a header that promises more data than the file holds fails here, before
            # anything is allocated
            array = np.array(np.load(path, mmap_mode="r", allow_pickle=False))
        else:
            tensor = safe_torch_load(path, error=ImageFileError)
            if not isinstance(tensor, torch.Tensor):
                raise ImageFileError(
                    f"{path}: expected one tensor in the .pt file, got a {type(tensor).__name__}"
                )
            array = tensor.detach().resolve_conj().numpy()
    except (ValueError, OSError, EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise ImageFileError(f"{path}: not a readable .{fmt} array ({err})") from None
    return decode(array, path, fmt)


def decode(array: np.ndarray, path: Path, fmt: str = "npy") -> tuple[np.ndarray, Meta]:
    """An array in brgm's layout (see the module docstring) as ``[C, *spatial]`` float32 intensities or complex64
    k-space, and its :class:`Meta` (``path`` names it in messages and outputs)."""
    if array.dtype.kind not in "biufc":
        raise ImageFileError(f"{path}: arrays of {array.dtype} are not images (numbers or complex expected)")
    if array.size == 0:
        raise ImageFileError(f"{path}: the array of shape {list(array.shape)} is empty")
    data = _channels_first(array, path)
    is_complex = data.dtype.kind == "c"
    meta = Meta(
        path=path,
        format=fmt,
        original_shape=tuple(array.shape),
        dtype=array.dtype.name,
        spatial_shape=tuple(data.shape[1:]),
        intensity=None if is_complex else AS_STORED,
    )
    return data.astype(np.complex64 if is_complex else np.float32), meta


def write(path: Path, x: np.ndarray, fmt: str) -> None:
    """Write ``x [C, *spatial]`` (intensities or complex k-space) as float32 or complex64."""
    data = x.astype(np.complex64 if np.iscomplexobj(x) else np.float32)
    try:
        if fmt == "npy":
            np.save(path, data, allow_pickle=False)
        else:
            torch.save(torch.from_numpy(np.ascontiguousarray(data)), path)
    except OSError as err:
        raise ImageFileError(f"{path}: cannot write the array ({err})") from None


@attrs.frozen(kw_only=True)
class ArrayFormat(FileFormat):
    """brgm's own array files; the name (``npy`` or ``pt``) is the ``fmt`` of :func:`read` and :func:`write`."""

    def read(self, path: Path, percentiles: tuple[float, float] | None) -> tuple[np.ndarray, Meta]:
        return read(path, self.name)

    def write(self, path: Path, x: np.ndarray, meta: Meta) -> None:
        write(path, x, self.name)


FORMATS = (
    ArrayFormat(
        name="npy",
        label=".npy",
        description="NumPy arrays (.npy) in brgm's units: intensities or complex k-space",
        suffixes=(".npy",),
        complex_data=True,
    ),
    ArrayFormat(
        name="pt",
        label=".pt",
        description="one torch tensor (.pt) in brgm's units: intensities or complex k-space",
        suffixes=(".pt",),
        complex_data=True,
    ),
)
