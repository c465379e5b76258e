"""StyleGAN2Generator's building blocks and network, 2D and 3D: ops against direct definitions, architecture
identities, NVIDIA's parameter layout and counts, run-time options and configuration errors."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from brgm.core.errors import ConfigError, ShapeError
from brgm.plugins.generators.stylegan2 import StyleGAN2Generator
from brgm.plugins.generators.stylegan2.generator import resolve_shape
from brgm.plugins.generators.stylegan2.layers import SkipLayer
from brgm.plugins.generators.stylegan2.modulated_conv import conv_resample, modulated_conv
from brgm.plugins.generators.stylegan2.resample import setup_filter, upfirdn, upsample_padding

SQRT_HALF = 0.5**0.5
FILTERS = {"binomial4": (1, 3, 3, 1), "3dstylegan5": (1, 3, 3, 3, 1)}


def tiny(
    spatial_dims: int = 2, architecture: str = "skip", resolution: int = 16, **kwargs
) -> StyleGAN2Generator:
    """A small random generator; 3D ones have a 2×3×2 base (blocks 2·r/4 × 3·r/4 × 2·r/4)."""
    shape = {} if spatial_dims == 2 else {"base_shape": (2, 3, 2)}
    synthesis = {"channel_base": 8 * resolution, "channel_max": 8, "architecture": architecture}
    synthesis.update(kwargs.pop("synthesis_kwargs", {}))
    return StyleGAN2Generator(
        z_dim=8,
        w_dim=8,
        img_resolution=resolution,
        img_channels=kwargs.pop("img_channels", 2),
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs=synthesis,
        **shape,
        **kwargs,
    )


def set_noise_strengths(G: StyleGAN2Generator, value: float) -> None:
    """Make the noise inputs matter (they start at strength 0)."""
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(value)


# ---------------------------------------------------------------------------------------------- resampling ops


def filter64(taps, nd: int) -> np.ndarray:
    """The normalised ``nd``-fold outer product of ``taps``, in float64."""
    f = np.asarray(taps, dtype=np.float64)
    full = f
    for _ in range(nd - 1):
        full = np.multiply.outer(full, f)
    return full / full.sum()


def upfirdn_numpy(x: np.ndarray, taps, up: int, pad: tuple[int, int], gain: float) -> np.ndarray:
    """NVIDIA's upfirdn definition, literally: zero insertion, padding/cropping, correlation with the flipped
    full (non-separable) filter of DC gain ``gain``."""
    nd = x.ndim - 2
    f = np.asarray(taps, dtype=np.float64)
    full = np.flip(filter64(taps, nd) * gain)
    u = np.zeros((*x.shape[:2], *[n * up for n in x.shape[2:]]))
    u[(..., *[slice(None, None, up)] * nd)] = x
    p0, p1 = pad
    u = np.pad(u, [(0, 0), (0, 0)] + [(max(p0, 0), max(p1, 0))] * nd)
    u = u[(..., *[slice(max(-p0, 0), u.shape[2 + a] - max(-p1, 0)) for a in range(nd)])]
    out_shape = [n - len(f) + 1 for n in u.shape[2:]]
    out = np.zeros((*x.shape[:2], *out_shape))
    for offset in itertools.product(range(len(f)), repeat=nd):
        window = u[(..., *[slice(o, o + n) for o, n in zip(offset, out_shape, strict=True)])]
        out += full[offset] * window
    return out


@settings(max_examples=25, deadline=None)
@given(
    nd=st.sampled_from([2, 3]),
    sizes=st.lists(st.integers(1, 6), min_size=3, max_size=3),
    up=st.sampled_from([1, 2]),
    pad=st.tuples(st.integers(-1, 3), st.integers(-1, 3)),
    taps=st.sampled_from(list(FILTERS.values())),
    gain=st.sampled_from([1.0, 4.0, 8.0]),
)
def test_upfirdn_matches_definition(nd, sizes, up, pad, taps, gain):
    sizes = [s + len(taps) + 1 for s in sizes[:nd]]  # large enough that cropping leaves an output
    x = torch.randn(2, 3, *sizes, dtype=torch.float64)
    ours = upfirdn(x, torch.from_numpy(filter64(taps, nd)), up=up, padding=pad, gain=gain)
    ref = upfirdn_numpy(x.numpy(), taps, up, pad, gain)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-12)


def test_setup_filter_is_nvidias_buffer():
    f2 = setup_filter([1, 3, 3, 1], 2)
    assert f2.dtype == torch.float32
    assert torch.equal(f2, torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64)
    f3 = setup_filter([1, 3, 3, 3, 1], 3)
    np.testing.assert_allclose(f3.numpy(), filter64([1, 3, 3, 3, 1], 3), rtol=1e-6)


@settings(max_examples=20, deadline=None)
@given(
    nd=st.sampled_from([2, 3]),
    sizes=st.lists(st.integers(1, 5), min_size=3, max_size=3),
    taps=st.sampled_from(list(FILTERS.values())),
    gain=st.sampled_from([4.0, 8.0]),
)
def test_up_conv_equals_upsample_then_convolution(nd, sizes, taps, gain):
    """Transposed conv + FIR (NVIDIA's up path) = FIR up-sampling (kept one sample wider on each side, so nothing
    is truncated), then a valid true 3×3 convolution."""
    x = torch.randn(2, 4, *sizes[:nd], dtype=torch.float64)
    w = torch.randn(5, 4, *[3] * nd, dtype=torch.float64)
    f = torch.from_numpy(filter64(taps, nd))
    ours = conv_resample(x, w, up=2, resample_filter=f, up_gain=gain)
    spatial = tuple(range(2, 2 + nd))
    p0, p1 = upsample_padding(len(taps))
    wide = upfirdn(x, f, up=2, padding=(p0 + 1, p1 + 1), gain=gain)
    ref = (F.conv2d if nd == 2 else F.conv3d)(wide, w.flip(spatial))
    assert ours.shape == (2, 5, *[2 * s for s in sizes[:nd]])
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-11)


def modulated_conv_per_sample(x, weight, styles, demodulate, up, f, gain):
    """The StyleGAN2 paper's definition, one sample at a time."""
    out = []
    for n in range(x.shape[0]):
        w = weight * styles[n].reshape(1, -1, *[1] * (weight.ndim - 2))
        if demodulate:
            w = w / (w.square().sum(dim=tuple(range(1, w.ndim)), keepdim=True) + 1e-8).sqrt()
        out.append(conv_resample(x[n : n + 1], w, up=up, resample_filter=f, up_gain=gain))
    return torch.cat(out)


@settings(max_examples=20, deadline=None)
@given(
    nd=st.sampled_from([2, 3]),
    batch=st.integers(1, 3),
    up=st.sampled_from([1, 2]),
    kernel=st.sampled_from([1, 3]),
    demodulate=st.booleans(),
)
def test_modulated_conv_paths_match_per_sample_definition(nd, batch, up, kernel, demodulate):
    up = 1 if kernel == 1 else up
    x = torch.randn(batch, 3, *[4] * nd, dtype=torch.float64)
    weight = torch.randn(5, 3, *[kernel] * nd, dtype=torch.float64)
    styles = torch.randn(batch, 3, dtype=torch.float64)
    f = setup_filter([1, 3, 3, 1], nd).double()
    ref = modulated_conv_per_sample(x, weight, styles, demodulate, up, f, 2.0**nd)
    for fused in (True, False):
        ours = modulated_conv(
            x, weight, styles, demodulate=demodulate, up=up, resample_filter=f, up_gain=2.0**nd, fused=fused
        )
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nd", [2, 3])
def test_skip_layer_is_a_1x1_up_convolution(nd):
    f = setup_filter([1, 3, 3, 1], nd)
    layer = SkipLayer(4, 6, nd, resample_filter=f, conv_clamp=0.5, up_gain=2.0**nd).double()
    layer.reset_parameters(torch.Generator().manual_seed(0))
    x = torch.randn(2, 4, *[3] * nd, dtype=torch.float64)
    ours = layer(x, gain=SQRT_HALF)
    ref = conv_resample(x, layer.weight / 2, up=2, resample_filter=f.double(), up_gain=2.0**nd) * SQRT_HALF
    torch.testing.assert_close(ours, ref.clamp(-0.5 * SQRT_HALF, 0.5 * SQRT_HALF), rtol=1e-12, atol=1e-12)
    assert (ref.abs() > 0.5 * SQRT_HALF).any()  # the clamp is exercised


# ---------------------------------------------------------------------------------------------- architectures


@pytest.mark.parametrize("nd", [2, 3])
def test_orig_is_skip_without_intermediate_images(nd):
    skip, orig = tiny(nd, "skip").double(), tiny(nd, "orig").double()
    with torch.no_grad():
        for name, tensor in skip.named_parameters():
            if ".torgb." in name and not name.startswith("synthesis.b16."):  # all but the last block's
                tensor.zero_()
    set_noise_strengths(skip, 0.3)
    orig.load_state_dict({k: v for k, v in skip.state_dict().items() if k in orig.state_dict()})
    ws = torch.randn(2, skip.num_ws, skip.w_dim, dtype=torch.float64)
    torch.testing.assert_close(orig.synthesis(ws), skip.synthesis(ws), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nd", [2, 3])
def test_resnet_without_residual_is_orig_scaled_by_sqrt_half_per_block(nd):
    resnet, orig = tiny(nd, "resnet").double(), tiny(nd, "orig").double()
    orig.load_state_dict({k: v for k, v in resnet.state_dict().items() if ".skip." not in k})
    ws = torch.randn(2, resnet.num_ws, resnet.w_dim, dtype=torch.float64)
    with_residual = resnet.synthesis(ws)
    with torch.no_grad():
        for name, p in resnet.named_parameters():
            if ".skip." in name:
                p.zero_()
    scale = SQRT_HALF ** (len(resnet.synthesis_network.block_resolutions) - 1)
    torch.testing.assert_close(resnet.synthesis(ws), orig.synthesis(ws) * scale, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(with_residual, resnet.synthesis(ws))


ARCH_CONFIGS = st.fixed_dictionaries(
    {
        "nd": st.sampled_from([2, 3]),
        "resolution": st.sampled_from([4, 8, 16, 32]),
        "channels": st.sampled_from([1, 3]),
        "mapping_layers": st.integers(1, 3),
        "architecture": st.sampled_from(["orig", "skip", "resnet"]),
        "batch": st.integers(1, 2),
    }
)


def build_random(cfg: dict) -> StyleGAN2Generator:
    resolution = min(cfg["resolution"], 16) if cfg["nd"] == 3 else cfg["resolution"]
    return StyleGAN2Generator(
        z_dim=6,
        w_dim=5,
        img_resolution=resolution,
        img_channels=cfg["channels"],
        mapping_kwargs={"num_layers": cfg["mapping_layers"]},
        synthesis_kwargs={
            "channel_base": 4 * resolution,
            "channel_max": 4,
            "architecture": cfg["architecture"],
        },
        **({"base_shape": (2, 3, 2)} if cfg["nd"] == 3 else {}),
    )


@settings(max_examples=15, deadline=None)
@given(cfg=ARCH_CONFIGS)
def test_random_configurations_render_and_back_propagate_to_every_w(cfg):
    G = build_random(cfg)
    resolution = G.synthesis_network.img_resolution
    assert G.num_ws == 2 * int(math.log2(resolution)) - 2
    base = (4, 4) if cfg["nd"] == 2 else (2, 3, 2)
    assert G.img_shape == tuple(b * resolution // 4 for b in base) and G.spatial_dims == cfg["nd"]
    z = torch.randn(cfg["batch"], G.z_dim)
    ws = G.mapping(z).detach().requires_grad_(True)
    img = G.synthesis(ws)
    assert img.shape == (cfg["batch"], cfg["channels"], *G.img_shape) and img.dtype == torch.float32
    assert torch.isfinite(img).all()
    img.square().sum().backward()
    assert (ws.grad.abs().sum(dim=(0, 2)) > 0).all(), "every ws row must receive gradient"


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_every_parameter_is_trainable(architecture):
    G = tiny(3 if architecture == "orig" else 2, architecture, resolution=8)
    set_noise_strengths(G, 0.2)
    G.synthesis(G.mapping(torch.randn(2, G.z_dim)), noise_mode="random").square().mean().backward()
    missing = [name for name, p in G.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


# ------------------------------------------------------------------------------------ NVIDIA layout and counts


def test_paper256_layout_matches_nvidia_counts():
    """stylegan.md §1.6: 256², channel_base 16384: 144 keys, 24,767,458 parameters, 175,568 buffer elements."""
    G = StyleGAN2Generator(
        z_dim=512, w_dim=512, img_resolution=256, img_channels=3, synthesis_kwargs={"channel_base": 16384}
    )
    sd = G.state_dict()
    assert len(sd) == 144 and G.num_ws == 14
    assert sum(p.numel() for p in G.parameters()) == 24_767_458
    assert sum(p.numel() for p in G.mapping_network.parameters()) == 2_101_248
    assert sum(b.numel() for b in G.buffers()) == 175_568
    assert sd["synthesis.b64.conv0.weight"].shape == (256, 512, 3, 3)
    assert sd["synthesis.b256.conv1.noise_const"].shape == (256, 256)
    assert sd["synthesis.b256.torgb.weight"].shape == (3, 64, 1, 1)
    assert sd["synthesis.b4.conv1.noise_strength"].shape == ()
    keys = list(sd)
    assert keys[:3] == ["synthesis.b4.const", "synthesis.b4.resample_filter", "synthesis.b4.conv1.weight"]
    assert keys[-17:-15] == ["mapping.w_avg", "mapping.fc0.weight"] and keys[-1] == "mapping.fc7.bias"


def test_3d_stylegan_2mm_layout():
    """3D-StyleGAN 2 mm, 96 filters at every stage, latent 96 (stylegan.md §3.4 names, NVIDIA-style keys)."""
    G = StyleGAN2Generator(
        z_dim=96,
        w_dim=96,
        img_channels=1,
        img_shape=(80, 96, 112),
        synthesis_kwargs={
            "channel_base": 96 * 64,
            "channel_max": 96,
            "architecture": "orig",
            "resample_filter": [1, 3, 3, 3, 1],
            "upsample_gain": 4,
        },
    )
    sd = G.state_dict()
    assert G.num_ws == 10 and G.spatial_dims == 3 and G.img_shape == (80, 96, 112)
    assert G.synthesis_network.block_resolutions == [4, 8, 16, 32, 64]
    assert sd["synthesis.b4.const"].shape == (96, 5, 6, 7)
    assert sd["synthesis.b8.conv0.weight"].shape == (96, 96, 3, 3, 3)
    assert sd["synthesis.b8.conv0.noise_const"].shape == (10, 12, 14)
    assert sd["synthesis.b64.conv1.resample_filter"].shape == (5, 5, 5)
    assert sd["synthesis.b64.torgb.weight"].shape == (1, 96, 1, 1, 1)
    assert not any(".torgb." in k for k in sd if not k.startswith("synthesis.b64."))
    assert sum(p.numel() for p in G.parameters()) == 2_428_234  # ≈ 2.43 M in stylegan.md §3.4
    assert G.init_kwargs["base_shape"] == [5, 6, 7]


def test_init_kwargs_rebuild_the_same_network():
    G = tiny(3, "resnet")
    kwargs = json.loads(json.dumps(G.init_kwargs))
    H = StyleGAN2Generator(**kwargs)
    assert {k: v.shape for k, v in H.state_dict().items()} == {k: v.shape for k, v in G.state_dict().items()}
    assert all(
        torch.equal(a, b) for a, b in zip(G.state_dict().values(), H.state_dict().values(), strict=True)
    )


def test_seeded_initialisation():
    a, b, c = tiny(seed=1), tiny(seed=1), tiny(seed=2)
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    assert not torch.equal(a.synthesis_network.b8.conv1.weight, c.synthesis_network.b8.conv1.weight)
    assert torch.equal(a.synthesis_network.b8.conv1.affine.bias.detach(), torch.ones(8))
    assert float(a.mapping_network.fc0.weight.detach().std()) > 50  # randn / lr_multiplier 0.01


@pytest.mark.parametrize(
    ("img_shape", "base_shape", "expected"),
    [
        ((80, 96, 112), None, ((5, 6, 7), 64)),
        ((160, 192, 224), None, ((5, 6, 7), 128)),
        ((256, 256), None, ((4, 4), 256)),
        ((32, 48), None, ((4, 6), 32)),
        ((80, 96, 112), (10, 12, 14), ((10, 12, 14), 32)),
    ],
)
def test_resolve_shape(img_shape, base_shape, expected):
    assert resolve_shape(None, img_shape, base_shape) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"img_resolution": 48}, "img_resolution must be a power of two"),
        ({"img_resolution": 2}, "img_resolution must be a power of two"),
        ({"img_shape": (80, 96, 100), "base_shape": (5, 6, 7)}, "not a power-of-two multiple"),
        ({"img_shape": (64,)}, "img_shape must have 2 or 3 sides"),
        ({"img_shape": (64, 64), "img_resolution": 32}, "disagrees"),
        ({}, "give img_resolution"),
        ({"img_resolution": 8, "c_dim": 3}, "c_dim must be 0"),
        ({"img_resolution": 8, "img_channels": 0}, "img_channels must be an integer >= 1"),
        ({"img_resolution": 8, "synthesis_kwargs": {"architecture": "unet"}}, "architecture must be one of"),
        (
            {"img_resolution": 8, "synthesis_kwargs": {"chanel_base": 8}},
            r"unknown synthesis_kwargs key\(s\) \['chanel_base'\]",
        ),
        ({"img_resolution": 8, "synthesis_kwargs": {"channel_base": 4}}, "channel_base must be at least"),
        ({"img_resolution": 8, "synthesis_kwargs": {"conv_clamp": -1}}, "conv_clamp must be in"),
        ({"img_resolution": 8, "mapping_kwargs": {"num_layers": 0}}, "num_layers must be an integer >= 1"),
        ({"img_resolution": 8, "mapping_kwargs": {"num_layers": 2.5}}, "num_layers must be an integer >= 1"),
        (
            {"img_resolution": 8, "synthesis_kwargs": {"resample_filter": []}},
            "resample_filter must be a non-empty",
        ),
        ({"img_resolution": 8, "autocast_dtype": torch.int8}, "autocast_dtype must be"),
    ],
)
def test_configuration_errors_name_the_parameter(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        StyleGAN2Generator(z_dim=4, w_dim=4, **kwargs)


def test_nvidia_kwargs_that_only_affect_cuda_execution_are_accepted():
    G = StyleGAN2Generator(
        z_dim=4,
        w_dim=4,
        img_resolution=8,
        img_channels=1,
        mapping_kwargs={"num_layers": 2, "embed_features": None, "w_avg_beta": None},
        synthesis_kwargs={
            "channel_base": 64,
            "num_fp16_res": 4,
            "conv_clamp": 256,
            "fp16_channels_last": True,
        },
    )
    assert G.synthesis(G.mapping(torch.randn(1, 4))).shape == (1, 1, 8, 8)


def test_input_errors():
    G = tiny()
    with pytest.raises(ShapeError, match=r"ws must have shape \[N, 6, 8\]"):
        G.synthesis(torch.zeros(1, 5, 8))
    with pytest.raises(ShapeError, match=r"z must have shape \[N, 8\]"):
        G.mapping(torch.zeros(1, 7))
    with pytest.raises(ConfigError, match="noise_mode must be one of"):
        G.synthesis(torch.zeros(1, 6, 8), noise_mode="fixed")


# ---------------------------------------------------------------------------------------- mapping and noise


def test_truncation_and_w_avg_update():
    G = tiny()
    with torch.no_grad():
        G.mapping_network.w_avg.normal_()
    z = torch.randn(5, G.z_dim)
    ws = G.mapping(z)
    w_avg = G.mapping_network.w_avg
    torch.testing.assert_close(G.mapping(z, truncation_psi=0.0), w_avg.expand_as(ws))
    cut = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, :2], w_avg + 0.5 * (ws[:, :2] - w_avg))
    assert torch.equal(cut[:, 2:], ws[:, 2:])
    before = w_avg.clone()
    G.mapping_network(z, update_w_avg=True)
    torch.testing.assert_close(
        G.mapping_network.w_avg, ws[:, 0].mean(0) + 0.995 * (before - ws[:, 0].mean(0))
    )


@pytest.mark.parametrize("nd", [2, 3])
def test_noise_modes(nd):
    G = tiny(nd)
    set_noise_strengths(G, 0.5)
    ws = torch.randn(2, G.num_ws, G.w_dim)
    rand = [G.synthesis(ws, "random", generator=torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert torch.equal(rand[0], rand[1]) and not torch.allclose(rand[0], rand[2])
    const, none = G.synthesis(ws, "const"), G.synthesis(ws, "none")
    assert not torch.allclose(const, none) and not torch.allclose(const, rand[0])
    set_noise_strengths(G, 0.0)
    torch.testing.assert_close(G.synthesis(ws, "const"), none)


def test_networks_without_noise_inputs():
    G = tiny(3, synthesis_kwargs={"use_noise": False})
    assert not any("noise" in k for k in G.state_dict())
    ws = torch.randn(1, G.num_ws, G.w_dim)
    assert torch.equal(G.synthesis(ws, "const"), G.synthesis(ws, "random"))


# --------------------------------------------------------------------------- checkpointing and mixed precision


@settings(max_examples=6, deadline=None)
@given(cfg=ARCH_CONFIGS, fused=st.booleans())
def test_checkpointing_gives_identical_results(cfg, fused):
    G = build_random(cfg)
    G.fused_modconv = fused
    set_noise_strengths(G, 0.3)
    ws = torch.randn(cfg["batch"], G.num_ws, G.w_dim)
    results = []
    for checkpoint in (False, True):
        G.checkpoint = checkpoint
        w = ws.clone().requires_grad_(True)
        img = G.synthesis(w, "random", generator=torch.Generator().manual_seed(3))
        img.square().sum().backward()
        results.append((img.detach(), w.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])


def saved_for_backward_bytes(G: StyleGAN2Generator, ws: torch.Tensor) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward pass of ``G.synthesis(ws)``."""
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        G.synthesis(ws)
    return sum(saved.values())


def test_checkpointing_frees_block_activations():
    G = tiny(3, resolution=16)
    ws = torch.randn(1, G.num_ws, G.w_dim, requires_grad=True)
    plain = saved_for_backward_bytes(G, ws)
    G.checkpoint = True
    assert saved_for_backward_bytes(G, ws) < 0.2 * plain


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_autocast_is_close_to_float32(nd, dtype):
    """Relative RMS error within 4 machine epsilons of the autocast dtype (measured: about 1.5 eps)."""
    G = tiny(nd, resolution=16, seed=5)
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0))).detach()
    results = []
    for autocast_dtype in (None, dtype):
        G.autocast_dtype = autocast_dtype
        w = ws.clone().requires_grad_(True)
        img = G.synthesis(w)
        img.square().sum().backward()
        results.append((img.detach(), w.grad))
    (ref, ref_grad), (ours, ours_grad) = results
    assert ours.dtype == torch.float32
    rms = lambda t: float(t.square().mean().sqrt())  # noqa: E731
    assert 0 < rms(ours - ref) / rms(ref) < 4 * torch.finfo(dtype).eps
    assert (
        torch.isfinite(ours_grad).all()
        and rms(ours_grad - ref_grad) / rms(ref_grad) < 8 * torch.finfo(dtype).eps
    )
