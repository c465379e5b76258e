"""What an item was computed from, as the fingerprint its record carries
(:meth:`brgm.core.items.Source.fingerprint`): a fast hash (BLAKE2b, 128 bits) of the input's content and of its
truth's.

The content hashed is the file's bytes, with two exceptions:

- a gzip-compressed file (``.nii.gz``, any ``.gz``) is hashed decompressed, since compressing the same data
  again changes the bytes (gzip's header holds a time stamp) without changing what is read;
- a DICOM series directory is hashed file by file (name and bytes of each of its files, sorted by name).

Headers are content: DICOM and NIfTI outputs are written with their input's header, so a scan that is
re-anonymised (new header, same pixels) is redone and its outputs carry the new header. An in-memory array is
hashed by its dtype, shape and values.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

CHUNK = 1 << 20


def _new() -> Any:
    return hashlib.blake2b(digest_size=16)


def _feed(digest: Any, stream: BinaryIO) -> None:
    while chunk := stream.read(CHUNK):
        digest.update(chunk)


def _feed_file(digest: Any, path: Path) -> None:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as stream:
        _feed(digest, stream)


def path_hash(path: Path) -> str:
    """The content hash of a file or of a DICOM series directory (see the module docstring). Raises
    :class:`OSError` (or gzip's errors) when it cannot be read."""
    digest = _new()
    if path.is_dir():
        for file in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
            digest.update(file.name.encode() + b"\0")
            _feed_file(digest, file)
            digest.update(b"\0")
    else:
        _feed_file(digest, path)
    return digest.hexdigest()


def array_hash(array: np.ndarray | torch.Tensor) -> str:
    """The content hash of an in-memory array: its dtype, shape and values."""
    values = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    values = np.ascontiguousarray(values)
    digest = _new()
    digest.update(f"{values.dtype.str}{values.shape}".encode())
    digest.update(values.tobytes())
    return digest.hexdigest()


def content_hash(path: Path) -> str | None:
    """:func:`path_hash`, or None for a file that cannot be read (its item then fails when it is read)."""
    try:
        return path_hash(path)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None


def recheck(recorded: Any, paths: Any) -> dict[str, str | None]:
    """A record's fingerprint as its files (``paths``, from :func:`locations`) are now: a part whose file is
    gone or unreadable becomes None; a part without a path (an array) stays as recorded."""
    current = dict(recorded) if isinstance(recorded, dict) else {"input": None, "truth": None}
    for part, path in (paths if isinstance(paths, dict) else {}).items():
        if path is not None:
            current[part] = content_hash(Path(path))
    return current


def changes(recorded: Any, current: dict[str, str | None]) -> list[str]:
    """What differs between a record's fingerprint and ``current``: ``input`` and/or ``truth`` (both for a
    record without one, made by an older brgm)."""
    if not isinstance(recorded, dict):
        return list(current)
    return [part for part, value in current.items() if recorded.get(part) != value]
