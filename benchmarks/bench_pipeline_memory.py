"""Peak memory of a ``brgm compose`` run against the number of its inputs: the pipeline keeps one batch in memory.

Runs the same command (a small random StyleGAN2, 16×16 k-space ×2, a few steps) over N small PNG slices for each
N of ``--counts`` in a fresh process and prints its peak resident memory (``ru_maxrss``) and wall time, with the
ratio of each peak to the first one. Bounded memory means the ratio stays near 1 as N grows.

    python benchmarks/bench_pipeline_memory.py --counts 50,500
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

COMMAND = [
    "compose",
    "gen=stylegan2",
    "gen.resolution=16",
    "gen.channel_max=16",
    "gen.z_dim=16",
    "gen.w_dim=16",
    "fwd=kspace",
    "fwd.acceleration=2",
    "solver.steps=3",
    "solver.batch_size=8",
]


def measure(count: int, folder: Path) -> tuple[float, float]:
    """Peak RSS (MiB) and wall time (s) of one run over ``count`` slices, in a process of its own."""
    inputs = folder / f"in{count}"
    inputs.mkdir()
    rng = np.random.default_rng(count)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(inputs / f"s{i:04d}.png")
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL,"
        " stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    start = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            probe,
            sys.executable,
            "-m",
            "brgm",
            *COMMAND,
            "--input",
            str(inputs),
            "--out",
            str(folder / f"out{count}"),
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "BRGM_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    return int(out.stdout.strip()) / 1024, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="50,500", help="comma-separated numbers of inputs")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    print(f"{'inputs':>7} {'peak RSS MiB':>13} {'ratio':>6} {'wall s':>8} {'s/item':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        first = None
        for count in counts:
            peak, wall = measure(count, Path(tmp))
            first = first or peak
            print(f"{count:>7} {peak:>13.1f} {peak / first:>6.2f} {wall:>8.1f} {wall / count:>7.3f}")
    print(f"(ru_maxrss of one fresh process per row; {resource.getpagesize()} B pages)")


if __name__ == "__main__":
    main()
