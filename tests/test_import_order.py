"""Whatever module a user imports first, brgm is whole afterwards: for every module of brgm, and for the example
third-party plugin's and the suite's plugin modules, a fresh brgm that imports it first loads ``demo-brain64``,
builds ``kspace`` and lists every built-in component and the installed example plugin's (one subprocess for all,
see ``tests/first_import.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from brgm.core.plugins import DEFAULT_PLUGINS, registry
from tests.test_architecture import MODULES
from tests.test_example_plugin import EXAMPLE, REPO, install_entry_points

#: third-party plugin modules: the example package's, and the suite's own (one subclasses CheckpointReader)
THIRD_PARTY = ["brgm_plugin_example", "tests.plugins.toy_files", "tests.plugins.test_plugin"]


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    site = tmp_path_factory.mktemp("site")
    install_entry_points(site, "brgm-plugin-example", "0.1.0", {"example": "brgm_plugin_example"})
    env = {k: v for k, v in os.environ.items() if k != "BRGM_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(EXAMPLE / "src"), str(REPO)])
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "first_import.py"), *sorted(MODULES), *THIRD_PARTY],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_plain_start_finds_every_built_in_and_the_installed_example(survey: dict[str, Any]) -> None:
    built_in = sorted([c.kind, c.name, c.plugin] for c in registry().all() if c.plugin in DEFAULT_PLUGINS)
    assert [row for row in survey["reference"] if row[2] in DEFAULT_PLUGINS] == built_in
    assert {plugin for _, _, plugin in survey["reference"]} == {*DEFAULT_PLUGINS, "example"}
    assert ["forward_model", "row_skip", "example"] in survey["reference"]


def test_any_brgm_module_imported_first_leaves_brgm_whole(survey: dict[str, Any]) -> None:
    assert len(MODULES) > 100  # every module of the package is surveyed
    assert {name: error for name, error in survey["failures"].items() if name in MODULES} == {}


@pytest.mark.parametrize("module", THIRD_PARTY)
def test_a_plugin_module_imported_first_leaves_brgm_whole(survey: dict[str, Any], module: str) -> None:
    assert survey["failures"].get(module) is None
