"""``brgm weights``: list, locate, verify and fetch the published weights of generator presets.

Unknown names exit with status 2 (with a did-you-mean), missing files and failed downloads with status 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from brgm.core.errors import BrgmError, ConfigError
from brgm.core.io import weights as w

app = typer.Typer(
    name="weights",
    help="List, locate, verify and fetch the published weights of generator presets.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

NameArg = Annotated[
    str, typer.Argument(help="A generator preset with published weights, e.g. stylegan2-xray.")
]


def _fail(err: BrgmError) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
    return typer.Exit(2 if isinstance(err, ConfigError) else 1)


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    value, unit = float(n), 0
    while value >= 1024 and unit < 3:
        value, unit = value / 1024, unit + 1
    return f"{n} B" if unit == 0 else f"{value:.1f} {('KiB', 'MiB', 'GiB')[unit - 1]}"


@app.command("list")
def list_weights() -> None:
    """Every preset's weight file: name, file, size, whether it is present, and where it goes."""
    try:
        specs = w.registered_weights()
    except BrgmError as err:
        raise _fail(err) from None
    table = Table(title=f"published weights ($BRGM_HOME = {w.brgm_home()})")
    for column in ("name", "file", "size", "present", "path"):
        table.add_column(column, overflow="fold")
    for name, spec in sorted(specs.items()):
        path = w.default_path(spec)
        present = path.is_file()
        size = path.stat().st_size if present else spec.size
        table.add_row(name, spec.filename, _size(size), "yes" if present else "no", str(path))
    console.print(table)


@app.command()
def path(name: NameArg) -> None:
    """Print where NAME's weight file is (status 1 and how to get it when it is missing)."""
    try:
        typer.echo(str(w.find_weights(w.get_weights(name))))
    except BrgmError as err:
        raise _fail(err) from None


@app.command()
def fetch(
    name: NameArg,
    url: Annotated[
        str | None, typer.Option(help="Download from this URL instead of the published one.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Download again even if the file is present.")
    ] = False,
) -> None:
    """Download NAME's weights into $BRGM_HOME/weights (checked against the published size and SHA-256)."""
    try:
        spec = w.get_weights(name)
        dest = w.default_path(spec)
        if dest.is_file() and not force:
            typer.echo(f"{name}: already present at {dest} (use --force to download again)")
            return
        columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn())
        with Progress(*columns, TransferSpeedColumn(), TimeRemainingColumn(), console=err_console) as bar:
            task = bar.add_task(spec.filename, total=spec.size)
            saved = w.fetch(
                spec, url, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
    except BrgmError as err:
        raise _fail(err) from None
    typer.echo(f"{name}: saved {saved} (sha256 {w.sha256_of(saved)})")


@app.command()
def verify(
    name: NameArg,
    weights: Annotated[
        Path | None, typer.Option(help="Check this file instead of the one in $BRGM_HOME.")
    ] = None,
) -> None:
    """Check NAME's file: size and SHA-256 against the published ones, then load it as the preset's network."""
    from brgm.core.compose import load_generator

    try:
        spec = w.get_weights(name)
        found = w.find_weights(spec, weights)
        report = w.verify(spec, found)
        typer.echo(f"{found}: {report.size} bytes, sha256 {report.sha256}")
        for what, ok in (("size", report.size_ok), ("sha256", report.sha256_ok)):
            typer.echo(f"  {what}: {'no published value' if ok is None else 'ok' if ok else 'MISMATCH'}")
        if not report.ok:
            raise typer.Exit(1)
        G = load_generator(name, weights=found)
    except BrgmError as err:
        raise _fail(err) from None
    shape = "×".join(map(str, G.img_shape))
    typer.echo(f"  loads: {shape}, {G.img_channels} channel(s), {G.num_ws} ws of {G.w_dim}")
