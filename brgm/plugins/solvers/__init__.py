"""Built-in solvers, registered through the same hook as third-party ones."""

from __future__ import annotations

from brgm import hookimpl
from brgm.core.solver import Solver
from brgm.plugins.solvers.map import MAPSolver


@hookimpl
def register_solvers() -> list[type[Solver]]:
    return [MAPSolver]
