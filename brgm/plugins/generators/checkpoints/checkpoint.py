"""Reading, loading and saving generator checkpoints; the format is told by the file's content, not its name.

=================  ==========================================================  ============================
format             content                                                     read with
=================  ==========================================================  ============================
``nvidia``         pickle of a dict with ``G_ema`` (stylegan2-ada-pytorch,      :mod:`.safe_pickle`
                   stylegan3)
``tensorflow``     pickle of a tuple ``(G, D, Gs)`` (TF StyleGAN2, BRGM)        :mod:`.safe_pickle`
``rosinality``     ``torch.save`` dict with ``g_ema`` (zip or legacy)           :mod:`brgm.core.safe_torch`
``brgm``           ``.safetensors`` with brgm's configuration                  safetensors
``tensorflow``     3D-StyleGAN's pickle ``(G, D, Gs)`` (3D components)          :mod:`.tf3d`
``state_dict``     a bare NVIDIA-layout 3D state dict (``.pt`` or               :mod:`.state_dict`
                   ``.safetensors``), as the PyTorch 3D ports save them
=================  ==========================================================  ============================

The file's first bytes choose its reader (a :class:`~brgm.core.checkpoints.CheckpointReader`, registered through
the ``register_checkpoint_readers`` hook; brgm's own, one per container, are :data:`READERS`), among the readers
the caller gives (the kernel gives every registered one); the pickle and torch readers then tell the formats apart
by the objects inside. Every reader yields NVIDIA's constructor kwargs and
state-dict keys, so one network class builds them all.
Nothing is built from a checkpoint before its settings pass :mod:`.limits` and the network, built first on the
``meta`` device (no memory), has exactly the file's tensor names and shapes.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from brgm.core.checkpoints import HEAD_BYTES, Checkpoint, CheckpointReader
from brgm.core.errors import CheckpointError, ConfigError, UnsafeCheckpointError, WeightsNotFoundError
from brgm.core.generator import Generator
from brgm.core.safe_torch import safe_torch_load
from brgm.plugins.generators.checkpoints.limits import (
    MAX_ELEMENTS,
    brief_error,
    brief_keys,
    check_init_kwargs,
)
from brgm.plugins.generators.checkpoints.native import read_native, write_native
from brgm.plugins.generators.checkpoints.nvidia import convert_nvidia, is_nvidia_pickle
from brgm.plugins.generators.checkpoints.rosinality import convert_rosinality, is_rosinality
from brgm.plugins.generators.checkpoints.safe_pickle import TORCH_LEGACY_MAGIC, safe_load
from brgm.plugins.generators.checkpoints.state_dict import (
    convert_state_dict,
    is_bare_safetensors,
    is_state_dict,
    read_safetensors,
)
from brgm.plugins.generators.checkpoints.tensorflow import convert_tf, is_tf_pickle
from brgm.plugins.generators.checkpoints.tf3d import convert_tf3d, is_tf3d_pickle

#: architecture name in brgm's format -> "module:class" of the network built from its init kwargs
ARCHITECTURES: dict[str, str] = {
    "stylegan2": "brgm.plugins.generators.stylegan2:StyleGAN2Generator",
}
PathLike = str | os.PathLike[str]
#: (format, test, converter) of the readers of unpickled and torch-loaded objects, in the order they are tried
CONVERTERS = (
    ("nvidia", is_nvidia_pickle, convert_nvidia),
    ("tensorflow", is_tf3d_pickle, convert_tf3d),
    ("tensorflow", is_tf_pickle, convert_tf),
    ("rosinality", is_rosinality, convert_rosinality),
    ("state_dict", is_state_dict, convert_state_dict),
)


@attrs.frozen(kw_only=True)
class TorchZipReader(CheckpointReader):
    """``torch.save`` zip files, loaded weights-only and bounded."""

    def recognises(self, path: Path, head: bytes) -> bool:
        return head.startswith(b"PK\x03\x04")

    def read(self, path: Path) -> Checkpoint:
        return _convert(_torch_load(path), path)


@attrs.frozen(kw_only=True)
class PickleReader(CheckpointReader):
    """Pickles (protocols 2 to 5), read by the restricted unpickler; legacy ``torch.save`` files among them."""

    def recognises(self, path: Path, head: bytes) -> bool:
        return len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5

    def read(self, path: Path) -> Checkpoint:
        with open(path, "rb") as f:
            obj = safe_load(f, str(path))
        if isinstance(obj, int) and obj == TORCH_LEGACY_MAGIC:
            obj = _torch_load(path)
        return _convert(obj, path)


@attrs.frozen(kw_only=True)
class SafetensorsReader(CheckpointReader):
    """``.safetensors`` files: brgm's own format, or a bare NVIDIA-layout state dict."""

    def recognises(self, path: Path, head: bytes) -> bool:
        return (
            len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size
        )

    def read(self, path: Path) -> Checkpoint:
        obj = read_safetensors(path) if is_bare_safetensors(path) else None
        if is_state_dict(obj):
            return _convert(obj, path)
        architecture, init_kwargs, state_dict = read_native(path)
        return Checkpoint(
            source=str(path),
            format="brgm",
            architecture=architecture,
            init_kwargs=init_kwargs,
            state_dict=state_dict,
        )


#: brgm's own readers, in the order they are tried (registered by :mod:`brgm.plugins.generators`)
READERS = (
    TorchZipReader(
        name="torch-zip",
        description="torch.save zip files: rosinality stylegan2-pytorch .pt checkpoints, NVIDIA-layout 3D state "
        "dicts",
    ),
    PickleReader(
        name="pickle",
        description="network pickles: NVIDIA (stylegan2-ada-pytorch, stylegan3), TensorFlow StyleGAN2 and "
        "3D-StyleGAN; legacy torch.save files",
    ),
    SafetensorsReader(
        name="safetensors",
        description="safetensors files: brgm's own format, NVIDIA-layout 3D state dicts",
    ),
)


def _accepted(readers: Sequence[CheckpointReader]) -> str:
    return "; ".join(reader.description for reader in readers)


def read_checkpoint(path: PathLike, readers: Sequence[CheckpointReader] = READERS) -> Checkpoint:
    """The configuration and tensors of the generator in ``path``, read by the first of ``readers`` that
    recognises its first bytes (brgm's own by default: any format in the table above)."""
    path = Path(path)
    if not path.exists():
        raise WeightsNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file; brgm reads {_accepted(readers)}")
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    if not head:
        raise CheckpointError(f"{path}: the file is empty")
    for reader in readers:
        if reader.recognises(path, head):
            return reader.read(path)
    raise CheckpointError(
        f"{path}: not a checkpoint brgm knows (it starts with {head[:8]!r}); brgm reads {_accepted(readers)}"
    )


def _convert(obj: Any, path: Path) -> Checkpoint:
    """The checkpoint of an unpickled or torch-loaded ``obj`` (:data:`CONVERTERS`), or a CheckpointError."""
    try:
        for fmt, matches, convert in CONVERTERS:
            if matches(obj):
                init_kwargs, state_dict = convert(obj, str(path))
                return Checkpoint(
                    source=str(path),
                    format=fmt,
                    architecture="stylegan2",
                    init_kwargs=init_kwargs,
                    state_dict=state_dict,
                )
    except CheckpointError:
        raise
    except (
        TypeError,
        ValueError,
        KeyError,
        AttributeError,
        IndexError,
        ArithmeticError,
        RecursionError,
    ) as err:
        # the readers take the structure they expect; a file with other types in it ends here
        raise CheckpointError(
            f"{path}: a malformed checkpoint ({type(err).__name__}: {brief_error(err)})"
        ) from err
    held = (
        f"a dict with keys {brief_keys(obj, sort=True)}"
        if isinstance(obj, dict)
        else f"a {type(obj).__name__}"
    )
    raise CheckpointError(f"{path}: holds {held}, not a generator; brgm reads {_accepted(READERS)}")


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``, bounded (:func:`~brgm.core.safe_torch.safe_torch_load`); rosinality's
    ``args`` (an argparse.Namespace) is allowed as data."""
    try:
        return safe_torch_load(
            path,
            error=CheckpointError,
            unsafe=UnsafeCheckpointError,
            source=str(path),
            safe_globals=[argparse.Namespace],
        )
    except CheckpointError:
        raise
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        culprit = next((line for line in lines if "GLOBAL" in line), None)
        if culprit is not None:
            raise UnsafeCheckpointError(f"{path}: refused by torch's weights-only loader: {culprit}") from err
        detail = next(
            (line for line in lines[1:] if not line.startswith("Check the documentation")), lines[0]
        )
        raise CheckpointError(f"{path}: the torch file is corrupted ({detail})") from err
    except (RuntimeError, EOFError, ValueError, OSError, KeyError) as err:
        raise CheckpointError(f"{path}: the torch file is truncated or corrupted ({err})") from err


def network_class(architecture: str) -> type[Generator]:
    """The generator class registered for ``architecture`` in :data:`ARCHITECTURES`."""
    if architecture not in ARCHITECTURES:
        raise CheckpointError(
            f"unknown generator architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}"
        )
    module, _, name = ARCHITECTURES[architecture].partition(":")
    return getattr(importlib.import_module(module), name)


def build_generator(checkpoint: Checkpoint) -> Generator:
    """The network of ``checkpoint`` with its tensors loaded, on the CPU, in eval mode, gradients off.

    Its settings are checked against :mod:`.limits`, then the network is built on the ``meta`` device and its
    state-dict names and shapes compared with the checkpoint's tensors: only then is it allocated."""
    cls = network_class(checkpoint.architecture)
    check_init_kwargs(checkpoint.init_kwargs, checkpoint.source)
    with torch.device("meta"):
        expected = _construct(cls, checkpoint).state_dict()
    _check_fit(checkpoint, {key: tuple(t.shape) for key, t in expected.items()})
    G = _construct(cls, checkpoint)
    state = dict(checkpoint.state_dict)
    estimate_w_avg = "mapping.w_avg" in expected and "mapping.w_avg" not in state
    if estimate_w_avg:
        state["mapping.w_avg"] = G.state_dict()["mapping.w_avg"]
    try:
        G.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{_misfit(checkpoint)} ({brief_error(err)})") from err
    if estimate_w_avg:  # rosinality training checkpoints keep no latent_avg
        G.load_state_dict({"mapping.w_avg": G.w_stats()[0]}, strict=False)
    return G.eval().requires_grad_(False)


def _construct(cls: type[Generator], checkpoint: Checkpoint) -> Generator:
    try:
        return cls(**checkpoint.init_kwargs)
    except (ConfigError, TypeError, ValueError, ArithmeticError) as err:
        raise CheckpointError(
            f"{checkpoint.source}: the {checkpoint.format} checkpoint's configuration is invalid ({brief_error(err)})"
        ) from err


def _misfit(checkpoint: Checkpoint) -> str:
    return f"{checkpoint.source}: the {checkpoint.format} checkpoint does not fit its network"


def _fitting(shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """The tensor shapes ``load_state_dict`` puts into a parameter of ``shape`` (``[1]`` into a 0-d one)."""
    return (shape, (1,)) if shape == () else (shape,)


def _check_fit(checkpoint: Checkpoint, expected: dict[str, tuple[int, ...]]) -> None:
    """A CheckpointError unless the tensors have the names and shapes ``expected`` (``mapping.w_avg`` may be
    missing: it is then estimated) and the network holds at most :data:`~.limits.MAX_ELEMENTS` numbers."""
    numbers = sum(math.prod(shape) for shape in expected.values())
    if numbers > MAX_ELEMENTS:
        raise CheckpointError(
            f"{checkpoint.source}: the configured network has {numbers} numbers, over brgm's limit of {MAX_ELEMENTS}"
        )
    state = checkpoint.state_dict
    problems = [
        *(f"missing {key}" for key in expected if key not in state and key != "mapping.w_avg"),
        *(f"unexpected {key}" for key in state if key not in expected),
        *(
            f"{key} is {list(state[key].shape)}, not {list(expected[key])}"
            for key in expected
            if key in state and tuple(state[key].shape) not in _fitting(expected[key])
        ),
    ]
    if problems:
        raise CheckpointError(f"{_misfit(checkpoint)} ({'; '.join(brief_keys(problems, width=120))})")


def load_checkpoint(path: PathLike, readers: Sequence[CheckpointReader] = READERS) -> Generator:
    """The generator stored in ``path``, read by the first of ``readers`` that recognises it
    (:func:`read_checkpoint`)."""
    return build_generator(read_checkpoint(path, readers))


def save_generator(G: Generator, path: PathLike) -> Path:
    """Write ``G`` in brgm's format (``.safetensors`` with its configuration); loading it back is bit-exact."""
    for architecture in ARCHITECTURES:
        if type(G) is network_class(architecture):
            break
    else:
        raise CheckpointError(
            f"cannot save a {type(G).__name__}: known architectures are {', '.join(ARCHITECTURES)}"
        )
    path = Path(path)
    write_native(path, architecture, G.init_kwargs, G.state_dict())  # type: ignore[attr-defined]
    return path
