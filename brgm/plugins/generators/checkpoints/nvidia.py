"""NVIDIA network pickles (stylegan2-ada-pytorch, and the stylegan3 repository's StyleGAN2): ``G_ema``.

The pickle is a dict with ``G``, ``D``, ``G_ema`` (and ``augment_pipe``, ``training_set_kwargs``). Each network
is a :class:`~.safe_pickle.PersistentObject` whose ``state`` is the module's ``__dict__``: walking
``_parameters``, ``_buffers`` and ``_modules`` gives ``state_dict()``, and ``_init_kwargs`` the constructor's
arguments. ``G`` is the raw training generator: inference uses the moving average ``G_ema``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from brgm.core.errors import CheckpointError
from brgm.plugins.generators.checkpoints.limits import brief, brief_keys
from brgm.plugins.generators.checkpoints.safe_pickle import PersistentObject

GENERATOR_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
PERSISTENCE_VERSION = 6
#: constructor keys that only select a speed/memory trade-off (the stylegan3 repository sets them)
INERT_KEYS = frozenset({"fused_modconv_default"})


def is_nvidia_pickle(obj: Any) -> bool:
    return isinstance(obj, dict) and any(isinstance(v, PersistentObject) for v in obj.values())


def convert_nvidia(obj: dict[str, Any], source: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(init_kwargs, state_dict)`` of ``G_ema`` in a network pickle's top-level dict ``obj``."""
    g = obj.get("G_ema")
    if not isinstance(g, PersistentObject):
        raise CheckpointError(
            f"{source}: an NVIDIA network pickle without a 'G_ema' generator (keys: {', '.join(brief_keys(obj))})"
        )
    if g.version != PERSISTENCE_VERSION:
        raise CheckpointError(
            f"{source}: persistence format version {g.version}; brgm reads version {PERSISTENCE_VERSION} "
            "(stylegan2-ada-pytorch, stylegan3)"
        )
    synthesis = _child(g, "synthesis", source)
    if g.class_name != "Generator" or "b4" not in synthesis.state.get("_modules", {}):
        raise CheckpointError(
            f"{source}: G_ema is a {brief(g.class_name)} with synthesis layers {brief_keys(synthesis.state.get('_modules', {}))}; "
            "brgm reads StyleGAN2 generators (blocks b4, b8, ...), not StyleGAN3 (alias-free) ones"
        )
    return _init_kwargs(g, synthesis, source), dict(_tensors(g, "", source))


def _child(module: PersistentObject, name: str, source: str) -> PersistentObject:
    child = module.state.get("_modules", {}).get(name)
    if not isinstance(child, PersistentObject):
        raise CheckpointError(f"{source}: the {brief(module.class_name)} has no '{name}' sub-network")
    return child


def _tensors(module: PersistentObject, prefix: str, source: str) -> Iterator[tuple[str, torch.Tensor]]:
    """``state_dict()`` order: own parameters, own persistent buffers, then each child's."""
    state = module.state
    skipped = set(state.get("_non_persistent_buffers_set") or ())
    own = [
        *state.get("_parameters", {}).items(),
        *((k, v) for k, v in state.get("_buffers", {}).items() if k not in skipped),
    ]
    for name, tensor in own:
        if tensor is None:
            continue
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(
                f"{source}: '{prefix}{brief(name)}' is a {type(tensor).__name__}, not a tensor"
            )
        yield prefix + name, tensor
    for name, child in state.get("_modules", {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentObject):
            raise CheckpointError(
                f"{source}: sub-module '{prefix}{brief(name)}' is not a network of the pickle"
            )
        yield from _tensors(child, f"{prefix}{name}.", source)


def _init_kwargs(g: PersistentObject, synthesis: PersistentObject, source: str) -> dict[str, Any]:
    kwargs = plain(g.state.get("_init_kwargs") or {})
    kwargs.update(zip(GENERATOR_ARGS, plain(g.state.get("_init_args") or ()), strict=False))
    mapping = dict(kwargs.pop("mapping_kwargs", None) or {})
    synthesis_kwargs = dict(kwargs.pop("synthesis_kwargs", None) or {})
    # the stylegan3 repository passes the synthesis kwargs flat, next to the generator's own
    synthesis_kwargs.update({k: kwargs.pop(k) for k in list(kwargs) if k not in GENERATOR_ARGS})
    for key in INERT_KEYS:
        synthesis_kwargs.pop(key, None)
    # defaults behind these differ between the repositories: take what the modules were built with
    b4 = _child(synthesis, "b4", source)
    synthesis_kwargs["architecture"] = plain(b4.state.get("architecture", "skip"))
    synthesis_kwargs["conv_clamp"] = plain(_child(b4, "conv1", source).state.get("conv_clamp"))
    missing = [k for k in GENERATOR_ARGS if k not in kwargs]
    if missing:
        raise CheckpointError(f"{source}: G_ema's constructor arguments lack {', '.join(missing)}")
    return {**kwargs, "mapping_kwargs": mapping, "synthesis_kwargs": synthesis_kwargs}


def plain(value: Any) -> Any:
    """JSON-ready copy: dicts (EasyDict included), lists for tuples, Python numbers for numpy scalars."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
