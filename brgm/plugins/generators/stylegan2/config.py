"""Validated hyper-parameters of the StyleGAN2 mapping and synthesis networks.

The field names and defaults are NVIDIA's ``mapping_kwargs`` / ``synthesis_kwargs`` of stylegan2-ada-pytorch
(``training/networks.py``), so a pickle's ``G_ema._init_kwargs`` can be passed through unchanged. Fields marked
"accepted" are read from such kwargs but do not change the computation here.
"""

from __future__ import annotations

from typing import Any

import attrs

from brgm.core.errors import ConfigError
from brgm.core.params import Validator, interval, one_of, to_tuple

#: activation -> default gain (NVIDIA's ``bias_act`` table); lrelu uses slope 0.2
ACTIVATION_GAINS: dict[str, float] = {"linear": 1.0, "relu": 2.0**0.5, "lrelu": 2.0**0.5}
ARCHITECTURES = ("orig", "skip", "resnet")
POSITIVE = interval(0, None, open_lo=True)


def check_int(name: str, value: Any, lo: int = 1) -> int:
    """``value`` as an int if it is an integer >= ``lo``; otherwise a :class:`ConfigError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"{name} must be an integer >= {lo}, got {value!r}")
    return value


def integer(lo: int) -> Validator:
    """attrs validator: an integer >= ``lo``."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_int(attribute.name, value, lo)

    return check


def build(config_type: type, kwargs: dict[str, Any] | None, what: str) -> Any:
    """``config_type(**kwargs)``, with an unknown key reported as a :class:`ConfigError` naming it."""
    kwargs = dict(kwargs or {})
    known = {f.name for f in attrs.fields(config_type)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ConfigError(f"unknown {what} key(s) {unknown}; accepted: {sorted(known)}")
    return config_type(**kwargs)


@attrs.define(kw_only=True, frozen=True)
class MappingConfig:
    """``z -> w``: ``num_layers`` fully connected layers with equalised learning rate."""

    num_layers: int = attrs.field(default=8, validator=integer(1))
    embed_features: int | None = None  # accepted; only used by conditional networks (c_dim > 0)
    layer_features: int | None = attrs.field(default=None, validator=attrs.validators.optional(integer(1)))
    activation: str = attrs.field(default="lrelu", validator=one_of(tuple(ACTIVATION_GAINS)))
    lr_multiplier: float = attrs.field(default=0.01, validator=POSITIVE)
    w_avg_beta: float | None = attrs.field(default=0.995, validator=interval(0, 1))


@attrs.define(kw_only=True, frozen=True)
class SynthesisConfig:
    """``ws -> image``: channels ``min(channel_base // res, channel_max)`` per block resolution ``res``.

    ``upsample_gain`` is the DC gain of the FIR after zero-insertion up-sampling; ``None`` means ``2**spatial_dims``
    (NVIDIA's 2D value, 4). 3D-StyleGAN's TF code uses 4 in 3D; set it to 4 to load those weights.
    """

    channel_base: int = attrs.field(default=32768, validator=integer(1))
    channel_max: int = attrs.field(default=512, validator=integer(1))
    num_fp16_res: int = attrs.field(default=0, validator=integer(0))  # accepted; see autocast_dtype
    conv_clamp: float | None = attrs.field(default=None, validator=POSITIVE)
    architecture: str = attrs.field(default="skip", validator=one_of(ARCHITECTURES))
    resample_filter: tuple[float, ...] = attrs.field(default=(1, 3, 3, 1), converter=to_tuple(float))
    use_noise: bool = True
    activation: str = attrs.field(default="lrelu", validator=one_of(tuple(ACTIVATION_GAINS)))
    fp16_channels_last: bool = False  # accepted; memory layout only
    upsample_gain: float | None = attrs.field(default=None, validator=POSITIVE)

    @resample_filter.validator
    def _check_filter(self, attribute: attrs.Attribute[Any], value: tuple[float, ...]) -> None:
        if not value or sum(value) <= 0:
            raise ConfigError(
                f"{attribute.name} must be a non-empty list of taps with a positive sum, got {value}"
            )

    def channels(self, res: int) -> int:
        """Feature channels of the block at resolution ``res``."""
        return min(self.channel_base // res, self.channel_max)
