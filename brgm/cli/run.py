"""``brgm compose`` on files: read inputs, make measurements, reconstruct in batches, write outputs."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from brgm.core.compose import compose_resolved, resolved_config
from brgm.core.config import Resolved
from brgm.core.errors import BrgmError, DivergenceWarning, ShapeError
from brgm.core.files import write_json
from brgm.core.problem import Problem
from brgm.core.solver import Result, reconstruct

console = Console(stderr=True)

#: suffixes read as inputs when ``--input`` is a directory
INPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".nii", ".gz", ".npy", ".pt")


@attrs.define
class Item:
    """One input prepared for reconstruction."""

    name: str
    measurement: torch.Tensor  # [1, *measurement_shape]
    meta: Any
    truth: torch.Tensor | None  # [1, C, *spatial] on the generator's grid
    notes: list[str]


def expand_inputs(paths: Sequence[Path]) -> list[Path]:
    """Files of ``paths``, with directories replaced by their image/volume/array files (sorted)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir() and not any(path.glob("*.dcm")):
            files.extend(
                sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(INPUT_SUFFIXES))
            )
        else:
            files.append(path)
    return files


def stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", *INPUT_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def truth_for(path: Path, truth: Path | None) -> Path | None:
    if truth is None or not truth.is_dir() or any(truth.glob("*.dcm")):
        return truth
    matches = [p for p in truth.iterdir() if stem(p) == stem(path)]
    return matches[0] if matches else None


def prepare(path: Path, problem: Problem, truth: Path | None, input_kind: str, seed: int) -> Item:
    """Read ``path`` and return its measurement (simulated from a clean image when needed) and ground truth."""
    from brgm.core import io

    loaded = io.load(path)
    x, meta, notes = loaded.data, loaded.meta, []
    measurement_shape = problem.measurement_shape
    image_shape = problem.image_shape
    is_measurement = input_kind == "measurement" or (
        input_kind == "auto"
        and (x.is_complex() or (tuple(x.shape[1:]) == measurement_shape and measurement_shape != image_shape))
    )
    clean = None
    if is_measurement:
        y = x
        notes.append(f"{path.name} is used as the measurement")
    else:
        if x.is_complex():
            raise ShapeError(f"{path}: a complex array cannot be a clean image; use --input-kind measurement")
        clean, meta, report = io.fit_to_grid(x, image_shape[1:], meta, channels=image_shape[0])
        if report:
            notes.append(f"{path.name}: {report}")
        generator = torch.Generator().manual_seed(seed)
        y = problem.forward_model.simulate(clean.to(torch.float32), generator)
        notes.append(
            f"{path.name} is a clean image: measurement simulated with fwd={problem.forward_model.name}, seed {seed}"
        )
    y = problem.check_measurement(y)
    truth_path = truth_for(path, truth)
    if truth_path is not None:
        t = io.load(truth_path)
        truth_image, _, report = io.fit_to_grid(t.data, image_shape[1:], t.meta, channels=image_shape[0])
        if report:
            notes.append(f"truth {truth_path.name}: {report}")
    elif clean is not None:
        truth_image = clean
        notes.append(f"metrics compare with the clean input {path.name}")
    else:
        truth_image = None
    return Item(stem(path), y, meta, truth_image, notes)


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
) -> int:
    """Reconstruct every input; returns the exit status: 1 when some inputs failed (or, with ``strict``, some
    solve diverged), 0 otherwise."""
    from brgm.core.outputs import write_outputs

    problem = compose_resolved(resolved, device=device)
    out.mkdir(parents=True, exist_ok=True)
    items: list[Item] = []
    failed: dict[str, str] = {}
    for path in expand_inputs(inputs):
        try:
            items.append(prepare(path, problem, truth, input_kind, seed))
        except (BrgmError, OSError, ValueError) as err:
            failed[str(path)] = str(err)
            console.print(f"[yellow]skipped[/] {path}: {err}", highlight=False)
    for item in items:
        for note in item.notes:
            console.print(f"[dim]{note}[/]", highlight=False)
    config = {**resolved_config(resolved), **{k: problem.config[k] for k in ("device",)}}
    config["gen"]["model"] = problem.config["gen"]["model"]
    config["inputs"] = {item.name: item.notes for item in items}
    config["seed"] = seed
    write_json(out / "config.json", config)
    if not items:
        console.print("[red]no input could be read[/]")
        return 1
    metrics: dict[str, Any] = {}
    groups: dict[tuple[int, ...], list[Item]] = {}
    for item in items:
        groups.setdefault(tuple(item.measurement.shape), []).append(item)
    diverged = []
    for batch in groups.values():
        y = torch.cat([item.measurement for item in batch])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DivergenceWarning)  # reported per item below
            result = _solve(problem, y, seed)
        for index, item in enumerate(batch):
            metrics[item.name] = write_outputs(
                out,
                name=item.name,
                problem=problem,
                measurement=item.measurement[0],
                result=result,
                index=index,
                meta=item.meta,
                truth=item.truth,
            )
            if result.diverged[index]:
                total = result.history["total"][:, index]
                warning = (
                    f"the energy ended far above where it started ({total[0]:.4g} -> {total[-1]:.4g}): the "
                    f"solve diverged; try a smaller solver.lr (now {problem.solver.lr:g})"
                )
                metrics[item.name].update(diverged=True, warning=warning)
                diverged.append(item.name)
                console.print(f"[yellow]warning[/] {item.name}: {warning}", highlight=False)
    if any(metrics.values()):
        write_json(out / "metrics.json", metrics)
    if failed:
        write_json(out / "failed.json", failed)
    console.print(
        f"wrote {len(items)} reconstruction(s) to {out}"
        + (f"; {len(failed)} input(s) failed" if failed else "")
        + (f"; {len(diverged)} diverged" if diverged else "")
    )
    return 1 if failed or (strict and diverged) else 0


def _solve(problem: Problem, y: torch.Tensor, seed: int) -> Result:
    steps = problem.solver.steps
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"reconstructing {y.shape[0]}", total=steps)

        def update(step: int, total: int, energies: dict[str, float]) -> None:
            progress.update(
                task,
                completed=step,
                description=f"reconstructing {y.shape[0]}: energy {energies['total']:.4g}",
            )

        return reconstruct(problem, y, seed=seed, progress=update)
