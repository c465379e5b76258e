"""The StyleGAN2-ADA training loop: alternating G and D Adam steps, lazy R1, EMA generator, adaptive augmentation,
atomic checkpoints with exact resume, sample grids and a progress bar.

One step (NVIDIA's phase order): the generator minimises the non-saturating loss through the augmented
discriminator; the discriminator minimises the logistic loss on an augmented real batch and fresh fakes; every
``r1_interval`` steps it also takes an R1 step; then the EMA generator follows ``G`` and ADA adjusts ``p``.
Every random draw comes from one ``torch.Generator`` seeded by ``seed`` whose state is checkpointed, so a run
resumed from a checkpoint reproduces the uninterrupted run exactly on the same device and thread count; a run
moved between CPU and CUDA goes on with a fresh random stream (the two keep different generator states).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import signal
import threading
import time
import warnings
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from types import FrameType
from typing import Any

import attrs
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from brgm.core.errors import BrgmError, ConfigError
from brgm.core.params import interval, one_of
from brgm.plugins.generators.checkpoints import save_generator
from brgm.plugins.generators.stylegan2 import StyleGAN2Generator
from brgm.train import checkpoints
from brgm.train.augment import AdaptiveP, AugmentPipe
from brgm.train.discriminator import Discriminator
from brgm.train.grid import save_grid
from brgm.train.losses import auto_r1_gamma, discriminator_loss, generator_loss, r1_penalty


class TrainingDivergedError(BrgmError, FloatingPointError):
    """The losses or weights of a run became NaN or infinite; nothing non-finite was written."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) stopped :meth:`Trainer.run` between two steps, after it checkpointed the run to ``path``."""

    def __init__(self, step: int, path: Path) -> None:
        super().__init__(f"interrupted after step {step}; the run is saved in {path}")
        self.step, self.path = step, path


class _SigintLatch:
    """While entered (in the main thread), the first SIGINT only sets ``raised``, so that the loop can stop after
    the step under way with a checkpoint; a second one interrupts at once (the previous handler's behaviour)."""

    def __enter__(self) -> _SigintLatch:
        self.raised = False
        self._installed = threading.current_thread() is threading.main_thread()
        if self._installed:
            # None: a handler installed outside Python, which cannot be restored; the default one stands in
            self._previous = signal.signal(signal.SIGINT, self._handle) or signal.default_int_handler
        return self

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.raised = True
        self._restore()

    def _restore(self) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def __exit__(self, *_exc: object) -> None:
        self._restore()


def _power_of_two(_instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 8 or value & (value - 1):
        raise ConfigError(f"{attribute.name} must be a power of two >= 8, got {value}")


@attrs.define(kw_only=True, frozen=True)
class TrainConfig:
    """Hyper-parameters of a StyleGAN2-ADA run; defaults follow NVIDIA's 'auto' configuration where it has one."""

    resolution: int = attrs.field(validator=_power_of_two)
    img_channels: int = attrs.field(default=1, validator=interval(1, 4))
    # length of the run, in thousands of real images shown
    kimg: float = attrs.field(default=100.0, validator=interval(0, None, open_lo=True))
    batch: int = attrs.field(default=32, validator=interval(1, None))
    z_dim: int = attrs.field(default=512, validator=interval(1, None))
    w_dim: int = attrs.field(default=512, validator=interval(1, None))
    mapping_layers: int = attrs.field(default=2, validator=interval(1, None))
    channel_base: int = attrs.field(default=16384, validator=interval(1, None))
    channel_max: int = attrs.field(default=512, validator=interval(1, None))
    conv_clamp: float | None = attrs.field(default=256.0, validator=interval(0, None, open_lo=True))
    g_lr: float = attrs.field(default=0.0025, validator=interval(0, None, open_lo=True))
    d_lr: float = attrs.field(default=0.0025, validator=interval(0, None, open_lo=True))
    r1_gamma: float | None = attrs.field(default=None, validator=interval(0, None))  # None: 0.0002·res²/batch
    r1_interval: int = attrs.field(default=16, validator=interval(1, None))
    ema_kimg: float | None = attrs.field(default=None, validator=interval(0, None))  # None: batch·10/32
    ema_rampup: float | None = attrs.field(default=0.05, validator=interval(0, None, open_lo=True))
    style_mixing: float = attrs.field(default=0.9, validator=interval(0, 1))
    mbstd_group: int = attrs.field(default=4, validator=interval(1, None))
    augment: str = attrs.field(default="ada", validator=one_of(("ada", "fixed", "none")))
    augment_p: float = attrs.field(default=0.0, validator=interval(0, 1))  # initial (ada) or constant (fixed)
    ada_target: float = attrs.field(default=0.6, validator=interval(0, 1))
    ada_interval: int = attrs.field(default=4, validator=interval(1, None))
    ada_kimg: float = attrs.field(default=500.0, validator=interval(0, None, open_lo=True))
    mirror: bool = False  # show each real image left-right flipped with probability 1/2
    seed: int = attrs.field(default=0, validator=interval(0, None))
    checkpoint_steps: int = attrs.field(default=1000, validator=interval(1, None))
    checkpoint_minutes: float | None = attrs.field(default=None, validator=interval(0, None, open_lo=True))
    keep_checkpoints: int = attrs.field(default=2, validator=interval(1, None))
    amp: str = attrs.field(default="auto", validator=one_of(("auto", "bf16", "off")))  # see Trainer.amp_dtype

    def __attrs_post_init__(self) -> None:
        if self.batch % min(self.mbstd_group, self.batch):
            raise ConfigError(f"batch must be a multiple of mbstd_group={self.mbstd_group}, got {self.batch}")

    @property
    def total_steps(self) -> int:
        return math.ceil(self.kimg * 1000 / self.batch)

    @property
    def gamma(self) -> float:
        return auto_r1_gamma(self.resolution, self.batch) if self.r1_gamma is None else self.r1_gamma

    def generator_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the generator (NVIDIA's, 'skip' architecture)."""
        return {
            "z_dim": self.z_dim,
            "w_dim": self.w_dim,
            "img_resolution": self.resolution,
            "img_channels": self.img_channels,
            "mapping_kwargs": {"num_layers": self.mapping_layers},
            "synthesis_kwargs": {
                "channel_base": self.channel_base,
                "channel_max": self.channel_max,
                "conv_clamp": self.conv_clamp,
            },
        }


def data_digest(images: torch.Tensor) -> str:
    """SHA-256 of the training images' bytes, to refuse resuming a run on different data."""
    return hashlib.sha256(images.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


class Trainer:
    """A StyleGAN2-ADA run on ``images [N, C, R, R]`` in [-1, 1], writing to ``out``.

    ``out/checkpoints/step-*.safetensors`` (the newest ``keep_checkpoints``), ``out/samples/*.png``,
    ``out/log.jsonl`` (one line per checkpoint) and, at the end, ``out/generator.safetensors`` (the EMA generator
    in brgm's format, loadable with ``brgm.load_generator``).
    """

    GRID = 32  # sample images per grid
    TEXT_SECONDS = 0.5  # how often the progress bar shows fresh losses

    def __init__(self, config: TrainConfig, images: torch.Tensor, out: Path, *, device: str = "cpu") -> None:
        if tuple(images.shape[1:]) != (config.img_channels, config.resolution, config.resolution):
            raise ConfigError(
                f"training images are {list(images.shape[1:])}, the run expects "
                f"[{config.img_channels}, {config.resolution}, {config.resolution}]"
            )
        self.config = config
        self.out = Path(out)
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.digest = data_digest(images)
        # Mixed precision: bfloat16 autocast of G and D (R1 stays float32); "auto" uses it on CUDA devices with
        # bfloat16 support, "bf16" everywhere (CPUs without bfloat16 units run it slower than float32).
        cuda_bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.amp_dtype = (
            torch.bfloat16 if config.amp == "bf16" or (config.amp == "auto" and cuda_bf16) else None
        )
        self.rng = torch.Generator(self.device).manual_seed(config.seed)
        self.grid_z = torch.randn(
            self.GRID, config.z_dim, generator=torch.Generator().manual_seed(config.seed + 1)
        )

        self.G = StyleGAN2Generator(**config.generator_kwargs(), seed=config.seed).to(self.device).train()
        # one shared convolution per layer (not per-sample weights): faster to back-propagate over a batch
        self.G.fused_modconv = False
        self.G.autocast_dtype = self.amp_dtype
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.G_ema.fused_modconv, self.G_ema.autocast_dtype = True, None
        self.D = Discriminator(
            config.resolution,
            config.img_channels,
            channel_base=config.channel_base,
            channel_max=config.channel_max,
            mbstd_group_size=config.mbstd_group,
            conv_clamp=config.conv_clamp,
        )
        self.D.reset_parameters(torch.Generator().manual_seed(config.seed + 2))
        self.D.to(self.device).train()
        self.augment = AugmentPipe(p=0.0 if config.augment == "none" else config.augment_p).to(self.device)
        self.ada = (
            AdaptiveP(target=config.ada_target, interval=config.ada_interval, speed_kimg=config.ada_kimg)
            if config.augment == "ada"
            else None
        )
        # Lazy regularisation: the D optimiser's lr and betas are rescaled for the extra R1 steps (NVIDIA).
        ratio = config.r1_interval / (config.r1_interval + 1)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=config.g_lr, betas=(0.0, 0.99), eps=1e-8)
        self.opt_D = torch.optim.Adam(
            self.D.parameters(), lr=config.d_lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8
        )
        self.step = 0
        self.nimg = 0
        self.train_seconds = 0.0

    # ----------------------------------------------------------------------------------------- one step

    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _reals(self, n: int) -> torch.Tensor:
        idx = torch.randint(len(self.images), (n,), generator=self.rng, device=self.device)
        real = self.images[idx]
        if self.config.mirror:
            flip = torch.rand(n, generator=self.rng, device=self.device) < 0.5
            real = torch.where(flip.view(n, 1, 1, 1), real.flip(-1), real)
        return real

    def _generate(self, n: int) -> torch.Tensor:
        """``n`` images from ``G`` with random noise and style mixing: with probability ``style_mixing`` the ws
        from a random layer on come from a second z. Drawn on the device, without waiting for it."""
        mapping, num_ws = self.G.mapping_network, self.G.num_ws
        z = torch.randn(n, self.config.z_dim, generator=self.rng, device=self.device)
        ws = mapping(z, update_w_avg=True)
        z2 = torch.randn(n, self.config.z_dim, generator=self.rng, device=self.device)
        cutoff = torch.randint(1, num_ws, (), generator=self.rng, device=self.device)
        mixing = torch.rand((), generator=self.rng, device=self.device) < self.config.style_mixing
        mixed = (torch.arange(num_ws, device=self.device) >= cutoff) & mixing  # [num_ws]
        ws = torch.where(mixed[None, :, None], mapping(z2), ws)
        return self.G.synthesis(ws, "random", generator=self.rng)

    def _discriminate(self, img: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.D(self.augment(img, generator=self.rng)).float()

    def _discriminate_fp32(self, img: torch.Tensor) -> torch.Tensor:
        return self.D(self.augment(img, generator=self.rng))

    def train_step(self) -> dict[str, torch.Tensor | float]:
        """One iteration over ``batch`` reals and fakes; returns its losses (and ``r1`` on R1 steps) as 0-d tensors
        on the device, so that the step never waits for it (read them with ``float``), ``augment_p`` and, when ADA
        adjusted ``p``, ``ada_rt`` as floats."""
        cfg = self.config
        # Generator: non-saturating loss through the (frozen) discriminator.
        self.G.requires_grad_(True)
        self.D.requires_grad_(False)
        loss_g = generator_loss(self._discriminate(self._generate(cfg.batch)))
        self.opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_G.step()

        # Discriminator: logistic loss on reals and fresh fakes.
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        real = self._reals(cfg.batch)
        with torch.no_grad():
            fake = self._generate(cfg.batch)
        real_logits = self._discriminate(real)
        loss_d = discriminator_loss(real_logits, self._discriminate(fake))
        self.opt_D.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_D.step()
        stats: dict[str, torch.Tensor | float] = {
            "loss_G": loss_g.detach(),
            "loss_D": loss_d.detach(),
            "D_real": real_logits.detach().mean(),
        }
        if self.ada is not None:
            self.ada.accumulate(real_logits)

        # Lazy R1 on the same (augmented) reals, in float32.
        if self.step % cfg.r1_interval == 0:
            penalty = r1_penalty(self._discriminate_fp32, real).mean()
            self.opt_D.zero_grad(set_to_none=True)
            (penalty * (cfg.gamma / 2 * cfg.r1_interval)).backward()
            self.opt_D.step()
            stats["r1"] = penalty.detach()

        self._update_ema()
        self.step += 1
        self.nimg += cfg.batch
        if self.ada is not None:
            rt = self.ada.update(self.augment, self.step, cfg.batch)
            if rt is not None:
                stats["ada_rt"] = rt
        stats["augment_p"] = self.augment.p_value
        return stats

    @torch.no_grad()
    def _update_ema(self) -> None:
        """``G_ema ← G + β (G_ema − G)`` with a half-life of ``ema_kimg`` (ramped up over the first images)."""
        cfg = self.config
        ema_nimg = (cfg.batch * 10 / 32 if cfg.ema_kimg is None else cfg.ema_kimg) * 1000
        if cfg.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.nimg * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1.0 - beta)
        torch._foreach_copy_(list(self.G_ema.buffers()), list(self.G.buffers()))

    # ------------------------------------------------------------------------------- checkpoints, output

    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoints"

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"G": self.G, "G_ema": self.G_ema, "D": self.D, "augment": self.augment}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_G": self.opt_G, "opt_D": self.opt_D}

    def _kept_note(self) -> str:
        found = checkpoints.list_checkpoints(self.checkpoint_dir)
        return f"the last good checkpoint, {found[-1]}, is kept" if found else "no checkpoint was written"

    def _require_finite(self, modules: Mapping[str, torch.nn.Module]) -> None:
        """Raise :class:`TrainingDivergedError` if a floating-point tensor of ``modules`` is NaN or infinite."""
        bad = [
            f"{name}.{key}"
            for name, module in modules.items()
            for key, value in module.state_dict().items()
            if value.is_floating_point() and not bool(torch.isfinite(value).all())
        ]
        if bad:
            raise TrainingDivergedError(
                f"training diverged: after step {self.step}, {len(bad)} tensor(s) hold NaN or infinite values "
                f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); nothing was written and "
                + self._kept_note()
            )

    def save_checkpoint(self) -> Path:
        """Write the whole run state atomically; keep the newest ``keep_checkpoints``; write a sample grid.
        Refuses (:class:`TrainingDivergedError`) a state with non-finite weights."""
        self._require_finite(self._modules())
        path = checkpoints.checkpoint_path(self.checkpoint_dir, self.step)
        meta = {
            "config": attrs.asdict(self.config),
            "step": self.step,
            "nimg": self.nimg,
            "train_seconds": self.train_seconds,
            "data_sha256": self.digest,
            "ada": None if self.ada is None else {"signs": float(self.ada.signs), "count": self.ada.count},
        }
        tensors = {"rng": self.rng.get_state()}
        checkpoints.save(
            path, modules=self._modules(), optimizers=self._optimizers(), tensors=tensors, meta=meta
        )
        checkpoints.prune(self.checkpoint_dir, self.config.keep_checkpoints)
        self.save_samples(self.out / "samples" / f"step-{self.step:08d}.png")
        return path

    def load_checkpoint(self, path: Path) -> None:
        """Restore a checkpoint of this run (same configuration and data) to continue where it stopped."""
        extra, meta = checkpoints.restore(path, modules=self._modules(), optimizers=self._optimizers())
        if meta["data_sha256"] != self.digest:
            raise ConfigError(f"{path} was trained on different images than the ones given")
        self.step, self.nimg, self.train_seconds = meta["step"], meta["nimg"], meta["train_seconds"]
        if extra["rng"].numel() == self.rng.get_state().numel():
            self.rng.set_state(extra["rng"])
        else:  # CPU and CUDA generators keep different states: the random stream cannot move between them
            self.rng.manual_seed(self.config.seed + 1_000_003 * self.step)
            warnings.warn(
                f"{path} was written on another kind of device than {self.device.type}: training goes on with a "
                "fresh random stream (seeded by the run's seed and step), so it will not repeat an uninterrupted "
                "run exactly",
                stacklevel=2,
            )
        if self.ada is not None:
            self.ada.signs, self.ada.count = meta["ada"]["signs"], meta["ada"]["count"]

    @classmethod
    def resume(
        cls, path: Path, images: torch.Tensor, out: Path, *, device: str = "cpu", **changes: Any
    ) -> Trainer:
        """A trainer restored from checkpoint ``path`` with the run's own configuration; ``changes`` may restate
        any of its fields with the run's value, and change those that only steer what comes next: the run's length
        ``kimg``, the ADA speed ``ada_kimg`` and the checkpoint schedule (``checkpoint_steps``,
        ``checkpoint_minutes``, ``keep_checkpoints``)."""
        allowed = {"kimg", "ada_kimg", "checkpoint_steps", "checkpoint_minutes", "keep_checkpoints"}
        saved = checkpoints.read_meta(path)["config"]
        other = {
            key: value
            for key, value in changes.items()
            if key not in allowed and (key not in saved or saved[key] != value)
        }
        if other:
            given = ", ".join(
                f"{key}={value!r} (the run's: {saved.get(key)!r})" for key, value in other.items()
            )
            raise ConfigError(f"a resumed run can only change {sorted(allowed)}, not {given}")
        config = attrs.evolve(TrainConfig(**saved), **changes)
        trainer = cls(config, images, out, device=device)
        trainer.load_checkpoint(path)
        return trainer

    @torch.no_grad()
    def save_samples(self, path: Path) -> None:
        """A grid of ``G_ema`` images for the run's fixed latents (constant noise)."""
        ws = self.G_ema.mapping(self.grid_z.to(self.device))
        save_grid(self.G_ema.synthesis(ws, "const"), path)

    def export(self) -> Path:
        """Write the EMA generator in brgm's format to ``out/generator.safetensors`` (if its weights are finite)."""
        self._require_finite({"G_ema": self.G_ema})
        path = self.out / "generator.safetensors"
        save_generator(self.G_ema, path)
        return path

    # ------------------------------------------------------------------------------------------ the loop

    @staticmethod
    def _stats_text(stats: dict[str, torch.Tensor | float]) -> str:
        return f"G {float(stats['loss_G']):.3f}  D {float(stats['loss_D']):.3f}  p {float(stats['augment_p']):.3f}"

    def run(
        self, *, console: Console | None = None, progress: bool = True, max_minutes: float | None = None
    ) -> Path:
        """Train to ``kimg``, checkpointing every ``checkpoint_steps`` steps or ``checkpoint_minutes`` minutes,
        then export the EMA generator. Returns the exported file. ``max_minutes`` stops earlier (with a checkpoint
        and the export); :meth:`resume` continues such a run.

        SIGINT (Ctrl-C) stops it after the step under way with a checkpoint and :class:`TrainingInterrupted`
        (a second SIGINT interrupts at once). Losses or weights that become NaN or infinite stop it with
        :class:`TrainingDivergedError`, naming the step, before anything non-finite is written."""
        cfg = self.config
        deadline = math.inf if max_minutes is None else time.monotonic() + max_minutes * 60
        console = console or Console()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(attrs.asdict(cfg), indent=2) + "\n")
        if self.step == 0:
            spread = torch.linspace(0, len(self.images) - 1, self.GRID).round().long()
            save_grid(self.images[spread.to(self.device)], self.out / "samples" / "reals.png")
        columns = (
            TextColumn("[bold]train[/]"),
            BarColumn(),
            TextColumn("{task.fields[kimg]:>7.2f} kimg"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[stats]}"),
        )
        window_start, window_nimg, last_checkpoint = time.monotonic(), self.nimg, time.monotonic()
        last_read, text = -math.inf, ""
        first_bad = torch.full((), -1, device=self.device)  # the first step whose losses were not finite
        with _SigintLatch() as sigint, Progress(*columns, console=console, disable=not progress) as bar:
            task = bar.add_task(
                "train", total=cfg.total_steps, completed=self.step, kimg=self.nimg / 1000, stats=""
            )
            stop = False
            while self.step < cfg.total_steps and not stop:
                tick = time.monotonic()
                stats = self.train_step()
                self.train_seconds += time.monotonic() - tick
                losses = torch.stack([v for v in stats.values() if isinstance(v, torch.Tensor)])
                first_bad = torch.where((first_bad < 0) & ~losses.isfinite().all(), self.step, first_bad)
                minutes = cfg.checkpoint_minutes
                due = self.step % cfg.checkpoint_steps == 0 or (
                    minutes is not None and time.monotonic() - last_checkpoint >= minutes * 60
                )
                stop = time.monotonic() >= deadline or sigint.raised
                final = due or stop or self.step == cfg.total_steps
                # reading the losses waits for the device: twice a second, and at checkpoints
                if final or time.monotonic() - last_read >= self.TEXT_SECONDS:
                    if (bad := int(first_bad)) >= 0:
                        raise TrainingDivergedError(
                            f"training diverged: the losses became NaN or infinite at step {bad}; "
                            + self._kept_note()
                        )
                    text = self._stats_text(stats)
                    last_read = time.monotonic()
                bar.update(task, completed=self.step, kimg=self.nimg / 1000, stats=text)
                if final:
                    now = time.monotonic()
                    rate = (self.nimg - window_nimg) / max(now - window_start, 1e-9)
                    path = self.save_checkpoint()
                    record = {"step": self.step, "kimg": self.nimg / 1000, "img_per_s": rate}
                    record |= {k: float(v) for k, v in stats.items()}
                    record["train_seconds"] = self.train_seconds
                    with open(self.out / "log.jsonl", "a") as log:
                        log.write(json.dumps(record) + "\n")
                    bar.console.print(
                        f"step {self.step}  kimg {self.nimg / 1000:.2f}  {rate:.1f} img/s  "
                        f"{self._stats_text(stats)}  -> {path.name}",
                        highlight=False,
                    )
                    window_start, window_nimg = time.monotonic(), self.nimg
                    last_checkpoint = window_start
        if sigint.raised and self.step < cfg.total_steps:
            raise TrainingInterrupted(self.step, checkpoints.checkpoint_path(self.checkpoint_dir, self.step))
        return self.export()
