"""The StyleGAN2 mapping network ``z -> w``, with the running mean ``w_avg`` used for truncation."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from brgm.core.errors import ShapeError
from brgm.plugins.generators.stylegan2.config import MappingConfig
from brgm.plugins.generators.stylegan2.layers import FullyConnectedLayer


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row of ``x [N, D]`` to unit mean square."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """``z [N, z_dim] -> ws [N, num_ws, w_dim]``: normalisation, then ``num_layers`` FC layers (keys ``fc{i}``)."""

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, config: MappingConfig) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.w_avg_beta = config.w_avg_beta
        hidden = config.layer_features or w_dim
        features = [z_dim] + [hidden] * (config.num_layers - 1) + [w_dim]
        for idx, (fan_in, fan_out) in enumerate(itertools.pairwise(features)):
            layer = FullyConnectedLayer(
                fan_in, fan_out, activation=config.activation, lr_multiplier=config.lr_multiplier
            )
            self.add_module(f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        self.w_avg.zero_()

    def forward(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        *,
        update_w_avg: bool = False,
    ) -> torch.Tensor:
        """Map ``z`` (any float dtype; computed in the parameters' dtype) to ``ws``.

        Truncation replaces ``ws[:, :truncation_cutoff]`` (all rows when None) by ``w_avg + psi·(w − w_avg)``.
        ``update_w_avg`` (training) first moves ``w_avg`` towards the batch mean: ``mean + beta·(w_avg − mean)``.
        """
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ShapeError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        x = normalize_2nd_moment(z.to(self.w_avg.dtype))
        for layer in self.children():
            x = layer(x)
        if update_w_avg and self.w_avg_beta is not None:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws[:, :cutoff] = self.w_avg.lerp(ws[:, :cutoff], truncation_psi)
        return ws
