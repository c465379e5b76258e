"""Forward models are immutable: assigning a field raises, and ``attrs.evolve`` with a changed field gives a
model that measures exactly like one constructed with that field (no mask, kernel or matrix cached for the
old value survives)."""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import pytest
import torch
from attrs.exceptions import FrozenInstanceError

from brgm.core.operators import Chain, ForwardModel
from brgm.plugins.forward_models import (
    Blur,
    Downsample,
    GaussianNoise,
    Inpaint,
    KSpace,
    PoissonNoise,
    RicianNoise,
    register_forward_models,
)

IMAGE = (1, 1, 16, 16)
VOLUME = (1, 1, 8, 16, 16)
_rng = np.random.default_rng(0)


@attrs.frozen
class Change:
    """A model built from ``base``, then changed to ``field=value``; measured on inputs of ``shape``."""

    model: type[ForwardModel]
    field: str
    value: Any
    base: dict[str, Any] = attrs.field(factory=dict)
    shape: tuple[int, ...] = IMAGE

    def __repr__(self) -> str:
        return f"{self.model.name}.{self.field}"


CHANGES = [
    Change(KSpace, "seed", 1),
    Change(KSpace, "acceleration", 8),
    Change(KSpace, "center_fraction", 0.3),
    Change(KSpace, "mask", "equispaced"),
    Change(KSpace, "phase_encode_dims", 1, shape=VOLUME),
    Change(KSpace, "coils", 3),
    Change(KSpace, "coil_maps", _rng.normal(size=(2, 16, 16)) + 1j, base={"coils": 2}),
    Change(Blur, "kernel", "box"),
    Change(Blur, "kernel", _rng.uniform(size=(3, 3)), base={"kernel": "box"}),
    Change(Blur, "sigma", 2.5),
    Change(Blur, "size", 5, base={"kernel": "box"}),
    Change(Blur, "length", 5.0, base={"kernel": "motion"}),
    Change(Blur, "angle", 45.0, base={"kernel": "motion"}),
    Change(Blur, "padding", "zeros"),
    Change(Downsample, "factor", 2),
    Change(Downsample, "method", "bicubic"),
    Change(Inpaint, "missing", "left"),
    Change(Inpaint, "missing", _rng.uniform(size=(16, 16)) > 0.5),
    Change(Inpaint, "box", (0.1, 0.1, 0.5, 0.6), base={"missing": "box"}),
    Change(Inpaint, "strokes", 1, base={"missing": "strokes"}),
    Change(Inpaint, "width", 0.3, base={"missing": "strokes"}),
    Change(Inpaint, "fraction", 0.2, base={"missing": "pixels"}),
    Change(Inpaint, "seed", 1, base={"missing": "pixels"}),
    Change(Inpaint, "fill", 0.5),
    Change(GaussianNoise, "seed", 1),
    Change(GaussianNoise, "sigma", 0.1),
    Change(PoissonNoise, "seed", 1),
    Change(PoissonNoise, "gain", 0.1),
    Change(RicianNoise, "seed", 1),
    Change(RicianNoise, "sigma", 0.1),
]


def measure(op: ForwardModel, x: torch.Tensor) -> torch.Tensor:
    """The simulated measurement (the operator, then its seeded noise)."""
    return op.simulate(x)


def test_every_field_of_every_built_in_forward_model_is_covered() -> None:
    covered = {(change.model, change.field) for change in CHANGES}
    missing = [
        f"{model.name}.{field.name}"
        for model in register_forward_models()
        for field in attrs.fields(model)
        if field.init and (model, field.name) not in covered
    ]
    assert not missing, f"add a Change for {', '.join(missing)}"


@pytest.mark.parametrize("change", CHANGES, ids=repr)
def test_evolve_measures_like_a_fresh_model_and_assignment_raises(change: Change) -> None:
    x = torch.rand(change.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    op = change.model(**change.base)
    before = measure(op, x)  # builds and caches the operator's tensors
    changed = attrs.evolve(op, **{change.field: change.value})
    fresh = change.model(**{**change.base, change.field: change.value})

    expected = measure(fresh, x)
    assert before.shape != expected.shape or not torch.equal(before, expected), "the change must matter"
    assert torch.equal(measure(changed, x), expected)
    with pytest.raises(FrozenInstanceError, match=rf"attrs\.evolve\(.*{change.field}="):
        setattr(op, change.field, change.value)
    assert torch.equal(measure(op, x), before)


def test_chain_of_evolved_members_measures_like_a_chain_of_fresh_ones() -> None:
    x = torch.rand(IMAGE, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    blur, kspace = Blur(), KSpace()
    measure(Chain([blur, kspace]), x)
    evolved = Chain([attrs.evolve(blur, sigma=2.0), attrs.evolve(kspace, seed=5)])
    assert torch.equal(measure(evolved, x), measure(Chain([Blur(sigma=2.0), KSpace(seed=5)]), x))
    with pytest.raises(FrozenInstanceError):
        evolved.ops[1].seed = 0  # type: ignore[misc]
