"""Training checkpoints: every tensor of a run (networks, optimiser moments, RNG states) in one safetensors file,
with the run's scalars and configuration as JSON in its header. Writes are atomic (temporary file, fsync, rename),
so an interruption leaves the previous checkpoint intact; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from brgm.core.errors import CheckpointError

FORMAT = "brgm-training-checkpoint"
VERSION = 1
_NAME = re.compile(r"^step-(\d{8})\.safetensors$")


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step-{step:08d}.safetensors"


def list_checkpoints(directory: Path) -> list[Path]:
    """The checkpoints in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _NAME.match(p.name)]
    return sorted(found, key=lambda p: p.name)


def newest_intact(directory: Path) -> Path | None:
    """The newest checkpoint in ``directory`` whose file is whole (None when there is none), with a warning
    naming each newer one that is not (a write cut short by a full disk, or a file damaged since)."""
    found = list_checkpoints(directory)
    for path in reversed(found):
        try:
            _header(path)
        except CheckpointError as err:
            warnings.warn(f"{err}; falling back to the previous checkpoint", stacklevel=2)
        else:
            return path
    if found:
        raise CheckpointError(f"none of the {len(found)} checkpoints in {directory} is readable")
    return None


def save(
    path: Path,
    *,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    tensors: Mapping[str, torch.Tensor],
    meta: dict[str, Any],
) -> None:
    """Write ``modules``' state dicts, ``optimizers``' states, extra ``tensors`` and JSON ``meta`` to ``path``."""
    flat: dict[str, torch.Tensor] = {}
    groups: dict[str, Any] = {}
    for name, module in modules.items():
        flat.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    for name, opt in optimizers.items():
        state = opt.state_dict()
        groups[name] = state["param_groups"]
        for index, param_state in state["state"].items():
            for key, value in param_state.items():
                flat[f"{name}.state.{index}.{key}"] = torch.as_tensor(value)
    flat.update({f"extra.{k}": v for k, v in tensors.items()})
    flat = {k: v.detach().cpu().contiguous() for k, v in flat.items()}
    header = {
        "format": FORMAT,
        "version": str(VERSION),
        "meta": json.dumps(meta),
        "param_groups": json.dumps(groups),
    }

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(flat, tmp, metadata=header)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _header(path: Path) -> dict[str, str]:
    try:
        with safe_open(path, framework="pt") as f:
            header = f.metadata() or {}
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f"cannot read training checkpoint {path}: {err}") from err
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a brgm training checkpoint (format {header.get('format')!r})")
    if int(header.get("version", 0)) > VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {header['version']}; this brgm reads up to {VERSION}"
        )
    return header


def read_meta(path: Path) -> dict[str, Any]:
    """The JSON ``meta`` of a checkpoint (step, configuration, ...) without loading its tensors."""
    return json.loads(_header(path)["meta"])


def read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """``(tensors, meta, param_groups)`` of a checkpoint, on the CPU; a :class:`CheckpointError` if unreadable."""
    header = _header(path)
    try:
        tensors = load_file(path)
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f"cannot read training checkpoint {path}: {err}") from err
    return tensors, json.loads(header["meta"]), json.loads(header["param_groups"])


def restore(
    path: Path,
    *,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a checkpoint written by :func:`save` into ``modules`` and ``optimizers`` (strictly: every key must
    match). Returns the extra tensors and the meta dict."""
    tensors, meta, groups = read(path)
    for name, module in modules.items():
        prefix = f"{name}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"{path}: {name} does not match this run's network: {err}") from err
    for name, opt in optimizers.items():
        prefix = f"{name}.state."
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith(prefix):
                index, field = key[len(prefix) :].split(".", 1)
                state.setdefault(int(index), {})[field] = value
        try:
            opt.load_state_dict({"state": state, "param_groups": groups[name]})
        except (KeyError, ValueError) as err:
            raise CheckpointError(f"{path}: optimiser {name} does not match this run: {err}") from err
    extra = {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
    return extra, meta


def prune(directory: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (and stale temporary files) in ``directory``."""
    for path in list_checkpoints(directory)[:-keep]:
        path.unlink()
    for path in directory.glob("step-*.safetensors.tmp"):
        path.unlink()
