"""Atomic file placement shared by everything brgm writes in place (weights, checkpoints)."""

from __future__ import annotations

import os
from pathlib import Path


def publish(tmp: str | Path, dest: str | Path) -> None:
    """Move the finished temporary file ``tmp`` onto ``dest`` atomically (``os.replace`` in one directory),
    first giving it the permissions a newly created file gets under the process's umask (``mkstemp`` makes
    its files private, which would leave weights unreadable to other users)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, dest)
