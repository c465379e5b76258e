"""brgm's own checkpoint format: a ``.safetensors`` file whose metadata holds the generator's configuration.

The tensors are the generator's ``state_dict()`` (NVIDIA key names for StyleGAN2). The metadata key ``brgm``
holds JSON::

    {"format": "brgm-generator", "version": 1, "architecture": "stylegan2",
     "init_kwargs": {...}, "brgm_version": "0.1.0"}

``architecture`` names the network class (see :data:`~.checkpoint.ARCHITECTURES`) and ``init_kwargs`` are its
constructor's keyword arguments as JSON values, so a 3D generator's configuration fits unchanged. Reading needs
no code from the file: safetensors holds raw tensors and JSON only.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from brgm import __version__
from brgm.core.errors import CheckpointError
from brgm.core.io.files import publish
from brgm.plugins.generators.checkpoints.limits import brief, brief_error

FORMAT = "brgm-generator"
VERSION = 1
METADATA_KEY = "brgm"


def write_native(
    path: Path, architecture: str, init_kwargs: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]
) -> None:
    """Write atomically: a temporary file next to ``path``, then ``os.replace``."""
    config = {
        "format": FORMAT,
        "version": VERSION,
        "architecture": architecture,
        "init_kwargs": dict(init_kwargs),
        "brgm_version": __version__,
    }
    try:
        metadata = {METADATA_KEY: json.dumps(config)}
    except TypeError as err:
        raise CheckpointError(f"the generator's init kwargs are not JSON values: {err}") from err
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        publish(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def read_native(path: Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """``(architecture, init_kwargs, state_dict)`` of a file :func:`write_native` wrote."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118  (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: the safetensors file is truncated or corrupted ({err})") from err
    if METADATA_KEY not in metadata:
        raise CheckpointError(
            f"{path}: a safetensors file without brgm's generator configuration (metadata key "
            f"'{METADATA_KEY}'); brgm reads safetensors written by save_generator"
        )
    try:
        config = json.loads(metadata[METADATA_KEY])
    except (ValueError, RecursionError) as err:  # JSONDecodeError, too long an integer, too deep a nesting
        raise CheckpointError(
            f"{path}: the '{METADATA_KEY}' metadata is not valid JSON ({brief_error(err)})"
        ) from err
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: the '{METADATA_KEY}' metadata is not a {FORMAT} configuration")
    if not isinstance(config.get("version"), int) or config["version"] > VERSION:
        raise CheckpointError(
            f"{path}: {FORMAT} version {brief(config.get('version'))}; this brgm reads versions up to {VERSION}"
        )
    architecture, init_kwargs = config.get("architecture"), config.get("init_kwargs")
    if not isinstance(architecture, str) or not isinstance(init_kwargs, dict):
        raise CheckpointError(f"{path}: the configuration lacks 'architecture' or 'init_kwargs'")
    return architecture, init_kwargs, state
