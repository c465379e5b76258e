"""The items of a run: each input with a stable identity (its key), read only when its turn comes.

A key names an item's output files and records and seeds its randomness, so it depends on the set of inputs
only, never on their order: an input's file stem, or, where stems collide (``d1/slice.png`` and
``d2/slice.png``; ``a.png`` and ``a.npy``), its path relative to the colliding inputs' common folder, suffix
included, with separators and dots replaced by ``_`` (``d1_slice_png``, ``a_png``, ``a_npy``).
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import attrs
import numpy as np
import torch

from brgm.core import io
from brgm.core.errors import ConfigError, ImageFileError
from brgm.core.io.fingerprints import array_hash, content_hash
from brgm.core.io.formats import arrays
from brgm.core.io.formats.meta import missing_to_background


@attrs.frozen(eq=False)
class Source:
    """One input: a file or DICOM series directory (``path``), or an in-memory ``array``; and its truth file."""

    key: str
    path: Path | None = None
    array: np.ndarray | torch.Tensor | None = None
    truth: Path | None = None

    @property
    def label(self) -> str:
        """How messages and records name the input."""
        return str(self.path) if self.path is not None else f"<array {self.key}>"

    def fingerprint(self) -> dict[str, str | None]:
        """What the item is computed from (:mod:`brgm.core.io.fingerprints`): ``{"input": hash, "truth": hash or
        None}`` (None: no truth, or a file that cannot be read)."""
        content = array_hash(self.array) if self.path is None else content_hash(self.path)
        return {"input": content, "truth": None if self.truth is None else content_hash(self.truth)}

    def locations(self) -> dict[str, str | None]:
        """Where the input and truth are read from (absolute paths; None for an array or no truth), so that a
        record can be checked against its files later (:func:`~brgm.core.io.fingerprints.recheck`)."""
        return {
            "input": None if self.path is None else str(self.path.resolve()),
            "truth": None if self.truth is None else str(self.truth.resolve()),
        }

    def load(self) -> io.Loaded:
        if self.path is not None:
            return io.load(self.path)
        array = (
            self.array.detach().cpu().numpy()
            if isinstance(self.array, torch.Tensor)
            else np.asarray(self.array)
        )
        data, meta = arrays.decode(array, Path(f"{self.key}.npy"))
        data = missing_to_background(data, meta.path)
        return io.Loaded(torch.from_numpy(np.ascontiguousarray(data))[None], meta)


def item_seed(run_seed: int, key: str) -> int:
    """The seed of item ``key`` in a run seeded ``run_seed`` (63 bits of a SHA-256): the same wherever the item
    sits in its batch or its run."""
    digest = hashlib.sha256(f"{run_seed}/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def collect(
    inputs: Sequence[str | Path] | Mapping[str, np.ndarray | torch.Tensor],
    *,
    truth: Path | None = None,
    exclude: Iterable[Path] = (),
) -> list[Source]:
    """The run's items, sorted by key: named arrays as they are, or the files of ``inputs`` (directories
    expanded, hidden files and the resolved paths in ``exclude`` skipped: a run's own outputs), with their truth
    file (``truth`` itself, or the file of ``truth``'s directory with the input's stem)."""
    if isinstance(inputs, Mapping):
        return [Source(key=str(key), array=value) for key, value in sorted(inputs.items())]
    skip = set(exclude)
    files = sorted({p for path in inputs for p in _expand(Path(path)) if p.resolve() not in skip})
    keys, truth_of = _keys(files), _truth_lookup(truth)
    return sorted((Source(key=keys[p], path=p, truth=truth_of(p)) for p in files), key=lambda s: s.key)


def _expand(path: Path) -> list[Path]:
    """``path``'s inputs: itself (a file, or a directory of ``.dcm`` slices), or a directory's image files."""
    if not path.exists():
        raise ImageFileError(f"{path}: no such file or directory")
    if not path.is_dir() or any(path.glob("*.dcm")):
        return [path]
    suffixes = io.input_suffixes()  # of the registered formats
    return [
        p
        for p in path.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(suffixes)
    ]


def _stem(path: Path) -> str:
    return io.split_suffix(path)[0].name


def _keys(files: list[Path]) -> dict[Path, str]:
    """Each file's key (see the module docstring), unique."""
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        by_stem[_stem(path)].append(path)
    keys: dict[Path, str] = {}
    for stem, paths in by_stem.items():
        if len(paths) == 1:
            keys[paths[0]] = stem
            continue
        root = Path(os.path.commonpath([p.resolve().parent for p in paths]))
        for path in paths:
            relative = path.resolve().relative_to(root)
            keys[path] = str(relative).replace(os.sep, "_").replace(".", "_")
    taken: set[str] = set()
    for path in files:  # a derived key may meet another input's stem: number the later one
        key, n = keys[path], 1
        while key in taken:
            n += 1
            key = f"{keys[path]}-{n}"
        keys[path] = key
        taken.add(key)
    return keys


def _truth_lookup(truth: Path | None) -> Callable[[Path], Path | None]:
    """The truth file of an input: ``truth`` itself (a file or DICOM series), or the file of directory ``truth``
    with the input's stem (None when it has none)."""
    if truth is None:
        return lambda _path: None
    if not truth.exists():
        raise ConfigError(f"--truth {truth}: no such file or directory")
    if truth.is_dir() and not any(truth.glob("*.dcm")):
        files = {_stem(p): p for p in sorted(truth.iterdir()) if p.is_file() and not p.name.startswith(".")}
        return lambda path: files.get(_stem(path))
    return lambda _path: truth
