"""Downsample, blur, mask (inpainting) and noise models: reference values, file inputs, seeding and errors."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import brgm
from brgm.core.errors import ConfigError, ShapeError
from brgm.core.operators import Chain, autograd_adjoint
from brgm.core.plugins import registry
from brgm.plugins.forward_models import (
    Blur,
    Downsample,
    GaussianNoise,
    Inpaint,
    PoissonNoise,
    RicianNoise,
)
from brgm.plugins.forward_models.padding import Padding
from tests.conftest import DEVICES

SETTINGS = settings(max_examples=15, deadline=None)


def rand(*shape: int, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    return torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)).to(device)


# --- registration -------------------------------------------------------------------------------------------


def test_every_forward_model_is_registered_by_the_builtin_plugin() -> None:
    reg = registry()
    names = {"downsample", "blur", "mask", "kspace", "gaussian_noise", "poisson_noise", "rician_noise"}
    assert names <= set(reg.names("forward_model"))
    for name in names:
        component = reg.get("forward_model", name)
        assert component.plugin == "brgm.plugins.forward_models"
        assert component.description and not component.description.endswith(":")
    op = reg.get("forward_model", "downsample").obj(factor=8, method="bicubic")
    assert (op.factor, op.method) == (8, "bicubic")


# --- downsample ---------------------------------------------------------------------------------------------

INTERPOLATE = {"area": {"mode": "area"}, "bicubic": {"mode": "bicubic", "align_corners": False}}


def pil_bicubic(x: torch.Tensor, factor: int) -> torch.Tensor:
    """PIL's antialiased bicubic shrink (float32 ``F`` images), image by image."""
    out = [
        np.asarray(
            Image.fromarray(image.numpy().astype(np.float32)).resize(
                (image.shape[1] // factor, image.shape[0] // factor), Image.BICUBIC
            )
        )
        for image in x.reshape(-1, *x.shape[-2:]).cpu()
    ]
    return torch.as_tensor(np.stack(out), dtype=x.dtype).reshape(*x.shape[:-2], *out[0].shape)


@pytest.mark.parametrize("device", DEVICES)
@SETTINGS
@given(
    method=st.sampled_from(["area", "bicubic", "bicubic_antialiased"]),
    factor=st.integers(2, 5),
    blocks=st.tuples(st.integers(1, 4), st.integers(1, 4)),
)
def test_downsample_reproduces_torch_and_pil(device: str, method: str, factor: int, blocks) -> None:
    """area and bicubic against ``F.interpolate``; antialiased bicubic against PIL, whose filter it is (torch's
    ``antialias=True`` agrees except where an output axis has size 1, where torch repeats the first row)."""
    x = rand(2, 3, factor * blocks[0], factor * blocks[1], device=device)
    y = Downsample(factor=factor, method=method)(x)
    if method == "bicubic_antialiased":
        torch.testing.assert_close(y.cpu(), pil_bicubic(x, factor), rtol=0, atol=2e-6)
        if min(blocks) > 1:
            kwargs = {"mode": "bicubic", "align_corners": False, "antialias": True}
            ref = F.interpolate(x, scale_factor=1 / factor, recompute_scale_factor=True, **kwargs)
            torch.testing.assert_close(y, ref, rtol=0, atol=1e-13)
    else:
        ref = F.interpolate(x, scale_factor=1 / factor, recompute_scale_factor=True, **INTERPOLATE[method])
        torch.testing.assert_close(y, ref, rtol=0, atol=1e-13)


@pytest.mark.parametrize("device", DEVICES)
def test_downsample_naive_inverse_is_bicubic_upsampling(device: str) -> None:
    y = rand(2, 1, 3, 5, device=device)
    ref = F.interpolate(y, size=(12, 20), mode="bicubic", align_corners=False)
    torch.testing.assert_close(Downsample(factor=4).naive_inverse(y), ref, rtol=0, atol=1e-13)


def test_downsample_3d_area_is_block_mean_and_3d_bicubic_is_separable() -> None:
    x = rand(2, 1, 4, 6, 8)
    torch.testing.assert_close(Downsample(factor=2)(x), F.avg_pool3d(x, 2), rtol=0, atol=1e-14)
    slab = rand(1, 1, 9, 6).expand(1, 1, 3, 9, 6)  # constant along depth
    out3d = Downsample(factor=3, method="bicubic")(slab.contiguous())
    out2d = Downsample(factor=3, method="bicubic")(slab[:, :, 0])
    torch.testing.assert_close(out3d[:, :, 0], out2d, rtol=0, atol=1e-14)


def test_bicubic_without_antialiasing_aliases_where_area_and_antialiased_do_not() -> None:
    """Stripes on every third column: their mean is 1/3, but plain bicubic point-samples them into ones."""
    x = torch.zeros(1, 1, 6, 12, dtype=torch.float64)
    x[..., 1::3] = 1.0
    assert torch.allclose(Downsample(factor=3, method="bicubic")(x), torch.ones(1, 1, 2, 4, dtype=x.dtype))
    assert torch.allclose(
        Downsample(factor=3, method="area")(x), torch.full((1, 1, 2, 4), 1 / 3, dtype=x.dtype)
    )
    antialiased = Downsample(factor=3, method="bicubic_antialiased")(x)
    assert (antialiased - 1 / 3).abs().max() < 0.1


def test_downsample_errors() -> None:
    with pytest.raises(
        ShapeError, match=re.escape("factor 4 must divide every spatial size, got spatial shape [8, 10]")
    ):
        Downsample(factor=4)(torch.rand(1, 1, 8, 10))
    with pytest.raises(ShapeError, match=r"accepts 2D or 3D inputs \[N, C, \*spatial\], got .* \[1, 8\]"):
        Downsample(factor=2)(torch.rand(1, 8))
    with pytest.raises(
        ShapeError, match=re.escape("takes real floating-point images, got dtype torch.complex64")
    ):
        Downsample(factor=2)(torch.rand(1, 1, 4, 4, dtype=torch.complex64))
    for bad in (1, 257, 2.5, True):
        with pytest.raises(
            ConfigError, match=re.escape(f"factor must be an integer in [2, 256], got {bad!r}")
        ):
            Downsample(factor=bad)
    with pytest.raises(
        ConfigError, match="method must be one of 'area', 'bicubic', 'bicubic_antialiased', got 'lanczos'"
    ):
        Downsample(method="lanczos")


# --- blur ---------------------------------------------------------------------------------------------------

TORCH_PAD = {"reflect": "reflect", "circular": "circular", "zeros": "constant"}


@pytest.mark.parametrize("device", DEVICES)
@SETTINGS
@given(
    padding=st.sampled_from(sorted(TORCH_PAD)),
    kernel_shape=st.sampled_from([(3, 3), (2, 5), (4, 1), (3, 2, 3), (1, 4, 2)]),
    seed=st.integers(0, 100),
)
def test_blur_is_padded_true_convolution(device: str, padding: str, kernel_shape, seed: int) -> None:
    """Against an independent reference: torch's padding, then conv with the flipped kernel."""
    kernel = np.random.default_rng(seed).uniform(0.1, 1.0, size=kernel_shape)
    dims = len(kernel_shape)
    x = rand(2, 3, *(7, 6, 5)[:dims], seed=seed, device=device)
    pads = [w for k in reversed(kernel_shape) for w in ((k - 1) // 2, k // 2)]
    padded = F.pad(x.reshape(6, 1, *x.shape[2:]), pads, mode=TORCH_PAD[padding])
    weight = torch.as_tensor(np.flip(kernel / kernel.sum()).copy(), device=device)[None, None]
    ref = (F.conv2d if dims == 2 else F.conv3d)(padded, weight).reshape(x.shape)
    torch.testing.assert_close(Blur(kernel=kernel, padding=padding)(x), ref, rtol=0, atol=1e-14)


def test_blur_response_to_an_impulse_is_the_kernel_centred_at_half_its_size() -> None:
    kernel = np.arange(1.0, 7.0).reshape(2, 3)
    x = torch.zeros(1, 1, 5, 7, dtype=torch.float64)
    x[0, 0, 2, 3] = 1.0
    y = Blur(kernel=kernel, padding="zeros")(x)[0, 0]
    expected = torch.zeros(5, 7, dtype=torch.float64)
    expected[1:3, 2:5] = torch.as_tensor(kernel / kernel.sum())  # kernel[1, 1] lands on the impulse
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("padding", ["reflect", "circular"])
def test_blur_keeps_constant_images(padding: str) -> None:
    x = torch.full((1, 2, 6, 5, 4), 0.3, dtype=torch.float64)
    for op in (Blur(sigma=2.0, padding=padding), Blur(kernel="box", size=4, padding=padding)):
        torch.testing.assert_close(op(x), x, rtol=0, atol=1e-15)


def test_builtin_kernels() -> None:
    gaussian = Blur(sigma=1.5).kernel_array(2)
    assert gaussian.shape == (11, 11) and math.isclose(gaussian.sum(), 1.0)
    assert math.isclose(gaussian[5, 6] / gaussian[5, 5], math.exp(-1 / (2 * 1.5**2)))
    assert math.isclose(gaussian[6, 6] / gaussian[5, 5], math.exp(-2 / (2 * 1.5**2)))
    assert Blur(sigma=0.5).kernel_array(3).shape == (5, 5, 5)
    np.testing.assert_array_equal(Blur(kernel="box", size=2).kernel_array(3), np.full((2, 2, 2), 1 / 8))

    horizontal = Blur(kernel="motion", length=6.0).kernel_array(2)
    assert math.isclose(horizontal.sum(), 1.0)
    centre = horizontal.shape[0] // 2
    assert horizontal[centre].sum() == pytest.approx(1.0) and horizontal[centre, centre] > 0
    np.testing.assert_allclose(horizontal[centre], horizontal[centre, ::-1], atol=1e-12)  # centred
    vertical = Blur(kernel="motion", length=6.0, angle=90.0).kernel_array(2)
    np.testing.assert_allclose(vertical, horizontal.T, atol=1e-12)
    diagonal = Blur(kernel="motion", length=6.0, angle=45.0).kernel_array(2)
    np.testing.assert_allclose(diagonal, diagonal[::-1, ::-1], atol=1e-12)
    assert diagonal[centre - 2, centre + 2] > 0 and diagonal[centre + 2, centre + 2] == 0  # up-right, H down
    volume = Blur(kernel="motion", length=6.0).kernel_array(3)
    np.testing.assert_array_equal(volume, horizontal[None])


def test_blur_kernel_files(tmp_path: Path) -> None:
    kernel = np.random.default_rng(0).uniform(size=(3, 5))
    np.save(tmp_path / "k.npy", kernel)
    np.testing.assert_allclose(Blur(kernel=str(tmp_path / "k.npy")).kernel_array(2), kernel / kernel.sum())
    pixels = np.array([[0, 50, 0], [50, 200, 50], [0, 50, 0]], dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "k.png")
    np.testing.assert_allclose(Blur(kernel=tmp_path / "k.png").kernel_array(2), pixels / pixels.sum())
    np.testing.assert_allclose(Blur(kernel=torch.ones(2, 2)).kernel_array(2), np.full((2, 2), 0.25))


def test_blur_errors(tmp_path: Path) -> None:
    with pytest.raises(
        ShapeError, match=re.escape("kernel of shape [3, 3, 3] is 3D and cannot blur 2D inputs")
    ):
        Blur(kernel=np.ones((3, 3, 3)))(torch.rand(1, 1, 8, 8))
    with pytest.raises(ShapeError, match=re.escape("kernel of shape [3, 3] is 2D and cannot blur 3D inputs")):
        Blur(kernel=np.ones((3, 3)))(torch.rand(1, 1, 4, 8, 8))
    with pytest.raises(
        ConfigError,
        match=re.escape("kernel must be one of 'gaussian', 'box', 'motion', a .npy or image file"),
    ):
        Blur(kernel="gausian")
    with pytest.raises(ConfigError, match="kernel must hold finite non-negative weights with a positive sum"):
        Blur(kernel=np.array([[1.0, -2.0]]))
    with pytest.raises(ConfigError, match=re.escape("kernel must be a 2D or 3D array, got shape [4]")):
        Blur(kernel=np.ones(4))
    (tmp_path / "k.txt").write_text("1 2 3")
    with pytest.raises(ConfigError, match=re.escape("expected a .npy file or an image")):
        Blur(kernel=str(tmp_path / "k.txt"))
    with pytest.raises(ConfigError, match=re.escape("sigma must be in (0.0, inf], got 0.0")):
        Blur(sigma=0)
    with pytest.raises(
        ConfigError, match="padding must be one of 'reflect', 'circular', 'zeros', got 'same'"
    ):
        Blur(padding="same")
    with pytest.raises(ConfigError, match=re.escape("size must be an integer in [1, inf], got 0")):
        Blur(kernel="box", size=0)


@SETTINGS
@given(
    n=st.integers(1, 9),
    before=st.integers(0, 20),
    after=st.integers(0, 20),
    mode=st.sampled_from(["reflect", "wrap"]),
)
def test_padding_of_any_width_matches_numpy(n: int, before: int, after: int, mode: str) -> None:
    """Reflection and wrapping wider than the axis continue periodically, as ``np.pad`` does."""
    x = torch.arange(float(n)).reshape(1, 1, n)
    ours = "reflect" if mode == "reflect" else "circular"
    padded = Padding.build(ours, (n,), ((before, after),), x.device)(x)
    np.testing.assert_array_equal(
        padded[0, 0].numpy(), np.pad(np.arange(float(n)), (before, after), mode=mode)
    )


# --- mask (inpainting) --------------------------------------------------------------------------------------


def test_halves_mirror_each_other_and_keep_the_middle_of_odd_sizes() -> None:
    left = Inpaint(missing="left").observed((1, 1, 3, 5))[0, 0]
    right = Inpaint(missing="right").observed((1, 1, 3, 5))[0, 0]
    assert left.tolist() == [[False, False, True, True, True]] * 3
    torch.testing.assert_close(right, left.flip(-1))
    top = Inpaint(missing="top").observed((1, 1, 4, 2))[0, 0]
    assert top.tolist() == [[False, False], [False, False], [True, True], [True, True]]
    bottom = Inpaint(missing="bottom").observed((1, 1, 2, 4, 2))[0, 0]
    assert bottom.shape == (2, 4, 2) and bottom[:, 2:].sum() == 0 and bottom[:, :2].all()


def test_boxes_are_given_as_fractions() -> None:
    observed = Inpaint(missing="box", box=(0.25, 0.5, 0.75, 1.0, 0.0, 0.0, 0.25, 0.1)).observed((1, 1, 4, 10))
    missing = ~observed[0, 0]
    expected = torch.zeros(4, 10, dtype=torch.bool)
    expected[1:3, 5:] = True
    expected[0, 0] = True
    assert torch.equal(missing, expected)
    cube = Inpaint(missing="box", box="0.5, 0, 0, 1, 0.5, 1").observed((1, 1, 4, 4, 4))[0, 0]
    assert (~cube).sum() == 2 * 2 * 4 and not cube[2:, :2].any()


@SETTINGS
@given(
    spatial=st.lists(st.integers(1, 12), min_size=2, max_size=3),
    fraction=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_pixels_miss_exactly_round_fraction_times_size(spatial, fraction: float, seed: int) -> None:
    op = Inpaint(missing="pixels", fraction=fraction, seed=seed)
    observed = op.observed((1, 1, *spatial))
    assert int((~observed).sum()) == round(fraction * math.prod(spatial))
    assert torch.equal(
        observed, Inpaint(missing="pixels", fraction=fraction, seed=seed).observed((2, 3, *spatial))
    )


def test_strokes_are_seeded_and_work_in_3d() -> None:
    shape = (1, 1, 48, 40)
    first = Inpaint(missing="strokes", seed=5).observed(shape)
    assert torch.equal(first, Inpaint(missing="strokes", seed=5).observed(shape))
    assert not torch.equal(first, Inpaint(missing="strokes", seed=6).observed(shape))
    assert 0.02 < (~first).double().mean() < 0.9
    wider = Inpaint(missing="strokes", seed=5, width=0.2).observed(shape)
    assert bool((wider <= first).all()) and (~wider).sum() > (~first).sum()  # same paths, thicker brush
    volume = Inpaint(missing="strokes", seed=5).observed((1, 1, 12, 16, 16))
    assert volume.shape == (1, 1, 12, 16, 16) and 0 < (~volume).sum() < volume.numel()


def test_mask_files_follow_brgm_rule_black_is_missing(tmp_path: Path) -> None:
    grey = np.full((4, 6), 255, dtype=np.uint8)
    grey[1:3, 1:4] = 0
    grey[0, 0] = 1  # an antialiased edge: observed
    Image.fromarray(grey).save(tmp_path / "grey.png")
    expected = torch.as_tensor(grey != 0)
    assert torch.equal(Inpaint(missing=str(tmp_path / "grey.png")).observed((1, 3, 4, 6))[0, 0], expected)

    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    rgb[..., 0] = grey
    rgb[..., 1] = 255 - grey  # other channels are ignored
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert torch.equal(Inpaint(missing=tmp_path / "rgb.png").observed((1, 1, 4, 6))[0, 0], expected)

    volume = np.random.default_rng(0).uniform(size=(3, 4, 5)) > 0.5
    np.save(tmp_path / "vol.npy", volume)
    observed = Inpaint(missing=str(tmp_path / "vol.npy")).observed((1, 1, 3, 4, 5))
    assert torch.equal(observed[0, 0], torch.as_tensor(volume))
    assert torch.equal(
        Inpaint(missing=torch.as_tensor(volume)).observed((2, 1, 3, 4, 5))[0, 0], observed[0, 0]
    )


@pytest.mark.parametrize("device", DEVICES)
def test_mask_forward_fill_naive_inverse_and_merge(device: str) -> None:
    x = rand(2, 3, 4, 6, device=device)
    op = Inpaint(missing="left", fill=1.0)
    observed = op.observed(x.shape, device)
    assert observed.device.type == device and observed.dtype == torch.bool and observed.shape == (1, 1, 4, 6)
    y = op(x)
    assert torch.equal(y[..., 3:], x[..., 3:]) and bool((y[..., :3] == 1.0).all())
    assert torch.equal(op.naive_inverse(y), y)
    reconstruction = torch.zeros_like(x)
    merged = torch.where(observed, y, reconstruction)
    assert torch.equal(merged[..., 3:], x[..., 3:]) and not merged[..., :3].any()
    # affine with fill != 0: the adjoint is the transposed Jacobian, as autograd derives it
    g = torch.randn_like(y)
    torch.testing.assert_close(op.adjoint(g), autograd_adjoint(op, x)(g), rtol=0, atol=0)


def test_noise_after_a_mask_stays_on_observed_pixels() -> None:
    x = rand(1, 1, 6, 6)
    y = Chain([Inpaint(missing="top", fill=0.5), GaussianNoise(sigma=0.1)]).simulate(x)
    assert bool((y[..., :3, :] == 0.5).all()) and bool((y[..., 3:, :] != x[..., 3:, :]).all())


def test_mask_errors(tmp_path: Path) -> None:
    with pytest.raises(
        ShapeError, match=re.escape("the mask has shape [4, 4] but the input's spatial shape is [4, 5]")
    ):
        Inpaint(missing=np.eye(4) > 0).observed((1, 1, 4, 5))
    with pytest.raises(
        ShapeError, match=re.escape("box needs 6 numbers per box (low corner then high corner) for 3D")
    ):
        Inpaint(missing="box")(torch.rand(1, 1, 4, 4, 4))
    with pytest.raises(ShapeError, match="box corners must satisfy low < high on every axis"):
        Inpaint(missing="box", box=(0.5, 0.5, 0.2, 0.9))(torch.rand(1, 1, 4, 4))
    with pytest.raises(ConfigError, match=re.escape("box must be in [0.0, 1.0], got (0.5, 1.5)")):
        Inpaint(box=(0.5, 1.5))
    with pytest.raises(
        ConfigError, match="missing must be one of 'left', 'right', 'top', 'bottom', 'box', 'strokes'"
    ):
        Inpaint(missing="centre")
    Image.fromarray(np.full((4, 4), 7, dtype=np.uint8)).save(tmp_path / "flat.png")
    with pytest.raises(ConfigError, match="is constant, so it marks no pixel as missing"):
        Inpaint(missing=str(tmp_path / "flat.png"))
    with pytest.raises(ConfigError, match=re.escape("fraction must be in [0.0, 1.0], got 1.2")):
        Inpaint(missing="pixels", fraction=1.2)
    with pytest.raises(ConfigError, match=re.escape("seed must be an integer in [0, 4294967295], got -1")):
        Inpaint(seed=-1)


# --- noise --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_noise_models_are_identities_with_seeded_samples(device: str) -> None:
    x = rand(2, 1, 5, 4, device=device)
    for op in (GaussianNoise(sigma=0.1), PoissonNoise(gain=0.05), RicianNoise(sigma=0.1)):
        assert op.is_noise and torch.equal(op(x), x) and torch.equal(op.adjoint(x), x)
        assert torch.equal(op.naive_inverse(x), x)
        first = op.simulate(x)
        assert first.device.type == device and not torch.equal(first, x)
        assert torch.equal(first, op.simulate(x))
        assert not torch.equal(first, type(op)(seed=1).simulate(x))
        generator = torch.Generator().manual_seed(7)  # a CPU generator works for any device
        assert torch.equal(op.sample(x, generator), op.sample(x, torch.Generator().manual_seed(7)))


def test_noise_statistics() -> None:
    y = torch.full((4, 1, 250, 250), 0.4, dtype=torch.float64)
    gaussian = GaussianNoise(sigma=0.2).simulate(y) - y
    assert abs(float(gaussian.mean())) < 0.002 and float(gaussian.std()) == pytest.approx(0.2, rel=0.01)

    k = torch.full((4, 1, 250, 250), 1 - 2j, dtype=torch.complex128)
    noise = GaussianNoise(sigma=0.2).simulate(k) - k
    assert float(noise.real.std()) == pytest.approx(0.2, rel=0.01)
    assert float(noise.imag.std()) == pytest.approx(0.2, rel=0.01)

    poisson = PoissonNoise(gain=0.01).simulate(y)
    assert float(poisson.mean()) == pytest.approx(0.4, rel=0.005)
    assert float(poisson.var()) == pytest.approx(0.01 * 0.4, rel=0.02)
    counts = poisson / 0.01
    assert float((counts - counts.round()).abs().max()) < 1e-9  # whole photon counts
    assert not PoissonNoise().simulate(-y).any()  # negative intensities have rate zero

    rayleigh = RicianNoise(sigma=0.2).simulate(torch.zeros_like(y))
    assert float(rayleigh.mean()) == pytest.approx(0.2 * math.sqrt(math.pi / 2), rel=0.01)


def test_noise_errors() -> None:
    k = torch.zeros(1, 1, 4, 4, dtype=torch.complex64)
    with pytest.raises(ShapeError, match="'poisson_noise' takes real floating-point measurements"):
        PoissonNoise().simulate(k)
    with pytest.raises(
        ShapeError, match=re.escape("'rician_noise' takes real floating-point measurements (magnitudes)")
    ):
        RicianNoise().simulate(k)
    with pytest.raises(ConfigError, match=re.escape("sigma must be in [0.0, inf], got -0.1")):
        GaussianNoise(sigma=-0.1)
    with pytest.raises(ConfigError, match=re.escape("gain must be in (0.0, inf], got 0.0")):
        PoissonNoise(gain=0)
    with pytest.raises(ShapeError, match="accepts 2D or 3D inputs"):
        GaussianNoise().simulate(torch.zeros(3, 4))


def test_measured_entries_of_operators_and_chains() -> None:
    shape = (2, 1, 16, 32)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert brgm.forward_model("blur").measured(shape) is None  # every output entry is measured
    mask = brgm.forward_model("mask", missing="box")
    assert torch.equal(mask.measured(shape).expand(shape), mask.observed(shape).expand(shape))
    assert torch.equal(
        brgm.forward_model("blur+mask", mask__missing="box").measured(shape), mask.observed(shape)
    )
    assert brgm.forward_model("mask+blur", mask__missing="box").measured(shape) is None  # blur spreads it
    filled = brgm.forward_model("mask+gaussian_noise", mask__missing="box", mask__fill=0.5)
    kept = filled.keep_measured(x)  # a chain fills as its measuring member does
    assert torch.equal(kept, torch.where(mask.observed(shape), x, 0.5)) and filled.unmeasured_value == 0.5
    for coils in (1, 4):
        fwd = brgm.forward_model("kspace+gaussian_noise", kspace__coils=coils, kspace__acceleration=4)
        y = fwd.simulate(x, torch.Generator().manual_seed(1))
        expected = fwd(x) != 0  # the noiseless k-space of a random image is zero exactly where unsampled
        assert y.shape[1] == coils and torch.equal(fwd.measured(y.shape).expand(y.shape), expected)
        assert torch.equal(fwd.keep_measured(y) != 0, expected)  # the noise outside the mask is gone
        assert 0.1 < expected.double().mean() < 0.4  # about 1/4 of the columns
