"""The plugin manager. Importing this module registers brgm's built-in plugins and, unless
``BRGM_DISABLE_PLUGIN_AUTOLOAD`` is set, every installed package's entry point in the group ``brgm``."""

from __future__ import annotations

import importlib
import os

import pluggy

from brgm.core import hookspecs
from brgm.core.errors import PluginError
from brgm.core.registry import Registry
from brgm.core.version import __version__

ENTRY_POINT_GROUP = "brgm"

#: brgm's own components, registered through the same hooks as third-party ones
DEFAULT_PLUGINS = (
    "brgm.plugins.generators",
    "brgm.plugins.forward_models",
    "brgm.plugins.likelihoods",
    "brgm.plugins.priors",
    "brgm.plugins.solvers",
    "brgm.plugins.presets",
    "brgm.core.io.formats.builtin",
)

pm = pluggy.PluginManager("brgm")
pm.add_hookspecs(hookspecs)


def _register(plugin: object, name: str) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as err:
        raise PluginError(f"plugin {name!r} cannot be registered: {err}") from err
    except ValueError as err:  # the same plugin object or name twice
        raise PluginError(f"plugin {name!r} is registered twice: {err}") from err


for _module in DEFAULT_PLUGINS:
    _register(importlib.import_module(_module), _module)


def autoload_enabled() -> bool:
    return os.environ.get("BRGM_DISABLE_PLUGIN_AUTOLOAD", "").strip().lower() in ("", "0", "false", "no")


if autoload_enabled():
    try:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    except pluggy.PluginValidationError as err:
        raise PluginError(f"an installed brgm plugin cannot be registered: {err}") from err


def plugin_versions() -> dict[str, str]:
    """Plugin name -> the version of the distribution that provides it (brgm's for the built-ins)."""
    versions = {name: __version__ for name in DEFAULT_PLUGINS}
    for plugin, dist in pm.list_plugin_distinfo():
        versions[pm.get_name(plugin)] = f"{dist.project_name} {dist.version}"
    for name, plugin in pm.list_name_plugin():
        versions.setdefault(name, str(getattr(plugin, "__version__", "")))
    return versions


_built: tuple[list[tuple[str, object]], Registry] | None = None


def registry() -> Registry:
    """The components of every registered plugin: built once, and again after a plugin is registered or
    unregistered (through :data:`pm` or otherwise)."""
    global _built
    plugins = pm.list_name_plugin()
    if _built is None or not _same(_built[0], plugins):
        _built = (plugins, Registry(pm, plugin_versions()))
    return _built[1]


def _same(a: list[tuple[str, object]], b: list[tuple[str, object]]) -> bool:
    return len(a) == len(b) and all(x[0] == y[0] and x[1] is y[1] for x, y in zip(a, b, strict=True))
