"""Properties every forward model and chain must have, over generated shapes, dtypes and devices:
linearity, exact adjoints (also against autograd), shapes and dtypes, and differentiability (gradcheck)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brgm.core.operators import adjoint_test, autograd_adjoint, inner
from tests.conftest import DEVICES
from tests.forward_model_cases import CASES, Case, input_shapes

PROPERTY_SETTINGS = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
#: relative adjointness error allowed per dtype (see brgm.core.operators.adjoint_test)
ADJOINT_TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}


def random_input(shape: tuple[int, ...], dtype: torch.dtype, device: str, seed: int) -> torch.Tensor:
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.rand(shape, dtype=dtype, device=device, generator=generator)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=repr)
@PROPERTY_SETTINGS
@given(data=st.data(), dtype=st.sampled_from([torch.float64, torch.float32]))
def test_adjointness(case: Case, device: str, data: st.DataObject, dtype: torch.dtype) -> None:
    shape = data.draw(input_shapes(case))
    op = case.build()
    seed = data.draw(st.integers(0, 2**16))
    error = adjoint_test(
        op, shape, dtype=dtype, device=device, generator=torch.Generator(device).manual_seed(seed)
    )
    assert error < ADJOINT_TOLERANCE[dtype], (
        f"{case.label} on {shape}: <Ax,y> - <x,A^H y> relative {error:.2e}"
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=repr)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_linearity_shapes_and_autograd_adjoint(case: Case, device: str, data: st.DataObject) -> None:
    shape = data.draw(input_shapes(case))
    op = case.build()
    x1, x2 = (random_input(shape, torch.float64, device, seed) for seed in (1, 2))
    a, b = data.draw(st.floats(-3, 3)), data.draw(st.floats(-3, 3))
    y1, y2 = op(x1), op(x2)

    assert tuple(y1.shape) == op.output_shape(shape)
    assert y1.device.type == device
    assert y1.dtype == (torch.complex128 if op.complex_output else torch.float64)
    combined = op(a * x1 + b * x2)
    assert relative_error(combined, a * y1 + b * y2) < 1e-12 or (a * y1 + b * y2).abs().max() == 0

    y = torch.randn(y1.shape, dtype=y1.dtype, device=device, generator=torch.Generator(device).manual_seed(3))
    hand = op.adjoint(y)
    assert hand.shape == x1.shape and hand.dtype == torch.float64
    assert relative_error(hand, autograd_adjoint(op, x1)(y)) < 1e-12


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_gradcheck(case: Case, device: str) -> None:
    """Forward and adjoint are differentiable in float64 (the adjoint too, for solvers that backpropagate it)."""
    op = case.build()
    for dims in case.dims:
        shape = (2, case.channels[-1], *[case.multiple * m for m in (2, 3, 1)[:dims]])
        x = random_input(shape, torch.float64, device, 0).requires_grad_()
        assert torch.autograd.gradcheck(op.forward, (x,), fast_mode=True)
        y = op(x.detach()).clone().requires_grad_()
        assert torch.autograd.gradcheck(op.adjoint, (y,), fast_mode=True)


@pytest.mark.parametrize("device", DEVICES)
def test_chain_adjoint_is_reversed_member_adjoints(device: str) -> None:
    chain = CASES[-2].build()
    x = random_input((2, 3, 8, 6), torch.float64, device, 0)
    y = torch.randn(chain.output_shape(x.shape), dtype=torch.float64, device=device)
    expected = y
    for op in reversed(chain.components):
        expected = op.adjoint(expected)
    assert torch.equal(chain.adjoint(y), expected)
    assert float(inner(chain(x), y).sub(inner(x, chain.adjoint(y))).abs().max()) < 1e-12 * float(
        chain(x).norm() * y.norm()
    )
