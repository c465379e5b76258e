"""MRI k-space: the centred FFT against numpy and fastMRI's layout, fastMRI mask semantics derived from the
research notes, our 2D masks, coils, zero-filled inverses, the measured domain of noise, and errors."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from brgm.core.errors import ConfigError, ShapeError
from brgm.core.operators import Chain
from brgm.plugins.forward_models import GaussianNoise, KSpace
from brgm.plugins.forward_models.coils import birdcage
from brgm.plugins.forward_models.fft import fft_centered, ifft_centered
from tests.conftest import DEVICES

SETTINGS = settings(max_examples=25, deadline=None)
spatial_shapes = st.lists(st.integers(1, 9), min_size=2, max_size=3).map(tuple)


# --- Fourier transform --------------------------------------------------------------------------------------


@SETTINGS
@given(spatial=spatial_shapes, seed=st.integers(0, 1000))
def test_fft_equals_numpy_centred_orthonormal_fft(spatial: tuple[int, ...], seed: int) -> None:
    x = np.random.default_rng(seed).normal(size=(2, 3, *spatial)) + 1j * np.random.default_rng(
        seed + 1
    ).normal(size=(2, 3, *spatial))
    axes = tuple(range(-len(spatial), 0))
    expected = np.fft.fftshift(
        np.fft.fftn(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho"), axes=axes
    )
    k = fft_centered(torch.as_tensor(x), len(spatial))
    np.testing.assert_allclose(k.numpy(), expected, rtol=0, atol=1e-12)
    back = ifft_centered(k, len(spatial))
    np.testing.assert_allclose(back.numpy(), x, rtol=0, atol=1e-12)
    assert math.isclose(
        float(k.abs().square().sum()), float((np.abs(x) ** 2).sum()), rel_tol=1e-12
    )  # Parseval


def fastmri_layout_fft2c(data: torch.Tensor) -> torch.Tensor:
    """fastMRI's fft2c as the research notes describe it, on its real layout ``[..., H, W, 2]``: roll by
    ``(n+1)//2`` over dims (−3, −2), view as complex, ``fftn(dim=(−2, −1), norm="ortho")``, view as real, roll
    by ``n//2``."""
    shape = data.shape[-3:-1]
    data = torch.roll(data, shifts=[(n + 1) // 2 for n in shape], dims=(-3, -2))
    data = torch.view_as_real(torch.fft.fftn(torch.view_as_complex(data), dim=(-2, -1), norm="ortho"))
    return torch.roll(data, shifts=[n // 2 for n in shape], dims=(-3, -2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(4, 2, 16, 8), (3, 1, 17, 11), (1, 4, 6, 9)])
def test_fft_is_bit_identical_to_fastmri_fft2c(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    x = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(0))
    ours = torch.view_as_real(fft_centered(x, 2))
    assert torch.equal(ours, fastmri_layout_fft2c(torch.view_as_real(x.to(dtype.to_complex())).contiguous()))


# --- fastMRI masks ------------------------------------------------------------------------------------------


def line_mask(op: KSpace, width: int) -> np.ndarray:
    return op.mask_array((5, width))


def fastmri_centre(width: int, fraction: float) -> np.ndarray:
    n_low = round(width * fraction)
    pad = (width - n_low + 1) // 2
    centre = np.zeros(width, dtype=bool)
    centre[pad : pad + n_low] = True
    return centre


def test_centre_lines_use_python_round_and_fastmri_padding() -> None:
    # 320·0.08 = 25.6 -> 26 lines from (320 - 26 + 1) // 2 = 147; 30·0.05 = 1.5 -> 2 (int() would give 1)
    for width, fraction, first, count in [
        (320, 0.08, 147, 26),
        (30, 0.05, 14, 2),
        (16, 0.25, 6, 4),
        (7, 0.3, 3, 2),
    ]:
        mask = line_mask(KSpace(acceleration=1e9, center_fraction=fraction, mask="random"), width)
        assert np.flatnonzero(mask).tolist() == list(range(first, first + count))


@SETTINGS
@given(
    width=st.integers(2, 400),
    fraction=st.floats(0.01, 0.6),
    acceleration=st.floats(1, 16),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_mask_is_fastmri_bernoulli_lines(
    width: int, fraction: float, acceleration: float, seed: int
) -> None:
    rng = np.random.RandomState(seed)
    assert rng.randint(1) == 0  # the (center_fraction, acceleration) pair choice, made first
    centre = fastmri_centre(width, fraction)
    n_low = int(centre.sum())
    expected = centre.copy()
    if width > n_low:
        expected |= rng.uniform(size=width) < (width / acceleration - n_low) / (width - n_low)
    op = KSpace(acceleration=acceleration, center_fraction=fraction, mask="random", seed=seed)
    np.testing.assert_array_equal(line_mask(op, width), expected)


def test_random_mask_samples_width_over_acceleration_lines_on_average() -> None:
    counts = [line_mask(KSpace(acceleration=4, mask="random", seed=s), 320).sum() for s in range(200)]
    assert abs(np.mean(counts) - 80) < 2.5  # 26 centre lines + 294 lines at p = 54/294 each


@SETTINGS
@given(width=st.integers(2, 200), acceleration=st.integers(1, 10), seed=st.integers(0, 2**32 - 1))
def test_equispaced_mask_is_every_acceleration_th_line_from_a_seeded_offset(
    width: int, acceleration: int, seed: int
) -> None:
    rng = np.random.RandomState(seed)
    rng.randint(1)
    offset = rng.randint(0, high=acceleration)
    expected = fastmri_centre(width, 0.08 if acceleration < 8 else 0.04)
    expected[offset::acceleration] = True
    np.testing.assert_array_equal(
        line_mask(KSpace(acceleration=acceleration, mask="equispaced", seed=seed), width), expected
    )


@SETTINGS
@given(width=st.integers(20, 400), acceleration=st.sampled_from([2, 4, 6, 8, 10]), seed=st.integers(0, 1000))
def test_equispaced_fraction_mask_reaches_width_over_acceleration(
    width: int, acceleration: int, seed: int
) -> None:
    op = KSpace(acceleration=acceleration, mask="equispaced_fraction", seed=seed)
    mask = line_mask(op, width)
    n_low = round(width * op.center_fractions[0])
    adjusted = acceleration * (n_low - width) / (n_low * acceleration - width)
    rng = np.random.RandomState(seed)
    rng.randint(1)
    offset = rng.randint(0, high=round(adjusted))
    expected = fastmri_centre(width, op.center_fractions[0])
    expected[np.around(np.arange(offset, width - 1, adjusted)).astype(np.uint)] = True
    np.testing.assert_array_equal(mask, expected)
    assert abs(mask.sum() - width / acceleration) <= n_low / 2 + 2  # lines in the centre may coincide


def test_the_seed_picks_one_center_fraction_acceleration_pair() -> None:
    chosen = set()
    for seed in range(20):
        op = KSpace(acceleration=(4, 8), center_fraction=(0.08, 0.04), mask="equispaced", seed=seed)
        mask = line_mask(op, 100)
        pair = np.random.RandomState(seed).randint(2)
        lines = 8 if pair == 0 else 4  # round(100 · 0.08), round(100 · 0.04)
        pad = (100 - lines + 1) // 2
        assert mask[pad : pad + lines].all()
        step = (4, 8)[pair]
        outside = np.flatnonzero(~fastmri_centre(100, (0.08, 0.04)[pair]) & mask)
        assert (np.diff(outside) % step == 0).all()
        chosen.add(pair)
    assert chosen == {0, 1}
    assert KSpace(acceleration=(4, 8, 12)).center_fractions == (0.08, 0.04, 0.04)


# --- our masks: 2D grids, variable density, Poisson disc ----------------------------------------------------


@SETTINGS
@given(
    mask=st.sampled_from(["random", "gaussian", "poisson"]),
    grid=st.tuples(st.integers(4, 20), st.integers(4, 20)),
    acceleration=st.floats(1, 8),
    seed=st.integers(0, 1000),
)
def test_2d_masks_keep_the_centre_and_exact_counts(mask: str, grid, acceleration: float, seed: int) -> None:
    op = KSpace(acceleration=acceleration, center_fraction=0.2, mask=mask, seed=seed)
    sampled = op.mask_array((3, *grid))
    assert sampled.shape == grid
    centre = np.multiply.outer(fastmri_centre(grid[0], 0.2), fastmri_centre(grid[1], 0.2))
    assert sampled[centre].all()
    if mask != "random":
        assert sampled.sum() == max(round(grid[0] * grid[1] / acceleration), centre.sum())
    np.testing.assert_array_equal(sampled, op.mask_array((3, *grid)))


def test_gaussian_masks_concentrate_at_low_frequencies() -> None:
    for spatial in [(16, 64), (4, 32, 32)]:
        mask = KSpace(acceleration=4, mask="gaussian", center_fraction=0.04).mask_array(spatial)
        grid = mask.shape
        radius = np.sqrt(
            sum(a**2 for a in np.meshgrid(*[np.arange(n) - n // 2 for n in grid], indexing="ij"))
        )
        assert radius[mask].mean() < 0.6 * radius.mean()
        assert mask.sum() == round(math.prod(grid) / 4)


def test_poisson_disc_masks_keep_samples_apart_where_random_masks_do_not() -> None:
    """Blue noise: away from the dense centre (radius ≥ half the grid) no two Poisson-disc samples touch."""

    def touching_pairs(mask: np.ndarray) -> int:
        return int((mask[1:] & mask[:-1]).sum() + (mask[:, 1:] & mask[:, :-1]).sum())

    grid = np.meshgrid(*[(np.arange(32) - 16) / 16] * 2, indexing="ij")
    outer = np.hypot(*grid) >= 0.5
    for acceleration, seed in [(3, 0), (4, 1), (6, 2)]:
        poisson = KSpace(acceleration=acceleration, mask="poisson", seed=seed).mask_array((2, 32, 32))
        random = KSpace(acceleration=acceleration, mask="random", seed=seed).mask_array((2, 32, 32))
        assert poisson.sum() == round(1024 / acceleration)
        assert touching_pairs(poisson & outer) == 0 and touching_pairs(random & outer) > 20


@pytest.mark.parametrize("device", DEVICES)
def test_volumes_sample_the_phase_encode_plane_and_readout_fully(device: str) -> None:
    x = torch.rand(2, 1, 6, 10, 12, dtype=torch.float64, device=device)
    op = KSpace(acceleration=3, mask="poisson", seed=2)
    mask = op.sampling_mask(x.shape, device)
    assert mask.shape == (1, 1, 1, 10, 12) and mask.device.type == device
    y = op(x)
    assert bool((y[..., ~mask[0, 0, 0]] == 0).all()) and bool((y[..., mask[0, 0, 0]] != 0).all())
    lines = KSpace(acceleration=3, mask="equispaced", phase_encode_dims=1).sampling_mask(x.shape, device)
    assert lines.shape == (1, 1, 1, 1, 12)
    plane = KSpace(acceleration=3, mask="poisson", phase_encode_dims=2).sampling_mask((1, 1, 10, 12), device)
    assert plane.shape == (1, 1, 10, 12)


# --- coils and naive inverses -------------------------------------------------------------------------------


def test_birdcage_maps_are_normalised_and_rotate_with_the_coils() -> None:
    maps = birdcage(4, (8, 8))
    np.testing.assert_allclose((np.abs(maps) ** 2).sum(axis=0), 1.0, rtol=1e-13)
    np.testing.assert_allclose(np.abs(maps[1]), np.rot90(np.abs(maps[0]), k=-1), rtol=1e-12)
    assert np.abs(maps[0][:, -1]).mean() > np.abs(maps[0][:, 0]).mean()  # coil 0 sits on the +W side
    np.testing.assert_allclose((np.abs(birdcage(5, (4, 6, 7))) ** 2).sum(axis=0), 1.0, rtol=1e-13)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("params", "shape"),
    [
        ({"mask": "random"}, (2, 3, 9, 8)),
        ({"mask": "equispaced"}, (1, 1, 5, 7)),
        ({"mask": "gaussian", "coils": 4}, (2, 1, 6, 9)),
        ({"mask": "poisson"}, (1, 2, 3, 5, 6)),
        ({"mask": "random", "coils": 3}, (1, 1, 3, 5, 6)),
    ],
)
def test_zero_filled_image_of_a_fully_sampled_mask_is_the_input(params: dict, shape, device: str) -> None:
    x = torch.rand(shape, dtype=torch.float64, device=device)
    op = KSpace(acceleration=1, **params)
    assert bool(op.sampling_mask(shape, device).all())
    torch.testing.assert_close(op.naive_inverse(op(x)), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(op.adjoint(op(x)), x, rtol=0, atol=1e-12)  # F and Σ|S|² = 1 are unitary


def test_undersampled_zero_filled_image_is_the_magnitude_of_the_masked_inverse() -> None:
    x = torch.rand(1, 1, 8, 10, dtype=torch.float64)
    op = KSpace(acceleration=4, seed=1)
    k = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))
    mask = torch.as_tensor(op.mask_array((8, 10)))
    expected = torch.fft.fftshift(
        torch.fft.ifft2(torch.fft.ifftshift(k * mask, dim=(-2, -1)), norm="ortho"), dim=(-2, -1)
    )
    torch.testing.assert_close(op.naive_inverse(op(x)), expected.abs(), rtol=0, atol=1e-14)


def test_coil_maps_from_a_file(tmp_path: Path) -> None:
    maps = birdcage(3, (6, 5)) * np.exp(0.3j)
    np.save(tmp_path / "maps.npy", maps)
    op = KSpace(coil_maps=str(tmp_path / "maps.npy"), acceleration=2, mask="equispaced", seed=0)
    x = torch.rand(2, 1, 6, 5, dtype=torch.float64)
    y = op(x)
    assert y.shape == (2, 3, 6, 5)
    expected = fft_centered(x * torch.as_tensor(maps), 2) * op.sampling_mask(x.shape)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-14)
    assert torch.equal(KSpace(coil_maps=torch.as_tensor(maps), acceleration=2, mask="equispaced")(x), y)


@pytest.mark.parametrize("device", DEVICES)
def test_k_space_noise_stays_on_sampled_locations(device: str) -> None:
    x = torch.rand(2, 1, 8, 12, device=device)
    op = KSpace(acceleration=4, coils=2)
    y = Chain([op, GaussianNoise(sigma=0.05)]).simulate(x)
    mask = op.sampling_mask(x.shape, device).expand_as(y)
    assert y.dtype == torch.complex64 and bool((y[~mask] == 0).all())
    assert bool((y[mask] != op(x)[mask]).all())


# --- errors -------------------------------------------------------------------------------------------------


def test_k_space_parameter_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("acceleration must be in [1.0, inf], got (0.5,)")):
        KSpace(acceleration=0.5)
    for fraction in (0.0, 1.0, 1.5):
        with pytest.raises(
            ConfigError, match=re.escape(f"center_fraction must be in (0.0, 1.0), got ({fraction},)")
        ):
            KSpace(center_fraction=fraction)
    with pytest.raises(
        ConfigError, match="mask must be one of 'random', 'equispaced', 'equispaced_fraction'"
    ):
        KSpace(mask="magic")
    with pytest.raises(ConfigError, match=re.escape("acceleration must be an integer, got [4.0, 6.5]")):
        KSpace(mask="equispaced", acceleration=(4, 6.5), center_fraction=(0.08, 0.06))
    with pytest.raises(ConfigError, match=re.escape("need the same length, got [0.08] and [4.0, 8.0]")):
        KSpace(acceleration=(4, 8), center_fraction=0.08)
    with pytest.raises(ConfigError, match=re.escape("phase_encode_dims must be an integer in [1, 2], got 3")):
        KSpace(phase_encode_dims=3)
    with pytest.raises(ConfigError, match=re.escape("coil_maps must be a .npy file or an array")):
        KSpace(coil_maps=str(tmp_path / "absent.npy"))
    with pytest.raises(ConfigError, match=re.escape("coil_maps must be a numeric array [coils, *spatial]")):
        KSpace(coil_maps=np.ones((4, 4)))
    with pytest.raises(ConfigError, match="coils=2 disagrees with the 3 coil_maps given"):
        KSpace(coils=2, coil_maps=birdcage(3, (4, 4)))


def test_k_space_shape_errors() -> None:
    with pytest.raises(
        ShapeError,
        match=r"mask='poisson' samples a 2D phase-encode grid, but 2D inputs .* set phase_encode_dims=2",
    ):
        KSpace(mask="poisson")(torch.rand(1, 1, 8, 8))
    with pytest.raises(
        ShapeError,
        match=r"mask='equispaced' samples a 1D phase-encode grid, but 3D inputs .* phase_encode_dims=1",
    ):
        KSpace(mask="equispaced")(torch.rand(1, 1, 4, 8, 8))
    with pytest.raises(
        ShapeError, match=re.escape("the 4 centre lines (center_fraction 0.25) of 16 already reach 1/4")
    ):
        KSpace(mask="equispaced_fraction", acceleration=4, center_fraction=0.25)(torch.rand(1, 1, 8, 16))
    with pytest.raises(
        ShapeError,
        match=re.escape("multi-coil k-space takes single-channel images [N, 1, *spatial], got [1, 3, 8, 8]"),
    ):
        KSpace(coils=4)(torch.rand(1, 3, 8, 8))
    with pytest.raises(
        ShapeError, match=re.escape("coil_maps cover spatial shape [4, 4] but the input's is [8, 8]")
    ):
        KSpace(coil_maps=birdcage(2, (4, 4)))(torch.rand(1, 1, 8, 8))
    with pytest.raises(
        ShapeError, match=re.escape("takes complex k-space measurements, got dtype torch.float32")
    ):
        KSpace().adjoint(torch.rand(1, 1, 8, 8))
    with pytest.raises(ShapeError, match=re.escape("k-space of shape [1, 3, 8, 8] does not match 4 coils")):
        KSpace(coils=4).adjoint(torch.zeros(1, 3, 8, 8, dtype=torch.complex64))
    with pytest.raises(
        ShapeError, match=re.escape("takes real floating-point images, got dtype torch.complex64")
    ):
        KSpace()(torch.zeros(1, 1, 8, 8, dtype=torch.complex64))
