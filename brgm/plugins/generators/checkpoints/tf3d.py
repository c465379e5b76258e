"""3D-StyleGAN TensorFlow pickles (``2mm_f96.pkl``, ``2mm_f128.pkl``): ``Gs`` of ``G_main`` with 3D components.

The pickle is a tuple ``(G, D, Gs)`` of :class:`~.safe_pickle.TFNetwork` records, as for 2D StyleGAN2
(:mod:`.tensorflow`), built by ``training/networks3d_stylegan2.py`` of github.com/sh4174/3DStyleGAN with the
components ``G_mapping_3d`` and ``G_synthesis_stylegan2_3d_curated_real``. The conversion to NVIDIA's layout
follows the 2D one (research/stylegan.md §3.4) and keeps the TF code's quirks:

- the top block resolution is ``int(resolution / min(base_size) * 4)``: ``resolution=80`` (the smallest side
  at 2 mm) with ``base_size=[5, 6, 7]`` gives blocks b4 … b64 and 80×96×112 volumes; the base scope is named
  ``{D}x{H}X{W}`` (capital X), the others ``{D}x{H}x{W}``;
- block channels ``clip(fmap_base / 2^stage, fmap_min, fmap_max)`` (constant in the published configs, where
  ``fmap_min == fmap_max``) become NVIDIA's ``channel_base`` / ``channel_max``;
- conv weights ``[kd, kh, kw, I, O]`` become ``[O, I, kd, kh, kw]``; the up-sampling ``Conv0_up`` kernels are
  first flipped along the first two spatial axes only, as the TF code flips them (``w[::-1, ::-1]``);
- the FIR after an up-sampling conv is ``resample_kernel`` ([1, 3, 3, 3, 1]³ by default) with DC gain 4, the 2D
  factor the TF code kept (``upsample_gain=4``); latents are 2nd-moment normalised; no ``conv_clamp``.

The TF network ran its activations in float16; converted, it runs in float32 (or under ``autocast``). Only
'orig' generators are read, as every published config is: the TF 'skip' image path up-samples by repeating
voxels (Keras ``UpSampling3D``), which brgm's network does not do. Keyword arguments that none of the three build
functions takes are ignored, as the TF code ignores them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from brgm.core.errors import CheckpointError
from brgm.plugins.generators.checkpoints.layout import block_resolutions, channel_config, filter_keys
from brgm.plugins.generators.checkpoints.limits import brief, brief_keys, check_init_kwargs
from brgm.plugins.generators.checkpoints.nvidia import plain
from brgm.plugins.generators.checkpoints.safe_pickle import TFNetwork
from brgm.plugins.generators.checkpoints.tensorflow import TRANSFORMS, _collect, _pairs, is_tf_pickle
from brgm.plugins.generators.stylegan2.resample import setup_filter

MAPPING_FUNC = "G_mapping_3d"
SYNTHESIS_FUNC = "G_synthesis_stylegan2_3d_curated_real"
#: the kwargs the conversion reads, with the defaults of G_main, G_mapping_3d and the synthesis function
DEFAULTS: dict[str, Any] = {
    "latent_size": 96,
    "label_size": 0,
    "dlatent_size": 96,
    "mapping_layers": 8,
    "mapping_fmaps": 96,
    "mapping_lrmul": 0.01,
    "mapping_nonlinearity": "lrelu",
    "normalize_latents": True,
    "dlatent_avg_beta": 0.995,
    "num_channels": 1,
    "resolution": 128,
    "base_size": [4, 4, 4],
    "fmap_base": 4 << 10,
    "fmap_decay": 1.0,
    "fmap_min": 30,
    "fmap_max": 30,
    "architecture": "skip",
    "nonlinearity": "lrelu",
    "resample_kernel": [1, 3, 3, 3, 1],
}
#: DC gain of the FIR after an up-sampling conv in the TF code (``gain * factor**2``)
UPSAMPLE_GAIN = 4.0
#: the 2D transforms with 3D conv kernels; "conv_flip" flips the first two of the three spatial axes
TRANSFORMS_3D = {
    **TRANSFORMS,
    "conv": lambda a: a.transpose(4, 3, 0, 1, 2),
    "conv_flip": lambda a: a[::-1, ::-1].transpose(4, 3, 0, 1, 2),
}


def _build_func(network: Any) -> str:
    name = network.state.get("build_func_name") if isinstance(network, TFNetwork) else None
    return name if isinstance(name, str) else ""


def is_tf3d_pickle(obj: Any) -> bool:
    """A TF pickle whose ``Gs`` is a 3D-StyleGAN generator (``base_size`` or a 3D synthesis function)."""
    if not is_tf_pickle(obj):
        return False
    gs = obj[2]
    return "base_size" in gs.static_kwargs or "3d" in _build_func(gs.components.get("synthesis"))


def convert_tf3d(
    networks: tuple[TFNetwork, ...], source: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(init_kwargs, state_dict)`` in NVIDIA's 3D layout from the ``Gs`` of a 3D-StyleGAN pickle."""
    gs = networks[2]
    if gs.version < 4:
        raise CheckpointError(
            f"{source}: TensorFlow network pickle version {brief(gs.version)}; brgm reads >= 4"
        )
    for component, func in (("mapping", MAPPING_FUNC), ("synthesis", SYNTHESIS_FUNC)):
        found = _build_func(gs.components.get(component))
        if found != func:
            raise CheckpointError(
                f"{source}: the {component} network is built by {brief(found or 'nothing')!r}; brgm reads 3D-StyleGAN "
                f"generators built by {func!r} (the published 2mm_f96.pkl / 2mm_f128.pkl)"
            )
    static = plain(gs.static_kwargs)
    init_kwargs = tf3d_init_kwargs({k: static.get(k, v) for k, v in DEFAULTS.items()}, source)
    check_init_kwargs(init_kwargs, source)
    resolutions = block_resolutions(init_kwargs["img_resolution"])
    scopes = {f"{r}x{r}": _scope(init_kwargs["base_shape"], r) for r in resolutions}
    variables = _collect(gs, "")
    variables.pop("lod", None)
    state: dict[str, torch.Tensor] = {}
    for tf_name_2d, key, transform in _pairs(init_kwargs):
        parts = tf_name_2d.split("/")
        if parts[0] == "synthesis":
            parts[1] = scopes.get(parts[1], parts[1])
        tf_name = "/".join(parts)
        if tf_name not in variables:
            raise CheckpointError(f"{source}: Gs has no variable '{tf_name}' (needed for {key})")
        value = TRANSFORMS_3D[transform](np.asarray(variables.pop(tf_name)))
        state[key] = torch.from_numpy(np.array(value, order="C"))
    if variables:
        raise CheckpointError(
            f"{source}: Gs has variables brgm cannot place: {', '.join(brief_keys(variables, sort=True))}"
        )
    taps = init_kwargs["synthesis_kwargs"]["resample_filter"]
    for key in filter_keys(init_kwargs["img_resolution"], "orig"):
        state[key] = setup_filter(taps, 3)
    return init_kwargs, state


def _scope(base: list[int], resolution: int) -> str:
    """The TF variable scope of the block at ``resolution``: ``5x6X7`` for the base, then ``10x12x14``, ..."""
    d, h, w = (b * resolution // 4 for b in base)
    return f"{d}x{h}X{w}" if resolution == 4 else f"{d}x{h}x{w}"


def tf3d_init_kwargs(kwargs: dict[str, Any], source: str) -> dict[str, Any]:
    """``StyleGAN2Generator`` kwargs from the TF kwargs (every key of :data:`DEFAULTS`)."""
    if kwargs["label_size"]:
        raise CheckpointError(
            f"{source}: a conditional 3D-StyleGAN (label_size {brief(kwargs['label_size'])})"
        )
    if not kwargs["normalize_latents"]:
        raise CheckpointError(f"{source}: normalize_latents=False; brgm's mapping always normalises z")
    if kwargs["architecture"] != "orig":
        raise CheckpointError(
            f"{source}: a 3D-StyleGAN '{brief(kwargs['architecture'])}' generator; brgm reads 'orig' ones (every "
            "published config): the TF 'skip' and 'resnet' paths up-sample by repeating voxels"
        )
    base = [int(b) for b in kwargs["base_size"]]
    top = int(kwargs["resolution"] / min(base) * 4)
    if len(base) != 3 or top < 4 or top & (top - 1):
        raise CheckpointError(
            f"{source}: resolution {brief(kwargs['resolution'])} and base_size {brief_keys(base)} give no 3D block layout "
            "(resolution / min(base_size) · 4 must be a power of two >= 4)"
        )

    def nf(stage: int) -> int:
        fmaps = int(kwargs["fmap_base"] / 2.0 ** (stage * kwargs["fmap_decay"]))
        return int(np.clip(fmaps, kwargs["fmap_min"], kwargs["fmap_max"]))

    channel_base, channel_max = channel_config({r: nf(int(math.log2(r)) - 1) for r in block_resolutions(top)})
    return {
        "z_dim": int(kwargs["latent_size"]),
        "c_dim": 0,
        "w_dim": int(kwargs["dlatent_size"]),
        "img_resolution": top,
        "img_channels": int(kwargs["num_channels"]),
        "base_shape": base,
        "mapping_kwargs": {
            "num_layers": int(kwargs["mapping_layers"]),
            "layer_features": int(kwargs["mapping_fmaps"]),
            "activation": kwargs["mapping_nonlinearity"],
            "lr_multiplier": float(kwargs["mapping_lrmul"]),
            "w_avg_beta": kwargs["dlatent_avg_beta"],
        },
        "synthesis_kwargs": {
            "channel_base": channel_base,
            "channel_max": channel_max,
            "architecture": "orig",
            "resample_filter": [float(t) for t in kwargs["resample_kernel"]],
            "activation": kwargs["nonlinearity"],
            "use_noise": True,
            "upsample_gain": UPSAMPLE_GAIN,
        },
    }
