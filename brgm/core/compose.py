"""Run-time composition: registry names (or ready objects) in, a :class:`~brgm.core.problem.Problem` out."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from brgm.core.checkpoints import CheckpointReader
from brgm.core.config import Resolved, Selection, build_forward_model, instantiate, is_path, resolve
from brgm.core.errors import ConfigError, ShapeError
from brgm.core.generator import Generator
from brgm.core.operators import ForwardModel
from brgm.core.params import build
from brgm.core.plugins import registry
from brgm.core.problem import Problem
from brgm.core.solver import Solver


def forward_model(name: str, **params: Any) -> ForwardModel:
    """A forward model by registry name (``"a+b"`` chains; then set parameters as ``a__key=value``)::

    f = brgm.forward_model("kspace", acceleration=4, center_fraction=0.08, mask="random", seed=0)
    """
    if not isinstance(name, str):
        raise ConfigError(
            f"forward_model: expected a registered name such as 'kspace' or 'blur+downsample', got "
            f"{type(name).__name__} {name!r:.60}"
        )
    if "+" in name:
        return build_forward_model(
            {"fwd": name, **{f"fwd.{k.replace('__', '.')}": v for k, v in params.items()}}
        )
    return build(registry().get("forward_model", name).obj, params, f"fwd.{name}")


def checkpoint_readers() -> list[CheckpointReader]:
    """The registered checkpoint readers, in the order a generator source tries them (brgm's own first)."""
    return [c.obj for c in registry().registered("checkpoint_reader")]


def load_generator(name_or_path: str | os.PathLike[str], **params: Any) -> Generator:
    """A generator by registry name (``"stylegan2-xray"``, optionally ``weights=PATH``) or checkpoint path."""
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str):
        raise ConfigError(
            f"load_generator: expected a generator name such as 'demo-brain64' or a checkpoint path, got "
            f"{type(name_or_path).__name__} {name_or_path!r:.60}"
        )
    reg = registry()
    if not is_path(name_or_path, reg):
        reg.get("generator", name_or_path)  # unknown names fail here, with a did-you-mean
    return instantiate(Selection(name_or_path, values=dict(params)), "gen", reg).load(checkpoint_readers())


def resolve_settings(settings: Mapping[str, Any]) -> Resolved:
    """Resolve ``key=value`` settings against the current registry into the run's plan: every component built
    once and validated, the generator's weights not yet loaded (see :mod:`brgm.core.config`)."""
    return resolve(settings, registry())


def compose(
    gen: str | Generator,
    fwd: str | ForwardModel | Sequence[str | ForwardModel],
    priors: Sequence[Any] | None = None,
    likelihoods: Sequence[Any] | None = None,
    *,
    solver: str | Solver | None = None,
    preset: str | None = None,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> Problem:
    """Build a reconstruction problem from registry names, paths or ready objects.

    Args:
        gen: generator name (``"stylegan2-xray"``), checkpoint path, or a :class:`Generator`.
        fwd: forward model name, ``"a+b"`` chain (``y = b(a(x))``), list of names, or ready operators.
        priors: prior names or instances; ``None`` keeps the default (``gaussian``, ``colinear``); ``[]`` none.
        likelihoods: likelihood names or instances; ``None`` keeps the default (``pixel``).
        solver: a solver name or instance; ``None`` keeps the preset's or the default (``map``).
        preset: a registered preset (``"brgm-tf"``) applied before everything else.
        device: where the generator runs (default: CUDA when available, else CPU).
        overrides: field values in CLI spelling, as ``**{"fwd.acceleration": 8}`` or ``fwd__acceleration=8``.

    Every name, key and value is checked, and the forward model is checked against the generator's output
    shape, before any heavy computation; errors are :class:`~brgm.core.errors.ConfigError` /
    :class:`~brgm.core.errors.ShapeError`.
    """
    settings: dict[str, Any] = {"gen": gen, "fwd": fwd, **overrides}
    if preset is not None:
        settings["preset"] = preset
    if priors is not None:
        settings["prior"] = priors
    if likelihoods is not None:
        settings["like"] = likelihoods
    if solver is not None:
        settings["solver"] = solver
    return compose_resolved(resolve_settings(settings), device=device)


def compose_resolved(resolved: Resolved, *, device: str | torch.device | None = None) -> Problem:
    """The problem of a resolved plan, its components used as built: only the generator is loaded here. Its
    ``config`` is the plan's description with the loaded generator's contract and the device."""
    dev = resolve_device(device)
    fwd, likes, priors = resolved.forward_model, resolved.likelihoods, resolved.priors
    if not likes:
        raise ConfigError("no likelihood selected: a reconstruction needs a data term (e.g. like=pixel)")
    source = resolved.generator
    generator = source if isinstance(source, Generator) else source.load(checkpoint_readers())
    image_shape = (1, generator.img_channels, *generator.img_shape)
    try:
        fwd.output_shape(image_shape)
    except ShapeError as err:
        name = resolved.components["gen"][0][0]
        raise ShapeError(f"gen={name} and fwd={fwd.name} do not compose: {err}") from err
    generator = generator.to(dev).eval().requires_grad_(False)
    for term in [*likes, *priors]:
        term.bind(generator, fwd)
    return Problem(
        generator=generator,
        forward_model=fwd,
        likelihoods=likes,
        priors=priors,
        solver=resolved.solver,
        execution=resolved.execution,
        config=resolved.describe(generator, dev),
    )


def default_device() -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` when CUDA is available (``LOCAL_RANK`` is set by torchrun, so
    the processes of one machine use its GPUs in turn; 0 without it), else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` checked against this machine (:func:`default_device` for None), or a :class:`ConfigError`."""
    if device is None:
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device must be cpu, cuda or cuda:N, got {device!r}") from err
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {device!r}: this machine has no CUDA device; use cpu")
        if dev.index is not None and dev.index >= count:
            raise ConfigError(
                f"device {device!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
    elif dev.type != "cpu":
        raise ConfigError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    return dev
