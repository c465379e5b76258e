"""Resolving a run's configuration from ``key=value`` settings.

Grammar (the CLI's trailing arguments, and ``brgm.compose``'s keyword arguments):

- group selections: ``gen=NAME|PATH``, ``fwd=a+b`` (``y = b(a(x))``), ``like=a+b``, ``prior=a+b`` (or ``none``),
  ``solver=NAME`` (``map`` by default), ``preset=NAME``;
- field values: ``gen.KEY=V``, ``solver.KEY=V`` (the chosen solver's fields, or the execution settings
  ``solver.batch_size``, ``solver.checkpoint``, ``solver.autocast`` that every solver shares), and for the
  multi-component groups ``fwd.KEY=V`` (the one selected component that has ``KEY``) or ``fwd.NAME.KEY=V``
  (that component).

Group selections apply before field values whatever their order, the last value of a key wins, and values are
converted with the target attrs field's type and validated by its validators. Every error is a
:class:`~brgm.core.errors.ConfigError` naming what was wrong and what is accepted (the CLI exits with status 2).
Precedence, lowest first: defaults, the preset's selections and values, the user's selections and values.

:func:`resolve` builds every component once: the :class:`Resolved` plan holds the built, validated objects
(the generator's source, not its network, which :func:`~brgm.core.compose.compose_resolved` loads), and its
:meth:`~Resolved.describe` is the configuration written next to a run's outputs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from brgm.core.errors import ConfigError
from brgm.core.execution import Execution
from brgm.core.generator import Generator, GeneratorSource
from brgm.core.operators import ForwardModel, chain
from brgm.core.params import build, did_you_mean, field_names, field_values
from brgm.core.presets import Preset
from brgm.core.registry import Registry
from brgm.core.solver import Solver, split_options
from brgm.core.terms import Likelihood, Prior

#: group -> registry kind
GROUPS = {
    "gen": "generator",
    "fwd": "forward_model",
    "like": "likelihood",
    "prior": "prior",
    "solver": "solver",
}
MULTI = ("fwd", "like", "prior")
#: the default priors were chosen on training slices only (``benchmarks/defaults.py``, ``docs/defaults.md``)
DEFAULT_SELECTIONS = {"like": "pixel", "prior": "gaussian+deviation", "solver": "map"}
NONE_WORDS = ("none", "null", "")


def parse_tokens(tokens: Iterable[str]) -> dict[str, str]:
    """``["fwd=kspace", "fwd.acceleration=8"]`` -> ``{"fwd": "kspace", "fwd.acceleration": "8"}`` (last wins)."""
    settings: dict[str, str] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"expected KEY=VALUE, got {token!r} (for example fwd=kspace or fwd.acceleration=8)"
            )
        settings[key] = value.strip()
    return settings


def normalise_keys(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Accept Python-friendly spellings: ``fwd__factor`` for ``fwd.factor``, ``priors``/``likelihoods`` lists."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        key = {"priors": "prior", "likelihoods": "like", "generator": "gen", "forward_model": "fwd"}.get(
            key, key
        )
        key = key.replace("__", ".")
        if key in MULTI and isinstance(value, (list, tuple)):
            value = value if any(not isinstance(v, str) for v in value) else "+".join(value)
        out[key] = value
    return out


@attrs.define
class Selection:
    """One selected component: its registry name (or a ready instance) and the user's raw values."""

    name: str
    values: dict[str, Any] = attrs.field(factory=dict)
    instance: Any = None


@attrs.define(eq=False)
class Resolved:
    """The plan of a run: every selected component built and validated, once.

    Attributes:
        preset: the preset applied first, or None.
        components: group -> ``[(name, component)]`` in the order selected; ``gen`` holds a generator source
            (or a ready :class:`~brgm.core.generator.Generator`), loaded only when the problem is composed.
        execution: the settings every solver shares.
    """

    preset: Preset | None
    components: dict[str, list[tuple[str, Any]]]
    execution: Execution
    #: the forward model (a chain for ``fwd=a+b``)
    forward_model: ForwardModel = attrs.field(init=False)

    @forward_model.default
    def _chain(self) -> ForwardModel:
        return chain([obj for _, obj in self.components["fwd"]])

    @property
    def generator(self) -> GeneratorSource | Generator:
        return self.components["gen"][0][1]

    @property
    def likelihoods(self) -> list[Likelihood]:
        return [obj for _, obj in self.components["like"]]

    @property
    def priors(self) -> list[Prior]:
        return [obj for _, obj in self.components["prior"]]

    @property
    def solver(self) -> Solver:
        return self.components["solver"][0][1]

    def describe(self, generator: Generator | None = None, device: object = None) -> dict[str, Any]:
        """The full configuration: every parameter of every component (defaults included), the execution
        settings, and, when given, the loaded ``generator``'s contract (``gen.model``) and the ``device``."""
        out: dict[str, Any] = {"preset": self.preset.name if self.preset else None}
        for group in GROUPS:
            items = [describe_component(obj, name) for name, obj in self.components[group]]
            out[group] = items if group in MULTI else items[0]
        out["execution"] = _jsonable(field_values(self.execution))
        if generator is not None:
            out["gen"]["model"] = generator.describe()
        if device is not None:
            out["device"] = str(device)
        if self.preset:
            out["preset_notes"] = self.preset.notes
        return out


def _split(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return (
            [] if value.strip().lower() in NONE_WORDS else [v.strip() for v in value.split("+") if v.strip()]
        )
    if isinstance(value, (list, tuple)):
        return (
            [v for item in value for v in _split(item)]
            if all(isinstance(v, str) for v in value)
            else list(value)
        )
    return [value]  # a ready component instance


#: group -> the classes a ready component of it is an instance of, and what the group accepts, in words
ACCEPTED: dict[str, tuple[tuple[type, ...], str]] = {
    "gen": ((Generator, GeneratorSource), "a generator name, a checkpoint path or a Generator"),
    "fwd": ((ForwardModel,), "a forward model name, 'a+b', a ForwardModel or a list of them"),
    "like": ((Likelihood,), "likelihood names ('pixel'), 'a+b', Likelihood instances or a list of them"),
    "prior": ((Prior,), "prior names ('gaussian'), 'a+b', 'none', Prior instances or a list of them"),
    "solver": ((Solver,), "a solver name ('map') or a Solver"),
}


def _selection(item: Any, group: str) -> Selection:
    """The selection of ``item``: a registry name (a path for ``gen``) or a ready component of ``group``; a
    :class:`ConfigError` saying what the group accepts for anything else."""
    if isinstance(item, str):
        return Selection(item)
    if group == "gen" and isinstance(item, os.PathLike):
        return Selection(os.fspath(item))
    classes, accepted = ACCEPTED[group]
    if not isinstance(item, classes):
        raise ConfigError(f"{group}: expected {accepted}, got {type(item).__name__} {item!r:.60}")
    return Selection(str(getattr(item, "name", "") or type(item).__name__), instance=item)


def resolve(settings: Mapping[str, Any], registry: Registry) -> Resolved:
    """Apply the precedence rules to ``settings`` (see the module docstring) and build every component."""
    settings = normalise_keys(settings)
    preset = None
    if settings.get("preset") not in (None, "", "none"):
        preset = registry.get("preset", str(settings["preset"])).obj
    selections: dict[str, Any] = dict(DEFAULT_SELECTIONS)
    values: dict[str, Any] = {}
    if preset is not None:
        selections.update(preset.select)
        values.update(preset.values)
    for key, value in settings.items():
        if key == "preset":
            continue
        if key in GROUPS:
            selections[key] = value
        elif key.split(".")[0] in GROUPS and "." in key:
            values[key] = value
        else:
            groups = [*GROUPS, "preset"]
            raise ConfigError(
                f"unknown key {key!r}{did_you_mean(key.split('.')[0], groups)}; keys start with one of: "
                f"{', '.join(groups)} (e.g. fwd=kspace, fwd.acceleration=8, solver.steps=200)"
            )
    groups = {g: [_selection(item, g) for item in _split(selections.get(g))] for g in GROUPS}
    for group, what in (("gen", "generator"), ("solver", "solver")):
        if len(groups[group]) > 1:
            raise ConfigError(f"select one {what}, got {group}={selections[group]!r}")
    if not groups["gen"]:
        raise ConfigError(
            "no generator selected: add gen=NAME (see `brgm plugins`) or gen=PATH to a checkpoint"
        )
    if not groups["fwd"]:
        raise ConfigError("no forward model selected: add fwd=NAME or fwd=a+b (see `brgm plugins`)")
    if not groups["solver"]:
        raise ConfigError("no solver selected: add solver=NAME (see `brgm plugins`), e.g. solver=map")
    for group, selected in groups.items():
        for sel in selected:
            if sel.instance is None and not (group == "gen" and is_path(sel.name, registry)):
                registry.get(GROUPS[group], sel.name)  # unknown names fail here, with a did-you-mean
    execution: dict[str, Any] = {}
    user_keys = {k for k in settings if "." in k}
    for key, value in values.items():
        _assign(key, value, groups, execution, registry, strict=key in user_keys)
    components = {
        group: [(sel.name, instantiate(sel, group, registry)) for sel in selected]
        for group, selected in groups.items()
    }
    return Resolved(preset, components, build(Execution, execution, "solver"))


def is_path(name: str, registry: Registry) -> bool:
    return ("generator", name) not in registry and (
        Path(name).suffix != "" or "/" in name or Path(name).exists()
    )


def _assign(
    key: str,
    value: Any,
    groups: dict[str, list[Selection]],
    execution: dict[str, Any],
    registry: Registry,
    strict: bool,
) -> None:
    group, _, rest = key.partition(".")
    if group == "solver":
        (sel,) = groups["solver"]
        fields, shared = split_options(_component_class(sel, registry, group), {rest: value}, strict=strict)
        if sel.instance is None:
            sel.values.update(fields)
        elif fields and strict:
            raise ConfigError(f"{key}: set the parameters of the solver you passed on it, not as overrides")
        execution.update(shared)
        return
    selected = groups[group]
    parts = rest.split(".")
    if len(parts) == 2:
        matches = [s for s in selected if s.name == parts[0]]
        if not matches:
            if strict:
                names = [s.name for s in selected]
                raise ConfigError(
                    f"{key}: {parts[0]!r} is not a selected {group} component{did_you_mean(parts[0], names)}; "
                    f"selected: {', '.join(names) or 'none'}"
                )
            return  # a preset's value for a component the user deselected
        targets, field = matches, parts[1]
    elif len(parts) == 1 and parts[0]:
        field = parts[0]
        targets = [s for s in selected if field in _field_names(s, registry, group)]
        if not targets:
            if not strict:
                return
            valid = sorted({f for s in selected for f in _field_names(s, registry, group)})
            names = "+".join(s.name for s in selected)
            raise ConfigError(
                f"{key}: {group}={names} has no parameter {field!r}{did_you_mean(field, valid)}; "
                f"valid keys: {', '.join(f'{group}.{v}' for v in valid) or 'none'}"
            )
        if len(targets) > 1:
            raise ConfigError(
                f"{key} is ambiguous: {', '.join(s.name for s in targets)} all have {field!r}; "
                f"write {group}.NAME.{field}, e.g. {group}.{targets[0].name}.{field}"
            )
    else:
        raise ConfigError(f"malformed key {key!r}: use {group}.KEY=VALUE or {group}.NAME.KEY=VALUE")
    for target in targets:
        valid = _field_names(target, registry, group)
        if field not in valid:
            raise ConfigError(
                f"{key}: {target.name!r} has no parameter {field!r}{did_you_mean(field, valid)}; "
                f"valid keys: {', '.join(f'{group}.{v}' for v in sorted(valid)) or 'none'}"
            )
        target.values[field] = value


def _component_class(sel: Selection, registry: Registry, group: str) -> type:
    if sel.instance is not None:
        return type(sel.instance)
    if group == "gen" and is_path(sel.name, registry):
        return registry.get("generator", "file").obj
    return registry.get(GROUPS[group], sel.name).obj


def _field_names(sel: Selection, registry: Registry, group: str) -> list[str]:
    return [] if sel.instance is not None else field_names(_component_class(sel, registry, group))


def build_forward_model(settings: Mapping[str, Any], registry: Registry | None = None) -> ForwardModel:
    """The forward model (a chain for ``fwd=a+b``) of ``fwd=``/``fwd.KEY=`` settings; other keys are ignored."""
    if registry is None:
        from brgm.core.plugins import registry as current

        registry = current()
    fwd = {k: v for k, v in normalise_keys(settings).items() if k == "fwd" or k.startswith("fwd.")}
    if "fwd" not in fwd:
        raise ConfigError("no forward model selected: add fwd=NAME or fwd=a+b (see `brgm plugins`)")
    groups = {group: [] for group in GROUPS} | {
        "fwd": [_selection(item, "fwd") for item in _split(fwd["fwd"])]
    }
    if not groups["fwd"]:
        raise ConfigError("no forward model selected: add fwd=NAME or fwd=a+b (see `brgm plugins`)")
    for sel in groups["fwd"]:
        if sel.instance is None:
            registry.get("forward_model", sel.name)
    for key, value in fwd.items():
        if key != "fwd":
            _assign(key, value, groups, {}, registry, strict=True)
    return chain([instantiate(sel, "fwd", registry) for sel in groups["fwd"]])


def instantiate(sel: Selection, group: str, registry: Registry) -> Any:
    """The component of a selection: its ready instance (values rejected) or a new, validated one."""
    if sel.instance is not None:
        if sel.values:
            raise ConfigError(
                f"{group}.{sel.name}: set parameters on the instance you passed, not as overrides"
            )
        return sel.instance
    values = dict(sel.values)
    if group == "gen" and is_path(sel.name, registry):
        values.setdefault("path", sel.name)
    label = group if group == "solver" else f"{group}.{sel.name}"  # solver keys are spelled solver.KEY
    return build(_component_class(sel, registry, group), values, label)


def describe_component(obj: Any, name: str) -> dict[str, Any]:
    """``{"name": ..., **fields}`` of a component, for the resolved configuration file."""
    return {"name": name, **_jsonable(field_values(obj))}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "shape"):
        return f"<array {list(value.shape)}>"
    return repr(value)
