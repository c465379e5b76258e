"""Fitting an input to a generator's grid, and a result back onto the input's grid.

- 2D images, as BRGM-PyTorch prepares its inputs: centre-crop to the generator's aspect ratio (a square for
  StyleGAN2), then resize with Pillow's Lanczos filter (antialiased when shrinking). The result is clamped to the
  input's range, since Lanczos rings slightly past edges.
- Volumes: trilinear resampling of the whole volume (``align_corners=False``), so the field of view is kept and
  voxels become anisotropic where the aspect ratios differ.
- Channels: RGB to gray by ITU-R 601-2 luminance (Pillow's ``L``), gray to RGB by repetition.

The affine and voxel sizes are updated so that every voxel keeps its world position: a reconstruction written
with the fitted :class:`~brgm.core.io.formats.meta.Meta` overlays its input in a viewer. Sizes in reports are
``H×W`` (``D×H×W`` for volumes).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from brgm.core.errors import ShapeError
from brgm.core.io.formats.meta import GridFit, Meta

#: ITU-R 601-2 luma weights (Pillow's RGB -> L)
LUMA = (0.299, 0.587, 0.114)


def _size(shape: Sequence[int]) -> str:
    return "×".join(str(int(s)) for s in shape)


def regrid(
    meta: Meta,
    shape: Sequence[int],
    start: Sequence[int] | None = None,
    size: Sequence[int] | None = None,
) -> Meta:
    """``meta`` for data resampled to ``shape`` from the region ``start``, ``size`` of ``meta``'s grid (the
    whole grid by default), with voxel centres placed as ``align_corners=False`` resampling places them."""
    shape = tuple(int(s) for s in shape)
    dims = len(shape)
    start = tuple(start) if start is not None else (0,) * dims
    size = tuple(size) if size is not None else meta.spatial_shape
    scale = np.asarray(size, dtype=np.float64) / np.asarray(shape, dtype=np.float64)
    affine = None
    if meta.affine is not None:
        step = np.eye(4)
        step[range(dims), range(dims)] = scale
        step[:dims, 3] = np.asarray(start) + 0.5 * scale - 0.5
        affine = meta.affine @ step
    voxel_sizes = None
    if meta.voxel_sizes is not None:
        voxel_sizes = tuple(float(v * s) for v, s in zip(meta.voxel_sizes, scale, strict=True))
    return attrs.evolve(meta, spatial_shape=shape, affine=affine, voxel_sizes=voxel_sizes)


def resize(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``x [N, C, *spatial]`` resized to ``shape``: Lanczos for 2D, trilinear for 3D."""
    shape = tuple(int(s) for s in shape)
    if tuple(x.shape[2:]) == shape:
        return x
    if len(shape) == 3:
        return F.interpolate(x, size=shape, mode="trilinear", align_corners=False)
    height, width = shape
    planes = x.detach().cpu().float().reshape(-1, *x.shape[2:]).numpy()
    resized = [
        np.asarray(Image.fromarray(plane).resize((width, height), Image.Resampling.LANCZOS))
        for plane in planes
    ]
    out = torch.from_numpy(np.stack(resized)).reshape(*x.shape[:2], height, width)
    return out.clamp(float(x.min()), float(x.max())).to(x.dtype)


def convert_channels(x: torch.Tensor, channels: int, what: str = "the input") -> tuple[torch.Tensor, str]:
    """``x [N, C, *spatial]`` with ``channels`` channels (gray <-> RGB) and a note of the conversion."""
    have = x.shape[1]
    if have == channels:
        return x, ""
    if have == 3 and channels == 1:
        weights = torch.tensor(LUMA, dtype=x.dtype, device=x.device).reshape(1, 3, *([1] * (x.ndim - 2)))
        return (x * weights).sum(dim=1, keepdim=True), "converted RGB to grayscale (luminance)"
    if have == 1 and channels == 3:
        return x.repeat(1, 3, *([1] * (x.ndim - 2))), "repeated grayscale to 3 channels"
    raise ShapeError(
        f"{what} has {have} channels and {channels} are needed; brgm converts only between 1 and 3"
    )


def _centre_crop(shape: tuple[int, int], target: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """The largest centred region of ``shape`` with the aspect ratio of ``target``: (start, size)."""
    (height, width), (th, tw) = shape, target
    if height * tw > width * th:
        size = (max(1, round(width * th / tw)), width)
    else:
        size = (height, max(1, round(height * tw / th)))
    return ((height - size[0]) // 2, (width - size[1]) // 2), size


def fit_to_grid(
    x: torch.Tensor, shape: Sequence[int], meta: Meta, *, channels: int | None = None
) -> tuple[torch.Tensor, Meta, str]:
    """Fit ``x [N, C, *spatial]`` (intensities read with ``meta``) to a generator's grid.

    Args:
        x: real images ``[N, C, H, W]`` or volumes ``[N, C, D, H, W]``.
        shape: the generator's spatial shape, ``(H, W)`` or ``(D, H, W)``.
        meta: the input's :class:`Meta` (from :func:`brgm.core.io.load`).
        channels: the generator's channel count (``G.img_channels``); None keeps the input's.

    Returns:
        ``x`` on the new grid, its :class:`Meta` (geometry updated, and ``fit`` recording the change for
        :func:`back_to_input_grid`), and a sentence saying what changed, empty when nothing did.
    """
    shape = tuple(int(s) for s in shape)
    dims = x.ndim - 2
    if x.is_complex():
        raise ShapeError(f"{meta.path}: complex data (k-space) cannot be fitted to an image grid")
    if len(shape) != dims:
        raise ShapeError(
            f"{meta.path}: a {dims}D input ({_size(x.shape[2:])}) does not fit a {len(shape)}D generator "
            f"({_size(shape)})"
        )
    source_channels = x.shape[1]
    x, channel_note = convert_channels(x, source_channels if channels is None else channels, str(meta.path))
    spatial = tuple(x.shape[2:])
    start, size = (0,) * dims, spatial
    notes = []
    if dims == 2:
        start, size = _centre_crop(spatial, shape)
        if size != spatial:
            x = x[..., start[0] : start[0] + size[0], start[1] : start[1] + size[1]]
            crop_note = f"centre-cropped {_size(spatial)} → {_size(size)}"
            notes.append(crop_note + (f" and resized to {_size(shape)} (Lanczos)" if size != shape else ""))
        elif size != shape:
            notes.append(f"resized {_size(spatial)} → {_size(shape)} (Lanczos)")
    elif spatial != shape:
        notes.append(f"resampled {_size(spatial)} → {_size(shape)} (trilinear)")
    x = resize(x, shape)
    if channel_note:
        notes.append(channel_note)
    if not notes:
        return x, meta, ""
    fitted = regrid(meta, shape, start, size)
    if dims == 3 and meta.voxel_sizes is not None and spatial != shape:
        before = "×".join(f"{v:.3g}" for v in meta.voxel_sizes)
        after = "×".join(f"{v:.3g}" for v in fitted.voxel_sizes)
        notes[0] += f", voxels {before} mm → {after} mm"
    fit = GridFit(source=meta, crop_start=tuple(start), crop_size=tuple(size), channels=source_channels)
    return x, attrs.evolve(fitted, fit=fit), "; ".join(notes)


def back_to_input_grid(x: torch.Tensor, meta: Meta) -> tuple[torch.Tensor, Meta]:
    """Undo :func:`fit_to_grid`: ``x [N, C, *spatial]`` on ``meta``'s grid -> the input's grid and channels,
    with the input's :class:`Meta` (so :func:`brgm.core.io.save` writes it with the input's affine).

    A 2D region cropped away has no reconstruction and is filled with zeros."""
    if meta.fit is None:
        return x, meta
    if tuple(x.shape[2:]) != meta.spatial_shape:
        raise ShapeError(f"expected data on the grid {_size(meta.spatial_shape)}, got {_size(x.shape[2:])}")
    fit, source = meta.fit, meta.fit.source
    x = resize(x, fit.crop_size)
    if fit.crop_size != source.spatial_shape:
        full = x.new_zeros(*x.shape[:2], *source.spatial_shape)
        region = tuple(slice(s, s + n) for s, n in zip(fit.crop_start, fit.crop_size, strict=True))
        full[(..., *region)] = x
        x = full
    return convert_channels(x, fit.channels)[0], source
