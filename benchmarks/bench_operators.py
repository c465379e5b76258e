"""Cost of each forward model (forward + adjoint) relative to one StyleGAN2 synthesis of the same size.

    python benchmarks/bench_operators.py                      # 64² and 256², CPU
    python benchmarks/bench_operators.py --sizes 256 --device cuda

The generator is NVIDIA's stylegan2-ada ``auto`` configuration for the resolution (``channel_base`` 16384 below
512², ``channel_max`` 512, 8 mapping layers, grayscale) with random weights: its cost does not depend on the
weights. Each timing is the best of ``--repeats`` runs after a warm-up (the least disturbed by other load, as
``timeit`` advises), without autograd; ``--threads`` sets torch's intra-op threads.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial

import torch
from timing import best_seconds

from brgm.core.operators import Chain, LinearForwardModel
from brgm.plugins.forward_models import Blur, Downsample, GaussianNoise, Inpaint, KSpace
from brgm.plugins.generators.stylegan2 import StyleGAN2Generator

OPERATORS: dict[str, Callable[[], LinearForwardModel]] = {
    "downsample area x4": lambda: Downsample(factor=4, method="area"),
    "downsample bicubic x4": lambda: Downsample(factor=4, method="bicubic"),
    "downsample bicubic_antialiased x4": lambda: Downsample(factor=4, method="bicubic_antialiased"),
    "blur gaussian sigma=2 reflect": lambda: Blur(sigma=2.0),
    "blur motion 15px circular": lambda: Blur(kernel="motion", length=15.0, angle=30.0, padding="circular"),
    "mask strokes": lambda: Inpaint(missing="strokes"),
    "kspace random x4 single-coil": lambda: KSpace(acceleration=4, mask="random"),
    "kspace random x4 8 coils": lambda: KSpace(acceleration=4, mask="random", coils=8),
    "gaussian_noise": lambda: GaussianNoise(sigma=0.01),
    "blur+downsample x4": lambda: Chain([Blur(sigma=2.0), Downsample(factor=4)]),
}


def bench_size(size: int, device: torch.device, repeats: int) -> None:
    """Print the synthesis time at ``size``² and each operator's time and ratio to it."""
    generator = StyleGAN2Generator(
        z_dim=512,
        w_dim=512,
        img_resolution=size,
        img_channels=1,
        mapping_kwargs={"num_layers": 8},
        synthesis_kwargs={"channel_base": 16384, "channel_max": 512},
    ).to(device)
    generator.eval()
    with torch.no_grad():
        ws = generator.mapping(torch.randn(1, 512, device=device))
        synthesis = best_seconds(partial(generator.synthesis, ws, noise_mode="const"), repeats, device)
        x = (generator.synthesis(ws, noise_mode="const") + 1) / 2
        print(f"\n{size}x{size}: one synthesis {synthesis * 1e3:.1f} ms")
        print(f"  {'operator (forward + adjoint)':<36} {'ms':>9} {'/ synthesis':>12}")
        for label, build in OPERATORS.items():
            op = build()
            seconds = best_seconds(partial(forward_adjoint, op, x), repeats, device)
            print(f"  {label:<36} {seconds * 1e3:9.3f} {seconds / synthesis:12.4f}")


def forward_adjoint(op: LinearForwardModel, x: torch.Tensor) -> torch.Tensor:
    return op.adjoint(op(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1, float32")
    for size in args.sizes:
        bench_size(size, device, args.repeats)


if __name__ == "__main__":
    main()
