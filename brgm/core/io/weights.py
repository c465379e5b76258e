"""Published weight files: where brgm looks for them, checking them, and fetching them when asked.

A generator source with published weights sets a ClassVar ``weights_file`` (a :class:`WeightsFile`). Its file is
looked up in this order:

1. an explicit path (the source's ``weights=PATH``);
2. ``$BRGM_HOME/weights/FILE``, where ``$BRGM_HOME`` defaults to ``$XDG_CACHE_HOME/brgm`` (``~/.cache/brgm``).

Nothing downloads at run time: a missing file is a :class:`~brgm.core.errors.WeightsNotFoundError` that names the
file, the places searched and the command that gets it, ``brgm weights fetch NAME``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from brgm.core.errors import BrgmError, ConfigError, WeightsNotFoundError
from brgm.core.io.files import publish
from brgm.core.params import did_you_mean

#: called while downloading with (bytes received, total bytes or None when the server does not say)
Progress = Callable[[int, int | None], None]
CHUNK = 1 << 20
URL_SCHEMES = ("http", "https", "file")


class DownloadError(BrgmError):
    """A weight file that could not be fetched: an HTTP or network failure, or a size or checksum mismatch."""


@attrs.frozen(kw_only=True)
class WeightsFile:
    """A published weight file.

    Attributes:
        name: the generator source it belongs to (``brgm weights fetch NAME``).
        filename: the file's name on disk, e.g. ``"xray.pkl"``.
        url: where it is published, or None when it is not downloadable.
        size: its size in bytes, when known; checked after a download and by ``verify``.
        sha256: its SHA-256 hex digest, when known; checked likewise.
        description: one line for ``brgm weights list``.
    """

    name: str
    filename: str
    url: str | None = None
    size: int | None = None
    sha256: str | None = attrs.field(default=None, converter=attrs.converters.optional(str.lower))
    description: str = ""


@attrs.frozen
class Verification:
    """What :func:`verify` found: the file's size and SHA-256, and whether they match the published ones
    (None where nothing is published)."""

    path: Path
    size: int
    sha256: str
    size_ok: bool | None
    sha256_ok: bool | None

    @property
    def ok(self) -> bool:
        return self.size_ok is not False and self.sha256_ok is not False


def brgm_home() -> Path:
    """``$BRGM_HOME``, else ``$XDG_CACHE_HOME/brgm``, else ``~/.cache/brgm``."""
    if os.environ.get("BRGM_HOME"):
        return Path(os.environ["BRGM_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "brgm"


def default_path(spec: WeightsFile) -> Path:
    """Where ``brgm weights fetch`` puts ``spec`` and where it is looked up: ``$BRGM_HOME/weights/FILE``."""
    return brgm_home() / "weights" / spec.filename


def find_weights(spec: WeightsFile, explicit: str | os.PathLike[str] | None = None) -> Path:
    """The path of ``spec``'s file: ``explicit`` when given (it must exist), else :func:`default_path`."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"weights file {str(path)!r} given for {spec.name!r} does not exist")
        return path
    path = default_path(spec)
    if path.is_file():
        return path
    how = f"run `brgm weights fetch {spec.name}`" if spec.url else "copy it there"
    unpublished = (
        ""
        if spec.url
        else f"; it has no public URL: `brgm weights fetch {spec.name} --url URL` fetches a copy"
    )
    raise WeightsNotFoundError(
        f"weights file {spec.filename!r} for {spec.name!r} not found; looked in {path} "
        f"($BRGM_HOME/weights, $BRGM_HOME = {brgm_home()}); {how}, or pass weights=PATH{unpublished}"
    )


def registered_weights() -> dict[str, WeightsFile]:
    """The ``weights_file`` of every registered generator source that has one, by source name."""
    from brgm.core.plugins import registry

    reg = registry()
    found = (getattr(reg.get("generator", name).obj, "weights_file", None) for name in reg.names("generator"))
    return {spec.name: spec for spec in found if isinstance(spec, WeightsFile)}


def get_weights(name: str) -> WeightsFile:
    """The registered weight file ``name``; a ConfigError with a did-you-mean when unknown."""
    known = registered_weights()
    if name not in known:
        raise ConfigError(
            f"no published weights named {name!r}{did_you_mean(name, known)}; known: {', '.join(sorted(known)) or 'none'}"
        )
    return known[name]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(spec: WeightsFile, path: Path) -> Verification:
    """Size and SHA-256 of the file at ``path`` against what ``spec`` publishes."""
    size, digest = path.stat().st_size, sha256_of(path)
    return Verification(
        path=path,
        size=size,
        sha256=digest,
        size_ok=None if spec.size is None else size == spec.size,
        sha256_ok=None if spec.sha256 is None else digest == spec.sha256,
    )


def fetch(
    spec: WeightsFile,
    url: str | None = None,
    *,
    dest: Path | None = None,
    progress: Progress | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``spec`` from ``url`` (default: its published URL) to ``dest`` (default :func:`default_path`).

    The bytes go to a temporary file in the target directory and are moved into place with ``os.replace``
    only after the size and SHA-256 (where published) match; on any failure nothing is left behind."""
    url = url or spec.url
    if not url:
        raise DownloadError(
            f"{spec.name!r} has no published URL; pass --url URL or copy the file to {default_path(spec)}"
        )
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in URL_SCHEMES:
        raise DownloadError(f"cannot fetch {url!r}: the URL scheme must be one of {', '.join(URL_SCHEMES)}")
    dest = dest or default_path(spec)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            size, digest, announced = _download(url, out, progress, timeout)
        if announced is not None and size != announced:
            raise DownloadError(f"download of {url} stopped after {size} of {announced} bytes; try again")
        if spec.size is not None and size != spec.size:
            raise DownloadError(
                f"{url} sent {size} bytes, but {spec.filename} has {spec.size}; nothing was saved"
            )
        if spec.sha256 is not None and digest != spec.sha256:
            raise DownloadError(
                f"checksum mismatch for {spec.filename} from {url}: SHA-256 {digest}, expected {spec.sha256}; "
                "nothing was saved"
            )
        publish(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _download(url: str, out: Any, progress: Progress | None, timeout: float) -> tuple[int, str, int | None]:
    """Stream ``url`` into ``out``: (bytes written, their SHA-256, the announced Content-Length or None)."""
    digest = hashlib.sha256()
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            announced = int(length) if length and length.isdigit() else None
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if progress is not None:
                    progress(size, announced)
    except urllib.error.HTTPError as err:
        raise DownloadError(f"fetching {url} failed: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"fetching {url} failed: {reason}") from err
    return size, digest.hexdigest(), announced
