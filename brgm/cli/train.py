"""``brgm train``: train a StyleGAN2 generator (with ADA) on a ``.npz`` of images, resumably."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from brgm.core.errors import BrgmError

err_console = Console(stderr=True)


def train(
    data: Annotated[
        Path, typer.Option(help="A .npz with 'images' [N, C, H, W] in [0, 1], or a folder with train.npz.")
    ],
    out: Annotated[
        Path, typer.Option(help="Run folder: checkpoints/, samples/, log.jsonl, generator.safetensors.")
    ],
    resolution: Annotated[int, typer.Option(help="Image side; must match the data.")] = 64,
    kimg: Annotated[
        float | None,
        typer.Option(
            help="Length of the run in thousands of real images shown [default: 100, or the run's]."
        ),
    ] = None,
    batch: Annotated[int, typer.Option(help="Images per step.")] = 32,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out (its settings).")
    ] = False,
    z_dim: Annotated[int, typer.Option(help="Latent size.")] = 512,
    w_dim: Annotated[int, typer.Option(help="Intermediate latent size.")] = 512,
    mapping_layers: Annotated[int, typer.Option(help="Layers of the mapping network.")] = 2,
    channel_base: Annotated[
        int, typer.Option(help="Channels at resolution r: min(channel_base / r, max).")
    ] = 16384,
    channel_max: Annotated[int, typer.Option(help="Channel cap per layer.")] = 512,
    lr: Annotated[float, typer.Option(help="Adam learning rate of G and D.")] = 0.0025,
    gamma: Annotated[float | None, typer.Option(help="R1 weight (default 0.0002·resolution²/batch).")] = None,
    augment: Annotated[str, typer.Option(help="ada (adaptive p), fixed (p = --augment-p) or none.")] = "ada",
    augment_p: Annotated[float, typer.Option(help="Initial (ada) or constant (fixed) augmentation p.")] = 0.0,
    ada_kimg: Annotated[
        float | None,
        typer.Option(help="ADA speed: kimg for p to move from 0 to 1 [default: 500, or the run's]."),
    ] = None,
    mirror: Annotated[bool, typer.Option(help="Show reals left-right flipped half of the time.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of every random draw of the run.")] = 0,
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
        str, typer.Option(help="bfloat16 mixed precision: auto (on CUDA with bf16), bf16 or off.")
    ] = "auto",
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch (1 is fastest on a busy machine).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
) -> None:
    """Train a StyleGAN2 generator (ADA, lazy R1, EMA) and export its EMA weights as OUT/generator.safetensors."""
    import torch

    from brgm.train import TrainConfig, Trainer, load_images
    from brgm.train.checkpoints import list_checkpoints

    try:
        if device != "cpu" and not device.startswith("cuda"):
            raise _fail(f"--device must be cpu, cuda or cuda:N, got {device!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise _fail(f"--device {device}: no CUDA device is available")
        # every step has the same shapes: let cuDNN pick its fastest convolutions once
        torch.backends.cudnn.benchmark = device.startswith("cuda")
        if threads is not None:
            torch.set_num_threads(threads)
        images = load_images(data, resolution)
        found = list_checkpoints(out / "checkpoints")
        # options left out keep the resumed run's values (or take TrainConfig's defaults in a new run)
        steering = {
            key: value
            for key, value in {
                "kimg": kimg,
                "ada_kimg": ada_kimg,
                "checkpoint_steps": checkpoint_steps,
                "checkpoint_minutes": checkpoint_minutes,
            }.items()
            if value is not None
        }
        if resume:
            if not found:
                raise _fail(f"--resume: no checkpoint in {out / 'checkpoints'}")
            trainer = Trainer.resume(found[-1], images, out, device=device, **steering)
            err_console.print(f"resuming {found[-1]} at step {trainer.step} ({trainer.nimg / 1000:.2f} kimg)")
        else:
            if found:
                raise _fail(
                    f"{out} already holds a training run; pass --resume to continue it or choose another --out"
                )
            config = TrainConfig(
                resolution=resolution,
                img_channels=images.shape[1],
                batch=batch,
                z_dim=z_dim,
                w_dim=w_dim,
                mapping_layers=mapping_layers,
                channel_base=channel_base,
                channel_max=channel_max,
                g_lr=lr,
                d_lr=lr,
                r1_gamma=gamma,
                augment=augment,
                augment_p=augment_p,
                mirror=mirror,
                seed=seed,
                amp=amp,
                **steering,
            )
            trainer = Trainer(config, images, out, device=device)
        path = trainer.run(console=err_console, progress=progress, max_minutes=max_minutes)
    except BrgmError as err:
        raise _fail(str(err)) from None
    err_console.print(f"EMA generator: {path}")


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(2)
