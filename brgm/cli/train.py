"""``brgm train``: train a StyleGAN2 generator (with ADA) on a ``.npz`` of images, resumably."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from brgm.cli.console import err_console, fail
from brgm.core.compose import resolve_device
from brgm.core.errors import BrgmError

if TYPE_CHECKING:
    from brgm.train import Trainer


def train(
    data: Annotated[
        Path, typer.Option(help="A .npz with 'images' [N, C, H, W] in [0, 1], or a folder with train.npz.")
    ],
    out: Annotated[
        Path, typer.Option(help="Run folder: checkpoints/, samples/, log.jsonl, generator.safetensors.")
    ],
    resolution: Annotated[
        int | None, typer.Option(help="Image side; must match the data [default: 64, or the run's].")
    ] = None,
    kimg: Annotated[
        float | None,
        typer.Option(
            help="Length of the run in thousands of real images shown [default: 100, or the run's]."
        ),
    ] = None,
    batch: Annotated[int | None, typer.Option(help="Images per step [default: 32, or the run's].")] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue from the newest intact checkpoint in --out, with the run's settings where not given.",
        ),
    ] = False,
    z_dim: Annotated[int | None, typer.Option(help="Latent size [default: 512, or the run's].")] = None,
    w_dim: Annotated[
        int | None, typer.Option(help="Intermediate latent size [default: 512, or the run's].")
    ] = None,
    mapping_layers: Annotated[
        int | None, typer.Option(help="Layers of the mapping network [default: 2, or the run's].")
    ] = None,
    channel_base: Annotated[
        int | None,
        typer.Option(
            help="Channels at resolution r: min(channel_base / r, max) [default: 16384, or the run's]."
        ),
    ] = None,
    channel_max: Annotated[
        int | None, typer.Option(help="Channel cap per layer [default: 512, or the run's].")
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Adam learning rate of G and D [default: 0.0025, or the run's].")
    ] = None,
    gamma: Annotated[
        float | None, typer.Option(help="R1 weight [default: 0.0002·resolution²/batch, or the run's].")
    ] = None,
    augment: Annotated[
        str | None,
        typer.Option(help="ada (adaptive p), fixed (p = --augment-p) or none [default: ada, or the run's]."),
    ] = None,
    augment_p: Annotated[
        float | None,
        typer.Option(help="Initial (ada) or constant (fixed) augmentation p [default: 0, or the run's]."),
    ] = None,
    ada_kimg: Annotated[
        float | None,
        typer.Option(help="ADA speed: kimg for p to move from 0 to 1 [default: 500, or the run's]."),
    ] = None,
    mirror: Annotated[
        bool | None,
        typer.Option(help="Show reals left-right flipped half of the time [default: no, or the run's]."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of every random draw of the run [default: 0, or the run's].")
    ] = None,
    checkpoint_steps: Annotated[
        int | None, typer.Option(help="Checkpoint every this many steps [default: 1000, or the run's].")
    ] = None,
    checkpoint_minutes: Annotated[
        float | None, typer.Option(help="... or every this many minutes [default: never, or the run's].")
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(help="Stop after this many minutes (checkpoint and export); --resume goes on."),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    amp: Annotated[
        str | None,
        typer.Option(
            help="bfloat16 mixed precision: auto (on CUDA with bf16), bf16 or off [default: auto, or the run's]."
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch (1 is fastest on a busy machine).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
) -> None:
    """Train a StyleGAN2 generator (ADA, lazy R1, EMA) and export its EMA weights as OUT/generator.safetensors.

    Ctrl-C saves a checkpoint after the step under way; --resume continues from it."""
    import torch

    from brgm.train import TrainingDivergedError, TrainingInterrupted

    # options left out keep the resumed run's values (or take TrainConfig's defaults in a new run)
    given: dict[str, Any] = {
        "resolution": resolution,
        "kimg": kimg,
        "batch": batch,
        "z_dim": z_dim,
        "w_dim": w_dim,
        "mapping_layers": mapping_layers,
        "channel_base": channel_base,
        "channel_max": channel_max,
        "g_lr": lr,
        "d_lr": lr,
        "r1_gamma": gamma,
        "augment": augment,
        "augment_p": augment_p,
        "ada_kimg": ada_kimg,
        "mirror": mirror,
        "seed": seed,
        "checkpoint_steps": checkpoint_steps,
        "checkpoint_minutes": checkpoint_minutes,
        "amp": amp,
    }
    settings = {key: value for key, value in given.items() if value is not None}
    try:
        device = str(resolve_device(device))
        if lr is not None and not (math.isfinite(lr) and lr > 0):
            raise fail(f"--lr must be a positive finite number, got {lr}")
        if threads is not None and threads < 1:
            raise fail(f"--threads must be at least 1, got {threads}")
        # every step has the same shapes: let cuDNN pick its fastest convolutions once
        torch.backends.cudnn.benchmark = device.startswith("cuda")
        if threads is not None:
            torch.set_num_threads(threads)
        trainer = _resume(data, out, device, settings) if resume else _start(data, out, device, settings)
        path = trainer.run(console=err_console, progress=progress, max_minutes=max_minutes)
    except TrainingInterrupted as stop:
        err_console.print(
            f"[bold yellow]interrupted:[/] step {stop.step} is saved in {stop.path}; continue the run with "
            f"brgm train --data {data} --out {out} --resume",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    except TrainingDivergedError as err:
        raise fail(str(err), code=1) from None
    except BrgmError as err:
        raise fail(str(err)) from None
    err_console.print(f"EMA generator: {path}")


def _start(data: Path, out: Path, device: str, settings: dict[str, Any]) -> Trainer:
    """A new run in ``out`` (which must hold none) with ``settings`` over TrainConfig's defaults."""
    from brgm.train import TrainConfig, Trainer, load_images
    from brgm.train.checkpoints import list_checkpoints

    if list_checkpoints(out / "checkpoints"):
        raise fail(
            f"{out} already holds a training run; pass --resume to continue it or choose another --out"
        )
    settings = {"resolution": 64, **settings}
    images = load_images(data, settings["resolution"])
    return Trainer(TrainConfig(img_channels=images.shape[1], **settings), images, out, device=device)


def _resume(data: Path, out: Path, device: str, settings: dict[str, Any]) -> Trainer:
    """The run in ``out`` restored from its newest intact checkpoint (warning about newer damaged ones)."""
    from brgm.train import Trainer, load_images
    from brgm.train.checkpoints import newest_intact

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = newest_intact(out / "checkpoints")
        if path is None:
            raise fail(f"--resume: no checkpoint in {out / 'checkpoints'}")
        trainer = Trainer.resume(
            path, load_images(data, settings.get("resolution")), out, device=device, **settings
        )
    for warning in caught:
        err_console.print(f"[bold yellow]warning:[/] {warning.message}", highlight=False, soft_wrap=True)
    err_console.print(
        f"resuming {path} at step {trainer.step} ({trainer.nimg / 1000:.2f} kimg)",
        highlight=False,
        soft_wrap=True,
    )
    return trainer
