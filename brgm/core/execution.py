"""How any solver runs: the execution settings every solver shares (``solver.batch_size``, ``solver.checkpoint``,
``solver.autocast``, ``solver.consistency``), applied by :func:`~brgm.core.reconstruct.reconstruct` around the
chosen solver."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import attrs

from brgm.core.generator import AUTOCAST_DTYPES, Generator
from brgm.core.operators import ForwardModel, is_linear
from brgm.core.params import interval, one_of


@attrs.frozen(kw_only=True)
class Execution:
    """How any solver runs: ``solver.batch_size``, ``solver.checkpoint`` and ``solver.autocast`` on the command
    line, whichever solver is chosen (the solver's own fields are its other ``solver.KEY`` settings)."""

    #: measurements solved together; larger batches are split
    batch_size: int = attrs.field(default=8, converter=int, validator=interval(1, 4096))
    #: recompute the generator's activations in the backward pass instead of storing them
    checkpoint: bool = attrs.field(default=False, validator=one_of((False, True)))
    #: run synthesis under autocast: "none", "bf16" or "fp16"
    autocast: str = attrs.field(default="none", validator=one_of(tuple(AUTOCAST_DTYPES)))
    #: data consistency after the solve (:mod:`brgm.core.consistency`): "auto" for linear forward models that
    #: measure a subset (k-space, masks: the exact projection when noiseless), "refine" for every linear model
    #: (also downsampling and blur), "off"
    consistency: str = attrs.field(default="auto", validator=one_of(("auto", "refine", "off")))

    def refines(self, forward_model: ForwardModel, shape: Sequence[int]) -> bool:
        """Whether results of ``forward_model`` for measurements of ``shape`` are refined for consistency."""
        if self.consistency == "off" or not is_linear(forward_model):
            return False
        return self.consistency == "refine" or forward_model.measured(shape) is not None

    def memory(self, generator: Generator) -> contextlib.AbstractContextManager[None]:
        """A context in which ``generator`` runs with these memory settings."""
        return generator.memory_options(
            checkpoint=self.checkpoint, autocast_dtype=AUTOCAST_DTYPES[self.autocast]
        )
