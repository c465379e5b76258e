"""rosinality/stylegan2-pytorch checkpoints (``torch.save`` dicts with ``g_ema``), both ways.

rosinality's layers compute what NVIDIA's do, so the weights copy over with reshapes only (research §2.3):
``style.{i+1}`` <-> ``mapping.fc{i}``, ``input.input`` ``[1, C, 4, 4]`` <-> ``b4.const``, ``conv1`` <-> ``b4.conv1``,
``convs.{2j}`` / ``convs.{2j+1}`` <-> ``b{2^(j+3)}.conv0`` / ``.conv1``, ``to_rgb1`` / ``to_rgbs.{j}`` <->
``b4.torgb`` / ``b{2^(j+3)}.torgb``, ``noises.noise_{i}`` <-> ``noise_const``, ``latent_avg`` <-> ``mapping.w_avg``.
The up-sampling kernels (``blur.kernel``, ``upsample.kernel``) are NVIDIA's ``resample_filter`` times 4.

rosinality's generator is always ``skip`` with a [1, 3, 3, 1] filter, no ``conv_clamp`` and no labels; reading
gives ``conv_clamp=None``, and writing keeps only what the state dict holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

from brgm.core.errors import CheckpointError
from brgm.plugins.generators.checkpoints.layout import (
    block_resolutions,
    channel_config,
    filter_keys,
    noise_index,
    resample_filter,
)

Shape = tuple[int, ...]
#: how a tensor's shape changes: (NVIDIA -> rosinality, rosinality -> NVIDIA)
RESHAPES: dict[str, tuple[Callable[[Shape], Shape], Callable[[Shape], Shape]]] = {
    "same": (lambda s: s, lambda s: s),
    "batch": (lambda s: (1, *s), lambda s: s[1:]),
    "noise": (lambda s: (1, 1, *s), lambda s: s[2:]),
    "scalar": (lambda s: (1,), lambda s: ()),
    "rgb_bias": (lambda s: (1, s[0], 1, 1), lambda s: (s[1],)),
}
#: rosinality's up-sampling kernels are the normalised filter times up**2
KERNEL_GAIN = 4.0


def is_rosinality(obj: Any) -> bool:
    return isinstance(obj, dict) and "g_ema" in obj


def pairs(img_resolution: int, mapping_layers: int) -> list[tuple[str, str, str]]:
    """``(rosinality key, NVIDIA key, reshape)`` for every tensor of a generator's state dict."""

    def layer(ros: str, nv: str, noise: int) -> list[tuple[str, str, str]]:
        return [
            (f"{ros}.conv.weight", f"{nv}.weight", "batch"),
            (f"{ros}.conv.modulation.weight", f"{nv}.affine.weight", "same"),
            (f"{ros}.conv.modulation.bias", f"{nv}.affine.bias", "same"),
            (f"{ros}.noise.weight", f"{nv}.noise_strength", "scalar"),
            (f"{ros}.activate.bias", f"{nv}.bias", "same"),
            (f"noises.noise_{noise}", f"{nv}.noise_const", "noise"),
        ]

    def torgb(ros: str, nv: str) -> list[tuple[str, str, str]]:
        return [
            (f"{ros}.conv.weight", f"{nv}.weight", "batch"),
            (f"{ros}.conv.modulation.weight", f"{nv}.affine.weight", "same"),
            (f"{ros}.conv.modulation.bias", f"{nv}.affine.bias", "same"),
            (f"{ros}.bias", f"{nv}.bias", "rgb_bias"),
        ]

    out = [("input.input", "synthesis.b4.const", "batch")]
    out += layer("conv1", "synthesis.b4.conv1", noise_index(4, "conv1"))
    out += torgb("to_rgb1", "synthesis.b4.torgb")
    for j, r in enumerate(block_resolutions(img_resolution)[1:]):
        out += layer(f"convs.{2 * j}", f"synthesis.b{r}.conv0", noise_index(r, "conv0"))
        out += layer(f"convs.{2 * j + 1}", f"synthesis.b{r}.conv1", noise_index(r, "conv1"))
        out += torgb(f"to_rgbs.{j}", f"synthesis.b{r}.torgb")
    for i in range(mapping_layers):
        out += [
            (f"style.{i + 1}.weight", f"mapping.fc{i}.weight", "same"),
            (f"style.{i + 1}.bias", f"mapping.fc{i}.bias", "same"),
        ]
    return out


def kernel_keys(img_resolution: int) -> list[str]:
    """rosinality's up-sampling kernel buffers (one per up-sampling conv and per up-sampling ToRGB)."""
    n = len(block_resolutions(img_resolution)) - 1
    return [f"convs.{2 * j}.conv.blur.kernel" for j in range(n)] + [
        f"to_rgbs.{j}.upsample.kernel" for j in range(n)
    ]


def _count(keys: Any, pattern: str) -> int:
    return len({m.group(1) for k in keys if (m := re.fullmatch(pattern, k))})


def convert_rosinality(
    checkpoint: Mapping[str, Any], source: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(init_kwargs, state_dict)`` in NVIDIA's layout from a rosinality checkpoint dict.

    ``mapping.w_avg`` comes from ``latent_avg`` and is absent when the checkpoint has none (training
    checkpoints): :func:`~.checkpoint.load_checkpoint` then estimates it from the mapping."""
    g = checkpoint["g_ema"]
    if not isinstance(g, Mapping) or not all(isinstance(v, torch.Tensor) for v in g.values()):
        raise CheckpointError(f"{source}: 'g_ema' is not a state dict of tensors")
    mapping_layers = _count(g, r"style\.(\d+)\.weight")
    num_convs = _count(g, r"convs\.(\d+)\.conv\.weight")
    if mapping_layers == 0 or "input.input" not in g or num_convs % 2:
        raise CheckpointError(f"{source}: 'g_ema' does not hold a rosinality StyleGAN2 generator")
    img_resolution = 2 ** (num_convs // 2 + 2)
    state: dict[str, torch.Tensor] = {}
    for ros, nv, reshape in pairs(img_resolution, mapping_layers):
        if ros not in g:
            raise CheckpointError(f"{source}: 'g_ema' has no '{ros}' (needed for {nv})")
        state[nv] = g[ros].reshape(RESHAPES[reshape][1](tuple(g[ros].shape)))
    expected = resample_filter() * KERNEL_GAIN
    for key in kernel_keys(img_resolution):
        if key in g and not torch.equal(g[key].float(), expected):
            raise CheckpointError(f"{source}: '{key}' is not the [1, 3, 3, 1] filter brgm's StyleGAN2 uses")
    extra = sorted(
        set(g)
        - {ros for ros, _, _ in pairs(img_resolution, mapping_layers)}
        - set(kernel_keys(img_resolution))
    )
    if extra:
        raise CheckpointError(f"{source}: 'g_ema' has tensors brgm cannot place: {', '.join(extra)}")
    state.update({key: resample_filter() for key in filter_keys(img_resolution)})
    latent_avg = checkpoint.get("latent_avg")
    if isinstance(latent_avg, torch.Tensor):
        state["mapping.w_avg"] = latent_avg.reshape(-1)
    channels = {r: state[f"synthesis.b{r}.conv1.weight"].shape[0] for r in block_resolutions(img_resolution)}
    channel_base, channel_max = channel_config(channels)
    init_kwargs = {
        "z_dim": state["mapping.fc0.weight"].shape[1],
        "c_dim": 0,
        "w_dim": state[f"mapping.fc{mapping_layers - 1}.weight"].shape[0],
        "img_resolution": img_resolution,
        "img_channels": state["synthesis.b4.torgb.weight"].shape[0],
        "mapping_kwargs": {"num_layers": mapping_layers},
        "synthesis_kwargs": {
            "channel_base": channel_base,
            "channel_max": channel_max,
            "architecture": "skip",
            "conv_clamp": None,
        },
    }
    return init_kwargs, state


def to_rosinality(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """A rosinality checkpoint dict ``{"g_ema": ..., "latent_avg": ...}`` from an NVIDIA-layout state dict of a
    ``skip`` StyleGAN2 with the default filter and no labels (the inverse of :func:`convert_rosinality`)."""
    img_resolution = max(int(m.group(1)) for k in state_dict if (m := re.match(r"synthesis\.b(\d+)\.", k)))
    mapping_layers = _count(state_dict, r"mapping\.fc(\d+)\.weight")
    layout = pairs(img_resolution, mapping_layers)
    extra = (
        set(state_dict) - {nv for _, nv, _ in layout} - set(filter_keys(img_resolution)) - {"mapping.w_avg"}
    )
    missing = [nv for _, nv, _ in layout if nv not in state_dict]
    if extra or missing or not torch.equal(state_dict["synthesis.b4.resample_filter"], resample_filter()):
        raise CheckpointError(
            "rosinality's generator is a 'skip' StyleGAN2 with a [1, 3, 3, 1] filter and no labels; this state "
            f"dict differs (extra: {sorted(extra)[:4]}, missing: {missing[:4]})"
        )
    g: dict[str, torch.Tensor] = {}
    for ros, nv, reshape in layout:
        g[ros] = state_dict[nv].reshape(RESHAPES[reshape][0](tuple(state_dict[nv].shape))).clone()
    g.update({key: resample_filter() * KERNEL_GAIN for key in kernel_keys(img_resolution)})
    return {"g_ema": g, "latent_avg": state_dict["mapping.w_avg"].clone()}
