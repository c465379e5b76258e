"""Bare NVIDIA-layout 3D state dicts: ``torch.save(G.state_dict())`` files and ``.safetensors`` without brgm's
configuration, as the PyTorch 3D StyleGAN2 ports keep NVIDIA's key names (research/stylegan.md §3.5).

The keys are ``synthesis.b{r}.*`` and ``mapping.fc{i}.*`` (:mod:`.layout`); the configuration is read off the
tensors' shapes:

- ``synthesis.b4.const [C, D, H, W]``: the base shape;
- the block resolutions ``b4 … b{img_resolution}``, each block's channels (``conv1.weight``), giving
  ``channel_base`` / ``channel_max``, and ``img_channels`` (the top ``torgb.weight``);
- the architecture: ``skip`` with a ToRGB in every block, ``resnet`` with ``skip`` layers, else ``orig``;
- the FIR (the 1D factor of ``resample_filter``; NVIDIA's [1, 3, 3, 1] when the buffers are absent), noise
  inputs (``noise_const``), and the mapping's depth, ``z_dim``, ``w_dim`` and hidden width.

What a state dict does not hold takes NVIDIA's defaults: mapping ``lr_multiplier`` 0.01, no ``conv_clamp``
(NVIDIA's training configs clamp at 256, which only fp16 activations reach), and an up-sampling FIR gain of 8
(``up**3``, as fedorukol/3d-stylegan2-ada; 3D-StyleGAN's TF networks use 4 and are read from their pickles).
2D state dicts are not read this way: 2D networks come as NVIDIA pickles, which hold their configuration.
Conditional networks (``mapping.embed``) are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from brgm.core.errors import CheckpointError
from brgm.plugins.generators.checkpoints.layout import (
    DEFAULT_FILTER,
    block_resolutions,
    channel_config,
    filter_keys,
)
from brgm.plugins.generators.checkpoints.native import METADATA_KEY
from brgm.plugins.generators.stylegan2.resample import filter_taps, setup_filter

CONST = "synthesis.b4.const"


def is_state_dict(obj: Any) -> bool:
    """A flat dict of tensors with NVIDIA's StyleGAN2 keys and a 3D constant ``[C, D, H, W]``."""
    return (
        isinstance(obj, Mapping)
        and isinstance(obj.get(CONST), torch.Tensor)
        and obj[CONST].ndim == 4
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def is_bare_safetensors(path: Path) -> bool:
    """A ``.safetensors`` file without brgm's generator configuration in its metadata."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return METADATA_KEY not in (f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: the safetensors file is truncated or corrupted ({err})") from err


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a ``.safetensors`` file, by name."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118  (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: the safetensors file is truncated or corrupted ({err})") from err


def _indices(keys: Any, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in keys if (m := re.fullmatch(pattern, k))})


def convert_state_dict(
    state: Mapping[str, torch.Tensor], source: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(init_kwargs, state_dict)`` of a bare NVIDIA-layout state dict (see the module docstring)."""
    if any(k.startswith("mapping.embed.") for k in state):
        raise CheckpointError(f"{source}: a conditional generator (mapping.embed); brgm reads c_dim = 0")
    base = list(state[CONST].shape[1:])
    resolutions = _indices(state, r"synthesis\.b(\d+)\..*")
    top = resolutions[-1]
    if resolutions != block_resolutions(top):
        raise CheckpointError(f"{source}: synthesis blocks b{resolutions} are not b4, b8, ..., b{top}")
    layers = _indices(state, r"mapping\.fc(\d+)\.weight")
    if not layers or layers != list(range(len(layers))):
        raise CheckpointError(f"{source}: mapping layers fc{layers} are not fc0, fc1, ...")
    missing = [
        key
        for key in (*(f"synthesis.b{r}.conv1.weight" for r in resolutions), f"synthesis.b{top}.torgb.weight")
        if key not in state
    ]
    if missing:
        raise CheckpointError(f"{source}: not a StyleGAN2 state dict; it lacks {', '.join(missing)}")
    channels = {r: state[f"synthesis.b{r}.conv1.weight"].shape[0] for r in resolutions}
    channel_base, channel_max = channel_config(channels)
    if all(f"synthesis.b{r}.torgb.weight" in state for r in resolutions):
        architecture = "skip"
    elif any(k.endswith(".skip.weight") for k in state):
        architecture = "resnet"
    else:
        architecture = "orig"
    buffer = state.get("synthesis.b4.resample_filter")
    taps = list(DEFAULT_FILTER) if buffer is None else [float(t) for t in filter_taps(buffer.double())]
    fc0, last = state["mapping.fc0.weight"], state[f"mapping.fc{layers[-1]}.weight"]
    init_kwargs: dict[str, Any] = {
        "z_dim": fc0.shape[1],
        "c_dim": 0,
        "w_dim": last.shape[0],
        "img_resolution": top,
        "img_channels": state[f"synthesis.b{top}.torgb.weight"].shape[0],
        "base_shape": base,
        "mapping_kwargs": {
            "num_layers": len(layers),
            "layer_features": fc0.shape[0] if len(layers) > 1 else None,
        },
        "synthesis_kwargs": {
            "channel_base": channel_base,
            "channel_max": channel_max,
            "architecture": architecture,
            "resample_filter": taps,
            "use_noise": "synthesis.b4.conv1.noise_const" in state,
        },
    }
    out = dict(state)
    for key in filter_keys(top, architecture):
        out.setdefault(key, setup_filter(taps, 3))
    return init_kwargs, out
