"""The plugin registry: every hook, duplicate names, misspelled hooks, versions, and the listing."""

from __future__ import annotations

import inspect

import pytest

from brgm import hookimpl
from brgm.core import hookspecs
from brgm.core.errors import PluginError
from brgm.core.plugins import DEFAULT_PLUGINS, pm, registry
from brgm.core.registry import KIND_HOOKS
from tests.plugins import test_plugin

TEST_PLUGIN = "tests.plugins.test_plugin"


@pytest.fixture
def extra_plugin():
    """Register plugin objects for one test and unregister them afterwards."""
    names: list[str] = []

    def register(plugin: object, name: str) -> None:
        pm.register(plugin, name=name)
        names.append(name)

    yield register
    for name in names:
        pm.unregister(name=name)


def component_of(kind: str, name: str):
    return registry().get(kind, name)


def test_hook_register_generators() -> None:
    c = component_of("generator", "tiny")
    assert c.plugin == TEST_PLUGIN and c.obj is test_plugin.TinySource
    assert c.description == "A tiny linear-tanh generator for tests (random weights, seeded)."
    assert [p["name"] for p in c.params()] == ["size", "depth", "channels", "seed"]


def test_hook_register_forward_models() -> None:
    c = component_of("forward_model", "test_scale")
    assert c.plugin == TEST_PLUGIN
    assert c.params() == [{"name": "factor", "type": "float", "default": 0.5}]


def test_hook_register_likelihoods() -> None:
    c = component_of("likelihood", "test_sse")
    assert c.plugin == TEST_PLUGIN
    assert c.params() == [{"name": "weight", "type": "float", "default": 1.0}]


def test_hook_register_priors() -> None:
    assert component_of("prior", "test_spread").obj is test_plugin.Spread


def test_hook_register_solvers() -> None:
    from brgm.plugins.solvers.map import MAPSolver

    c = component_of("solver", "map")
    assert c.obj is MAPSolver and c.plugin == "brgm.plugins.solvers"
    assert c.description.startswith("Maximum a posteriori")
    assert [p["name"] for p in c.params()][:2] == ["steps", "lr"]


def test_hook_register_presets() -> None:
    c = component_of("preset", "test-preset")
    assert c.obj is test_plugin.TEST_PRESET and c.description == "A preset of the test plugin."


def test_hook_register_formats() -> None:
    from brgm.core.io.formats import nifti

    c = component_of("format", "nifti")
    assert c.obj is nifti.FORMAT and c.plugin == "brgm.core.io.formats.builtin"
    assert c.obj.suffixes == (".nii", ".nii.gz") and c.obj.output_suffix == ".nii.gz"
    assert c.description.startswith("NIfTI") and c.params() == []


def test_hook_register_checkpoint_readers() -> None:
    c = component_of("checkpoint_reader", "safetensors")
    assert c.plugin == "brgm.plugins.generators" and c.params() == []
    assert c.description.startswith("safetensors files")
    names = [r.name for r in registry().registered("checkpoint_reader")]
    assert names[:3] == ["torch-zip", "pickle", "safetensors"]  # brgm's own, tried first


def test_every_hook_has_a_test() -> None:
    """A new hook must come with its own test_hook_<name> here (datasette's meta-test)."""
    specs = [
        name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")
    ]
    assert sorted(specs) == sorted(KIND_HOOKS.values())
    missing = [name for name in specs if f"test_hook_{name}" not in globals()]
    assert not missing, f"hooks without a test: {missing}"


def test_builtins_cover_every_kind_and_carry_brgm_version() -> None:
    import brgm

    by_kind: dict[str, list] = {kind: [] for kind in KIND_HOOKS}
    for c in registry().all():
        if c.plugin in DEFAULT_PLUGINS:
            by_kind[c.kind].append(c)
            assert c.version == brgm.__version__
            assert c.description, f"{c.kind} {c.name} has no one-line description"
    assert all(by_kind.values()), {k: len(v) for k, v in by_kind.items()}


def test_duplicate_name_names_both_plugins(extra_plugin) -> None:
    class Again:
        @hookimpl
        def register_generators(self):
            return [test_plugin.TinySource]

    extra_plugin(Again(), "second-plugin")
    with pytest.raises(PluginError, match=r"named 'tiny': 'tests.plugins.test_plugin' and 'second-plugin'"):
        registry()


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        ("register_formats", "a format named 'png'"),
        ("register_checkpoint_readers", "a checkpoint reader named 'pickle'"),
    ],
)
def test_duplicate_format_or_reader_name_is_an_error(extra_plugin, hook: str, message: str) -> None:
    from brgm.core.io.formats import raster
    from brgm.plugins.generators.checkpoints import READERS

    again = {"register_formats": raster.FORMATS[0], "register_checkpoint_readers": READERS[1]}[hook]
    plugin = type("Again", (), {hook: staticmethod(hookimpl(lambda: [again]))})
    extra_plugin(plugin, "again-plugin")
    with pytest.raises(PluginError, match=rf"two plugins register {message}: '.*' and 'again-plugin'"):
        registry()


def test_two_formats_claiming_one_suffix_is_an_error(extra_plugin) -> None:
    import attrs

    from brgm.core import io
    from brgm.core.io.formats import raster

    class Other:
        @hookimpl
        def register_formats(self):
            return [attrs.evolve(raster.FORMATS[0], name="other-png")]

    extra_plugin(Other(), "other-plugin")
    with pytest.raises(PluginError, match=r"suffix '\.png': 'png' and 'other-png' \(plugin 'other-plugin'\)"):
        io.detect_format("x.png")


def test_misspelled_hook_is_an_error_with_a_suggestion(extra_plugin) -> None:
    class Typo:
        @hookimpl
        def register_forwrd_models(self):
            return []

    extra_plugin(Typo(), "typo-plugin")
    with pytest.raises(
        PluginError, match=r"'typo-plugin' implements 'register_forwrd_models'.*'register_forward_models'"
    ):
        registry()


def test_the_registry_is_built_once_until_a_plugin_comes_or_goes(extra_plugin) -> None:
    first = registry()
    assert registry() is first

    class Extra:
        @hookimpl
        def register_priors(self):
            return [type("Other", (test_plugin.Spread,), {"name": "test_other"})]

    extra_plugin(Extra(), "extra-plugin")
    second = registry()
    assert second is not first and ("prior", "test_other") in second and registry() is second
    pm.unregister(name="extra-plugin")
    assert ("prior", "test_other") not in registry()
    pm.register(Extra(), name="extra-plugin")  # the same name, another object: built again
    assert ("prior", "test_other") in registry()


def test_unknown_name_suggests_the_closest() -> None:
    from brgm.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown generator 'tinny' \(did you mean 'tiny'\?\)"):
        registry().get("generator", "tinny")
