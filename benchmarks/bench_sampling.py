"""What posterior samples cost (issues 15, 25): 16 samples of a 64×64 slice against one MAP solve, in one process.

On one held-out 64×64 demo-brain slice under k-space ×4 with noise σ = 0.02 it times, in this order and in the
same process (so that the ratios compare like with like on a shared machine):

1. ``solver=map`` with its defaults (500 steps), the baseline;
2. ``solver=langevin`` with its defaults (a 200-step MAP start, 4 chains × 300 steps, 16 draws);
3. ``solver=vi`` with its defaults (a 200-step MAP start, 200 steps of 4 draws, 16 draws);
4. ``solver=laplace`` with its defaults (a 200-step MAP start, the full Jacobian by forward mode, 16 draws);

after a short untimed warm-up solve (the one-time costs of a process: the generator's latent statistics, the
allocator), each ``--repeats`` times (the median), and prints the wall-clock and the process CPU seconds and their ratios to
the MAP solve. The target is a ratio of at most 3. On a machine shared with other work the wall-clock ratio
follows the others' load; the CPU-time ratio (``time.process_time``, all threads of this process) does not.

    nice -n 10 python benchmarks/bench_sampling.py                  # CPU, 2 threads
    python benchmarks/bench_sampling.py --device cuda --threads 8   # a GPU
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import brgm
from brgm.core.io import load


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input", default="brgm/data/demo-brain64/heldout-066.png")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--solvers", nargs="+", default=["map", "langevin", "vi", "laplace"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = load(args.input).data.reshape(1, 1, 64, 64)
    settings = {"fwd.kspace.acceleration": 4, "fwd.gaussian_noise.sigma": 0.02}
    timings: dict[str, tuple[float, float]] = {}
    for solver in args.solvers:
        problem = brgm.compose(
            gen="demo-brain64", fwd="kspace+gaussian_noise", solver=solver, device=args.device, **settings
        )
        y = problem.forward_model.simulate(x.to(problem.device), torch.Generator().manual_seed(0))
        if not timings:
            brgm.reconstruct(problem, y, seed=0, solver="map", steps=3)  # warm-up, untimed
        wall, cpu = [], []
        for _ in range(args.repeats):
            if problem.device.type == "cuda":
                torch.cuda.synchronize()
            start, start_cpu = time.perf_counter(), time.process_time()
            result = brgm.reconstruct(problem, y, seed=0)
            if problem.device.type == "cuda":
                torch.cuda.synchronize()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        timings[solver] = (statistics.median(wall), statistics.median(cpu))
        samples = 0 if result.samples is None else len(result.samples)
        base = timings[args.solvers[0]]
        print(
            f"{solver:9s} {samples:3d} samples  wall {timings[solver][0]:7.1f} s (×{timings[solver][0] / base[0]:.2f})"
            f"  CPU {timings[solver][1]:7.1f} s (×{timings[solver][1] / base[1]:.2f}) of {args.solvers[0]}",
            flush=True,
        )
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "CPU"
    print(f"device: {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")


if __name__ == "__main__":
    main()
