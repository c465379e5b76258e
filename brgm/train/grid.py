"""Image grids as PNG files, for training samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def save_grid(images: torch.Tensor, path: Path, columns: int = 8) -> None:
    """Tile ``images [N, C, H, W]`` in [-1, 1] (C = 1 or 3) row by row, ``columns`` wide, into an 8-bit PNG."""
    n, c, h, w = images.shape
    rows = -(-n // columns)
    x = ((images.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    canvas = torch.zeros(c, rows * h, columns * w, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        canvas[:, r * h : (r + 1) * h, col * w : (col + 1) * w] = x[i]
    array = canvas.permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array[..., 0] if c == 1 else np.ascontiguousarray(array)).save(path)
