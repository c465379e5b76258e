"""Every shell command in README.md and docs/*.md, read as ``.ci/readme.py commands`` reads them, works.

Each command is one of:

- run: ``brgm`` commands with real arguments, with tiny settings (few steps) and ``--out`` in a temporary
  directory; ``brgm merge out/`` runs on the output of the README's main command;
- checked against ``--help``: a synopsis with placeholders (``NAME``, ``PATH``, ``a|b``, ``...``), a subcommand
  named alone, and the benchmark scripts (minutes to hours on the demo data): the subcommand exists and every
  ``--option`` the command uses is one it takes;
- a dry run (``--dry-run``: every name, key and value checked) where it needs weights that are not shipped;
- skipped, with the reason in :data:`NOT_RUN`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brgm.cli.app import app
from tests.test_demo_data import ROOT, readme

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = list(
    dict.fromkeys(part for path in DOCS for c in readme.commands(path) for part in c.split(" && "))
)
#: commands (by how they start) that no test runs, and why
NOT_RUN = {
    "pip install": "installs packages; CI runs the README's install commands in a new environment (.ci/run)",
    "python -m pytest": "the test suite itself",
    "torchrun ": "starts 4 processes; tests/test_distributed.py runs torchrun on tiny settings",
    "sbatch ": "needs Slurm",
}
#: what runs in place of the README's defaults, so that a command takes seconds
TINY = {
    "map": ["solver.steps=5"],
    "langevin": ["solver.map_steps=5", "solver.steps=8", "solver.chains=2", "solver.samples=2"],
    "laplace": ["solver.map_steps=5", "solver.groups=1", "solver.samples=2"],
}
#: the run ``brgm merge out/`` assembles (the README's main command's)
MERGED = "out/demo"
#: the ``bench`` extra's packages: a script's ``--help`` must work without them (CI installs only ``.[test]``)
BENCH_EXTRA = ("deepinv",)
#: runs script ``argv[1]`` with ``--help`` as ``python SCRIPT --help`` would, the ``bench`` extra hidden
HELP_WITHOUT_EXTRAS = (
    "import runpy, sys; sys.modules.update(dict.fromkeys(sys.argv[2:])); script = sys.argv[1]; "
    "sys.path.insert(0, script.rsplit('/', 1)[0]); sys.argv = [script, '--help']; "
    "runpy.run_path(script, run_name='__main__')"
)
PLACEHOLDER = re.compile(r"\.\.\.|\||\b[A-Z]+\b|\b(?:a\+b|p\+q)\b")
runner = CliRunner()


def test_the_documentation_has_the_commands_it_is_known_for() -> None:
    assert "brgm plugins [--json] [--kind solver]" in COMMANDS
    assert any("solver=laplace" in c for c in COMMANDS)
    assert sum(c.startswith("python benchmarks/defaults.py") for c in COMMANDS) >= 4


def subcommand_words(words: list[str]) -> list[str]:
    """The leading words of ``brgm``'s arguments ``words`` that name a subcommand (``weights``, ``list|fetch``)."""
    path: list[str] = []
    for word in words:
        if not re.fullmatch(r"[a-z]+(\|[a-z]+)*", word):
            break
        path.append(word)
    return path


def subcommand(words: list[str]) -> list[list[str]]:
    """The ``brgm`` subcommand paths a command names (``weights list|fetch`` names two)."""
    path = subcommand_words(words)
    paths = [[]]
    for word in path:
        paths = [[*p, alternative] for p in paths for alternative in word.split("|")]
    return paths


def options(command: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", command))


def brgm(args: list[str]):
    result = runner.invoke(app, args, catch_exceptions=False)
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the commands write (their ``--out`` under it)."""
    return tmp_path_factory.mktemp("docs")


def check_help(command: str) -> None:
    """The subcommand (or script) exists and takes every ``--option`` the command uses; a script's ``--help``
    works without the ``bench`` extra installed."""
    words = shlex.split(command.replace("[", " ").replace("]", " "))
    if words[0] == "python":
        script = ROOT / words[1]
        if not script.is_file():
            pytest.skip(f"{words[1]} names no script (a placeholder)")
        done = subprocess.run(
            [sys.executable, "-c", HELP_WITHOUT_EXTRAS, str(script), *BENCH_EXTRA],
            capture_output=True,
            text=True,
            env=os.environ,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        texts = [done.stdout]
    else:
        texts = []
        for path in subcommand(words[1:]):
            code, text = brgm([*path, "--help"])
            assert code == 0, (path, text)
            texts.append(text)
    for text in texts:
        assert options(command) <= options(text), (command, options(command) - options(text))


def tiny(args: list[str], runs: Path) -> list[str]:
    """``args`` of a ``brgm compose`` with paths made absolute, ``--out`` under ``runs`` and few steps."""
    args = list(args)
    for flag in ("--input", "--truth"):
        if flag in args:
            args[args.index(flag) + 1] = str(ROOT / args[args.index(flag) + 1])
    args[args.index("--out") + 1] = str(runs / args[args.index("--out") + 1])
    solver = next((a.split("=", 1)[1] for a in args if a.startswith("solver=")), "map")
    return [*args, *TINY[solver]]


@pytest.mark.parametrize("command", COMMANDS)
def test_the_documented_command_works(command: str, runs: Path) -> None:
    for start, reason in NOT_RUN.items():
        if command.startswith(start):
            pytest.skip(reason)
    words = shlex.split(command)
    if "--launch" in words:
        pytest.skip("starts 4 processes; tests/test_distributed.py runs --launch on tiny settings")
    alone = words[0] == "brgm" and len(words) == 1 + len(subcommand_words(words[1:]))  # `brgm train` in prose
    if words[0] == "python" or PLACEHOLDER.search(command) or alone:
        check_help(command)
        return
    args = shlex.split(command.replace("[", "").replace("]", ""))[1:]
    if args[0] == "merge":
        if not (runs / MERGED / "config.json").is_file():
            code, text = brgm(tiny(readme_main(), runs))
            assert code == 0, text
        code, text = brgm(["merge", str(runs / MERGED)])
        assert code == 0 and "1 item(s) done" in text, text
        return
    if args[0] == "compose":
        weights = [a.split("=", 1)[1] for a in args if a.startswith("gen.weights=")]
        if weights and not (ROOT / weights[0]).is_file():  # the published weights are not shipped
            code, text = brgm([*args, "--dry-run"])
            assert code == 0, text
            assert json.loads(text)["gen"]["weights"] == weights[0]
            return
        args = tiny(args, runs)
        code, text = brgm(args)
        assert code == 0, text
        out = Path(args[args.index("--out") + 1])
        stem = Path(args[args.index("--input") + 1]).stem
        assert (out / f"{stem}_recon.png").is_file() and (out / "config.json").is_file()
        assert json.loads((out / "failed.json").read_text()) == {}
        return
    code, text = brgm(args)
    assert code == 0, text


def readme_main() -> list[str]:
    """The README's main command's arguments (after ``brgm``)."""
    return shlex.split(readme.command(readme.MAIN).split("&& brgm ", 1)[1])


#: an inline selection such as `fwd=kspace+gaussian_noise` in the documentation's prose
SELECTION = re.compile(r"`(gen|fwd|prior|like|solver)=([^`\s]+)`")
#: the components examples/brgm-plugin-example registers (tests/test_example_plugin.py installs it)
EXAMPLE = set(
    re.findall(
        r'name: ClassVar\[str\] = "([\w-]+)"',
        "".join(p.read_text() for p in (ROOT / "examples").rglob("*.py")),
    )
)


def test_every_component_the_documentation_selects_exists() -> None:
    from brgm.core.config import GROUPS
    from brgm.core.plugins import registry

    selected = [m.groups() for path in DOCS for m in SELECTION.finditer(path.read_text())]
    assert len(selected) >= 10  # the pattern finds them
    unknown = [
        f"{group}={name}"
        for group, names in selected
        for name in names.split("+")
        if name not in ("...", "a", "b", "p", "q", *EXAMPLE) and (GROUPS[group], name) not in registry()
    ]
    assert unknown == []
