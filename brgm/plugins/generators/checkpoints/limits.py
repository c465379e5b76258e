"""What a generator checkpoint may ask for, checked before anything is built or allocated.

Every reader's constructor kwargs (brgm's JSON configuration, NVIDIA's ``_init_kwargs``, the TF
``static_kwargs``, the shapes of a state dict) pass :func:`check_init_kwargs`; the network is then built on the
``meta`` device and its state-dict shapes compared with the file's tensors before any real allocation
(:func:`~.checkpoint.build_generator`). The limits are a few times what published networks use (StyleGAN2
1024² config-f: 512-wide latents, 8 mapping layers, 30 M numbers; 3D-StyleGAN at 1 mm: base 5×6×7, b128):

===========================  =============  ===============================================================
setting                      at most
===========================  =============  ===============================================================
``z_dim``, ``w_dim``,        8192           latent sizes, mapping width, channels per block
``layer_features``,
``embed_features``,
``channel_max``
``channel_base``             2**24
``img_channels``             64
``img_resolution``           4096           the top block's resolution (a power of two)
``num_layers`` (mapping)     64
``base_shape``               3 sides <= 64  ``img_shape`` likewise: 3 sides <= 64 · 4096 / 4
``resample_filter``          16 taps
the network's tensors        2**27 numbers  (512 MiB in float32)
===========================  =============  ===============================================================

The restricted unpickler (:mod:`.safe_pickle`) is bounded too: at most :data:`MAX_OPCODES` opcodes, a result of
at most :data:`MAX_NODES` containers and leaves when expanded as a tree (shared references counted each time,
so no reader's walk over it can blow up) nested at most :data:`MAX_DEPTH` deep, and dict keys and set items of
plain scalar types only (str, bytes, int, float, bool, None, or tuples of at most :data:`MAX_KEY_ITEMS` of
those), so hashing a key costs no more than reading it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from brgm.core import safe_torch
from brgm.core.errors import CheckpointError
from brgm.plugins.generators.stylegan2.config import MappingConfig, SynthesisConfig

MAX_FEATURES = 8192
MAX_CHANNEL_BASE = 1 << 24
MAX_IMG_CHANNELS = 64
MAX_RESOLUTION = 4096
MAX_MAPPING_LAYERS = 64
MAX_BASE_SIDE = 64
MAX_FILTER_TAPS = 16
MAX_ELEMENTS = 1 << 27
#: the restricted unpickler's bounds: those :mod:`brgm.core.safe_torch` puts on every ``torch.load``
MAX_OPCODES = safe_torch.MAX_OPCODES
MAX_NODES = safe_torch.MAX_NODES
MAX_DEPTH = safe_torch.MAX_DEPTH
MAX_KEY_ITEMS = safe_torch.MAX_KEY_ITEMS

#: constructor kwargs a checkpoint may set, with the mapping and synthesis sections' own keys
SECTIONS: dict[str, frozenset[str]] = {
    "": frozenset(
        {
            "z_dim",
            "c_dim",
            "w_dim",
            "img_resolution",
            "img_channels",
            "mapping_kwargs",
            "synthesis_kwargs",
            "img_shape",
            "base_shape",
        }
    ),
    "mapping_kwargs": frozenset(f.name for f in attrs.fields(MappingConfig)),
    "synthesis_kwargs": frozenset(f.name for f in attrs.fields(SynthesisConfig)),
}
#: (section, key) -> the largest integer the setting may be
INTEGERS: dict[tuple[str, str], int] = {
    ("", "z_dim"): MAX_FEATURES,
    ("", "w_dim"): MAX_FEATURES,
    ("", "img_channels"): MAX_IMG_CHANNELS,
    ("", "img_resolution"): MAX_RESOLUTION,
    ("mapping_kwargs", "num_layers"): MAX_MAPPING_LAYERS,
    ("mapping_kwargs", "layer_features"): MAX_FEATURES,
    ("mapping_kwargs", "embed_features"): MAX_FEATURES,
    ("synthesis_kwargs", "channel_base"): MAX_CHANNEL_BASE,
    ("synthesis_kwargs", "channel_max"): MAX_FEATURES,
    ("synthesis_kwargs", "num_fp16_res"): MAX_RESOLUTION,
}
#: (section, key) -> (most items, largest item or None) of a list setting
SEQUENCES: dict[tuple[str, str], tuple[int, int | None]] = {
    ("", "base_shape"): (3, MAX_BASE_SIDE),
    ("", "img_shape"): (3, MAX_BASE_SIDE * MAX_RESOLUTION // 4),
    ("synthesis_kwargs", "resample_filter"): (MAX_FILTER_TAPS, None),
}


def brief(value: Any, width: int = 40) -> str:
    """Short text for a value read from a checkpoint: strings and numbers cut to ``width``, else the type."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"<{value.bit_length()}-bit int>"
    if isinstance(value, (str, int, float, type(None))):
        text = str(value)
    elif isinstance(value, bytes):
        text = repr(value[:width])
    else:
        return f"<{type(value).__name__}>"
    return text if len(text) <= width else text[:width] + "…"


def brief_keys(keys: Iterable[Any], limit: int = 8, sort: bool = False, width: int = 40) -> list[str]:
    """:func:`brief` of the first ``limit`` keys (after sorting their texts), then how many more there are."""
    names = [brief(k, width) for k in keys]
    if sort:
        names.sort()
    return names[:limit] + ([f"… {len(names) - limit} more"] if len(names) > limit else [])


def brief_error(err: BaseException, width: int = 300) -> str:
    """``err``'s message on one line, cut to ``width``."""
    text = " ".join(str(err).split())
    return text if len(text) <= width else text[:width] + "…"


def check_init_kwargs(init_kwargs: Any, source: str) -> None:
    """A :class:`CheckpointError` for a setting that is unknown or over a limit (see the module docstring).

    Values of other types are left to the network's constructor, which refuses them with a clear error."""
    if not isinstance(init_kwargs, dict):
        raise CheckpointError(
            f"{source}: the generator configuration is a {type(init_kwargs).__name__}, not a dict"
        )
    sections = {"": init_kwargs}
    for name in ("mapping_kwargs", "synthesis_kwargs"):
        section = init_kwargs.get(name)
        if section is not None and not isinstance(section, dict):
            raise CheckpointError(f"{source}: {name} is a {type(section).__name__}, not a dict")
        sections[name] = section or {}
    for name, section in sections.items():
        unknown = set(section) - SECTIONS[name]
        if unknown:
            where = f"{name} " if name else "generator "
            raise CheckpointError(
                f"{source}: unknown {where}setting(s) {brief_keys(unknown, sort=True)}; "
                f"brgm accepts {sorted(SECTIONS[name])}"
            )
    for (name, key), most in INTEGERS.items():
        value = sections[name].get(key)
        if isinstance(value, int) and value > most:
            _over(source, name, key, brief(value), f"{most}")
    for (name, key), (items, largest) in SEQUENCES.items():
        value = sections[name].get(key)
        if value is None:
            continue
        if not isinstance(value, (list, tuple)) or len(value) > items:
            _over(source, name, key, f"a {type(value).__name__} of {_length(value)}", f"{items} items")
        if largest is not None and any(isinstance(v, int) and v > largest for v in value):
            _over(source, name, key, f"[{', '.join(brief_keys(value))}]", f"{largest} per item")


def _length(value: Any) -> str:
    return f"{len(value)} items" if isinstance(value, (list, tuple, str, dict)) else "one value"


def _over(source: str, section: str, key: str, value: str, limit: str) -> None:
    name = f"{section}.{key}" if section else key
    raise CheckpointError(
        f"{source}: {name} = {value} is over brgm's limit of {limit} (see brgm.plugins.generators.checkpoints.limits)"
    )
