"""``brgm simulate``: make a measurement from a clean image or volume with a forward-model chain and its noise.

    brgm simulate fwd=kspace fwd.acceleration=8 --input t1.nii.gz --out y.npy
    brgm simulate fwd=blur+downsample+gaussian_noise fwd.factor=4 --input xray.png --out runs/ --size 64

``--out`` is the measurement file, whose suffix picks the format, or a directory (then the file is
``{input stem}_measurement`` in the input's format, ``.npy`` for complex k-space). Next to the measurement go a
picture of it (``_view.png``) and the settings that made it (``.json``); with ``--size``/``--channels`` the
clean input is first fitted to that grid (as ``brgm compose`` fits inputs to a generator) and written as
``_truth``, the ground truth for ``brgm compose --truth``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from brgm.cli.console import console, fail
from brgm.core import io
from brgm.core.errors import BrgmError, ConfigError, ImageFileError
from brgm.core.io import figures
from brgm.core.io.files import write_json


def parse_size(text: str, spatial_dims: int) -> tuple[int, ...]:
    """``"64"`` -> ``(64,) * spatial_dims``; ``"80x96x112"`` (or with ``×`` or ``,``) -> ``(80, 96, 112)``."""
    parts = [p for p in re.split(r"[x×,]", text.strip().lower()) if p.strip()]
    if not parts or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"--size must be positive integers such as 64, 64x64 or 80x96x112, got {text!r}")
    size = tuple(int(p) for p in parts)
    return size * spatial_dims if len(size) == 1 else size


def output_base(out: Path, input_path: Path, meta: io.Meta, is_complex: bool) -> tuple[Path, str]:
    """The measurement's path without suffix, and its suffix (see the module docstring)."""
    base, suffix = io.split_suffix(out)
    if suffix:
        return base, suffix
    stem = io.split_suffix(input_path)[0].name
    return out / f"{stem}_measurement", io.output_suffix(meta, is_complex=is_complex)


def simulate(
    input_path: Annotated[
        Path,
        typer.Option(
            "--input", "-i", help="Clean image or volume (PNG, JPEG, TIFF, DICOM, NIfTI, .npy, .pt)."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Measurement file (its suffix picks the format) or a directory."),
    ],
    settings: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="fwd=NAME[+NAME] fwd.KEY=VALUE...",
            help="The forward model (fwd=a+b applies a, then b) and its parameters, e.g. fwd.acceleration=8.",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the noise draw (masks have their own fwd.seed).")] = 0,
    size: Annotated[
        str | None,
        typer.Option(
            help="Fit the input to this grid first, e.g. 64, 64x64 or 80x96x112 (crop+Lanczos / trilinear)."
        ),
    ] = None,
    channels: Annotated[
        int | None, typer.Option(help="Convert the input to this many channels first (1 gray, 3 RGB).")
    ] = None,
) -> None:
    """Make a measurement from a clean image or volume: y = fwd(x), with the chain's noise drawn from --seed."""
    from brgm.core.config import build_forward_model, describe_component, parse_tokens
    from brgm.core.params import check_seed

    try:
        check_seed(seed, "--seed")
        tokens = parse_tokens(settings or [])
        others = [key for key in tokens if key != "fwd" and not key.startswith("fwd.")]
        if others:
            raise ConfigError(
                f"brgm simulate takes fwd=NAME and fwd.KEY=VALUE settings only, got {', '.join(others)}"
            )
        operator = build_forward_model(tokens)
        loaded = io.load(input_path)
        x, meta, report = loaded.data, loaded.meta, ""
        if x.is_complex():
            raise ImageFileError(
                f"{input_path}: holds complex data (k-space); simulate takes a clean image or volume"
            )
        if size is not None or channels is not None:
            shape = meta.spatial_shape if size is None else parse_size(size, meta.spatial_dims)
            x, meta, report = io.fit_to_grid(x, shape, meta, channels=channels)
        operator.output_shape(x.shape)
        with torch.no_grad():
            y = operator.simulate(x, torch.Generator().manual_seed(seed))[0]
        base, suffix = output_base(out, input_path, meta, y.is_complex())
        targets = {"measurement": Path(f"{base}{suffix}"), "view": Path(f"{base}_view.png")}
        if meta.fit is not None:
            targets["truth"] = Path(f"{base}_truth{io.output_suffix(meta)}")
        targets["settings"] = Path(f"{base}.json")
        source = input_path.resolve()
        for target in targets.values():
            if target.resolve() == source or source in target.resolve().parents:
                raise ConfigError(
                    f"--out {out}: writing {target} would overwrite the input; choose another --out"
                )
        base.parent.mkdir(parents=True, exist_ok=True)
        written = {"measurement": io.save(targets["measurement"], y, meta)}
        written["view"] = figures.picture(targets["view"], y, label=f"measurement: {operator.name}")
        if "truth" in targets:
            written["truth"] = io.save(targets["truth"], x[0], meta)
    except BrgmError as err:
        raise fail(str(err)) from None
    record: dict[str, Any] = {
        "command": "simulate",
        "input": loaded.meta.as_dict(),
        "fit": report,
        "fwd": [describe_component(op, op.name) for op in operator.components],
        "seed": seed,
        "measurement": {"shape": list(y.shape), "dtype": str(y.dtype).removeprefix("torch.")},
        "files": {key: str(path) for key, path in written.items()},
    }
    written["settings"] = targets["settings"]
    write_json(written["settings"], record)
    if report:
        console.print(f"[dim]{input_path.name}: {report}[/]", highlight=False, soft_wrap=True)
    for key, path in written.items():
        console.print(f"wrote {key}: {path}", highlight=False, soft_wrap=True)
