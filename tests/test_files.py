"""Files brgm writes atomically get the ordinary permissions of a new file, not mkstemp's private ones."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from brgm.core.io.files import publish


def test_publish_moves_the_file_with_umask_permissions(tmp_path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=tmp_path)
    os.write(fd, b"weights")
    os.close(fd)
    old = os.umask(0o022)
    try:
        publish(tmp, tmp_path / "w.safetensors")
    finally:
        os.umask(old)
    dest = tmp_path / "w.safetensors"
    assert dest.read_bytes() == b"weights" and not Path(tmp).exists()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644
