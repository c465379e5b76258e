"""Throughput of a cohort run against the number of processes (``brgm compose`` under torchrun).

Each configuration reconstructs the same items (samples of the generator, saved as clean images and corrupted by
the forward model) into a fresh output directory: one process with every core, then N processes with the cores
divided (torchrun, Gloo), or on CUDA N processes per GPU. It prints the wall-clock items/s of the whole command
(start-up included), the items/s of the reconstructions alone (``summary.json``: items over the first start to the
last end of an item), and both as ratios to the one-process baseline measured in the same invocation.

    python benchmarks/bench_distributed.py                                    # CPU: 1 × all cores vs 2 × half
    python benchmarks/bench_distributed.py --device cuda --processes 1,2,4 --batch-size 1,8   # processes per GPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import brgm


def make_items(gen: str, count: int, folder: Path) -> None:
    """``count`` generator samples as clean single-channel images in [0, 1] (``.npy``, ``[*spatial]``)."""
    generator = brgm.load_generator(gen)
    with torch.no_grad():
        z = torch.randn(count, generator.z_dim, generator=torch.Generator().manual_seed(0))
        x = (generator.synthesis(generator.mapping(z), noise_mode="const") + 1) / 2
    for i, image in enumerate(x.clamp(0, 1).numpy()):
        np.save(folder / f"item{i:03d}.npy", image[0].astype(np.float32))


def run_once(
    args: argparse.Namespace, processes: int, batch: int, items: Path, out: Path
) -> tuple[float, float]:
    """Wall seconds of one run and its reconstruction throughput (items/s) from ``summary.json``."""
    overrides = [
        f"gen={args.gen}",
        f"fwd={args.fwd}",
        f"solver.steps={args.steps}",
        f"solver.batch_size={batch}",
    ]
    compose = [
        "-m",
        "brgm",
        "compose",
        *overrides,
        "-i",
        str(items),
        "--out",
        str(out),
        "--device",
        args.device,
    ]
    env = {**os.environ, "BRGM_DISABLE_PLUGIN_AUTOLOAD": "1"}
    if processes == 1:
        command = [sys.executable, *compose]
        env["OMP_NUM_THREADS"] = str(args.cores)
    else:
        per_node = processes * (torch.cuda.device_count() if args.device == "cuda" else 1)
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(per_node),
        ]
        command += compose
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    wall = time.perf_counter() - start
    return wall, json.loads((out / "summary.json").read_text())["items_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gen", default="demo-brain64")
    parser.add_argument("--fwd", default="kspace")
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--processes", default="1,2", help="processes (per GPU on CUDA), comma-separated")
    parser.add_argument("--batch-size", default="4", help="solver.batch_size values, comma-separated")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    counts = [int(p) for p in args.processes.split(",")]
    batches = [int(b) for b in args.batch_size.split(",")]
    print(f"{args.items} items, gen={args.gen} fwd={args.fwd} solver.steps={args.steps}, {args.device}")
    print(
        f"{'processes':>9} {'threads':>7} {'batch':>5} {'wall s':>8} {'items/s':>8} {'ratio':>6} "
        f"{'recon items/s':>13} {'ratio':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        items = Path(tmp) / "items"
        items.mkdir()
        make_items(args.gen, args.items, items)
        for batch in batches:
            baseline = None
            for processes in counts:
                out = Path(tmp) / f"out-{processes}-{batch}"
                wall, recon = run_once(args, processes, batch, items, out)
                rate = args.items / wall
                baseline = baseline or (rate, recon)
                threads = max(1, args.cores // processes) if args.device == "cpu" else "-"
                print(
                    f"{processes:>9} {threads:>7} {batch:>5} {wall:>8.1f} {rate:>8.3f} {rate / baseline[0]:>6.2f} "
                    f"{recon:>13.3f} {recon / baseline[1]:>6.2f}"
                )


if __name__ == "__main__":
    main()
