"""LPIPS networks (Zhang et al., 2018) from the ``lpips`` package, with backbones that are never downloaded.

The backbone rules, shared by the ``perceptual`` likelihood and :func:`brgm.metrics.lpips`:

- the ImageNet trunk is torchvision's checkpoint file in ``torch.hub.get_dir()/checkpoints/``
  (``vgg16-397923af.pth`` for VGG16, ``alexnet-owt-7be5be79.pth`` for AlexNet; ``TORCH_HOME`` moves the
  folder), read with ``weights_only=True``; when it is absent, :class:`WeightsNotFoundError` names the file and
  the folder searched;
- the linear heads are the v0.1 weights that ship inside the ``lpips`` package;
- ``random_backbone_seed`` replaces the trunk by a randomly initialised one drawn from that seed, on purpose
  (tests, smoke runs): deterministic and differentiable, but not perceptually calibrated.

``lpips`` (and torchvision with it) is imported only when a network is built.
"""

from __future__ import annotations

import functools
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from brgm.core.errors import CheckpointError, ShapeError, WeightsNotFoundError

NETS = ("vgg", "alex")
BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}
BACKBONE_URL = "https://download.pytorch.org/models/"
#: a trunk parameter of lpips (``slice2.5.weight``) -> its key in torchvision's checkpoint (``features.5.weight``)
_TRUNK_KEY = re.compile(r"^slice\d+\.(\d+)\.(weight|bias)$")


def backbone_path(net: str) -> Path:
    """Where the ImageNet weights of ``net`` ("vgg" or "alex") are looked for."""
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]


def lpips_network(net: str = "vgg", random_backbone_seed: int | None = None) -> nn.Module:
    """The LPIPS network of ``net`` (frozen, eval mode, on the CPU until moved), built once per backbone file
    or seed and then shared. Raises :class:`WeightsNotFoundError` when the backbone file is absent."""
    if net not in NETS:
        raise ValueError(f"net must be one of {', '.join(map(repr, NETS))}, got {net!r}")
    path = None if random_backbone_seed is not None else backbone_path(net)
    if path is not None and not path.is_file():
        raise WeightsNotFoundError(
            f"LPIPS-{net} needs the ImageNet weights {path.name}, which are not in {path.parent} (the torch hub "
            f"cache; TORCH_HOME moves it). brgm downloads nothing at run time: fetch {BACKBONE_URL}{path.name} "
            "into that folder, or set random_backbone_seed for an uncalibrated random backbone (tests only)"
        )
    return _cached_network(net, random_backbone_seed, path)


@functools.lru_cache(maxsize=4)
def _cached_network(net: str, seed: int | None, path: Path | None) -> nn.Module:
    return build_lpips(net, random_backbone_seed=seed, backbone=path)


def build_lpips(
    net: str, *, random_backbone_seed: int | None = None, backbone: Path | None = None
) -> nn.Module:
    """A new LPIPS network: the trunk from the torchvision checkpoint ``backbone``, or random from
    ``random_backbone_seed`` (the global RNG is left untouched), and lpips's v0.1 linear heads."""
    import lpips

    state = _read(backbone) if backbone is not None else None
    heads = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    head_state = _read(heads)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(0 if random_backbone_seed is None else random_backbone_seed)
        warnings.simplefilter("ignore")  # torchvision's deprecation of ``pretrained=``
        model = lpips.LPIPS(net=net, pretrained=False, pnet_rand=True, verbose=False)
    _load_into(model, head_state, heads)
    if state is not None:
        trunk = {}
        for key in model.net.state_dict():
            index, kind = _TRUNK_KEY.match(key).groups()  # type: ignore[union-attr]
            trunk[f"net.{key}"] = state.get(f"features.{index}.{kind}")
        missing = [k for k, v in trunk.items() if v is None]
        if missing:
            raise CheckpointError(
                f"{backbone} is not torchvision's {net} checkpoint: it lacks {len(missing)} trunk tensors"
            )
        _load_into(model, trunk, backbone)
    return model.eval().requires_grad_(False)


def _read(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot read the weights {path}: {err}") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, expected a state dict of tensors")
    return state


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    own = model.state_dict()
    unknown = [k for k in state if k not in own]
    if unknown:
        raise CheckpointError(f"{path} has tensors the LPIPS network lacks: {', '.join(unknown[:3])}")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit the LPIPS network: {err}") from err


def lpips_input(x: torch.Tensor) -> torch.Tensor:
    """Intensity images ``[N, 1|3, H, W]`` in [0, 1] -> LPIPS input ``[N, 3, H, W]`` in [-1, 1] (grayscale
    repeated to three channels)."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ShapeError(
            f"LPIPS compares 2D images [N, 1 or 3, H, W] (grayscale or RGB), got a tensor of shape {list(x.shape)}"
        )
    return (x * 2 - 1).expand(-1, 3, -1, -1)


def lpips_distance(model: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS between intensity images ``a`` and ``b`` ``[N, 1|3, H, W]`` in [0, 1] -> ``[N]`` (0 when equal),
    computed in float32 on ``a``'s device (the network follows it there)."""
    param = next(model.parameters())
    if param.device != a.device:
        model.to(a.device)
    x, y = (lpips_input(t).to(torch.float32) for t in (a, b))
    try:
        return model(x, y).reshape(x.shape[0])
    except RuntimeError as err:
        if "too small" in str(err):
            raise ShapeError(f"images of {x.shape[2]}×{x.shape[3]} are too small for LPIPS: {err}") from err
        raise


def feature_length(model: nn.Module, height: int, width: int) -> int:
    """The number of trunk activations LPIPS compares for one ``height × width`` image (Σ_l C_l·H_l·W_l over
    its five taps); raises :class:`ShapeError` when the image is too small for the network."""
    param = next(model.parameters())
    probe = torch.zeros(1, 3, height, width, device=param.device, dtype=param.dtype)
    try:
        with torch.no_grad():
            taps = model.net(probe)
    except RuntimeError as err:
        raise ShapeError(f"images of {height}×{width} are too small for LPIPS: {err}") from err
    return sum(t[0].numel() for t in taps)
