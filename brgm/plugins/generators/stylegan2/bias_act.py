"""Bias, activation, gain and clamp in one call: NVIDIA's ``bias_act`` reference semantics in plain ops."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bias_act_(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    activation: str = "linear",
    gain: float = 1.0,
    clamp: float | None = None,
) -> torch.Tensor:
    """``clamp(gain * act(x + bias), -clamp, clamp)`` with ``bias [C]`` broadcast along dim 1 of ``x [N, C, ...]``.

    ``activation`` is ``"linear"``, ``"relu"`` or ``"lrelu"`` (slope 0.2). Works in place on ``x``: pass a tensor
    that nothing else needs (a fresh convolution or matmul output).
    """
    if bias is not None:
        x = x.add_(bias.to(x.dtype).reshape(1, -1, *[1] * (x.ndim - 2)))
    if activation == "lrelu":
        x = F.leaky_relu(x, 0.2)
    elif activation == "relu":
        x = F.relu(x)
    if gain != 1:
        x = x.mul_(gain)
    if clamp is not None:
        x = x.clamp_(-clamp, clamp)
    return x
