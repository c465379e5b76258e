"""For each module named on the command line, a brgm that has never been imported imports that module first, then
loads ``demo-brain64``, builds ``kspace`` and lists the registry. Prints, as JSON, the listing of a plain
``import brgm`` (``reference``) and what went wrong for each module whose brgm is not whole (``failures``: an
error, or a listing that differs from the reference).

One process serves all the modules: it imports them once (so that torch and the other libraries are loaded once),
forgets every module of brgm and of the named packages, and then forks one child per module, which starts from
that forgotten state as a fresh interpreter would. Run as ``python tests/first_import.py MODULE...``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

os.environ["OMP_NUM_THREADS"] = "1"  # forked children must not inherit a running thread pool

#: the module a plain start imports first: the reference listing
PLAIN = "brgm"


def survey(first: str) -> list[list[str]]:
    """Import ``first``, then use brgm as a script would; the registry's (kind, name, plugin) rows."""
    importlib.import_module(first)
    import brgm
    from brgm.core.plugins import registry

    brgm.load_generator("demo-brain64")
    brgm.forward_model("kspace")
    return sorted([c.kind, c.name, c.plugin] for c in registry().all())


def forget(packages: set[str]) -> None:
    """Drop every module of ``packages`` (top-level names) from ``sys.modules``: the next import runs it anew."""
    for name in [name for name in sys.modules if name.partition(".")[0] in packages]:
        del sys.modules[name]


def in_child(first: str, out: Path) -> int:
    """Fork a child that surveys ``first`` and writes its rows, or its error, to ``out``; the child's pid."""
    pid = os.fork()
    if pid:
        return pid
    try:
        result: object = survey(first)
    except BaseException as err:  # whatever breaks, it is this module's result
        result = "".join(traceback.format_exception_only(err)).strip()
    out.write_text(json.dumps(result))
    os._exit(0)


def run(firsts: list[str], workers: int) -> dict[str, Any]:
    """Survey ``PLAIN`` and every module of ``firsts``, ``workers`` children at a time: the ``reference`` rows (of
    ``PLAIN``) and the ``failures`` by module."""
    packages = {PLAIN, *(name.partition(".")[0] for name in firsts)}
    with tempfile.TemporaryDirectory() as tmp:
        # the children run the code this process compiles (to a cache of its own, outside the sources)
        sys.dont_write_bytecode, sys.pycache_prefix = False, str(Path(tmp, "pycache"))
        results = {name: Path(tmp, f"{i}.json") for i, name in enumerate([PLAIN, *firsts])}
        os.waitpid(in_child(PLAIN, results[PLAIN]), 0)  # from a cold start, before anything is loaded here
        for name in [*firsts, PLAIN]:  # load the libraries once, for all the children
            with contextlib.suppress(Exception):
                importlib.import_module(name)
        with contextlib.suppress(Exception):
            survey(PLAIN)
        forget(packages)
        running: set[int] = set()
        for name in firsts:
            if len(running) == workers:
                running.discard(os.wait()[0])
            running.add(in_child(name, results[name]))
        for pid in running:
            os.waitpid(pid, 0)
        found = {
            name: json.loads(path.read_text()) if path.exists() else "died" for name, path in results.items()
        }
    reference = found.pop(PLAIN)
    if not isinstance(reference, list):
        return {"reference": [], "failures": {PLAIN: str(reference)}}
    failures = {}
    for name, rows in found.items():
        if not isinstance(rows, list):
            failures[name] = rows
        elif rows != reference:
            missing = [row for row in reference if row not in rows]
            extra = [row for row in rows if row not in reference]
            failures[name] = f"registry differs: missing {missing}, extra {extra}"
    return {"reference": reference, "failures": failures}


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1:], workers=os.cpu_count() or 1), indent=1))
