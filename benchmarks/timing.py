"""Wall-clock timing shared by the benchmark scripts (run them as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def best_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """The best of ``repeats`` wall times of ``fn()`` after one untimed warm-up call (which builds cached
    tensors and kernels), synchronised on CUDA so asynchronous kernels are counted."""

    def run() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    run()
    return min(run() for _ in range(max(repeats, 1)))
