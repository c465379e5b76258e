"""Reading, loading and saving generator checkpoints; the format is told by the file's content, not its name.

=================  ==========================================================  ============================
format             content                                                     read with
=================  ==========================================================  ============================
``nvidia``         pickle of a dict with ``G_ema`` (stylegan2-ada-pytorch,      :mod:`.safe_pickle`
                   stylegan3)
``tensorflow``     pickle of a tuple ``(G, D, Gs)`` (TF StyleGAN2, BRGM)        :mod:`.safe_pickle`
``rosinality``     ``torch.save`` dict with ``g_ema`` (zip or legacy)           ``torch.load(weights_only=True)``
``brgm``           ``.safetensors`` with brgm's configuration                  safetensors
``tensorflow``     3D-StyleGAN's pickle ``(G, D, Gs)`` (3D components)          :mod:`.tf3d`
``state_dict``     a bare NVIDIA-layout 3D state dict (``.pt`` or               :mod:`.state_dict`
                   ``.safetensors``), as the PyTorch 3D ports save them
=================  ==========================================================  ============================

Every reader yields NVIDIA's constructor kwargs and state-dict keys, so one network class builds them all.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pickle
from pathlib import Path
from typing import Any

import attrs
import torch

from brgm.core.errors import CheckpointError, UnsafeCheckpointError, WeightsNotFoundError
from brgm.core.generator import Generator
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
ACCEPTED = (
    "NVIDIA network pickles (stylegan2-ada-pytorch, stylegan3), TensorFlow StyleGAN2 and 3D-StyleGAN pickles, "
    "rosinality stylegan2-pytorch .pt checkpoints, NVIDIA-layout 3D state dicts and brgm .safetensors"
)
PathLike = str | os.PathLike[str]


@attrs.frozen(kw_only=True)
class Checkpoint:
    """A generator checkpoint in brgm's terms.

    Attributes:
        source: the file it was read from.
        format: ``"nvidia"``, ``"tensorflow"``, ``"rosinality"``, ``"brgm"`` or ``"state_dict"``.
        architecture: a key of :data:`ARCHITECTURES`.
        init_kwargs: the network's constructor keyword arguments (JSON values).
        state_dict: the network's tensors by NVIDIA key name.
    """

    source: str
    format: str
    architecture: str
    init_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]


def sniff(path: Path) -> str:
    """``"safetensors"``, ``"torch-zip"`` or ``"pickle"`` from the first bytes of ``path``."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise CheckpointError(f"{path}: the file is empty")
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size:
        return "safetensors"
    raise CheckpointError(
        f"{path}: not a checkpoint brgm knows (it starts with {head[:8]!r}); brgm reads {ACCEPTED}"
    )


def read_checkpoint(path: PathLike) -> Checkpoint:
    """The configuration and tensors of the generator in ``path`` (any format in the table above)."""
    path = Path(path)
    if not path.exists():
        raise WeightsNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file; brgm reads {ACCEPTED}")
    kind = sniff(path)
    if kind == "safetensors":
        obj = read_safetensors(path) if is_bare_safetensors(path) else None
        if not is_state_dict(obj):
            architecture, init_kwargs, state_dict = read_native(path)
            return Checkpoint(
                source=str(path),
                format="brgm",
                architecture=architecture,
                init_kwargs=init_kwargs,
                state_dict=state_dict,
            )
    elif kind == "torch-zip":
        obj = _torch_load(path)
    else:
        with open(path, "rb") as f:
            obj = safe_load(f, str(path))
        if isinstance(obj, int) and obj == TORCH_LEGACY_MAGIC:
            obj = _torch_load(path)
    for fmt, matches, convert in (
        ("nvidia", is_nvidia_pickle, convert_nvidia),
        ("tensorflow", is_tf3d_pickle, convert_tf3d),
        ("tensorflow", is_tf_pickle, convert_tf),
        ("rosinality", is_rosinality, convert_rosinality),
        ("state_dict", is_state_dict, convert_state_dict),
    ):
        if matches(obj):
            init_kwargs, state_dict = convert(obj, str(path))
            return Checkpoint(
                source=str(path),
                format=fmt,
                architecture="stylegan2",
                init_kwargs=init_kwargs,
                state_dict=state_dict,
            )
    held = (
        f"a dict with keys {sorted(map(str, obj))[:8]}"
        if isinstance(obj, dict)
        else f"a {type(obj).__name__}"
    )
    raise CheckpointError(f"{path}: holds {held}, not a generator; brgm reads {ACCEPTED}")


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``; rosinality's ``args`` (an argparse.Namespace) is allowed as data."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
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
    """The network of ``checkpoint`` with its tensors loaded, on the CPU, in eval mode, gradients off."""
    G = network_class(checkpoint.architecture)(**checkpoint.init_kwargs)
    state = dict(checkpoint.state_dict)
    estimate_w_avg = "mapping.w_avg" in G.state_dict() and "mapping.w_avg" not in state
    if estimate_w_avg:
        state["mapping.w_avg"] = G.state_dict()["mapping.w_avg"]
    try:
        G.load_state_dict(state, strict=True)
    except RuntimeError as err:
        detail = " ".join(str(err).split())
        raise CheckpointError(
            f"{checkpoint.source}: the {checkpoint.format} checkpoint does not fit its network ({detail})"
        ) from err
    if estimate_w_avg:  # rosinality training checkpoints keep no latent_avg
        G.load_state_dict({"mapping.w_avg": G.w_stats()[0]}, strict=False)
    return G.eval().requires_grad_(False)


def load_checkpoint(path: PathLike) -> Generator:
    """The generator stored in ``path``, in any format :func:`read_checkpoint` reads."""
    return build_generator(read_checkpoint(path))


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
