"""The hooks a brgm plugin implements. Each returns a list of components: classes (generator sources, forward
models, likelihoods, priors, solvers) or ready objects (presets, file formats, checkpoint readers).

A plugin is a module or object with functions decorated by :data:`brgm.hookimpl`::

    from brgm import hookimpl

    @hookimpl
    def register_forward_models():
        return [MyOperator]

Built-in components are registered through these same hooks (see ``brgm.core.plugins.DEFAULT_PLUGINS``);
third-party packages expose their plugin module in the entry-point group ``brgm``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from brgm.core.checkpoints import CheckpointReader
    from brgm.core.generator import GeneratorSource
    from brgm.core.io.formats import FileFormat
    from brgm.core.operators import ForwardModel
    from brgm.core.presets import Preset
    from brgm.core.solver import Solver
    from brgm.core.terms import Likelihood, Prior

hookspec = pluggy.HookspecMarker("brgm")
hookimpl = pluggy.HookimplMarker("brgm")


@hookspec
def register_generators() -> list[type[GeneratorSource]]:
    """Generator sources: attrs subclasses of :class:`~brgm.core.generator.GeneratorSource` whose ``load()``
    returns a :class:`~brgm.core.generator.Generator` (a preset with published weights, a file reader, ...)."""


@hookspec
def register_forward_models() -> list[type[ForwardModel]]:
    """Forward models: attrs subclasses of :class:`~brgm.core.operators.ForwardModel` (or its linear refinement)."""


@hookspec
def register_likelihoods() -> list[type[Likelihood]]:
    """Data terms: attrs subclasses of :class:`~brgm.core.terms.Likelihood`."""


@hookspec
def register_priors() -> list[type[Prior]]:
    """Latent priors: attrs subclasses of :class:`~brgm.core.terms.Prior`."""


@hookspec
def register_solvers() -> list[type[Solver]]:
    """Solvers: attrs subclasses of :class:`~brgm.core.solver.Solver` (chosen with ``solver=NAME``)."""


@hookspec
def register_presets() -> list[Preset]:
    """Named configurations (:class:`~brgm.core.presets.Preset`): component selections and parameter values."""


@hookspec
def register_formats() -> list[FileFormat]:
    """File formats: instances of :class:`~brgm.core.io.formats.FileFormat` (a name, the file suffixes it
    claims, ``read`` and ``write``), which :func:`brgm.core.io.load` and :func:`~brgm.core.io.save` pick by a
    path's suffix. Two formats may not claim one suffix."""


@hookspec
def register_checkpoint_readers() -> list[CheckpointReader]:
    """Generator checkpoint readers: instances of :class:`~brgm.core.checkpoints.CheckpointReader` (a name,
    ``recognises(path, head)`` on the file's first bytes, ``read(path)`` returning a
    :class:`~brgm.core.checkpoints.Checkpoint`). The kernel gives them to the generator source that loads a file,
    which reads it with the first that recognises it (brgm's own are registered first)."""
