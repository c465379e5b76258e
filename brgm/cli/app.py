"""The ``brgm`` command line: ``compose``, ``calibrate``, ``merge``, ``plugins``, ``simulate``, ``weights``,
``train``.

Configuration errors (unknown names, keys or bad values) exit with status 2 and a one-line message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from brgm.cli.calibrate import calibrate
from brgm.cli.console import console, fail
from brgm.cli.simulate import simulate
from brgm.cli.train import train
from brgm.cli.weights import app as weights_app
from brgm.core.claims import LEASE
from brgm.core.errors import BrgmError
from brgm.core.io.calibrations import CHOICES

app = typer.Typer(
    name="brgm",
    help="Reconstruct images and volumes from corrupted measurements with a pre-trained generator.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="KEY=VALUE...",
        help="gen=NAME|PATH fwd=NAME[+NAME] prior=NAME[+NAME]|none like=NAME[+NAME] solver=NAME preset=NAME "
        "and field values such as fwd.acceleration=8, prior.gaussian.weight=100, solver.steps=200.",
        show_default=False,
    ),
]


@app.command()
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    kind: Annotated[
        str | None,
        typer.Option(help="Only this kind: generator, forward_model, format, checkpoint_reader, ..."),
    ] = None,
) -> None:
    """List every registered component (generators, forward models, likelihoods, priors, solvers, presets, file
    formats, checkpoint readers) with its kind, plugin, version, description and parameters."""
    from brgm.core.plugins import registry

    try:
        components = registry().all()
    except BrgmError as err:
        raise fail(str(err)) from None
    if kind is not None:
        components = [c for c in components if c.kind == kind]
    if as_json:
        typer.echo(json.dumps([c.as_dict() for c in components], indent=2))
        return
    table = Table(title="brgm components")
    for column in ("kind", "name", "plugin", "version", "description", "parameters"):
        table.add_column(column, overflow="fold")
    for c in components:
        params = ", ".join(f"{p['name']}={p['default']!r}" for p in c.params())
        table.add_row(c.kind, c.name, c.plugin, c.version, c.description, params)
    console.print(table)


@app.command()
def compose(
    overrides: OverridesArg = None,
    inputs: Annotated[
        list[Path] | None,
        typer.Option(
            "--input", "-i", help="Measurement or clean image/volume; a directory or repeated for a batch."
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("out"),
    truth: Annotated[
        Path | None, typer.Option(help="Ground truth (file, or directory matched by file stem) for metrics.")
    ] = None,
    input_kind: Annotated[
        str,
        typer.Option(
            help="auto: a complex array or a file shaped like the measurement is a measurement, anything else a "
            "clean image that is fitted to the generator and corrupted with the forward model (seeded).",
        ),
    ] = "auto",
    steps: Annotated[int | None, typer.Option(help="Optimisation steps (solver.steps).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for simulated measurements and the solver.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the resolved configuration and exit.")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Exit with status 1 when a solve diverged (always noted in metrics.json)."
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Redo items already finished in --out, and replace a run of another configuration there.",
        ),
    ] = False,
    launch: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Run as N processes through torch.distributed's launcher (like torchrun --nproc_per_node N), "
            "the inputs shared between them: one GPU each (NCCL), or the CPU cores divided (Gloo).",
        ),
    ] = None,
    max_restarts: Annotated[
        int, typer.Option(min=0, help="With --launch: restart the processes this often after a failure.")
    ] = 0,
    lease: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Seconds after which an item claimed by another run into --out, and not kept fresh by it, is "
            "taken over (a run on another machine that died).",
        ),
    ] = LEASE,
    calibration: Annotated[
        str,
        typer.Option(
            help="A sampler's std: auto (calibrated with the generator's shipped calibration when it holds one "
            "for this configuration, else raw, and the log says so), none (raw), or a file written by brgm "
            "calibrate.",
        ),
    ] = "auto",
) -> None:
    """Compose a generator, a forward model, likelihoods and priors, and reconstruct the input(s).

    Under torchrun, or as a task of a Slurm job array, each process reconstructs its share of the inputs."""
    from brgm.cli.run import launch as launch_ranks
    from brgm.cli.run import run_compose
    from brgm.core.compose import resolve_device, resolve_settings
    from brgm.core.config import parse_tokens
    from brgm.core.params import check_seed

    try:
        settings = parse_tokens(overrides or [])
        if steps is not None:
            settings["solver.steps"] = str(steps)
        resolved = resolve_settings(settings)
        if input_kind not in ("auto", "image", "measurement"):
            raise fail(f"--input-kind must be auto, image or measurement, got {input_kind!r}")
        resolve_device(device)
        check_seed(seed, "--seed")
        if calibration not in CHOICES and not Path(calibration).is_file():
            raise fail(f"--calibration must be auto, none or a calibration file, got {calibration!r}")
        if dry_run:
            typer.echo(json.dumps(resolved.describe(), indent=2))
            return
        if not inputs:
            raise fail("--input is required (a measurement or clean image, a directory, or several --input)")
        if launch is not None:
            options = {"--out": out, "--truth": truth, "--input-kind": input_kind, "--steps": steps}
            options |= {"--seed": seed, "--device": device, "--lease": lease, "--calibration": calibration}
            arguments = [*(overrides or []), *(arg for path in inputs for arg in ("--input", str(path)))]
            arguments += [
                arg for name, value in options.items() if value is not None for arg in (name, str(value))
            ]
            arguments += [flag for flag, on in (("--strict", strict), ("--overwrite", overwrite)) if on]
            raise typer.Exit(launch_ranks(launch, arguments, max_restarts))
        code = run_compose(
            resolved,
            inputs=inputs,
            out=out,
            truth=truth,
            input_kind=input_kind,
            seed=seed,
            device=device,
            strict=strict,
            overwrite=overwrite,
            lease=lease,
            calibration=calibration,
        )
    except BrgmError as err:
        raise fail(str(err)) from None
    if code:
        raise typer.Exit(code)


@app.command()
def merge(out: Annotated[Path, typer.Argument(help="The output directory of a run.")]) -> None:
    """Assemble metrics.json, failed.json and summary.json of a run from its per-item records (after the
    tasks of a Slurm job array, or to look at a run in progress)."""
    from brgm.cli.run import merge_run

    try:
        code = merge_run(out)
    except BrgmError as err:
        raise fail(str(err)) from None
    if code:
        raise typer.Exit(code)


app.command()(calibrate)
app.command()(simulate)
app.add_typer(weights_app, name="weights")
app.command()(train)


def main() -> None:
    """Entry point of the ``brgm`` console script."""
    app()
