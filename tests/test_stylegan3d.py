"""3D-StyleGAN: the generator sources, the 3D checkpoint readers (TF pickles with their quirks, bare NVIDIA
state dicts, brgm's format) and the memory options (activation checkpointing, autocast) of generators and solver."""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import brgm
from brgm.core.errors import CheckpointError, ConfigError, WeightsNotFoundError
from brgm.core.terms import Latents
from brgm.plugins.generators.checkpoints import load_checkpoint, read_checkpoint, save_generator
from brgm.plugins.generators.checkpoints.tf3d import (
    DEFAULTS,
    MAPPING_FUNC,
    SYNTHESIS_FUNC,
    TRANSFORMS_3D,
    tf3d_init_kwargs,
)
from brgm.plugins.generators.stylegan2 import StyleGAN2Generator
from brgm.plugins.generators.stylegan2.modulated_conv import conv_resample
from brgm.plugins.generators.stylegan3d import RandomStyleGAN3D, StyleGAN3DBrain2mm

TINY = {"base_shape": (2, 3, 2), "resolution": 8, "fmaps": 4, "z_dim": 8, "w_dim": 8, "mapping_layers": 2}
#: the 2 mm f96 generator's static kwargs (research/stylegan.md §3.4)
F96_KWARGS = {
    "num_channels": 1,
    "resolution": 80,
    "label_size": 0,
    "architecture": "orig",
    "latent_size": 96,
    "dlatent_size": 96,
    "mapping_fmaps": 96,
    "fmap_min": 96,
    "fmap_max": 96,
    "base_size": [5, 6, 7],
    "fmap_base": 8192,
}


def tiny(**overrides: Any) -> StyleGAN2Generator:
    return RandomStyleGAN3D(**{**TINY, **overrides}).load()


def perturbed(G: StyleGAN2Generator, seed: int = 0) -> StyleGAN2Generator:
    """``G`` with every parameter moved off its initial value (biases, noise strengths, style biases)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return G


def outputs(G: torch.nn.Module, seed: int = 1) -> torch.Tensor:
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return G(z)


# ---------------------------------------------------------------------------------------------- sources


def test_default_is_3d_styleGANs_2mm_layout() -> None:
    G = RandomStyleGAN3D().load()
    assert G.img_shape == (80, 96, 112) and G.num_ws == 10 and (G.z_dim, G.w_dim) == (96, 96)
    assert {b.conv1.weight.shape[0] for b in G.synthesis_network.blocks()} == {96}
    assert G.synthesis_network.b4.const.shape == (96, 5, 6, 7)
    assert G.synthesis_network.b64.conv0.weight.shape == (96, 96, 3, 3, 3)
    # research/stylegan.md §3.4 derives ≈2.43 M parameters for f96 / latent 96 and ≈4.31 M for f128 / 128
    assert sum(p.numel() for p in G.parameters()) == pytest.approx(2.43e6, rel=0.005)
    f128 = RandomStyleGAN3D(fmaps=128, z_dim=128, w_dim=128).load()
    assert sum(p.numel() for p in f128.parameters()) == pytest.approx(4.31e6, rel=0.005)
    assert RandomStyleGAN3D(resolution=128, fmaps=4).load().img_shape == (160, 192, 224)


def test_shape_and_channel_settings() -> None:
    assert RandomStyleGAN3D(img_shape=(40, 48, 56), fmaps=4).geometry() == ((5, 6, 7), 32)
    G = tiny(fmaps=None, channel_base=64, channel_max=8, architecture="skip")
    assert [b.conv1.weight.shape[0] for b in G.synthesis_network.blocks()] == [8, 8]
    assert all(hasattr(b, "torgb") for b in G.synthesis_network.blocks())
    assert torch.equal(outputs(tiny(seed=3)), outputs(tiny(seed=3)))
    assert not torch.equal(outputs(tiny(seed=3)), outputs(tiny(seed=4)))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"fmaps": 8, "channel_base": 64, "channel_max": 8}, "either fmaps"),
        ({"channel_base": 64}, "channel_base and channel_max go together"),
        ({"resolution": 12}, "resolution must be a power of two"),
        ({"img_shape": (10, 12, 15)}, "not a power-of-two multiple of base_shape"),
        ({"base_shape": (5, 6)}, "base_shape must be three integers"),
    ],
)
def test_bad_settings_are_config_errors(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RandomStyleGAN3D(**settings)


def test_memory_options_are_execution_settings_not_generator_fields() -> None:
    G = tiny()
    assert G.checkpoint is False and G.autocast_dtype is None
    assert not any(p.requires_grad for p in G.parameters()) and not G.training
    assert not {"checkpoint", "autocast"} & {f.name for f in attrs.fields(RandomStyleGAN3D)}
    problem = brgm.compose(
        gen=G, fwd="mask", priors=[], device="cpu", **{"solver.checkpoint": "true", "solver.autocast": "bf16"}
    )
    assert (problem.execution.checkpoint, problem.execution.autocast) == (True, "bf16")
    assert problem.config["execution"] == {
        "batch_size": 8,
        "checkpoint": True,
        "autocast": "bf16",
        "consistency": "auto",
    }
    assert G.checkpoint is False and G.autocast_dtype is None  # set during a solve only


def test_preset_without_weights_names_file_places_and_command(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BRGM_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as err:
        brgm.load_generator("stylegan3d-brain-2mm")
    message = str(err.value)
    assert "2mm_f96.pkl" in message and str(tmp_path / "weights") in message
    assert "brgm weights fetch stylegan3d-brain-2mm" in message and "weights=PATH" in message


# ------------------------------------------------------------------------------ TF pickles (3D-StyleGAN)


@pytest.fixture
def tf_network(monkeypatch) -> type:
    """A class that pickles as ``dnnlib.tflib.network.Network`` with a given ``__getstate__`` dict."""
    names = ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))

    class Network:
        def __init__(self, state: dict[str, Any]) -> None:
            self.state = state

        def __getstate__(self) -> dict[str, Any]:
            return self.state

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    sys.modules["dnnlib.tflib.network"].Network = Network
    return Network


def write_tf_pickle(
    path: Path,
    network: type,
    static_kwargs: dict[str, Any],
    variables: dict[str, dict[str, np.ndarray]],
    *,
    funcs: tuple[str, str] = (MAPPING_FUNC, SYNTHESIS_FUNC),
    module_src: str = "",
) -> Path:
    """``(G, D, Gs)`` as dnnlib pickles networks (version 4), from variables by component ('' = G_main)."""

    def net(name: str, func: str, scope: str, components: dict[str, Any]) -> Any:
        return network(
            {
                "version": 4,
                "name": name,
                "static_kwargs": static_kwargs,
                "components": components,
                "build_module_src": module_src,
                "build_func_name": func,
                "variables": [(k, np.ascontiguousarray(v)) for k, v in variables[scope].items()],
            }
        )

    components = {
        "mapping": net("G_mapping", funcs[0], "mapping", {}),
        "synthesis": net("G_synthesis", funcs[1], "synthesis", {}),
    }
    gs = net("Gs", "G_main", "", components)
    path.write_bytes(pickle.dumps((gs, gs, gs), protocol=pickle.HIGHEST_PROTOCOL))
    return path


def scope(base: tuple[int, ...], resolution: int) -> str:
    d, h, w = (b * resolution // 4 for b in base)
    return f"{d}x{h}X{w}" if resolution == 4 else f"{d}x{h}x{w}"


def documented_variables(
    kwargs: dict[str, Any], rng: np.random.Generator
) -> dict[str, dict[str, np.ndarray]]:
    """Random TF variables with the names and shapes of research/stylegan.md §3.4 (constant fmaps, 'orig')."""
    base, f, latent = kwargs["base_size"], kwargs["fmap_max"], kwargs["latent_size"]
    top = kwargs["resolution"] * 4 // min(base)
    resolutions = [2**k for k in range(2, top.bit_length())]

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    def layer(prefix: str, fmaps_out: int = f, kernel: int = 3) -> dict[str, np.ndarray]:
        out = {
            f"{prefix}/weight": normal(kernel, kernel, kernel, f, fmaps_out),
            f"{prefix}/mod_weight": normal(latent, f),
            f"{prefix}/mod_bias": normal(f),
            f"{prefix}/bias": normal(fmaps_out),
        }
        if kernel == 3:
            out[f"{prefix}/noise_strength"] = np.float32(rng.standard_normal())
        return out

    synthesis = {f"{scope(base, 4)}/Const/const": normal(1, f, *base)}
    synthesis.update(layer(f"{scope(base, 4)}/Conv"))
    for r in resolutions[1:]:
        synthesis.update(layer(f"{scope(base, r)}/Conv0_up"))
        synthesis.update(layer(f"{scope(base, r)}/Conv1"))
    synthesis.update(layer(f"{scope(base, top)}/ToRGB", fmaps_out=1, kernel=1))
    shapes = [[b * r // 4 for b in base] for r in resolutions for _ in (0, 1)][1:]
    synthesis.update({f"noise{i}": normal(1, 1, *s) for i, s in enumerate(shapes)})
    mapping = {}
    for i in range(kwargs["mapping_layers"]):
        mapping[f"Dense{i}/weight"] = normal(latent, latent)
        mapping[f"Dense{i}/bias"] = normal(latent)
    return {
        "": {"lod": np.float32(0), "dlatent_avg": normal(latent)},
        "mapping": mapping,
        "synthesis": synthesis,
    }


def test_published_2mm_f96_layout_converts(tf_network: type, tmp_path: Path) -> None:
    variables = documented_variables({**DEFAULTS, **F96_KWARGS}, np.random.default_rng(0))
    marker = tmp_path / "executed"
    path = write_tf_pickle(
        tmp_path / "2mm_f96.pkl", tf_network, F96_KWARGS, variables, module_src=f"open({str(marker)!r}, 'w')"
    )
    checkpoint = read_checkpoint(path)
    assert checkpoint.format == "tensorflow" and not marker.exists()
    G = load_checkpoint(path)
    assert G.img_shape == (80, 96, 112) and G.num_ws == 10 and (G.z_dim, G.w_dim) == (96, 96)
    assert sum(p.numel() for p in G.parameters()) == pytest.approx(2.43e6, rel=0.005)
    state, synthesis = checkpoint.state_dict, variables["synthesis"]
    up = synthesis["10x12x14/Conv0_up/weight"]
    assert torch.equal(
        state["synthesis.b8.conv0.weight"], torch.from_numpy(up[::-1, ::-1].transpose(4, 3, 0, 1, 2).copy())
    )
    assert not torch.equal(
        state["synthesis.b8.conv0.weight"],
        torch.from_numpy(up[::-1, ::-1, ::-1].transpose(4, 3, 0, 1, 2).copy()),
    )
    conv = synthesis["80x96x112/Conv1/weight"]
    assert torch.equal(
        state["synthesis.b64.conv1.weight"], torch.from_numpy(conv.transpose(4, 3, 0, 1, 2).copy())
    )
    assert torch.equal(state["synthesis.b4.const"], torch.from_numpy(synthesis["5x6X7/Const/const"][0]))
    assert torch.equal(state["synthesis.b64.conv1.noise_const"], torch.from_numpy(synthesis["noise8"][0, 0]))
    mod_bias = synthesis["80x96x112/ToRGB/mod_bias"]
    assert torch.equal(state["synthesis.b64.torgb.affine.bias"], torch.from_numpy(mod_bias + np.float32(1)))
    assert torch.equal(
        state["mapping.fc3.weight"], torch.from_numpy(variables["mapping"]["Dense3/weight"].T.copy())
    )
    assert torch.equal(state["mapping.w_avg"], torch.from_numpy(variables[""]["dlatent_avg"]))


def tf_variables_of(G: StyleGAN2Generator) -> dict[str, dict[str, np.ndarray]]:
    """TF variables of a TF-convention generator: the inverse of the documented conversion rules."""
    state = {k: v.numpy() for k, v in G.state_dict().items()}
    base = tuple(G.init_kwargs["base_shape"])
    resolutions = G.synthesis_network.block_resolutions
    synthesis: dict[str, np.ndarray] = {}
    noise = iter(range(2 * len(resolutions)))

    def layer(tf_scope: str, key: str, up: bool = False) -> None:
        weight = state[f"{key}.weight"].transpose(2, 3, 4, 1, 0)
        synthesis[f"{tf_scope}/weight"] = weight[::-1, ::-1] if up else weight
        synthesis[f"{tf_scope}/mod_weight"] = state[f"{key}.affine.weight"].T
        synthesis[f"{tf_scope}/mod_bias"] = state[f"{key}.affine.bias"] - np.float32(1)
        synthesis[f"{tf_scope}/bias"] = state[f"{key}.bias"]
        if f"{key}.noise_const" in state:
            synthesis[f"{tf_scope}/noise_strength"] = state[f"{key}.noise_strength"]
            synthesis[f"noise{next(noise)}"] = state[f"{key}.noise_const"][None, None]

    synthesis[f"{scope(base, 4)}/Const/const"] = state["synthesis.b4.const"][None]
    layer(f"{scope(base, 4)}/Conv", "synthesis.b4.conv1")
    for r in resolutions[1:]:
        layer(f"{scope(base, r)}/Conv0_up", f"synthesis.b{r}.conv0", up=True)
        layer(f"{scope(base, r)}/Conv1", f"synthesis.b{r}.conv1")
    layer(f"{scope(base, resolutions[-1])}/ToRGB", f"synthesis.b{resolutions[-1]}.torgb")
    mapping = {}
    for i in range(G.init_kwargs["mapping_kwargs"]["num_layers"]):
        mapping[f"Dense{i}/weight"] = state[f"mapping.fc{i}.weight"].T
        mapping[f"Dense{i}/bias"] = state[f"mapping.fc{i}.bias"]
    return {
        "": {"lod": np.float32(0), "dlatent_avg": state["mapping.w_avg"]},
        "mapping": mapping,
        "synthesis": synthesis,
    }


TINY_TF_KWARGS = {
    "architecture": "orig",
    "resolution": 4,  # min(base_size) · top / 4 with top = 8
    "base_size": [2, 3, 2],
    "latent_size": 8,
    "dlatent_size": 8,
    "mapping_fmaps": 8,
    "mapping_layers": 2,
    "fmap_min": 4,
    "fmap_max": 4,
}


def test_tf_pickle_reproduces_the_generator_that_wrote_it(tf_network: type, tmp_path: Path) -> None:
    kwargs = tf3d_init_kwargs({**DEFAULTS, **TINY_TF_KWARGS}, "test")
    assert kwargs["synthesis_kwargs"]["upsample_gain"] == 4.0
    assert kwargs["synthesis_kwargs"]["resample_filter"] == [1.0, 3.0, 3.0, 3.0, 1.0]
    G = perturbed(StyleGAN2Generator(**kwargs, seed=5)).eval()
    with torch.no_grad():
        G.mapping_network.w_avg.copy_(torch.randn(8))
    path = write_tf_pickle(tmp_path / "g.pkl", tf_network, TINY_TF_KWARGS, tf_variables_of(G))
    loaded = load_checkpoint(path)
    assert loaded.init_kwargs == G.init_kwargs
    torch.testing.assert_close(outputs(loaded), outputs(G), rtol=1e-5, atol=1e-6)
    ws = loaded.mapping(torch.randn(1, 8), truncation_psi=0.5)
    torch.testing.assert_close(loaded.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const"))


def tf_upsample_conv_3d(x: np.ndarray, w: np.ndarray, taps: list[float]) -> np.ndarray:
    """3D-StyleGAN's TF ``upsample_conv_3d`` (factor 2), written out from TF's definitions: ``conv3d_transpose``
    (stride 2, VALID; filter ``[kd, kh, kw, out, in]``) of the kernel flipped along its first two axes, then
    zero padding (2, 1) and a VALID true convolution with the 5³ FIR times 4. ``x [N, I, D, H, W]``,
    ``w [k, k, k, I, O]``."""
    k = w.shape[0]
    f = w[::-1, ::-1].transpose(0, 1, 2, 4, 3)
    n, _, d, h, wd = x.shape
    out = np.zeros((n, f.shape[3], 2 * d + 1, 2 * h + 1, 2 * wd + 1))
    for a, b, c in np.ndindex(k, k, k):
        out[:, :, a : a + 2 * d : 2, b : b + 2 * h : 2, c : c + 2 * wd : 2] += np.einsum(
            "nidhw,oi->nodhw", x, f[a, b, c]
        )
    t = np.asarray(taps, dtype=np.float64)
    fir = np.einsum("i,j,k->ijk", t, t, t)
    fir = fir / fir.sum() * 4
    padded = np.pad(out, [(0, 0), (0, 0), (2, 1), (2, 1), (2, 1)])
    y = np.zeros((n, f.shape[3], 2 * d, 2 * h, 2 * wd))
    flipped = fir[::-1, ::-1, ::-1]
    for p, q, r in np.ndindex(*fir.shape):
        y += flipped[p, q, r] * padded[:, :, p : p + 2 * d, q : q + 2 * h, r : r + 2 * wd]
    return y


def test_converted_up_conv_matches_the_tf_definition() -> None:
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 2, 3, 4)), rng.standard_normal((3, 3, 3, 3, 5))
    taps = [1.0, 3.0, 3.0, 3.0, 1.0]
    ours = conv_resample(
        torch.from_numpy(x),
        torch.from_numpy(TRANSFORMS_3D["conv_flip"](w).copy()),
        up=2,
        resample_filter=torch.from_numpy(np.einsum("i,j,k->ijk", taps, taps, taps) / sum(taps) ** 3),
        up_gain=4.0,
    )
    np.testing.assert_allclose(ours.numpy(), tf_upsample_conv_3d(x, w, taps), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architecture": "skip"}, "brgm reads 'orig' ones"),
        ({"label_size": 3}, "conditional"),
        ({"resolution": 5}, "no 3D block layout"),
    ],
)
def test_tf_pickles_brgm_cannot_reproduce_are_refused(
    tf_network: type, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    variables = documented_variables({**DEFAULTS, **TINY_TF_KWARGS}, np.random.default_rng(0))
    path = write_tf_pickle(tmp_path / "g.pkl", tf_network, {**TINY_TF_KWARGS, **change}, variables)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


def test_tf_pickle_of_another_synthesis_function_is_refused(tf_network: type, tmp_path: Path) -> None:
    variables = documented_variables({**DEFAULTS, **TINY_TF_KWARGS}, np.random.default_rng(0))
    funcs = (MAPPING_FUNC, "G_synthesis_stylegan2_3d")
    path = write_tf_pickle(tmp_path / "g.pkl", tf_network, TINY_TF_KWARGS, variables, funcs=funcs)
    with pytest.raises(CheckpointError, match="built by 'G_synthesis_stylegan2_3d'"):
        read_checkpoint(path)


def test_preset_loads_a_2mm_pickle_and_refuses_other_grids(tf_network: type, tmp_path: Path) -> None:
    small = {
        **F96_KWARGS,
        "fmap_min": 2,
        "fmap_max": 2,
        "latent_size": 4,
        "dlatent_size": 4,
        "mapping_fmaps": 4,
    }
    variables = documented_variables({**DEFAULTS, **small}, np.random.default_rng(1))
    path = write_tf_pickle(tmp_path / "2mm.pkl", tf_network, small, variables)
    G = StyleGAN3DBrain2mm(weights=path).load()
    assert G.img_shape == (80, 96, 112) and not G.training
    tiny_vars = documented_variables({**DEFAULTS, **TINY_TF_KWARGS}, np.random.default_rng(1))
    other = write_tf_pickle(tmp_path / "tiny.pkl", tf_network, TINY_TF_KWARGS, tiny_vars)
    with pytest.raises(CheckpointError, match=r"a 4×6×4 generator .* makes 80×96×112 volumes"):
        StyleGAN3DBrain2mm(weights=other).load()


# ------------------------------------------------------------------- NVIDIA state dicts and brgm's format


@pytest.mark.parametrize("writer", ["torch", "safetensors"])
@pytest.mark.parametrize("settings", [{}, {"architecture": "skip", "resolution": 16, "fmaps": 3}])
def test_bare_state_dict_reproduces_the_generator(tmp_path: Path, writer: str, settings: dict) -> None:
    G = perturbed(tiny(**settings))
    state = {k: v.contiguous() for k, v in G.state_dict().items()}
    path = tmp_path / ("g.pt" if writer == "torch" else "g.safetensors")
    if writer == "torch":
        torch.save(state, path)
    else:
        save_file(state, path)
    checkpoint = read_checkpoint(path)
    assert checkpoint.format == "state_dict"
    assert (
        checkpoint.init_kwargs["synthesis_kwargs"]["architecture"]
        == G.init_kwargs["synthesis_kwargs"]["architecture"]
    )
    assert torch.equal(outputs(load_checkpoint(path)), outputs(G))


def test_bare_state_dict_without_filter_buffers_gets_nvidias_filter(tmp_path: Path) -> None:
    G = perturbed(tiny())
    state = {k: v for k, v in G.state_dict().items() if not k.endswith("resample_filter")}
    torch.save(state, tmp_path / "g.pt")
    assert torch.equal(outputs(load_checkpoint(tmp_path / "g.pt")), outputs(G))


def test_brgm_format_round_trip_is_bit_exact(tmp_path: Path) -> None:
    G = perturbed(tiny(architecture="skip"))
    save_generator(G, tmp_path / "g.safetensors")
    loaded = load_checkpoint(tmp_path / "g.safetensors")
    assert read_checkpoint(tmp_path / "g.safetensors").format == "brgm"
    assert loaded.init_kwargs == G.init_kwargs and loaded.img_shape == (4, 6, 4)
    assert torch.equal(outputs(loaded), outputs(G))


# ------------------------------------------------------------------------------------- memory options


def saved_bytes(fn: Any) -> tuple[Any, int]:
    """``fn()`` and the bytes of the tensors autograd saved for the backward pass while it ran (a checkpointed
    block saves its inputs only and recomputes the rest in the backward pass)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        return fn(), total


def test_checkpointing_gives_the_plain_result_and_keeps_only_block_inputs() -> None:
    G = perturbed(tiny(resolution=16))
    ws = G.mapping(torch.randn(2, 8, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    x, plain_bytes = saved_bytes(lambda: G.synthesis(ws))
    (grad,) = torch.autograd.grad(x.square().sum(), ws)
    with G.memory_options(checkpoint=True):
        y, checkpoint_bytes = saved_bytes(lambda: G.synthesis(ws))
        (grad_checkpoint,) = torch.autograd.grad(y.square().sum(), ws)
    assert G.checkpoint is False
    torch.testing.assert_close(y, x, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad_checkpoint, grad, rtol=1e-6, atol=1e-7)
    assert checkpoint_bytes < 0.5 * plain_bytes


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_is_within_the_precision(dtype: torch.dtype) -> None:
    G = perturbed(tiny(resolution=16))
    ws = G.mapping(torch.randn(2, 8, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    x = G.synthesis(ws)
    (grad,) = torch.autograd.grad(x.square().sum(), ws)
    with G.memory_options(autocast_dtype=dtype):
        y = G.synthesis(ws)
        (grad_autocast,) = torch.autograd.grad(y.square().sum(), ws)
    assert G.autocast_dtype is None and y.dtype == torch.float32
    eps = torch.finfo(dtype).eps
    error = float((y - x).detach().norm() / x.detach().norm())
    assert 0 < error < 8 * eps
    assert float((grad_autocast - grad).norm() / grad.norm()) < 16 * eps


def kspace_problem(G: StyleGAN2Generator) -> tuple[Any, torch.Tensor]:
    problem = brgm.compose(gen=G, fwd="kspace", priors=[], device="cpu")
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = problem.forward_model(problem.image(Latents(ws=G.mapping(z))))
    return problem, y


def test_solver_options_apply_during_the_solve_only() -> None:
    problem, y = kspace_problem(perturbed(tiny()))
    G = problem.generator
    seen = set()

    def progress(step: int, steps: int, energies: dict[str, float]) -> None:
        seen.add((G.checkpoint, G.autocast_dtype))

    plain = brgm.reconstruct(problem, y, steps=4)
    checkpointed = brgm.reconstruct(problem, y, steps=4, checkpoint=True, progress=progress)
    assert seen == {(True, None)} and G.checkpoint is False
    torch.testing.assert_close(checkpointed.ws, plain.ws, rtol=1e-6, atol=1e-7)
    seen.clear()
    autocast = brgm.reconstruct(problem, y, steps=1, autocast="bf16", progress=progress)
    assert seen == {(False, torch.bfloat16)} and G.autocast_dtype is None
    first, first_autocast = plain.history["total"][0], autocast.history["total"][0]
    torch.testing.assert_close(first_autocast, first, rtol=16 * torch.finfo(torch.bfloat16).eps, atol=0)


def test_solver_memory_options_on_a_generator_without_them_fail_before_computing() -> None:
    problem = brgm.compose(gen="tiny", fwd="test_scale", likelihoods=["test_sse"], priors=[], device="cpu")
    y = torch.zeros(1, *problem.measurement_shape)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("synthesis ran")

    problem.generator.synthesis = fail
    with pytest.raises(ConfigError, match="supports neither activation checkpointing nor autocast"):
        brgm.reconstruct(problem, y, steps=2, checkpoint=True)
    with pytest.raises(ConfigError, match="autocast must be one of"):
        brgm.reconstruct(problem, y, steps=2, autocast="fp8")
