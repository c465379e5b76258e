"""Peak memory and time of one 3D reconstruction step, with and without activation checkpointing and autocast.

One step is what the MAP solver does per iteration: synthesis of the W+ latents, the pixel likelihood of a
masked volume and BRGM's Gaussian prior, and the backward pass to ``ws`` (the generator is frozen). The
generator is a random 3D-StyleGAN (base 5×6×7, constant filter count, latents 96, 'orig'): blocks b4 … b64 make
80×96×112 volumes (2 mm), b4 … b128 make 160×192×224 (1 mm). Each configuration runs in a fresh subprocess so
that peaks do not mix. Columns:

- step MB: the peak of the tensor memory allocated during one step (CUDA: ``torch.cuda.max_memory_allocated``
  minus what was allocated before; CPU: the same from torch's memory-profiler timeline);
- peak MB: the process's peak (CUDA: ``max_memory_allocated``; CPU: resident memory, ``ru_maxrss``, which also
  counts the interpreter, torch and the oneDNN workspaces);
- time s: the best of ``--repeats`` steps after a warm-up step (profiling excluded).

CPU runs use a small filter count (``--fmaps``, default 8) and leave bf16 out at 1 mm (on CPUs without native
bf16 it is several times slower than float32); CUDA runs the published filter count (default 96, 3D-StyleGAN's
2mm_f96) and every mode. The table ends with the ratios of each option to the plain run.

    python benchmarks/bench_memory3d.py                              # CPU: 2 mm and 1 mm, fmaps 8
    python benchmarks/bench_memory3d.py --device cuda                # fmaps 96, fp16 modes too
    python benchmarks/bench_memory3d.py --grids 1mm --fmaps 8 --modes plain checkpoint
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from timing import best_seconds

import brgm
from brgm.core.generator import AUTOCAST_DTYPES
from brgm.core.terms import Latents
from brgm.plugins.generators.stylegan3d import RandomStyleGAN3D

#: grid name -> top block resolution (volume = 5×6×7 · resolution / 4)
GRIDS = {"2mm": 64, "1mm": 128}
#: mode -> (activation checkpointing, autocast)
MODES = {
    "plain": (False, "none"),
    "checkpoint": (True, "none"),
    "bf16": (False, "bf16"),
    "fp16": (False, "fp16"),
    "checkpoint+bf16": (True, "bf16"),
    "checkpoint+fp16": (True, "fp16"),
}
#: the CPU run's modes per grid
CPU_MODES = {"2mm": ("plain", "checkpoint", "bf16", "checkpoint+bf16"), "1mm": ("plain", "checkpoint")}
MB = 1 << 20


def cpu_step_mb(step: Callable[[], None]) -> float:
    """Peak tensor memory allocated during ``step()`` on the CPU, from torch's memory-profiler timeline (the CPU
    counterpart of CUDA's ``max_memory_allocated``; library workspaces are not tensors and not counted)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(
        activities=activities, profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        step()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated in favour of a CUDA-only API
        path = Path(tmp) / "timeline.json"
        prof.export_memory_timeline(str(path), device="cpu")
        _, sizes = json.loads(path.read_text())
    return max(sum(categories) for categories in sizes) / MB


def measure(grid: str, mode: str, fmaps: int, device: str, repeats: int) -> dict[str, Any]:
    """Run the configuration in this process: best step time (s), the step's peak tensor memory and the
    process's peak (CPU: resident memory; CUDA: allocated), in MB."""
    dev = torch.device(device)
    G = RandomStyleGAN3D(resolution=GRIDS[grid], fmaps=fmaps).load()
    problem = brgm.compose(gen=G, fwd="mask", likelihoods=["pixel"], priors=["gaussian"], device=dev)
    G = problem.generator
    y = torch.rand(1, *problem.measurement_shape, device=dev)
    mean, _ = G.w_stats()
    ws = mean.to(dev).reshape(1, 1, -1).repeat(1, G.num_ws, 1).requires_grad_(True)
    checkpoint, autocast = MODES[mode]

    def step() -> None:
        _, terms = problem.energies(Latents(ws=ws), y)
        torch.stack(list(terms.values())).sum().backward()
        ws.grad = None

    with G.memory_options(checkpoint=checkpoint, autocast_dtype=AUTOCAST_DTYPES[autocast]):
        seconds = best_seconds(step, repeats, dev)
        if dev.type == "cuda":
            before = torch.cuda.memory_allocated(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            step()
            peak = torch.cuda.max_memory_allocated(dev)
            step_mb, peak_mb = (peak - before) / MB, peak / MB
        else:
            step_mb = cpu_step_mb(step)
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "grid": grid,
        "shape": list(G.img_shape),
        "mode": mode,
        "step_mb": step_mb,
        "peak_mb": peak_mb,
        "seconds": seconds,
    }


def run_child(config: dict[str, Any], timeout: float) -> dict[str, Any]:
    """:func:`measure` in a fresh Python process (a crash or an out-of-memory kill is reported, not raised)."""
    command = [sys.executable, __file__, "--child", json.dumps(config)]
    # glibc then maps every block over 64 KiB on its own and unmaps it when freed, so the resident peak follows
    # what is in use rather than what the allocator keeps for reuse
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired:
        return {**config, "error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return {**config, "error": last if done.returncode > 0 else f"killed by signal {-done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(rows: list[dict[str, Any]], device: str, fmaps: int) -> None:
    peak = "process peak: allocated" if device == "cuda" else "process peak: resident"
    print(f"\none reconstruction step on {device}, fmaps {fmaps}, batch 1 (step: peak tensor memory; {peak})")
    print(f"{'grid':<5} {'volume':<12} {'mode':<16} {'step MB':>9} {'peak MB':>9} {'time s':>8}")
    for row in rows:
        volume = "×".join(map(str, row.get("shape", []))) or "-"
        if "error" in row:
            print(f"{row['grid']:<5} {volume:<12} {row['mode']:<16} failed: {row['error']}")
            continue
        print(
            f"{row['grid']:<5} {volume:<12} {row['mode']:<16} "
            f"{row['step_mb']:9.0f} {row['peak_mb']:9.0f} {row['seconds']:8.2f}"
        )
    print("\nratios to the plain run (step memory, process peak, time)")
    for grid in dict.fromkeys(row["grid"] for row in rows):
        ok = {r["mode"]: r for r in rows if r["grid"] == grid and "error" not in r}
        if "plain" not in ok:
            continue
        plain = ok["plain"]
        for mode, row in ok.items():
            if mode != "plain":
                print(
                    f"{grid:<5} {mode + '/plain':<22} step {row['step_mb'] / plain['step_mb']:5.2f}   "
                    f"peak {row['peak_mb'] / plain['peak_mb']:5.2f}   time {row['seconds'] / plain['seconds']:5.2f}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--grids", nargs="+", choices=tuple(GRIDS), default=list(GRIDS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=None)
    parser.add_argument("--fmaps", type=int, default=None, help="filters per block (CPU 8, CUDA 96)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per configuration")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(**json.loads(args.child))))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    fmaps = args.fmaps or (96 if args.device == "cuda" else 8)
    rows = []
    for grid in args.grids:
        for mode in args.modes or (MODES if args.device == "cuda" else CPU_MODES[grid]):
            config = {
                "grid": grid,
                "mode": mode,
                "fmaps": fmaps,
                "device": args.device,
                "repeats": args.repeats,
            }
            rows.append(run_child(config, args.timeout))
            print(json.dumps(rows[-1]), flush=True)
    report(rows, args.device, fmaps)


if __name__ == "__main__":
    main()
