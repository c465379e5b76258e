"""Atomic file placement shared by everything brgm writes in place (weights, checkpoints, run outputs)."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def publish(tmp: str | Path, dest: str | Path) -> None:
    """Move the finished temporary file ``tmp`` onto ``dest`` atomically (``os.replace`` in one directory),
    first giving it the permissions a newly created file gets under the process's umask (``mkstemp`` makes
    its files private, which would leave weights unreadable to other users)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, dest)


@contextmanager
def atomic_path(dest: str | Path, *, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``dest`` to write to; it replaces ``dest`` (:func:`publish`) when the block
    ends normally and is removed when it raises, so ``dest`` is never seen half-written (a full disk, a
    crash). The temporary name ends with ``suffix`` for writers that pick the format from it."""
    dest = Path(dest)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=f".part{suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        publish(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def atomic_directory(dest: str | Path) -> Iterator[Path]:
    """Like :func:`atomic_path` for a directory of files (a DICOM series): a new directory beside ``dest`` that
    takes its place when the block ends normally (an earlier ``dest`` is removed) and is removed otherwise."""
    dest = Path(dest)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part"))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        old = dest.with_name(f"{tmp.name}.old")
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, so that it serialises as valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(dest: str | Path, value: Any) -> None:
    """Write ``value`` to ``dest`` atomically as indented, valid JSON (non-finite floats become null)."""
    text = json.dumps(json_safe(value), indent=2, allow_nan=False) + "\n"
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
