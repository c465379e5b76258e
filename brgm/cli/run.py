"""``brgm compose`` on files: the run pipeline (:mod:`brgm.core.pipeline`) with progress bars on stderr, in one
process, as one rank of torchrun or one task of a Slurm job array (:mod:`brgm.core.distributed`), or launching
the ranks itself (``--launch N``); ``brgm merge``."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from brgm.cli.console import err_console
from brgm.core import distributed, pipeline
from brgm.core.claims import LEASE
from brgm.core.compose import compose_resolved, resolve_device
from brgm.core.config import Resolved
from brgm.core.generator import GeneratorSource
from brgm.core.io.calibrations import choose
from brgm.core.solver import Progress as StepProgress


class RichReporter(pipeline.Reporter):
    """Items done of the run, and steps of the batch being solved, as two progress bars."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.items = progress.add_task("items", total=None)
        self.steps = progress.add_task("solving", total=None, visible=False)
        self.all = progress.add_task("all workers", total=None, visible=False)

    def start(self, total: int, finished: int) -> None:
        self.progress.update(self.items, total=total, completed=finished)
        if finished:
            self.progress.console.print(
                f"{finished} of {total} item(s) already done with this configuration: skipped",
                highlight=False,
            )

    def solving(self, keys: Sequence[str]) -> StepProgress:
        self.progress.reset(self.steps, total=None, visible=True, description=f"solving {len(keys)}")

        def update(step: int, total: int, energies: dict[str, float]) -> None:
            description = f"solving {len(keys)}: energy {energies['total']:.4g}"
            self.progress.update(self.steps, completed=step, total=total, description=description)

        return update

    def item(self, record: Mapping[str, Any]) -> None:
        self.progress.advance(self.items)
        console = self.progress.console
        for note in record.get("notes", []):
            console.print(f"[dim]{note}[/]", highlight=False)
        if record["status"] == "failed":
            console.print(f"[yellow]failed[/] {record['input']}: {record['error']}", highlight=False)
        elif warning := record.get("metrics", {}).get("warning"):
            console.print(f"[yellow]warning[/] {record['key']}: {warning}", highlight=False)

    def cohort(self, tally: pipeline.Tally, rate: float, eta: float | None) -> None:
        """The done count is the bar's; the failed, claimed and stale items are named when there are any."""
        counts = {"failed": tally.failed, "claimed": tally.claimed, "stale": tally.stale}
        named = "".join(f"{n} {state}, " for state, n in counts.items() if n)
        left = "" if eta is None else f", {eta:.0f} s left"
        description = f"all workers: {named}{rate:.3g} items/s{left}"
        completed = tally.done + tally.failed
        self.progress.update(
            self.all, completed=completed, total=tally.total, visible=True, description=description
        )


def run_compose(
    resolved: Resolved,
    *,
    inputs: Sequence[Path],
    out: Path,
    truth: Path | None,
    input_kind: str,
    seed: int,
    device: str | None,
    strict: bool = False,
    overwrite: bool = False,
    lease: float = LEASE,
    calibration: str = "auto",
) -> int:
    """Reconstruct every input into ``out`` (this process's shard under torchrun or a Slurm job array), a
    sampler's std calibrated as ``calibration`` says (:func:`brgm.core.io.calibrations.choose`); returns the exit
    status (see :meth:`RunSummary.exit_status`; a rank other than 0 leaves failures to rank 0)."""
    workers = distributed.from_environment()
    dev = distributed.rank_device(resolve_device(device), workers)
    with distributed.joined(workers, dev):
        problem = compose_resolved(resolved, device=str(dev))
        source = resolved.generator
        applied, note = choose(
            calibration,
            source.calibration_file() if isinstance(source, GeneratorSource) else None,
            problem.config,
            samples=problem.solver.samples_posterior,
        )
        if note and workers.lead:
            err_console.print(note, highlight=False, soft_wrap=True)
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err_console, disable=not workers.lead) as progress:
            summary = pipeline.run(
                problem,
                inputs,
                out,
                truth=truth,
                input_kind=input_kind,
                seed=seed,
                overwrite=overwrite,
                reporter=RichReporter(progress),
                workers=workers,
                lease=lease,
                calibration=applied,
                calibration_note=note,
            )
    who = f"worker {workers.label}: " if workers.count > 1 else ""
    parts = [f"{who}wrote {len(summary.solved)} reconstruction(s) to {out}"]
    if summary.redone:
        parts[0] += f" ({len(summary.redone)} redone: input or truth changed since its record)"
    if summary.skipped:
        parts.append(f"{len(summary.skipped)} already done")
    if summary.elsewhere:
        parts.append(f"{len(summary.elsewhere)} done by other runs into {out}")
    if summary.failed:
        parts.append(f"{len(summary.failed)} input(s) failed (failed.json)")
    if summary.diverged:
        parts.append(f"{len(summary.diverged)} diverged")
    err_console.print("; ".join(parts), highlight=False)
    return summary.exit_status(strict) if workers.lead else 0


def launch(processes: int, arguments: Sequence[str], max_restarts: int = 0) -> int:
    """Run ``brgm compose ARGUMENTS`` as ``processes`` ranks on this machine through torch.distributed's elastic
    launcher (what ``torchrun --standalone --nproc_per_node N -m brgm compose ...`` does), restarting them all up
    to ``max_restarts`` times after a failure (each restart finishes what is missing); returns 1 when a rank
    failed."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=max_restarts,
        monitor_interval=0.5,
    )
    try:
        elastic_launch(config, sys.executable)("-m", "brgm", "compose", *arguments)
    except ChildFailedError as err:
        ranks = ", ".join(
            f"rank {rank} (exit status {f.exitcode})" for rank, f in sorted(err.failures.items())
        )
        err_console.print(f"[red]failed[/]: {ranks}", highlight=False)
        return 1
    return 0


def merge_run(out: Path) -> int:
    """``brgm merge OUT``: assemble the run-level files from the records; 1 when an item failed."""
    summary = pipeline.merge(out)
    parts = [f"{out}: {len(summary.solved)} item(s) done"]
    if summary.failed:
        parts.append(f"{len(summary.failed)} failed (failed.json)")
    if summary.claimed:
        parts.append(f"{len(summary.claimed)} claimed by a running run")
    if summary.stale:
        parts.append(
            f"{len(summary.stale)} stale (input or truth changed or gone since its record; left out)"
        )
    if summary.diverged:
        parts.append(f"{len(summary.diverged)} diverged")
    err_console.print("; ".join(parts) + "; wrote metrics.json, failed.json, summary.json", highlight=False)
    return summary.exit_status()
