"""Built-in solvers, registered through the same hook as third-party ones."""

from __future__ import annotations

from brgm import hookimpl
from brgm.core.solver import Solver
from brgm.plugins.solvers.langevin import LangevinSolver
from brgm.plugins.solvers.laplace import LaplaceSolver
from brgm.plugins.solvers.map import MAPSolver
from brgm.plugins.solvers.vi import VISolver


@hookimpl
def register_solvers() -> list[type[Solver]]:
    return [MAPSolver, LangevinSolver, VISolver, LaplaceSolver]
