"""brgm.train: augmentation, discriminator, losses, the training loop, exact resume, and ``brgm train``."""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import typer
from typer.testing import CliRunner

import brgm
from brgm.cli.train import train as train_command
from brgm.core.errors import CheckpointError, ConfigError, ShapeError
from brgm.plugins.generators.stylegan2.resample import setup_filter
from brgm.train import (
    AdaptiveP,
    AugmentConfig,
    AugmentPipe,
    Discriminator,
    TrainConfig,
    Trainer,
    TrainingDivergedError,
    TrainingInterrupted,
    checkpoints,
    load_images,
)
from brgm.train.augment import sample_bilinear_reflect
from brgm.train.discriminator import Conv2dLayer, minibatch_std
from brgm.train.losses import discriminator_loss, generator_loss, r1_penalty
from tests.conftest import DEVICES

ONLY = {k: 0.0 for k in ("xflip", "translate", "scale", "rotate", "brightness", "contrast")}


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(4))
def test_gather_sampling_equals_grid_sample_with_reflection(seed, device):
    # affine maps up to 3× zoom-out, any rotation and shifts of up to 2 image widths: several reflections
    g = seeded(seed)
    x = torch.randn(3, 2, 7, 10, generator=g, dtype=torch.float64).to(device)
    theta = torch.randn(3, 2, 3, generator=g, dtype=torch.float64) * torch.tensor([[1.5, 1.5, 2.0]]).double()
    grid = F.affine_grid(theta, [3, 2, 5, 9], align_corners=False).to(device)
    expected = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    ours = sample_bilinear_reflect(x, grid)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
    # identity grid reproduces the image exactly
    identity = F.affine_grid(torch.eye(2, 3).expand(3, 2, 3), [3, 2, 7, 10], align_corners=False).to(device)
    torch.testing.assert_close(sample_bilinear_reflect(x, identity), x, rtol=0, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_gather_sampling_has_second_derivatives(device):
    # the R1 penalty differentiates D(augment(x)) twice with respect to x (CUDA's grid_sample cannot)
    g = seeded(5)
    x = torch.randn(2, 1, 6, 5, generator=g, dtype=torch.float64).to(device).requires_grad_(True)
    theta = torch.eye(2, 3, dtype=torch.float64) + 0.3 * torch.randn(
        2, 2, 3, generator=g, dtype=torch.float64
    )
    grid = F.affine_grid(theta, [2, 1, 6, 5], align_corners=False).to(device)
    assert torch.autograd.gradgradcheck(lambda t: sample_bilinear_reflect(t, grid).square(), (x,))


def test_augment_keeps_shape_and_is_identity_at_p0():
    x = torch.rand(5, 3, 12, 12, generator=seeded()) * 2 - 1
    assert torch.equal(AugmentPipe(p=0.0)(x, seeded()), x)
    y = AugmentPipe(p=1.0)(x, seeded())
    assert y.shape == x.shape and y.dtype == x.dtype and not torch.allclose(y, x)


def test_augment_p_is_clamped_and_its_host_copy_follows_the_buffer():
    pipe = AugmentPipe(p=0.0)
    pipe.set_p(1.7)
    assert pipe.p_value == 1.0 and float(pipe.p) == 1.0
    pipe.set_p(0.1)  # the host copy is the buffer's float32 value, so a resumed run gates identically
    assert pipe.p_value == float(torch.tensor(0.1, dtype=torch.float32)) == float(pipe.p)
    restored = AugmentPipe(p=0.0)
    restored.load_state_dict(pipe.state_dict())
    assert restored.p_value == pipe.p_value
    x = torch.rand(4, 1, 8, 8, generator=seeded()) * 2 - 1
    assert torch.equal(restored(x, seeded(3)), pipe(x, seeded(3)))
    restored.load_state_dict(AugmentPipe(p=0.0).state_dict())
    assert restored.p_value == 0.0 and torch.equal(restored(x, seeded(3)), x)


def test_augment_is_differentiable():
    pipe = AugmentPipe(p=1.0).double()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64, generator=seeded(1), requires_grad=True)
    # the same random transformation on every call: a fresh generator with a fixed seed
    assert torch.autograd.gradcheck(lambda t: pipe(t, seeded(3)), (x,), eps=1e-6, atol=1e-5)


def test_augment_xflip_alone_flips():
    x = torch.rand(4, 1, 8, 8, generator=seeded())
    y = AugmentPipe(AugmentConfig(**{**ONLY, "xflip": 1.0}), p=1.0)(x, seeded())
    torch.testing.assert_close(y, x.flip(-1), atol=1e-5, rtol=0)


def test_augment_translation_moves_by_whole_pixels():
    x = torch.rand(6, 1, 16, 16, generator=seeded())
    y = AugmentPipe(AugmentConfig(**{**ONLY, "translate": 1.0}), p=1.0)(x, seeded(5))
    shifts = []
    for xi, yi in zip(x[:, 0], y[:, 0], strict=True):
        errors = {}
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                shifted = torch.roll(xi, (dy, dx), (0, 1))[3:-3, 3:-3]
                errors[dy, dx] = (shifted - yi[3:-3, 3:-3]).abs().max().item()
        best = min(errors, key=errors.get)
        assert errors[best] < 1e-5, errors[best]
        shifts.append(best)
    assert len(set(shifts)) > 1  # the shift is drawn per image


def test_augment_contrast_scales_each_image():
    x = torch.rand(6, 1, 8, 8, generator=seeded()) + 0.5
    y = AugmentPipe(AugmentConfig(**{**ONLY, "contrast": 1.0}), p=1.0)(x, seeded())
    ratio = (y / x).flatten(1)
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))
    assert ratio[:, 0].std() > 0.05


def test_adaptive_p_moves_towards_the_target():
    pipe = AugmentPipe(p=0.0)
    ada = AdaptiveP(target=0.6, interval=2, speed_kimg=1.0)
    ada.accumulate(torch.ones(8, 1))  # D sure of every real: rt = 1 > 0.6, overfitting
    assert ada.update(pipe, step=1, batch=8) is None  # not at an interval boundary
    assert ada.update(pipe, step=2, batch=8) == 1.0
    assert float(pipe.p) == pytest.approx(8 * 2 / 1000)
    ada.accumulate(-torch.ones(8, 1))
    ada.update(pipe, step=4, batch=8)
    ada.accumulate(-torch.ones(8, 1))
    ada.update(pipe, step=6, batch=8)
    assert float(pipe.p) == 0.0  # clamped


# ---------------------------------------------------------------------------------- discriminator, losses


def test_downsampling_conv_matches_blur_then_strided_conv():
    f = setup_filter((1, 3, 3, 1), 2)
    layer = Conv2dLayer(3, 5, 3, resample_filter=f, activation="lrelu", down=2)
    layer.reset_parameters(seeded())
    with torch.no_grad():
        layer.bias.copy_(torch.randn(5, generator=seeded(1)))
    x = torch.randn(2, 3, 8, 8, generator=seeded(2))
    blurred = F.conv2d(F.pad(x, (2, 2, 2, 2)), f.expand(3, 1, 4, 4), groups=3)  # symmetric filter: no flip
    ref = F.conv2d(blurred, layer.weight / math.sqrt(3 * 9), layer.bias, stride=2)
    ref = F.leaky_relu(ref, 0.2) * math.sqrt(2)
    out = layer(x)
    assert out.shape == (2, 5, 4, 4)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_minibatch_std_matches_a_loop_over_groups():
    x = torch.randn(6, 3, 4, 4, generator=seeded())
    out = minibatch_std(x, group_size=3)
    assert out.shape == (6, 4, 4, 4) and torch.equal(out[:, :3], x)
    for j in range(2):  # groups are samples {j, j + 2, j + 4}
        members = x[j::2]
        expected = members.std(dim=0, unbiased=False).mean()
        for i in range(j, 6, 2):
            torch.testing.assert_close(out[i, 3], expected.expand(4, 4), atol=1e-5, rtol=1e-5)
    with pytest.raises(ShapeError, match="multiple"):
        minibatch_std(torch.zeros(5, 1, 4, 4), group_size=4)


def test_discriminator_shapes_and_keys():
    D = Discriminator(32, 2, channel_base=256, channel_max=16, mbstd_group_size=2)
    D.reset_parameters(seeded())
    assert D(torch.zeros(4, 2, 32, 32)).shape == (4, 1)
    keys = set(D.state_dict())
    assert {"b32.fromrgb.weight", "b32.skip.weight", "b8.conv1.weight", "b4.fc.weight", "b4.out.bias"} <= keys
    assert "b16.fromrgb.weight" not in keys  # resnet: only the first block reads the image
    with pytest.raises(ShapeError):
        D(torch.zeros(4, 1, 32, 32))


def test_losses_at_known_logits():
    zero = torch.zeros(3, 1)
    assert generator_loss(zero).item() == pytest.approx(math.log(2))
    assert discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert generator_loss(torch.full((3, 1), 20.0)).item() == pytest.approx(0.0, abs=1e-8)
    assert discriminator_loss(torch.full((3, 1), 20.0), torch.full((3, 1), -20.0)).item() < 1e-8


def test_r1_penalty_of_a_linear_discriminator_is_the_squared_weight_norm():
    a = torch.randn(1, 2, 3, 3, generator=seeded(), requires_grad=True)
    x = torch.randn(4, 2, 3, 3, generator=seeded(1))
    penalty = r1_penalty(lambda t: (t * a).flatten(1).sum(1, keepdim=True), x)
    torch.testing.assert_close(penalty, a.detach().square().sum().expand(4))
    penalty.sum().backward()  # the penalty has a graph to the discriminator's parameters
    torch.testing.assert_close(a.grad, 2 * 4 * a.detach())


# ------------------------------------------------------------------------------------------------- loop


def tiny_config(**changes) -> TrainConfig:
    base = dict(
        resolution=16,
        kimg=0.024,  # 6 steps of 4
        batch=4,
        z_dim=8,
        w_dim=8,
        channel_base=64,
        channel_max=16,
        mbstd_group=2,
        r1_interval=2,
        augment_p=0.3,
        ada_interval=3,  # the checkpoint at step 4 falls inside an ADA interval
        ada_kimg=1.0,
        mirror=True,
        checkpoint_steps=2,
    )
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(10, 1, 16, 16, generator=seeded(7)) * 2 - 1


def states(trainer: Trainer) -> dict[str, torch.Tensor]:
    out = {}
    for name, module in (("G", trainer.G), ("G_ema", trainer.G_ema), ("D", trainer.D)):
        out.update({f"{name}.{k}": v.clone() for k, v in module.state_dict().items()})
    out["p"] = trainer.augment.p.clone()
    return out


@pytest.mark.parametrize("device", DEVICES)
def test_a_few_steps_give_finite_losses_move_the_networks_and_checkpoint(images, tmp_path, device):
    trainer = Trainer(tiny_config(), images, tmp_path, device=device)
    before = states(trainer)
    log = [trainer.train_step() for _ in range(3)]
    assert all(math.isfinite(v) for stats in log for v in stats.values())
    assert "r1" in log[0] and "r1" not in log[1] and "ada_rt" in log[2]
    after = states(trainer)
    for prefix in ("G.synthesis.b16.conv1.weight", "D.b16.conv0.weight", "G_ema.synthesis.b16.conv1.weight"):
        assert not torch.equal(before[prefix], after[prefix]), prefix
    assert not torch.equal(after["G.mapping.w_avg"], before["G.mapping.w_avg"])  # w_avg tracks the batches
    assert {v.device.type for v in after.values()} == {torch.device(device).type}

    restored = Trainer.resume(trainer.save_checkpoint(), images, tmp_path, device=device)
    assert restored.step == 3 and torch.equal(restored.rng.get_state(), trainer.rng.get_state())
    for key, value in states(restored).items():
        assert torch.equal(value, after[key]), key
    path = trainer.export()
    G = brgm.load_generator(str(path))
    for key, value in G.state_dict().items():
        assert torch.equal(value, trainer.G_ema.state_dict()[key].cpu()), key


@pytest.mark.parametrize("mixing", [0.0, 1.0])
def test_style_mixing_takes_the_ws_from_a_random_layer_on_from_a_second_z(images, tmp_path, mixing):
    trainer = Trainer(tiny_config(style_mixing=mixing), images, tmp_path)
    seen = []
    trainer.G.synthesis_network.register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].detach().clone())
    )
    replay = torch.Generator().manual_seed(0)
    replay.set_state(trainer.rng.get_state())
    trainer._generate(4)
    mapping, num_ws = trainer.G.mapping_network, trainer.G.num_ws
    first = mapping(torch.randn(4, 8, generator=replay)).detach()
    second = mapping(torch.randn(4, 8, generator=replay)).detach()
    from_first = [torch.equal(seen[0][:, i], first[:, i]) for i in range(num_ws)]
    from_second = [torch.equal(seen[0][:, i], second[:, i]) for i in range(num_ws)]
    if mixing == 0.0:
        assert all(from_first)
    else:
        cutoff = from_first.index(False)
        assert 1 <= cutoff < num_ws and all(from_first[:cutoff]) and all(from_second[cutoff:])


def test_augment_modes(images, tmp_path):
    assert float(Trainer(tiny_config(augment="none", augment_p=0.5), images, tmp_path).augment.p) == 0.0
    fixed = Trainer(tiny_config(augment="fixed", augment_p=0.5), images, tmp_path)
    assert fixed.ada is None
    fixed.train_step()
    fixed.train_step()
    assert float(fixed.augment.p) == 0.5


def test_bfloat16_autocast_trains(images, tmp_path):
    trainer = Trainer(tiny_config(amp="bf16"), images, tmp_path)
    assert trainer.amp_dtype == torch.bfloat16 and trainer.G.autocast_dtype == torch.bfloat16
    log = [trainer.train_step() for _ in range(2)]
    assert all(math.isfinite(v) for stats in log for v in stats.values())
    assert Trainer(tiny_config(), images, tmp_path).amp_dtype is None  # auto: float32 on the CPU


def test_interrupted_run_resumes_bit_exactly(images, tmp_path):
    full = Trainer(tiny_config(), images, tmp_path / "full")
    exported = full.run(progress=False)
    assert [p.name for p in checkpoints.list_checkpoints(full.checkpoint_dir)] == [
        "step-00000004.safetensors",
        "step-00000006.safetensors",
    ]
    assert not list(full.checkpoint_dir.glob("*.tmp"))

    crashed = Trainer(tiny_config(), images, tmp_path / "crashed")
    for _ in range(4):
        crashed.train_step()
    saved = crashed.save_checkpoint()
    crashed.train_step()  # work after the last checkpoint is lost when the process dies here
    del crashed

    resumed = Trainer.resume(saved, images, tmp_path / "crashed")
    assert (resumed.step, resumed.nimg) == (4, 16)
    resumed.run(progress=False)
    assert resumed.step == 6
    expected, got = states(full), states(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key

    G = brgm.load_generator(str(exported))
    assert (G.img_resolution, G.img_channels, G.z_dim) == (16, 1, 8)
    for key, value in G.state_dict().items():
        assert torch.equal(value, full.G_ema.state_dict()[key]), key
    assert (tmp_path / "full" / "samples" / "step-00000006.png").is_file()


def test_resume_from_another_device_type_restarts_the_random_stream(images, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    trainer = Trainer(tiny_config(), images, tmp_path)
    trainer.train_step()
    trainer.train_step()
    path = trainer.save_checkpoint()
    with safe_open(path, "pt") as f:
        header, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    tensors["extra.rng"] = torch.arange(16, dtype=torch.uint8)  # a CUDA (Philox) generator's state: 16 bytes
    save_file(tensors, path, metadata=header)

    with pytest.warns(UserWarning, match="another kind of device than cpu: training goes on with a fresh"):
        first = Trainer.resume(path, images, tmp_path / "a")
    with pytest.warns(UserWarning):
        second = Trainer.resume(path, images, tmp_path / "b")
    assert first.step == 2 and torch.equal(first.rng.get_state(), second.rng.get_state())
    assert not torch.equal(first.rng.get_state(), trainer.rng.get_state())
    # the fresh stream is fixed by the seed and step: two resumes train identically
    assert math.isfinite(first.train_step()["loss_G"]) and math.isfinite(second.train_step()["loss_G"])
    for key, value in states(first).items():
        assert torch.equal(value, states(second)[key]), key


def test_resume_refuses_other_data_and_config_changes(images, tmp_path):
    trainer = Trainer(tiny_config(), images, tmp_path)
    trainer.train_step()
    path = trainer.save_checkpoint()
    with pytest.raises(ConfigError, match="different images"):
        Trainer.resume(path, images.flip(0), tmp_path)
    with pytest.raises(ConfigError, match="only change"):
        Trainer.resume(path, images, tmp_path, batch=8)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError):
        Trainer.resume(path, images, tmp_path)


def test_config_validation():
    with pytest.raises(ConfigError, match="resolution"):
        tiny_config(resolution=24)
    with pytest.raises(ConfigError, match="batch"):
        tiny_config(batch=6, mbstd_group=4)
    with pytest.raises(ConfigError, match="augment"):
        tiny_config(augment="sometimes")


# -------------------------------------------------------------------------------------------------- CLI


# tiny_config's networks as options of brgm train
TINY_CLI = ["--batch", "4", "--z-dim", "8", "--w-dim", "8", "--channel-base", "64", "--channel-max", "16"]
TINY_CLI += ["--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(train_command)
    return app


def save_npz(images: torch.Tensor, path: Path) -> Path:
    """``images`` in [-1, 1] as brgm train's data file."""
    np.savez(path, images=((images.numpy() + 1) / 2).astype(np.float32))
    return path


def one_line(output: str) -> str:
    return " ".join(output.split())


def test_cli_trains_resumes_and_refuses_to_overwrite(cli, images, tmp_path):
    data = save_npz(images, tmp_path / "data.npz")
    out = tmp_path / "run"
    args = [
        "--data",
        str(data),
        "--out",
        str(out),
        "--resolution",
        "16",
        *TINY_CLI,
        "--checkpoint-steps",
        "2",
    ]
    runner = CliRunner()
    result = runner.invoke(cli, [*args, "--kimg", "0.008"])
    assert result.exit_code == 0, result.output
    G = brgm.load_generator(str(out / "generator.safetensors"))
    assert G.img_shape == (16, 16)

    again = runner.invoke(cli, [*args, "--kimg", "0.008"])
    assert again.exit_code == 2 and "--resume" in again.output

    resumed = runner.invoke(cli, [*args, "--kimg", "0.016", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "step 2" in resumed.output and "step 4" in resumed.output
    assert [p.name for p in checkpoints.list_checkpoints(out / "checkpoints")][
        -1
    ] == "step-00000004.safetensors"

    # options left out keep the run's own values: it is complete at 0.016 kimg (4 steps), so nothing more runs
    # (with the CLI's defaults it would train on towards 100 kimg until --max-minutes stops it)
    without = [a for a in args if a not in ("--checkpoint-steps", "2")]
    done = runner.invoke(cli, [*without, "--resume", "--max-minutes", "0.05"])
    assert done.exit_code == 0, done.output
    saved = json.loads((out / "config.json").read_text())
    assert (saved["kimg"], saved["checkpoint_steps"]) == (0.016, 2)
    assert [p.name for p in checkpoints.list_checkpoints(out / "checkpoints")][
        -1
    ] == "step-00000004.safetensors"

    wrong = runner.invoke(cli, [*args, "--resolution", "32", "--out", str(tmp_path / "other")])
    assert wrong.exit_code == 2 and "16×16" in wrong.output
    wrong = runner.invoke(cli, [*args, "--device", "tpu", "--out", str(tmp_path / "other")])
    assert wrong.exit_code == 2 and "device must be cpu, cuda or cuda:N, got 'tpu'" in wrong.output


def test_load_images_checks_the_file(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.full((2, 1, 8, 8), 2.0, np.float32))
    with pytest.raises(ShapeError, match=r"\[0, 1\]"):
        load_images(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_images(tmp_path / "missing")
    good = tmp_path / "train.npz"
    np.savez(good, images=np.zeros((2, 1, 8, 8), np.float32))
    assert load_images(tmp_path).min() == -1.0  # a folder means its train.npz; [0, 1] becomes [-1, 1]


# ------------------------------------------------------------------------------------------- robustness


def test_non_finite_weights_are_never_written(images, tmp_path):
    trainer = Trainer(tiny_config(), images, tmp_path)
    trainer.train_step()
    with torch.no_grad():
        trainer.G_ema.synthesis_network.b16.conv1.weight[0, 0] = math.nan
    with pytest.raises(
        TrainingDivergedError, match=r"after step 1, 1 tensor\(s\) hold NaN .*G_ema\.synthesis"
    ):
        trainer.save_checkpoint()
    with pytest.raises(TrainingDivergedError, match="no checkpoint was written"):
        trainer.export()
    assert not list(tmp_path.rglob("*.safetensors"))


def test_losses_becoming_non_finite_stop_the_run_at_their_step_keeping_the_last_good_checkpoint(
    images, tmp_path, monkeypatch
):
    trainer = Trainer(tiny_config(), images, tmp_path)
    step = trainer.train_step

    def blow_up() -> dict:
        if trainer.step == 2:  # the third step's G update makes G infinite, and its D loss NaN
            trainer.opt_G.param_groups[0]["lr"] = math.inf
        return step()

    monkeypatch.setattr(trainer, "train_step", blow_up)
    kept = trainer.checkpoint_dir / "step-00000002.safetensors"
    with pytest.raises(
        TrainingDivergedError, match=rf"NaN or infinite at step 3; the last good checkpoint, {kept},"
    ):
        trainer.run(progress=False)
    assert checkpoints.list_checkpoints(trainer.checkpoint_dir) == [kept]
    assert not (tmp_path / "generator.safetensors").exists()


def test_sigint_checkpoints_after_the_step_under_way_and_the_resumed_run_repeats_the_uninterrupted_one(
    images, tmp_path, monkeypatch
):
    full = Trainer(tiny_config(), images, tmp_path / "full")
    full.run(progress=False)
    trainer = Trainer(tiny_config(), images, tmp_path / "stopped")
    step = trainer.train_step

    def interrupted() -> dict:
        if trainer.step == 2:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C in the third step
        return step()

    monkeypatch.setattr(trainer, "train_step", interrupted)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as stop:
        trainer.run(progress=False)
    assert signal.getsignal(signal.SIGINT) is handler
    assert isinstance(stop.value, TrainingInterrupted) and stop.value.step == 3
    assert stop.value.path == trainer.checkpoint_dir / "step-00000003.safetensors"
    assert checkpoints.list_checkpoints(trainer.checkpoint_dir)[-1] == stop.value.path
    assert not (tmp_path / "stopped" / "generator.safetensors").exists()

    resumed = Trainer.resume(stop.value.path, images, tmp_path / "stopped")
    resumed.run(progress=False)
    expected, got = states(full), states(resumed)
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_ctrl_c_stops_brgm_train_with_a_checkpoint_and_says_how_to_resume(images, tmp_path):
    data = save_npz(images, tmp_path / "data.npz")
    out = tmp_path / "run"
    args = [
        "--data",
        str(data),
        "--out",
        str(out),
        "--resolution",
        "16",
        *TINY_CLI,
        "--checkpoint-steps",
        "1",
    ]
    code = "import typer; from brgm.cli.train import train; app = typer.Typer(); app.command()(train); app()"
    process = subprocess.Popen([sys.executable, "-c", code, *args], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline and not (out / "checkpoints").is_dir():
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    newest = checkpoints.list_checkpoints(out / "checkpoints")[-1]
    step = checkpoints.read_meta(newest)["step"]
    assert f"interrupted: step {step} is saved in {newest}; continue" in one_line(stderr)
    assert f"brgm train --data {data} --out {out} --resume" in one_line(stderr)
    assert not (out / "generator.safetensors").exists()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("text", "is not a .npz file"),
        ("truncated", "is not a .npz file (a zip archive), or it was cut short"),
        ("objects", "Object arrays cannot be loaded"),
        ("nan", "3 of 2560 image values are not finite"),
        ("--lr=inf", "--lr must be a positive finite number, got inf"),
        ("--threads=0", "--threads must be at least 1, got 0"),
    ],
)
def test_cli_refuses_bad_data_and_arguments_in_one_line(cli, images, tmp_path, case, message):
    data = save_npz(images, tmp_path / "data.npz")
    options = []
    if case == "text":
        data.write_text("images = [[0.5]]\n")
    elif case == "truncated":
        data.write_bytes(data.read_bytes()[:-100])
    elif case == "objects":
        np.savez(data, images=np.array([np.zeros((1, 16, 16)), "a"], dtype=object))
    elif case == "nan":
        poisoned = images.clone()
        poisoned[0, 0, 0, :3] = math.nan
        save_npz(poisoned, data)
    else:
        options = [case]
    out = tmp_path / "run"
    args = ["--data", str(data), "--out", str(out), "--resolution", "16", *TINY_CLI, "--kimg", "0.004"]
    result = CliRunner().invoke(cli, [*args, *options])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert result.output.startswith("error:") and len(result.output.strip().splitlines()) == 1, result.output
    assert message in result.output
    assert not (out / "checkpoints").exists() and not (out / "generator.safetensors").exists()


@pytest.fixture(scope="module")
def finished_run(cli, images, tmp_path_factory) -> tuple[Path, Path]:
    """A CLI run of 4 steps with checkpoints at steps 2 and 4, and its data."""
    root = tmp_path_factory.mktemp("finished")
    data, out = save_npz(images, root / "data.npz"), root / "run"
    args = [
        "--data",
        str(data),
        "--out",
        str(out),
        "--resolution",
        "16",
        *TINY_CLI,
        "--checkpoint-steps",
        "2",
    ]
    result = CliRunner().invoke(cli, [*args, "--kimg", "0.016"])
    assert result.exit_code == 0, result.output
    return data, out


def test_cli_resume_takes_every_setting_from_the_run(cli, finished_run, tmp_path):
    data, run = finished_run
    out = shutil.copytree(run, tmp_path / "run")
    args = ["--data", str(data), "--out", str(out), "--resume", "--threads", "1", "--no-progress"]
    result = CliRunner().invoke(cli, [*args, "--kimg", "0.024"])
    assert result.exit_code == 0, result.output
    assert "at step 4" in result.output and "step 6" in result.output
    saved = json.loads((out / "config.json").read_text())
    assert (saved["resolution"], saved["batch"], saved["z_dim"], saved["checkpoint_steps"]) == (16, 4, 8, 2)
    changed = CliRunner().invoke(cli, [*args, "--batch", "8"])
    assert changed.exit_code == 2 and "can only change" in changed.output
    assert "batch=8 (the run's: 4)" in one_line(changed.output)


def test_cli_resume_falls_back_from_a_truncated_newest_checkpoint(cli, finished_run, tmp_path):
    data, run = finished_run
    out = shutil.copytree(run, tmp_path / "run")
    newest = out / "checkpoints" / "step-00000004.safetensors"
    newest.write_bytes(newest.read_bytes()[:-100])
    args = ["--data", str(data), "--out", str(out), "--resolution", "16", *TINY_CLI, "--resume"]
    result = CliRunner().invoke(cli, [*args, "--kimg", "0.024"])
    assert result.exit_code == 0, result.output
    text = one_line(result.output)
    assert f"warning: cannot read training checkpoint {newest}" in text
    assert f"resuming {out / 'checkpoints' / 'step-00000002.safetensors'} at step 2" in text
    names = [p.name for p in checkpoints.list_checkpoints(out / "checkpoints")]
    assert names == ["step-00000004.safetensors", "step-00000006.safetensors"]
    assert checkpoints.read_meta(newest)["step"] == 4  # rewritten whole
