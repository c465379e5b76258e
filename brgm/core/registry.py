"""The component registry: every generator source, forward model, likelihood, prior, solver, preset, file
format and checkpoint reader that the loaded plugins provide, by kind and name, with the plugin and version that
gave it."""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

import attrs
import pluggy

from brgm.core.errors import ConfigError, PluginError
from brgm.core.params import did_you_mean
from brgm.core.presets import Preset

#: kind -> the hook that provides it
KIND_HOOKS = {
    "generator": "register_generators",
    "forward_model": "register_forward_models",
    "likelihood": "register_likelihoods",
    "prior": "register_priors",
    "solver": "register_solvers",
    "preset": "register_presets",
    "format": "register_formats",
    "checkpoint_reader": "register_checkpoint_readers",
}


def describe(obj: Any) -> str:
    """The ``description`` of a component registered as an object (a preset, a file format, a checkpoint
    reader), else the first line of its class's docstring."""
    if not isinstance(obj, type) and isinstance(getattr(obj, "description", None), str):
        return obj.description
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


@attrs.frozen
class Component:
    """One registered component: its kind, name, class (or object), and the plugin that gave it."""

    kind: str
    name: str
    obj: Any
    plugin: str
    version: str

    @property
    def description(self) -> str:
        return describe(self.obj)

    def params(self) -> list[dict[str, Any]]:
        """The parameters a user may set (name, type, default of each public attrs field of a component class);
        a preset's settings; none for other objects (file formats, checkpoint readers)."""
        if isinstance(self.obj, Preset):
            settings = {**self.obj.select, **self.obj.values}
            return [
                {"name": key, "type": "preset value", "default": _plain(v)} for key, v in settings.items()
            ]
        if not (isinstance(self.obj, type) and attrs.has(self.obj)):
            return []
        with contextlib.suppress(NameError):  # an annotation unknown at run time is shown as written
            attrs.resolve_types(self.obj)
        out = []
        for field in attrs.fields(self.obj):
            if not field.init or field.name.startswith("_"):
                continue
            default = field.default
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                default = default.factory() if not default.takes_self else None
            out.append({"name": field.name, "type": _type_name(field.type), "default": _plain(default)})
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "version": self.version,
            "description": self.description,
            "params": self.params(),
        }


def _type_name(tp: Any) -> str:
    if tp is None:
        return "any"
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _plain(value: Any) -> Any:
    if value is attrs.NOTHING:
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


class Registry:
    """Components by kind and name, collected from a plugin manager's hooks."""

    def __init__(self, pm: pluggy.PluginManager, versions: dict[str, str]) -> None:
        check_hooks(pm)
        self._by_kind: dict[str, dict[str, Component]] = {kind: {} for kind in KIND_HOOKS}
        for kind, hook_name in KIND_HOOKS.items():
            hook = getattr(pm.hook, hook_name)
            for impl in hook.get_hookimpls():  # registration order
                plugin_name = impl.plugin_name
                for obj in impl.function() or []:
                    name = obj.name
                    if not name:
                        raise PluginError(
                            f"plugin {plugin_name!r} registers a {kind} without a name: {obj!r}"
                        )
                    seen = self._by_kind[kind].get(name)
                    if seen is not None:
                        raise PluginError(
                            f"two plugins register a {kind.replace('_', ' ')} named {name!r}: "
                            f"{seen.plugin!r} and {plugin_name!r}; uninstall or disable one of them"
                        )
                    version = versions.get(plugin_name, "")
                    self._by_kind[kind][name] = Component(kind, name, obj, plugin_name, version)

    def names(self, kind: str) -> list[str]:
        return sorted(self._by_kind[kind])

    def registered(self, kind: str) -> list[Component]:
        """The components of ``kind`` in registration order (brgm's own plugins first)."""
        return list(self._by_kind[kind].values())

    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` of ``kind``; a :class:`ConfigError` with a did-you-mean when unknown."""
        try:
            return self._by_kind[kind][name]
        except KeyError:
            known = self.names(kind)
            raise ConfigError(
                f"unknown {kind.replace('_', ' ')} {name!r}{did_you_mean(name, known)}; "
                f"known: {', '.join(known) or 'none'}"
            ) from None

    def __contains__(self, item: tuple[str, str]) -> bool:
        kind, name = item
        return name in self._by_kind.get(kind, {})

    def all(self) -> list[Component]:
        return [c for kind in KIND_HOOKS for c in sorted(self._by_kind[kind].values(), key=lambda c: c.name)]


def check_hooks(pm: pluggy.PluginManager) -> None:
    """Raise :class:`PluginError` for a hook implementation that matches no brgm hook (a misspelling)."""
    for name in dir(pm.hook):
        caller = getattr(pm.hook, name)
        if name.startswith("_") or not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            raise PluginError(
                f"plugin {impl.plugin_name!r} implements {name!r}, which is not a brgm hook"
                f"{did_you_mean(name, KIND_HOOKS.values())}; brgm hooks: {', '.join(KIND_HOOKS.values())}"
            )
