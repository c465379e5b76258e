"""Generator sources: registration, the file source, seeded random StyleGAN2s and the BRGM presets' weight lookup."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import brgm
from brgm.core.errors import CheckpointError, ConfigError, WeightsNotFoundError
from brgm.core.plugins import registry
from brgm.plugins.generators.checkpoints import save_generator
from brgm.plugins.generators.sources import (
    CheckpointFile,
    PublishedStyleGAN2,
    RandomStyleGAN2,
    StyleGAN2XRay,
)

PRESETS = {
    "stylegan2-ffhq": (1024, 3, "ffhq.pkl"),
    "stylegan2-xray": (1024, 1, "xray.pkl"),
    "stylegan2-brains": (256, 1, "brains.pkl"),
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRGM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_sources_are_registered_by_the_builtin_plugin() -> None:
    reg = registry()
    for name in ("file", "stylegan2", *PRESETS):
        component = reg.get("generator", name)
        assert component.plugin == "brgm.plugins.generators"
        assert component.description and "\n" not in component.description


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_name_their_published_file(name: str) -> None:
    resolution, channels, filename = PRESETS[name]
    cls = registry().get("generator", name).obj
    assert issubclass(cls, PublishedStyleGAN2)
    assert (cls.resolution, cls.channels) == (resolution, channels)
    spec = cls.weights_file
    assert (spec.name, spec.filename) == (name, filename)
    assert spec.url.startswith("https://dl.dropboxusercontent.com/s/") and spec.url.endswith(f"/{filename}")


def test_random_stylegan2_is_seeded() -> None:
    a = brgm.load_generator("stylegan2", resolution=16, seed=1)
    b = brgm.load_generator("stylegan2", resolution=16, seed=1)
    c = brgm.load_generator("stylegan2", resolution=16, seed=2)
    assert (a.img_shape, a.img_channels, a.num_ws, a.z_dim) == ((16, 16), 1, 6, 64)
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    assert not torch.equal(a.state_dict()["synthesis.b4.const"], c.state_dict()["synthesis.b4.const"])
    assert not a.training and not any(p.requires_grad for p in a.parameters())


def test_random_stylegan2_options_reach_the_network() -> None:
    G = RandomStyleGAN2(
        resolution=8,
        channels=3,
        z_dim=5,
        w_dim=7,
        mapping_layers=3,
        channel_max=16,
        architecture="resnet",
        conv_clamp=32,
    ).load()
    assert (G.img_channels, G.z_dim, G.w_dim) == (3, 5, 7)
    assert G.init_kwargs["synthesis_kwargs"]["conv_clamp"] == 32
    assert "synthesis.b8.skip.weight" in G.state_dict() and "mapping.fc2.weight" in G.state_dict()
    assert G.state_dict()["synthesis.b8.conv1.weight"].shape == (16, 16, 3, 3)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"resolution": 48}, "resolution must be a power of two in \\[4, 4096\\], got 48"),
        ({"architecture": "style"}, "architecture must be one of 'orig', 'skip', 'resnet'"),
        ({"conv_clamp": 0}, "conv_clamp must be in \\(0"),
        ({"channels": 0}, "channels must be in \\[1, 64\\]"),
    ],
)
def test_random_stylegan2_rejects_bad_values(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RandomStyleGAN2(**values)


def test_file_source_loads_any_format_by_content(fixture_dir: Path, tmp_path: Path) -> None:
    shutil.copy(fixture_dir / "network-tf.pkl", tmp_path / "weights.bin")
    G = brgm.load_generator(str(tmp_path / "weights.bin"))
    H = CheckpointFile(path=fixture_dir / "network-ada.pkl").load()
    assert all(
        torch.equal(x, y) for x, y in zip(G.state_dict().values(), H.state_dict().values(), strict=True)
    )


def test_file_source_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match=r"missing\.pkl' does not exist"):
        brgm.load_generator(str(tmp_path / "missing.pkl"))
    (tmp_path / "notes.txt").write_text("not a network")
    with pytest.raises(CheckpointError, match=r"notes\.txt: not a checkpoint brgm knows"):
        CheckpointFile(path=tmp_path / "notes.txt").load()
    with pytest.raises(ConfigError, match="path must be the path of a checkpoint file"):
        CheckpointFile(path="")


def test_missing_preset_weights_say_what_where_and_how(home: Path) -> None:
    with pytest.raises(WeightsNotFoundError) as err:
        brgm.load_generator("stylegan2-xray")
    message = str(err.value)
    assert "'xray.pkl'" in message
    assert str(home / "weights" / "xray.pkl") in message and "$BRGM_HOME" in message
    assert "brgm weights fetch stylegan2-xray" in message and "weights=PATH" in message


@pytest.fixture(scope="module")
def tiny_xray(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1024² grayscale generator (2 channels per layer) in brgm's format: the xray preset's shape."""
    G = RandomStyleGAN2(resolution=1024, channels=1, z_dim=4, w_dim=4, mapping_layers=1, channel_max=2).load()
    return save_generator(G, tmp_path_factory.mktemp("weights") / "tiny-xray.safetensors")


def test_explicit_weights_path_loads(tiny_xray: Path, home: Path) -> None:
    G = brgm.load_generator("stylegan2-xray", weights=str(tiny_xray))
    assert (G.img_shape, G.img_channels, G.num_ws) == ((1024, 1024), 1, 18)


def test_weights_in_brgm_home_load_whatever_their_format(tiny_xray: Path, home: Path) -> None:
    (home / "weights").mkdir(parents=True)
    shutil.copy(tiny_xray, home / "weights" / "xray.pkl")  # brgm's format under the published name
    assert StyleGAN2XRay().load().img_channels == 1


def test_explicit_weights_win_and_must_exist(tiny_xray: Path, home: Path, tmp_path: Path) -> None:
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "xray.pkl").write_bytes(b"broken")
    assert StyleGAN2XRay(weights=tiny_xray).load().img_channels == 1
    with pytest.raises(
        WeightsNotFoundError, match=r"weights file '.*nothere\.pkl' given for 'stylegan2-xray'"
    ):
        StyleGAN2XRay(weights=tmp_path / "nothere.pkl").load()


def test_preset_refuses_a_network_of_another_shape(fixture_dir: Path) -> None:
    with pytest.raises(
        CheckpointError, match=r"a 32² generator with 1 channel\(s\), but 'stylegan2-xray' is 1024²"
    ):
        brgm.load_generator("stylegan2-xray", weights=str(fixture_dir / "network-ada.pkl"))
