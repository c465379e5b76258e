"""``brgm compose`` on files: the run pipeline (:mod:`brgm.core.pipeline`) with progress bars on stderr."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from brgm.cli.console import err_console
from brgm.core import pipeline
from brgm.core.compose import compose_resolved
from brgm.core.config import Resolved
from brgm.core.solver import Progress as StepProgress


class RichReporter(pipeline.Reporter):
    """Items done of the run, and steps of the batch being solved, as two progress bars."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.items = progress.add_task("items", total=None)
        self.steps = progress.add_task("solving", total=None, visible=False)

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
) -> int:
    """Reconstruct every input into ``out``; returns the exit status (see :meth:`RunSummary.exit_status`)."""
    problem = compose_resolved(resolved, device=device)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console) as progress:
        summary = pipeline.run(
            problem,
            inputs,
            out,
            truth=truth,
            input_kind=input_kind,
            seed=seed,
            overwrite=overwrite,
            reporter=RichReporter(progress),
        )
    parts = [f"wrote {len(summary.solved)} reconstruction(s) to {out}"]
    if summary.skipped:
        parts.append(f"{len(summary.skipped)} already done")
    if summary.failed:
        parts.append(f"{len(summary.failed)} input(s) failed (failed.json)")
    if summary.diverged:
        parts.append(f"{len(summary.diverged)} diverged")
    err_console.print("; ".join(parts), highlight=False)
    return summary.exit_status(strict)
