"""The checkpoint contracts: a :class:`CheckpointReader` recognises a kind of generator file by its first bytes and
reads it into a :class:`Checkpoint`. Readers are registered through the ``register_checkpoint_readers`` hook (brgm's
own in :mod:`brgm.plugins.generators.checkpoints`); the kernel hands every registered one, in registration order,
to the generator source that loads a file (:meth:`~brgm.core.generator.GeneratorSource.load`).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

import attrs
import torch

#: how many of a file's first bytes a reader's ``recognises`` is shown
HEAD_BYTES = 64


@attrs.frozen(kw_only=True)
class Checkpoint:
    """A generator checkpoint in brgm's terms.

    Attributes:
        source: the file it was read from.
        format: ``"nvidia"``, ``"tensorflow"``, ``"rosinality"``, ``"brgm"`` or ``"state_dict"`` (or a plugin
            reader's own).
        architecture: a key of :data:`~brgm.plugins.generators.checkpoints.ARCHITECTURES`.
        init_kwargs: the network's constructor keyword arguments (JSON values).
        state_dict: the network's tensors by NVIDIA key name.
    """

    source: str
    format: str
    architecture: str
    init_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]


@attrs.frozen(kw_only=True)
class CheckpointReader(abc.ABC):
    """A kind of generator checkpoint file: how to recognise it from its first bytes and read it.

    Attributes:
        name: the registry name.
        description: what it reads, one line (``brgm plugins``, and the list of what brgm reads in messages).
    """

    name: str
    description: str

    @abc.abstractmethod
    def recognises(self, path: Path, head: bytes) -> bool:
        """Whether ``path``, whose first :data:`HEAD_BYTES` bytes (fewer in a short file) are ``head``, is
        this reader's to read."""

    @abc.abstractmethod
    def read(self, path: Path) -> Checkpoint:
        """The checkpoint in ``path``; a :class:`~brgm.core.errors.CheckpointError` when it cannot be read
        (nothing in the file may be executed)."""
