"""Original TensorFlow StyleGAN2 pickles (NVIDIA's, BRGM's ``ffhq.pkl`` / ``xray.pkl`` / ``brains.pkl``): ``Gs``.

The pickle is a tuple ``(G, D, Gs)`` of :class:`~.safe_pickle.TFNetwork` records holding numpy variables; ``Gs``
is the moving average used for inference. Conversion to NVIDIA's PyTorch layout (``legacy.py``'s rules):

- dense and modulation weights ``[in, out]`` are transposed; conv weights ``[kh, kw, I, O]`` become
  ``[O, I, kh, kw]``, and the up-sampling ``Conv0_up`` and ``Skip`` kernels are first flipped spatially;
- ``mod_bias + 1`` is the affine bias (TF adds the 1 at run time); ``noise{i}`` ``[1, 1, r, r]`` become
  ``noise_const`` ``[r, r]``; the const loses its batch axis; ``lod`` is ignored;
- ``channel_base = 2 * fmap_base`` and the architecture defaults to ``skip``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from brgm.core.errors import CheckpointError
from brgm.plugins.generators.checkpoints.layout import (
    block_resolutions,
    filter_keys,
    noise_index,
    resample_filter,
)
from brgm.plugins.generators.checkpoints.limits import brief, brief_keys, check_init_kwargs
from brgm.plugins.generators.checkpoints.nvidia import plain
from brgm.plugins.generators.checkpoints.safe_pickle import TFNetwork

#: TF static kwarg -> (section, PyTorch kwarg, TF default)
KWARGS: dict[str, tuple[str, str, Any]] = {
    "latent_size": ("", "z_dim", 512),
    "label_size": ("", "c_dim", 0),
    "dlatent_size": ("", "w_dim", 512),
    "resolution": ("", "img_resolution", 1024),
    "num_channels": ("", "img_channels", 3),
    "mapping_layers": ("mapping_kwargs", "num_layers", 8),
    "label_fmaps": ("mapping_kwargs", "embed_features", None),
    "mapping_fmaps": ("mapping_kwargs", "layer_features", None),
    "mapping_nonlinearity": ("mapping_kwargs", "activation", "lrelu"),
    "mapping_lrmul": ("mapping_kwargs", "lr_multiplier", 0.01),
    "w_avg_beta": ("mapping_kwargs", "w_avg_beta", 0.995),
    "fmap_base": ("synthesis_kwargs", "channel_base", 16384),
    "fmap_max": ("synthesis_kwargs", "channel_max", 512),
    "num_fp16_res": ("synthesis_kwargs", "num_fp16_res", 0),
    "conv_clamp": ("synthesis_kwargs", "conv_clamp", None),
    "architecture": ("synthesis_kwargs", "architecture", "skip"),
    "resample_kernel": ("synthesis_kwargs", "resample_filter", [1, 3, 3, 1]),
    "use_noise": ("synthesis_kwargs", "use_noise", True),
    "nonlinearity": ("synthesis_kwargs", "activation", "lrelu"),
}
#: run-time settings stored with some pickles; they do not change the weights
IGNORED_KWARGS = frozenset({"truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure"})
#: kwargs of 3D-StyleGAN's TF generator, which this 2D converter does not read
VOLUME_KWARGS = frozenset({"base_size", "fmap_min"})

Transform = Callable[[np.ndarray], np.ndarray]
TRANSFORMS: dict[str, Transform] = {
    "same": lambda a: a,
    "dense": lambda a: a.T,
    "conv": lambda a: a.transpose(3, 2, 0, 1),
    "conv_flip": lambda a: a[::-1, ::-1].transpose(3, 2, 0, 1),
    "mod_bias": lambda a: a + np.asarray(1, dtype=a.dtype),
    "const": lambda a: a[0],
    "noise": lambda a: a[0, 0],
}


def is_tf_pickle(obj: Any) -> bool:
    return isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, TFNetwork) for n in obj)


def convert_tf(
    networks: tuple[TFNetwork, ...], source: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(init_kwargs, state_dict)`` in NVIDIA's layout from the ``Gs`` of a TF pickle ``(G, D, Gs)``."""
    gs = networks[2]
    if gs.version < 4:
        raise CheckpointError(
            f"{source}: TensorFlow network pickle version {brief(gs.version)} (StyleGAN1?); brgm reads StyleGAN2 (>= 4)"
        )
    init_kwargs = tf_init_kwargs(plain(gs.static_kwargs), source)
    check_init_kwargs(init_kwargs, source)
    variables = _collect(gs, "")
    variables.pop("lod", None)
    state: dict[str, torch.Tensor] = {}
    for tf_name, key, transform in _pairs(init_kwargs):
        if tf_name not in variables:
            raise CheckpointError(f"{source}: Gs has no variable '{tf_name}' (needed for {key})")
        value = TRANSFORMS[transform](np.asarray(variables.pop(tf_name)))
        state[key] = torch.from_numpy(np.array(value, order="C"))  # a C-ordered copy; keeps 0-d scalars 0-d
    if variables:
        raise CheckpointError(
            f"{source}: Gs has variables brgm cannot place: {', '.join(brief_keys(variables, sort=True))}"
        )
    synthesis = init_kwargs["synthesis_kwargs"]
    for key in filter_keys(init_kwargs["img_resolution"], synthesis["architecture"]):
        state[key] = resample_filter(synthesis["resample_filter"])
    return init_kwargs, state


def tf_init_kwargs(static_kwargs: dict[str, Any], source: str) -> dict[str, Any]:
    """NVIDIA ``Generator`` kwargs from a TF generator's ``static_kwargs`` (defaults: TF's)."""
    volume = sorted(VOLUME_KWARGS & set(static_kwargs))
    if volume:
        raise CheckpointError(
            f"{source}: a 3D-StyleGAN TensorFlow pickle (kwargs {', '.join(volume)}); this reader converts 2D StyleGAN2"
        )
    unknown = sorted(set(static_kwargs) - set(KWARGS) - IGNORED_KWARGS)
    if unknown:
        raise CheckpointError(
            f"{source}: unknown TensorFlow generator kwarg(s) {', '.join(brief_keys(unknown))}"
        )
    out: dict[str, Any] = {"mapping_kwargs": {}, "synthesis_kwargs": {}}
    for tf_name, (section, name, default) in KWARGS.items():
        value = static_kwargs.get(tf_name, default)
        if tf_name == "fmap_base":
            value *= 2
        elif tf_name == "w_avg_beta" and value is None:
            value = 1.0
        if value is None and name in ("embed_features", "layer_features"):
            continue
        (out[section] if section else out)[name] = value
    return out


def _collect(network: TFNetwork, prefix: str) -> dict[str, Any]:
    """Variables of a network and its components, named ``component/…/name`` as TF scopes them."""
    out = {prefix + name: value for name, value in network.variables}
    for name, component in network.components.items():
        if isinstance(component, TFNetwork):
            out.update(_collect(component, f"{prefix}{name}/"))
    return out


def _pairs(init_kwargs: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(TF variable, NVIDIA key, transform)`` for every tensor of the generator ``init_kwargs`` describes."""
    synthesis, mapping = init_kwargs["synthesis_kwargs"], init_kwargs["mapping_kwargs"]
    resolutions = block_resolutions(init_kwargs["img_resolution"])
    use_noise, architecture = synthesis["use_noise"], synthesis["architecture"]

    def layer(scope: str, key: str, resolution: int, name: str, kernel: str) -> list[tuple[str, str, str]]:
        out = [
            (f"{scope}/weight", f"{key}.weight", kernel),
            (f"{scope}/mod_weight", f"{key}.affine.weight", "dense"),
            (f"{scope}/mod_bias", f"{key}.affine.bias", "mod_bias"),
            (f"{scope}/bias", f"{key}.bias", "same"),
        ]
        if use_noise:
            out += [
                (f"{scope}/noise_strength", f"{key}.noise_strength", "same"),
                (f"synthesis/noise{noise_index(resolution, name)}", f"{key}.noise_const", "noise"),
            ]
        return out

    pairs = [("dlatent_avg", "mapping.w_avg", "same")]
    for r in resolutions:
        scope, key = f"synthesis/{r}x{r}", f"synthesis.b{r}"
        if r == 4:
            pairs.append((f"{scope}/Const/const", f"{key}.const", "const"))
            pairs += layer(f"{scope}/Conv", f"{key}.conv1", r, "conv1", "conv")
        else:
            pairs += layer(f"{scope}/Conv0_up", f"{key}.conv0", r, "conv0", "conv_flip")
            pairs += layer(f"{scope}/Conv1", f"{key}.conv1", r, "conv1", "conv")
        if architecture == "skip" or r == resolutions[-1]:
            pairs += [
                (f"{scope}/ToRGB/weight", f"{key}.torgb.weight", "conv"),
                (f"{scope}/ToRGB/bias", f"{key}.torgb.bias", "same"),
                (f"{scope}/ToRGB/mod_weight", f"{key}.torgb.affine.weight", "dense"),
                (f"{scope}/ToRGB/mod_bias", f"{key}.torgb.affine.bias", "mod_bias"),
            ]
        if architecture == "resnet" and r > 4:
            pairs.append((f"{scope}/Skip/weight", f"{key}.skip.weight", "conv_flip"))
    if init_kwargs["c_dim"]:
        pairs += [
            ("mapping/LabelEmbed/weight", "mapping.embed.weight", "dense"),
            ("mapping/LabelEmbed/bias", "mapping.embed.bias", "same"),
        ]
    for i in range(mapping["num_layers"]):
        pairs += [
            (f"mapping/Dense{i}/weight", f"mapping.fc{i}.weight", "dense"),
            (f"mapping/Dense{i}/bias", f"mapping.fc{i}.bias", "same"),
        ]
    return pairs
