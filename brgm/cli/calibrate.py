"""``brgm calibrate``: fit split-conformal factors on a sampler's std for one configuration, from clean images
whose truth is known, and add them to a calibration file (:mod:`brgm.core.calibration`).

    brgm calibrate gen=demo-brain64 fwd=kspace+gaussian_noise fwd.sigma=0.02 solver=laplace \\
        --input train_slices/ --out calibration.json
    brgm compose gen=demo-brain64 fwd=kspace+gaussian_noise fwd.sigma=0.02 solver=laplace \\
        --calibration calibration.json --input scan.png --out out/

Each input is fitted to the generator's grid and measured through the forward model with its own seed, exactly
as ``brgm compose`` simulates a clean input, then reconstructed with the configuration's sampler; the factors are
chosen over the foreground pixels of all of them. Fit on images the evaluation never sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from brgm.cli.console import console, err_console, fail
from brgm.core import calibration
from brgm.core.compose import compose_resolved, resolve_settings
from brgm.core.config import parse_tokens
from brgm.core.diagnostics import calibration_metrics
from brgm.core.errors import BrgmError
from brgm.core.io import calibrations
from brgm.core.items import collect, item_seed
from brgm.core.params import check_seed
from brgm.core.pipeline import prepare
from brgm.core.reconstruct import reconstruct


def calibrate(
    settings: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="KEY=VALUE...",
            help="The configuration to calibrate, as for brgm compose (a sampler: solver=laplace, langevin or vi).",
            show_default=False,
        ),
    ] = None,
    inputs: Annotated[
        list[Path] | None,
        typer.Option(
            "--input", "-i", help="Clean images or volumes with a known truth; a directory or repeated."
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Calibration file to add to (created; an entry of the same configuration is replaced).",
        ),
    ] = Path("calibration.json"),
    seed: Annotated[int, typer.Option(help="Seed for the simulated measurements and the sampler.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    fitted_on: Annotated[
        str | None,
        typer.Option(help="What the images are, in words (recorded; default: their count and names)."),
    ] = None,
) -> None:
    """Fit factors that make a sampler's 90 % and 50 % intervals cover their share of the truth's foreground
    pixels, on clean images measured through the forward model, and add them to a calibration file."""
    try:
        check_seed(seed, "--seed")
        problem = compose_resolved(resolve_settings(parse_tokens(settings or [])), device=device)
        if not problem.solver.samples_posterior:
            raise fail(
                f"solver={problem.solver.name} gives no std to calibrate; use solver=laplace, langevin or vi"
            )
        if not inputs:
            raise fail("--input is required: clean images or volumes whose truth is known")
        sources = collect(inputs)
        prepared, skipped = [], []
        for source in sources:
            try:
                prepared.append(prepare(source, problem, "image", item_seed(seed, source.key)))
            except BrgmError as err:
                skipped.append(source.label)
                err_console.print(f"skipped {source.label}: {err}", highlight=False, soft_wrap=True)
        if not prepared:
            raise fail("no input could be read as a clean image; nothing to calibrate on")
        means, stds = [], []
        batch = problem.execution.batch_size
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err_console) as progress:
            task = progress.add_task("calibrating", total=len(prepared))
            for start in range(0, len(prepared), batch):
                group = prepared[start : start + batch]
                y = torch.cat([item.measurement for item in group])
                result = reconstruct(problem, y, seeds=[item.seed for item in group])
                means.append(result.image)
                stds.append(result.std)
                progress.advance(task, len(group))
        mean, std = torch.cat(means), torch.cat(stds)
        truth = torch.cat([item.truth for item in prepared]).to(mean.dtype)
        names = ", ".join(item.source.key for item in prepared[:5]) + (", ..." if len(prepared) > 5 else "")
        fitted = calibration.fit(
            mean,
            std,
            truth,
            calibration.configuration_key(problem.config),
            fitted_on=fitted_on or f"{len(prepared)} image(s): {names}",
        )
        calibrations.save(out, fitted)
    except BrgmError as err:
        raise fail(str(err)) from None
    raw = calibration_metrics(mean, std, truth)["foreground"]
    cal = calibration_metrics(mean, std, truth, factors=fitted.factors)["foreground"]
    console.print(
        f"fitted on {fitted.pairs} image(s), {fitted.pixels} foreground pixels"
        + (f" ({len(skipped)} skipped)" if skipped else "")
        + ": "
        + ", ".join(f"k{name} = {k:.4g}" for name, k in fitted.factors.items())
        + f"; foreground coverage 90 % {raw['coverage90']:.1%} -> {cal['coverage90']:.1%}, "
        f"50 % {raw['coverage50']:.1%} -> {cal['coverage50']:.1%} on these images; wrote {out}",
        highlight=False,
        soft_wrap=True,
    )
