"""The Generator contract: latents in, images or volumes in [-1, 1] out.

A generator maps ``z [N, z_dim]`` through ``mapping`` to W+ latents ``ws [N, num_ws, w_dim]`` and ``ws`` through
``synthesis`` to ``x [N, img_channels, *img_shape]`` with values nominally in [-1, 1]. ``spatial_dims`` is 2 for
images ``[N, C, H, W]`` and 3 for volumes ``[N, C, D, H, W]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import nn

from brgm.core.checkpoints import CheckpointReader
from brgm.core.errors import ConfigError

NoiseMode = Literal["const", "random", "none"]
#: the ``solver.autocast`` setting -> the dtype synthesis runs in (None: full precision)
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Generator(nn.Module):
    """Base class of every generator. Subclasses set the attributes below and implement the two maps.

    Attributes:
        z_dim: size of the input latent ``z``.
        w_dim: size of one intermediate latent ``w``.
        num_ws: number of ``w`` vectors synthesis consumes (the rows of W+).
        img_channels: channels of the output.
        img_shape: spatial size of the output, ``(H, W)`` or ``(D, H, W)``.
        spatial_dims: 2 or 3.

    Generators that can trade compute for memory also have the attributes ``checkpoint: bool`` (recompute
    activations in the backward pass) and ``autocast_dtype: torch.dtype | None`` (run synthesis under
    ``torch.autocast``), read by ``synthesis`` on every call; :meth:`memory_options` sets them for a while (a
    solve, from :class:`~brgm.core.solver.Execution`).
    """

    z_dim: int
    w_dim: int
    num_ws: int
    img_channels: int
    img_shape: tuple[int, ...]
    noise_modes: ClassVar[tuple[str, ...]] = ("const", "random", "none")

    @property
    def spatial_dims(self) -> int:
        return len(self.img_shape)

    @property
    def img_resolution(self) -> int:
        """The largest spatial size (the square side of a 2D StyleGAN2 image)."""
        return max(self.img_shape)

    def mapping(
        self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
    ) -> torch.Tensor:
        """``z [N, z_dim]`` -> ``ws [N, num_ws, w_dim]``; truncation moves ws towards ``w_avg`` by ``psi``."""
        raise NotImplementedError

    def synthesis(
        self,
        ws: torch.Tensor,
        noise_mode: NoiseMode = "const",
        *,
        noises: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``ws [N, num_ws, w_dim]`` -> ``x [N, img_channels, *img_shape]`` in [-1, 1].

        ``noises``, when given, replaces the noise inputs (``noise_mode`` is then ignored): one ``[N, 1, *shape]``
        map per input, as :meth:`noise_inputs` lists them. Generators without noise inputs accept none.
        """
        raise NotImplementedError

    def noise_inputs(self, n: int) -> list[torch.Tensor]:
        """The generator's constant noise inputs as ``n`` copies ``[n, 1, *shape]`` each, in the order
        :meth:`synthesis` takes ``noises`` (a solver's starting point when it optimises them); [] without
        noise inputs (the default)."""
        return []

    def w_stats(self, n: int = 10000, seed: int = 123) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean of ``w`` ``[w_dim]`` and BRGM's scalar std (RMS distance of samples from the mean), from ``n``
        mapping samples of ``z ~ N(0, I)``. Subclasses may cache the result."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def forward(
        self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: NoiseMode = "const"
    ) -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation_psi=truncation_psi), noise_mode=noise_mode)

    @contextlib.contextmanager
    def memory_options(
        self, *, checkpoint: bool = False, autocast_dtype: torch.dtype | None = None
    ) -> Iterator[None]:
        """Within the block, run with activation checkpointing on or off and autocast to ``autocast_dtype``
        (``torch.bfloat16``, ``torch.float16``, or None for full precision); the previous setting comes back on
        exit. A solve sets them from its execution settings (``solver.checkpoint``, ``solver.autocast``). Asking
        a generator without the ``checkpoint`` / ``autocast_dtype`` attributes for either is a
        :class:`~brgm.core.errors.ConfigError`, raised before anything runs."""
        if not (hasattr(self, "checkpoint") and hasattr(self, "autocast_dtype")):
            if checkpoint or autocast_dtype is not None:
                raise ConfigError(
                    f"{type(self).__name__} supports neither activation checkpointing nor autocast; "
                    "use solver.checkpoint=false solver.autocast=none with this generator"
                )
            yield
            return
        if autocast_dtype not in (None, torch.bfloat16, torch.float16):
            raise ConfigError(f"autocast_dtype must be torch.bfloat16 or torch.float16, got {autocast_dtype}")
        saved = self.checkpoint, self.autocast_dtype
        self.checkpoint, self.autocast_dtype = checkpoint, autocast_dtype
        try:
            yield
        finally:
            self.checkpoint, self.autocast_dtype = saved

    def describe(self) -> dict[str, object]:
        """The contract's attributes, for configuration files and ``brgm plugins``."""
        return {
            "z_dim": self.z_dim,
            "w_dim": self.w_dim,
            "num_ws": self.num_ws,
            "img_channels": self.img_channels,
            "img_shape": list(self.img_shape),
            "spatial_dims": self.spatial_dims,
        }


class GeneratorSource:
    """A registered way to obtain a generator: a preset with published weights, a checkpoint file, a random
    initialisation. Subclasses are attrs classes (their fields are the user's parameters, e.g. ``weights``)
    with a ClassVar ``name`` and a one-line docstring."""

    name: ClassVar[str] = ""

    def load(self, readers: Sequence[CheckpointReader] = ()) -> Generator:
        """Build the generator on the CPU, in eval mode, with gradients off for its parameters. A source that reads
        a checkpoint file tries ``readers`` on it in turn: the kernel passes every registered
        :class:`~brgm.core.checkpoints.CheckpointReader` (brgm's own first); other sources ignore them."""
        raise NotImplementedError

    def calibration_file(self) -> Path | None:
        """The calibration file shipped with these weights (:mod:`brgm.core.calibration`), which ``compose``
        applies by default to a configuration it holds a calibration for; None when there is none."""
        return None
