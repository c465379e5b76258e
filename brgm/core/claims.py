"""Claims on the items of a run, so that any number of runs into one output directory share the work.

A run takes an item by creating ``records/KEY.claim`` atomically (the claim is written to a temporary file
and hard-linked into place, which fails when the claim exists: it is never seen half-written). It holds the
claimant's host, pid, start time and a token of its own, and is removed when the item's record is written.
While a run holds claims it touches them every quarter of the lease, so a claim's age is the time since its
holder was last heard of. A claim is taken over when its holder is gone (the same host and no such process)
or it is older than the lease (a holder on another machine that died, or hangs). Claims are removed (released
or taken over) only under an exclusive lock on ``records/.claims.lock``, after the claim is read again, so that
of several runs taking over one claim exactly one gets it.

This works on any file system with atomic ``link`` and working ``flock`` (local disks; NFS, Lustre and GPFS
with locking enabled), between shells, machines and Slurm jobs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from brgm.core.errors import ConfigError

#: seconds without a touch after which a claim is taken over
LEASE = 600.0
SUFFIX = ".claim"
#: the lock file under which claims are removed (released or taken over)
LOCK = ".claims.lock"


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` for the block (released by the system if the process dies)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class Claims:
    """The claims in ``directory``: those this process holds, and what it can say of the others'.

    Use it as a context manager: it keeps the held claims fresh in a thread and releases them at the end."""

    def __init__(self, directory: Path, lease: float = LEASE) -> None:
        if not lease > 0 or lease == float("inf"):
            raise ConfigError(f"lease must be a positive number of seconds, got {lease}")
        self.directory = directory
        self.lease = lease
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._held: dict[str, str] = {}  # key -> token
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def path(self, key: str) -> Path:
        return self.directory / f"{key}{SUFFIX}"

    def take(self, key: str) -> bool:
        """Claim ``key``: True when this process now holds it (made anew, or taken over from a holder that is
        gone or past its lease), False when another live holder has it."""
        if self._create(key):
            return True
        with locked(self.directory / LOCK):  # one run at a time removes a claim
            if self.path(key).exists() and not self.expired(key, self.read(key) or {}):
                return False
            self.path(key).unlink(missing_ok=True)
            return self._create(key)

    def release(self, key: str) -> None:
        """Remove this process's claim on ``key`` (not one that was taken over from it since)."""
        with self._lock:
            token = self._held.pop(key, None)
        if token is None:
            return
        with locked(self.directory / LOCK):
            if (self.read(key) or {}).get("token") == token:
                self.path(key).unlink()

    def read(self, key: str) -> dict[str, Any] | None:
        """The claim on ``key`` (host, pid, started_at, token), or None when there is none or it is unreadable."""
        try:
            claim = json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None
        return claim if isinstance(claim, dict) else None

    def expired(self, key: str, claim: dict[str, Any]) -> bool:
        """Whether ``claim`` (as read from ``key``'s claim file) may be taken over."""
        if claim.get("host") == self.host and isinstance(claim.get("pid"), int) and not _alive(claim["pid"]):
            return True
        try:
            age = time.time() - self.path(key).stat().st_mtime
        except FileNotFoundError:
            return True
        return age > self.lease

    def on_disk(self) -> list[str]:
        """The keys that have a claim file."""
        return sorted(p.name.removesuffix(SUFFIX) for p in self.directory.glob(f"*{SUFFIX}"))

    def live(self, keys: Iterable[str]) -> set[str]:
        """The ``keys`` with a claim that is held (by this process or a live other, within its lease)."""
        found = set()
        for key in keys:
            claim = self.read(key)
            if key in self._held or (claim is not None and not self.expired(key, claim)):
                found.add(key)
        return found

    def _create(self, key: str) -> bool:
        token = uuid.uuid4().hex
        claim = {"host": self.host, "pid": self.pid, "started_at": time.time(), "token": token}
        tmp = self.directory / f".{key}{SUFFIX}.{token}"
        tmp.write_text(json.dumps(claim))
        try:
            os.link(tmp, self.path(key))
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        with self._lock:
            self._held[key] = token
        return True

    def _touch(self) -> None:
        while not self._stop.wait(self.lease / 4):
            with self._lock:
                held = list(self._held)
            for key in held:
                with contextlib.suppress(FileNotFoundError):
                    os.utime(self.path(key))

    def __enter__(self) -> Claims:
        self._thread = threading.Thread(target=self._touch, name="brgm-claims", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for key in list(self._held):
            self.release(key)
