"""Speed of one StyleGAN2 synthesis forward + backward to ``ws``, as in a reconstruction step.

A 256² generator (channel_base 16384, channel_max 512: NVIDIA's paper256 layout) with random weights, frozen as
in BRGM (gradients flow to ``ws`` only). For batch 1 and 8 it prints the best time of a few steps and the
per-image throughput ratio batch8/batch1 (1.0 = no gain from batching), for the fused modulated convolution
(NVIDIA's inference path, the baseline) and the non-fused one, on the CPU and, when present, on CUDA.

    python benchmarks/bench_synthesis.py [--resolution 256] [--repeats 3] [--batches 1 8] [--device cuda]
"""

from __future__ import annotations

import argparse

import torch
from timing import best_seconds

from brgm.plugins.generators.stylegan2 import StyleGAN2Generator


def step_ms(G: StyleGAN2Generator, batch: int, device: torch.device, repeats: int) -> float:
    """Best wall time in ms of ``synthesis(ws)`` + ``backward`` of a scalar loss, after one warm-up step."""
    ws = torch.randn(batch, G.num_ws, G.w_dim, device=device, requires_grad=True)
    return best_seconds(lambda: G.synthesis(ws).square().mean().backward(), repeats, device) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs=2, default=[1, 8])
    parser.add_argument(
        "--device", choices=("all", "cpu", "cuda"), default="all", help="all: the CPU and CUDA when present"
    )
    args = parser.parse_args()
    G = StyleGAN2Generator(
        z_dim=512,
        w_dim=512,
        img_resolution=args.resolution,
        img_channels=3,
        synthesis_kwargs={"channel_base": 16384, "channel_max": 512},
    )
    G.eval().requires_grad_(False)
    if args.device == "all":
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    else:
        devices = [torch.device(args.device)]
    small, large = args.batches
    print(
        f"StyleGAN2 {args.resolution}², paper256 channels, torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    for device in devices:
        G.to(device)
        times = {}
        for fused in (True, False):
            G.fused_modconv = fused
            for batch in (small, large):
                times[fused, batch] = step_ms(G, batch, device, args.repeats)
            ratio = (small * times[fused, large]) and (large * times[fused, small]) / (
                small * times[fused, large]
            )
            print(
                f"{device.type:4s} {'fused    ' if fused else 'non-fused'}  batch {small}: {times[fused, small]:9.1f} ms"
                f"  batch {large}: {times[fused, large]:9.1f} ms  per-image throughput b{large}/b{small}: {ratio:.2f}"
            )
        for batch in (small, large):
            print(
                f"{device.type:4s} non-fused / fused speed-up at batch {batch}: {times[True, batch] / times[False, batch]:.2f}"
            )


if __name__ == "__main__":
    main()
