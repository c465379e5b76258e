"""Modulated (and demodulated) convolution, StyleGAN2's style injection, for 2D and 3D feature maps."""

from __future__ import annotations

import torch

from brgm.plugins.generators.stylegan2.resample import CONV, CONV_TRANSPOSE, upfirdn


def conv_resample(
    x: torch.Tensor,
    weight: torch.Tensor,
    *,
    groups: int = 1,
    up: int = 1,
    resample_filter: torch.Tensor | None = None,
    up_gain: float = 4.0,
) -> torch.Tensor:
    """Convolve ``x [N, G·I, *spatial]`` with ``weight [G·O, I, *k]`` (``k`` odd), optionally up-sampling by ``up``.

    ``up == 1``: correlation with ``k // 2`` zero padding (``F.conv*d``), same size out. ``up > 1``: a transposed
    convolution with stride ``up`` that applies ``weight`` as a true convolution, then the FIR
    ``resample_filter [fw, ...]`` with DC gain ``up_gain``; output ``up`` times larger (NVIDIA's
    ``conv2d_resample`` with ``flip_weight=False``).
    """
    spatial_dims = x.ndim - 2
    k = weight.shape[-1]
    if up == 1:
        return CONV[spatial_dims](x, weight, padding=k // 2, groups=groups)
    if resample_filter is None:
        raise ValueError("up-sampling needs a resample_filter")
    fw = resample_filter.shape[0]
    p0 = k // 2 + (fw + up - 1) // 2 - (k - 1)
    p1 = k // 2 + (fw - up) // 2 - (k - up)
    pt = max(-max(p0, p1), 0)
    out_ch, in_ch = weight.shape[:2]
    kernel = weight.shape[2:]
    weight = weight.reshape(groups, out_ch // groups, in_ch, *kernel).transpose(1, 2)
    weight = weight.reshape(groups * in_ch, out_ch // groups, *kernel)
    x = CONV_TRANSPOSE[spatial_dims](x, weight, stride=up, padding=pt, groups=groups)
    return upfirdn(x, resample_filter, padding=(p0 + pt, p1 + pt), gain=up_gain)


def demodulation(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """``[N, O]``: ``1 / sqrt(sum_{i,k} (weight[o, i, k] * styles[n, i])^2 + 1e-8)``."""
    energy = weight.square().flatten(2).sum(dim=2)  # [O, I]
    return (styles.square() @ energy.t() + 1e-8).rsqrt()


def modulated_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    up: int = 1,
    resample_filter: torch.Tensor | None = None,
    up_gain: float = 4.0,
    fused: bool = False,
) -> torch.Tensor:
    """``x [N, I, *spatial]``, ``weight [O, I, *k]``, ``styles [N, I]`` -> ``[N, O, *up·spatial]``.

    Each sample ``n`` is convolved with ``weight[o, i] * styles[n, i]``, rescaled to unit norm per output channel
    when ``demodulate``. ``fused`` builds the per-sample weights and runs one grouped convolution (NVIDIA's
    inference path); otherwise the styles scale the input and the demodulation the output around a single shared
    convolution (NVIDIA's training path: no gradient with respect to a per-sample weight, cheaper to back-propagate).
    """
    n, in_ch = styles.shape
    out_ch = weight.shape[0]
    ones = [1] * (x.ndim - 2)
    dcoefs = demodulation(weight, styles) if demodulate else None
    if not fused:
        x = conv_resample(
            x * styles.reshape(n, in_ch, *ones),
            weight,
            up=up,
            resample_filter=resample_filter,
            up_gain=up_gain,
        )
        return x if dcoefs is None else x * dcoefs.reshape(n, out_ch, *ones)
    coefs = styles.reshape(n, 1, in_ch)
    if dcoefs is not None:
        coefs = coefs * dcoefs.unsqueeze(2)  # [N, O, I]
    w = weight.unsqueeze(0) * coefs.reshape(*coefs.shape, *[1] * (weight.ndim - 2))
    w = w.reshape(n * out_ch, in_ch, *weight.shape[2:])
    x = conv_resample(
        x.reshape(1, n * in_ch, *x.shape[2:]),
        w,
        groups=n,
        up=up,
        resample_filter=resample_filter,
        up_gain=up_gain,
    )
    return x.reshape(n, out_ch, *x.shape[2:])
