"""Claims on the items of a run, so that any number of runs into one output directory share the work.

A run takes an item by creating ``records/KEY.claim`` atomically (the claim is written to a temporary file
and hard-linked into place, which fails when the claim exists: it is never seen half-written). It holds the
claimant's host, pid, start time and a token of its own, and is removed when the item's record is written.
While a run holds claims it touches them every quarter of the lease, so a claim's age is the time since its
holder was last heard of. A claim is taken over when its holder is gone (the same host and no such process)
or it is older than the lease (a holder on another machine that died, or hangs): it is renamed aside (one
rename succeeds), checked to be the claim that was judged, and replaced.

This works on any file system with atomic ``link`` and ``rename`` (local disks, NFS, Lustre, GPFS), between
shells, machines and Slurm jobs.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from brgm.core.errors import ConfigError

#: seconds without a touch after which a claim is taken over
LEASE = 600.0
SUFFIX = ".claim"


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
        while True:
            if self._create(key):
                return True
            holder = self.read(key)
            if holder is None and not self.path(key).exists():  # released since: try again
                continue
            if not self.expired(key, holder or {}):
                return False
            if self._take_over(key, holder or {}):
                return True

    def release(self, key: str) -> None:
        """Remove this process's claim on ``key`` (not one that was taken over from it since)."""
        with self._lock:
            token = self._held.pop(key, None)
        if token is not None and (self.read(key) or {}).get("token") == token:
            self.path(key).unlink(missing_ok=True)

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

    def _take_over(self, key: str, judged: dict[str, Any]) -> bool:
        """Move the expired claim ``judged`` aside and claim ``key``; False when another run was quicker."""
        aside = self.directory / f".{key}{SUFFIX}.expired.{uuid.uuid4().hex}"
        try:
            os.rename(self.path(key), aside)
        except FileNotFoundError:
            return self._create(key)
        try:
            moved = json.loads(aside.read_text())
        except (OSError, ValueError):
            moved = {}
        if moved != judged and moved.get("token") is not None:  # a fresh claim, made after ours was judged
            with contextlib.suppress(FileExistsError):  # a third run claimed it meanwhile
                os.link(aside, self.path(key))
            aside.unlink()
            return False
        aside.unlink()
        return self._create(key)

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
