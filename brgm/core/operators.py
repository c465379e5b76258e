"""The ForwardModel contract, its linear refinement, chains and the checks plugin authors use.

A forward model maps an intensity image or volume ``x [N, C, *spatial]`` (real, values in [0, 1]) to a
measurement ``y``: another real tensor (a blurred, downsampled or masked image) or a complex one (k-space,
``[N, C, *spatial]`` or ``[N, coils, *spatial]``). Forward models are attrs classes whose fields are their
parameters, validated on construction; they hold no tensors until first called on a given shape and device.
They are immutable (:func:`forward_model`): ``attrs.evolve(f, seed=1)`` builds a changed copy with fresh caches.

Noise models are forward models too (``is_noise = True``): deterministic ``forward`` is the identity and
``sample`` draws a noisy measurement. A problem fits ``forward`` only; ``simulate`` applies the noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import attrs
import torch
from attrs.exceptions import FrozenInstanceError

from brgm.core import noise_level
from brgm.core.errors import ConfigError, ShapeError

M = TypeVar("M", bound="ForwardModel")


class ForwardModel:
    """``y = A(x)``. Subclasses are immutable attrs classes (decorated with :func:`forward_model`), implement
    :meth:`forward` and :meth:`naive_inverse`, and override :meth:`output_shape` to validate shapes before any
    computation."""

    name: ClassVar[str] = ""
    #: spatial dimensionalities the operator accepts (2 = images, 3 = volumes)
    supported_dims: ClassVar[tuple[int, ...]] = (2, 3)
    #: True for operators that only add noise (identity in the deterministic part)
    is_noise: ClassVar[bool] = False
    #: True when the measurement is a complex tensor (k-space)
    complex_output: ClassVar[bool] = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, C, *spatial]`` in [0, 1] -> measurement ``y``."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def naive_inverse(self, y: torch.Tensor) -> torch.Tensor:
        """A quick image-space estimate of ``x`` from ``y`` (the baseline reconstruction), ``[N, C, *spatial]``."""
        raise NotImplementedError

    def sample(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw a noisy measurement around ``y`` (noise models); the identity for noiseless operators."""
        return y

    def simulate(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A synthetic measurement of ``x``: the operator followed by its noise, seeded by ``generator``."""
        return self.sample(self.forward(x), generator)

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The measurement shape for an input of ``shape``; raises :class:`ShapeError` for inputs the operator
        cannot take. The default checks the dimensionality and keeps the shape."""
        return check_image_shape(self, shape)

    def measured(self, shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor | None:
        """Which entries of a measurement of ``shape`` the operator measures: a boolean tensor on ``device``
        that broadcasts to ``shape`` (the k-space sampling mask, the observed pixels), or None when it measures
        every entry (the default). Operators that measure a subset override this and, if :meth:`forward` puts
        anything but 0 in the other entries, :attr:`unmeasured_value`."""
        return None

    #: what :meth:`forward` puts in the entries it does not measure (see :meth:`measured`)
    unmeasured_value: float = 0.0

    @property
    def noise_sigma(self) -> float | None:
        """The standard deviation of the Gaussian measurement noise the model composes (per real and imaginary
        part for complex data): the single source of the noise level likelihoods read; None when no Gaussian
        noise model is composed (the level is then estimated from the measurement, see :meth:`estimate_sigma`)."""
        return None

    def estimate_sigma(self, y: torch.Tensor) -> torch.Tensor:
        """The noise level of measurements ``y [N, ...]`` estimated from the data, ``[N]``; the default reads
        real image-like measurements (see :func:`brgm.core.noise_level.image_sigma`)."""
        return noise_level.image_sigma(y, self.measured(y.shape, y.device))

    def keep_measured(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` with the entries outside :meth:`measured` reset to :attr:`unmeasured_value`, so that noise
        drawn on a whole measurement stays inside the measured domain. The identity for operators that measure
        every entry."""
        mask = self.measured(y.shape, y.device)
        return y if mask is None else torch.where(mask, y, self.unmeasured_value)

    @property
    def components(self) -> tuple[ForwardModel, ...]:
        """The operators in application order (a chain lists its members)."""
        return (self,)


class ForwardModelFrozenError(FrozenInstanceError):
    """An assignment to a field of a forward model, which is immutable: change it with ``attrs.evolve``."""

    def __init__(self, model: ForwardModel, name: str) -> None:
        msg = (
            f"forward model {model.name!r} is immutable (its masks and kernels are built once): instead of "
            f"setting {name!r}, build a changed copy with attrs.evolve(model, {name}=...)"
        )
        AttributeError.__init__(self, msg)
        self.msg = msg


def _refuse_assignment(self: ForwardModel, name: str, value: Any) -> None:
    raise ForwardModelFrozenError(self, name)


def forward_model(cls: type[M]) -> type[M]:
    """Class decorator of forward models: a frozen attrs class with keyword-only fields and identity equality,
    whose field assignment raises :class:`ForwardModelFrozenError` (an attrs ``FrozenInstanceError``)."""
    cls = attrs.frozen(kw_only=True, eq=False)(cls)
    cls.__setattr__ = _refuse_assignment  # type: ignore[method-assign,assignment]
    return cls


class LinearForwardModel(ForwardModel):
    """A linear operator ``A`` with its adjoint ``Aᴴ`` (with respect to the real inner product
    ``Re⟨a, b⟩ = Re Σ conj(a)·b``), and the normal operator ``AᴴA``."""

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``Aᴴ y``, shaped like ``x``."""
        raise NotImplementedError

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``AᴴA x``."""
        return self.adjoint(self.forward(x))


def check_real(op: ForwardModel, t: torch.Tensor, what: str = "images") -> None:
    """Raise :class:`ShapeError` unless ``t`` is a real floating-point tensor (``what`` names it in the message)."""
    if t.is_complex() or not t.is_floating_point():
        raise ShapeError(f"forward model {op.name!r} takes real floating-point {what}, got dtype {t.dtype}")


def check_real_image(op: ForwardModel, x: torch.Tensor) -> tuple[int, ...]:
    """Validate a real floating-point input image of ``op`` and return its measurement shape (before any
    computation, so a bad input never costs a forward pass)."""
    check_real(op, x)
    return op.output_shape(x.shape)


def check_image_shape(op: ForwardModel, shape: Sequence[int]) -> tuple[int, ...]:
    """Validate ``[N, C, *spatial]`` against ``op.supported_dims`` and return it as a tuple."""
    shape = tuple(int(s) for s in shape)
    dims = len(shape) - 2
    if dims not in op.supported_dims:
        accepted = " or ".join(f"{d}D" for d in op.supported_dims)
        raise ShapeError(
            f"forward model {op.name!r} accepts {accepted} inputs [N, C, *spatial], got a tensor of shape {list(shape)}"
        )
    if any(s < 1 for s in shape):
        raise ShapeError(f"forward model {op.name!r} got an empty shape {list(shape)}")
    return shape


class Chain(LinearForwardModel):
    """``y = opₖ(… op₂(op₁(x)))``: operators applied in the order given (``fwd=a+b`` is ``b(a(x))``).

    The chain is linear when every member is, and its adjoint is the members' adjoints in reverse order.
    Noise members are identities in :meth:`forward` and draw their noise in :meth:`simulate`.
    """

    name = "chain"

    def __init__(self, ops: Sequence[ForwardModel]) -> None:
        flat: list[ForwardModel] = []
        for op in ops:
            flat.extend(op.components)
        if not flat:
            raise ShapeError("a chain needs at least one forward model")
        self.ops = tuple(flat)
        self.name = "+".join(op.name for op in self.ops)
        for before, op in zip(self.ops, self.ops[1:], strict=False):
            if before.complex_output and not op.is_noise:  # only noise models take complex measurements
                hint = (
                    ""
                    if op.name == before.name
                    else f"; apply {op.name!r} first (fwd={op.name}+{before.name})"
                )
                raise ConfigError(
                    f"fwd={self.name} does not compose: {op.name!r} takes real images, but {before.name!r} "
                    f"before it measures complex k-space{hint}"
                )
        self.supported_dims = tuple(set.intersection(*(set(op.supported_dims) for op in self.ops)))
        self.complex_output = any(op.complex_output for op in self.ops)

    @property
    def components(self) -> tuple[ForwardModel, ...]:
        return self.ops

    @property
    def is_linear(self) -> bool:
        return all(isinstance(op, LinearForwardModel) for op in self.ops)

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(shape)
        for op in self.ops:
            shape = op.output_shape(shape)
        return shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # no whole-chain shape check here: this runs every solver step, each member checks its own input,
        # and compose() checks the chain against the generator once
        for op in self.ops:
            x = op.forward(x)
        return x

    def simulate(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Apply the members in order; noise drawn after a measuring operator is kept to its measured domain
        (see :meth:`ForwardModel.keep_measured`)."""
        self.output_shape(x.shape)
        measuring: ForwardModel | None = None
        for op in self.ops:
            x = op.simulate(x, generator)
            if not op.is_noise:
                measuring = op
            elif measuring is not None:
                x = measuring.keep_measured(x)
        return x

    @property
    def _measuring(self) -> ForwardModel | None:
        """The last member that is not noise: its measured domain is the chain's (noise keeps it)."""
        return next((op for op in reversed(self.ops) if not op.is_noise), None)

    def measured(self, shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor | None:
        return None if self._measuring is None else self._measuring.measured(shape, device)

    @property
    def unmeasured_value(self) -> float:  # type: ignore[override]
        return 0.0 if self._measuring is None else self._measuring.unmeasured_value

    @property
    def noise_sigma(self) -> float | None:  # type: ignore[override]
        levels = [op.noise_sigma for op in self.ops if op.noise_sigma is not None]
        if len(levels) > 1:
            raise ConfigError(f"fwd={self.name} composes {len(levels)} Gaussian noise models; compose one")
        return levels[0] if levels else None

    def estimate_sigma(self, y: torch.Tensor) -> torch.Tensor:
        return (self._measuring or self.ops[-1]).estimate_sigma(y)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if not self.is_linear:
            nonlinear = [op.name for op in self.ops if not isinstance(op, LinearForwardModel)]
            raise TypeError(f"chain {self.name!r} has no adjoint: {', '.join(nonlinear)} is not linear")
        for op in reversed(self.ops):
            y = op.adjoint(y)  # type: ignore[attr-defined]
        return y

    def naive_inverse(self, y: torch.Tensor) -> torch.Tensor:
        for op in reversed(self.ops):
            y = op.naive_inverse(y)
        return y

    def __repr__(self) -> str:
        return f"Chain({', '.join(map(repr, self.ops))})"


def is_linear(forward_model: ForwardModel) -> bool:
    """Whether ``forward_model`` is linear (up to a constant fill of unmeasured entries) with an adjoint: a
    :class:`LinearForwardModel`, or a :class:`Chain` of them."""
    if isinstance(forward_model, Chain):
        return forward_model.is_linear
    return isinstance(forward_model, LinearForwardModel)


def chain(ops: Sequence[ForwardModel]) -> ForwardModel:
    """One operator for ``ops``: the operator itself when there is one, else a :class:`Chain`."""
    return ops[0] if len(ops) == 1 else Chain(ops)


def inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The real inner product ``Re Σ conj(a)·b`` per batch element, shape ``[N]``."""
    prod = torch.conj(a) * b
    if prod.is_complex():
        prod = prod.real
    return prod.reshape(prod.shape[0], -1).sum(dim=1)


def autograd_adjoint(op: ForwardModel, x_like: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The adjoint of a linear ``op`` at inputs shaped like ``x_like``, derived by autograd (a vector-Jacobian
    product). Slow but exact: use it to check a hand-written :meth:`LinearForwardModel.adjoint`."""
    x0 = torch.zeros_like(x_like, requires_grad=True)

    def adjoint(y: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            out = op.forward(x0)
            (grad,) = torch.autograd.grad(out, x0, grad_outputs=y, allow_unused=False)
        return grad

    return adjoint


def adjoint_test(
    op: LinearForwardModel,
    x_shape: Sequence[int],
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> float:
    """Relative adjointness error ``max_n |⟨Ax, y⟩ − ⟨x, Aᴴy⟩| / (‖Ax‖·‖y‖)`` for random ``x`` and ``y``.

    Expect below ~1e-12 in float64 and ~1e-5 in float32 for a correct adjoint."""
    gen = generator if generator is not None else torch.Generator(device=device).manual_seed(0)
    x = torch.rand(tuple(x_shape), dtype=dtype, device=device, generator=gen)
    ax = op.forward(x)
    y = torch.randn(ax.shape, dtype=ax.dtype, device=device, generator=gen)
    aty = op.adjoint(y)
    lhs, rhs = inner(ax, y), inner(x.to(aty.dtype), aty)
    scale = ax.reshape(ax.shape[0], -1).norm(dim=1) * y.reshape(y.shape[0], -1).norm(dim=1)
    return float(((lhs - rhs).abs() / scale.clamp_min(torch.finfo(scale.dtype).tiny)).max())
