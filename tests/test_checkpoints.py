"""Checkpoint readers: NVIDIA and TensorFlow pickles against NVIDIA's own state dict, rosinality and brgm
round trips, and the restricted unpickler refusing code (nothing it is given ever runs)."""

from __future__ import annotations

import argparse
import builtins
import contextlib
import io
import json
import os
import pickle
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from brgm.core.errors import CheckpointError, UnsafeCheckpointError, WeightsNotFoundError
from brgm.plugins.generators.checkpoints import (
    load_checkpoint,
    read_checkpoint,
    save_generator,
    to_rosinality,
)
from brgm.plugins.generators.checkpoints.layout import channel_config, filter_keys
from brgm.plugins.generators.checkpoints.nvidia import convert_nvidia
from brgm.plugins.generators.checkpoints.safe_pickle import PersistentObject, safe_load
from brgm.plugins.generators.checkpoints.tensorflow import convert_tf
from brgm.plugins.generators.sources import RandomStyleGAN2

PICKLES = ["network-ada.pkl", "network-tf.pkl"]


def assert_same_tensors(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    """Key for key: same dtype, same shape, same bits."""
    assert sorted(got) == sorted(want)
    for key, ref in want.items():
        assert got[key].dtype == ref.dtype and got[key].shape == ref.shape, key
        assert torch.equal(got[key], ref), key


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture
def reference(fixture_dir: Path) -> dict[str, torch.Tensor]:
    """NVIDIA's ``G_ema.state_dict()`` of the fixture."""
    return load_file(fixture_dir / "state_dict.safetensors")


# --------------------------------------------------------------------------- fixture pickles


@pytest.mark.parametrize("name", PICKLES)
def test_pickle_converts_to_nvidias_state_dict_bit_exactly(fixture_dir: Path, name: str) -> None:
    ckpt = read_checkpoint(fixture_dir / name)
    assert ckpt.format == {"network-ada.pkl": "nvidia", "network-tf.pkl": "tensorflow"}[name]
    assert_same_tensors(ckpt.state_dict, load_file(fixture_dir / "state_dict.safetensors"))


def test_nvidia_pickle_init_kwargs_are_g_emas(fixture_dir: Path) -> None:
    expected = json.loads((fixture_dir / "config.json").read_text())["init_kwargs"]
    assert read_checkpoint(fixture_dir / "network-ada.pkl").init_kwargs == expected


def test_tf_pickle_init_kwargs_follow_legacy_rules(fixture_dir: Path) -> None:
    kwargs = read_checkpoint(fixture_dir / "network-tf.pkl").init_kwargs
    resolved = json.loads((fixture_dir / "config.json").read_text())["resolved"]
    assert {k: kwargs[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")} == {
        k: resolved[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
    }
    synthesis = kwargs["synthesis_kwargs"]
    assert synthesis["channel_base"] == 2 * 1024 == resolved["synthesis"]["channel_base"]
    assert synthesis["architecture"] == "skip" and synthesis["conv_clamp"] == 256
    assert kwargs["mapping_kwargs"]["num_layers"] == 4 and kwargs["mapping_kwargs"]["lr_multiplier"] == 0.01


def test_the_training_generator_g_differs_from_g_ema(fixture_dir: Path, reference: dict) -> None:
    """The check above would catch a reader that took G: G's tensors are not the reference ones."""
    with open(fixture_dir / "network-ada.pkl", "rb") as f:
        ada = safe_load(f, "ada")
    with open(fixture_dir / "network-tf.pkl", "rb") as f:
        g, d, _ = safe_load(f, "tf")
    for _, state in (convert_nvidia({"G_ema": ada["G"]}, "ada"), convert_tf((g, d, g), "tf")):
        differing = [k for k in reference if not torch.equal(state[k], reference[k])]
        assert "mapping.w_avg" in differing and "synthesis.b4.const" in differing


def tf_networks(fixture_dir: Path) -> tuple:
    with open(fixture_dir / "network-tf.pkl", "rb") as f:
        return safe_load(f, "tf")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda gs: gs.state.update(version=3), "version 3 \\(StyleGAN1\\?\\)"),
        (
            lambda gs: gs.state["static_kwargs"].update(fmap_decay=0.5),
            "unknown TensorFlow generator kwarg\\(s\\) fmap_decay",
        ),
        (lambda gs: gs.state["static_kwargs"].update(base_size=[5, 6, 7]), "a 3D-StyleGAN TensorFlow pickle"),
        (
            lambda gs: gs.components["synthesis"].state["variables"].pop(),
            "no variable 'synthesis/32x32/ToRGB/bias'",
        ),
        (
            lambda gs: gs.state["variables"].append(("extra", np.zeros(2))),
            "variables brgm cannot place: extra",
        ),
    ],
)
def test_tf_pickles_brgm_cannot_convert_are_clear_errors(fixture_dir: Path, edit: Any, message: str) -> None:
    g, d, gs = tf_networks(fixture_dir)
    convert_tf((g, d, gs), "tf")  # converts before the edit
    edit(gs)
    with pytest.raises(CheckpointError, match=message):
        convert_tf((g, d, gs), "tf")


def test_tf_ignores_lod_and_run_time_kwargs(fixture_dir: Path, reference: dict) -> None:
    g, d, gs = tf_networks(fixture_dir)
    gs.state["static_kwargs"].update(truncation_psi=0.5, structure="auto")
    gs.state["variables"] = [(n, np.float32(7) if n == "lod" else v) for n, v in gs.variables]
    assert_same_tensors(convert_tf((g, d, gs), "tf")[1], reference)


@pytest.mark.parametrize("name", PICKLES)
def test_loaded_pickle_reproduces_nvidias_images(fixture_dir: Path, name: str) -> None:
    cases = np.load(fixture_dir / "cases.npz")
    G = load_checkpoint(fixture_dir / name)
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    ws = G.mapping(torch.from_numpy(cases["z"]))
    assert rel_err(ws, torch.from_numpy(cases["ws_from_z"])) < 1e-4
    img = G.synthesis(torch.from_numpy(cases["ws_from_z"]), noise_mode="const")
    assert rel_err(img, torch.from_numpy(cases["img_const"])) < 1e-4


# --------------------------------------------------------------------------- round trips


def test_brgm_format_round_trip_is_bit_exact(fixture_dir: Path, tmp_path: Path) -> None:
    G = load_checkpoint(fixture_dir / "network-tf.pkl")
    path = save_generator(G, tmp_path / "g.safetensors")
    ckpt = read_checkpoint(path)
    assert ckpt.format == "brgm" and ckpt.architecture == "stylegan2"
    assert ckpt.init_kwargs == json.loads(json.dumps(G.init_kwargs))
    assert_same_tensors(ckpt.state_dict, G.state_dict())
    assert_same_tensors(load_checkpoint(path).state_dict(), G.state_dict())
    assert [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]  # no temporary file left


@pytest.mark.parametrize("architecture", ["orig", "resnet"])
def test_brgm_format_round_trip_other_architectures(tmp_path: Path, architecture: str) -> None:
    G = RandomStyleGAN2(resolution=16, architecture=architecture, conv_clamp=64, seed=5).load()
    H = load_checkpoint(save_generator(G, tmp_path / "g.bin"))  # the name's suffix does not matter
    assert_same_tensors(H.state_dict(), G.state_dict())
    assert H.init_kwargs == G.init_kwargs
    assert sorted(k for k in G.state_dict() if k.endswith("resample_filter")) == sorted(
        filter_keys(16, architecture)
    )


@pytest.mark.parametrize("zip_format", [True, False])
def test_rosinality_round_trip(fixture_dir: Path, tmp_path: Path, reference: dict, zip_format: bool) -> None:
    ros = to_rosinality(reference)
    assert ros["g_ema"]["convs.0.conv.weight"].shape == (1, 64, 64, 3, 3)
    assert ros["g_ema"]["to_rgb1.bias"].shape == (1, 1, 1, 1) and ros["g_ema"]["noises.noise_6"].shape == (
        1,
        1,
        32,
        32,
    )
    path = tmp_path / "550000.pt"
    torch.save(
        {**ros, "args": argparse.Namespace(size=32, n_mlp=4)}, path, _use_new_zipfile_serialization=zip_format
    )
    ckpt = read_checkpoint(path)
    assert ckpt.format == "rosinality"
    assert_same_tensors(ckpt.state_dict, reference)
    synthesis = ckpt.init_kwargs["synthesis_kwargs"]
    assert (synthesis["channel_base"], synthesis["channel_max"], synthesis["conv_clamp"]) == (2048, 64, None)
    # and back to brgm's format and to rosinality's again
    G = load_checkpoint(path)
    assert_same_tensors(to_rosinality(G.state_dict())["g_ema"], ros["g_ema"])


def test_rosinality_without_latent_avg_estimates_w_avg(
    fixture_dir: Path, tmp_path: Path, reference: dict
) -> None:
    torch.save({"g_ema": to_rosinality(reference)["g_ema"]}, tmp_path / "train.pt")
    G = load_checkpoint(tmp_path / "train.pt")
    w_mean = torch.from_numpy(np.load(fixture_dir / "cases.npz")["w_mean_10k"])
    assert rel_err(G.state_dict()["mapping.w_avg"], w_mean) < 1e-5


def test_rosinality_refuses_what_it_cannot_hold(tmp_path: Path) -> None:
    resnet = RandomStyleGAN2(resolution=8, architecture="resnet").load()
    with pytest.raises(CheckpointError, match="'skip' StyleGAN2"):
        to_rosinality(resnet.state_dict())
    g = to_rosinality(RandomStyleGAN2(resolution=8).load().state_dict())
    g["g_ema"]["convs.0.conv.blur.kernel"] = torch.ones(4, 4)
    torch.save(g, tmp_path / "blur.pt")
    with pytest.raises(CheckpointError, match=r"blur\.kernel' is not the \[1, 3, 3, 1\] filter"):
        read_checkpoint(tmp_path / "blur.pt")


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from([4, 8, 16, 32, 64, 128, 256, 512, 1024]),
    st.integers(1, 1 << 16),
    st.integers(1, 1024),
)
def test_channel_config_reproduces_nvidias_channel_rule(
    resolution: int, channel_base: int, channel_max: int
) -> None:
    channels = {
        r: min(channel_base // r, channel_max) for r in (2**k for k in range(2, 11)) if r <= resolution
    }
    if min(channels.values()) < 1:
        return
    base, top = channel_config(channels)
    assert {r: min(base // r, top) for r in channels} == channels


# --------------------------------------------------------------------------- the restricted unpickler


def loads(data: bytes) -> Any:
    return safe_load(io.BytesIO(data), "test.pkl")


plain_data = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(plain_data, st.integers(2, 5))
def test_plain_data_round_trips(value: Any, protocol: int) -> None:
    assert loads(pickle.dumps(value, protocol=protocol)) == value


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool]),
    st.lists(st.integers(1, 5), min_size=0, max_size=3),
    st.integers(2, 5),
    st.booleans(),
)
def test_tensors_round_trip(dtype: torch.dtype, shape: list[int], protocol: int, view: bool) -> None:
    gen = torch.Generator().manual_seed(len(shape))
    t = (torch.randn([*shape, 3], generator=gen) * 10).to(dtype)
    if view:  # a strided view into a larger storage, at an offset
        t = t[..., 1:].transpose(0, -1) if t.dim() > 1 else t[1:]
    out = loads(pickle.dumps({"t": t, "p": torch.nn.Parameter(t.float())}, protocol=protocol))
    assert out["t"].dtype == t.dtype and torch.equal(out["t"], t) and out["t"].stride() == t.stride()
    assert type(out["p"]) is torch.Tensor and not out["p"].requires_grad and torch.equal(out["p"], t.float())


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(["<f4", "<f8", ">f4", "<i8", "|u1", "|b1", "<c8"]),
    st.lists(st.integers(0, 4), max_size=3),
    st.integers(2, 5),
)
def test_numeric_arrays_and_scalars_round_trip(dtype: str, shape: list[int], protocol: int) -> None:
    """Same arrays and scalars as the standard unpickler gives (safe here: the test wrote the data)."""
    a = np.asarray(np.random.RandomState(0).randn(*shape) * 5).astype(dtype)
    data = pickle.dumps((a, a.dtype.type(3), np.float32(0.25)), protocol=protocol)
    got, want = loads(data), pickle.loads(data)
    for g, w in zip(got, want, strict=True):
        assert type(g) is type(w) and g.dtype == w.dtype and g.shape == w.shape
        assert np.array_equal(g, w)
    assert np.dtype("f4").byteorder == "="  # numpy's shared dtypes are untouched


def test_object_arrays_are_refused() -> None:
    with pytest.raises(UnsafeCheckpointError, match="only numeric arrays"):
        loads(pickle.dumps(np.array([1, "x"], dtype=object), protocol=4))


class Call:
    """Pickles as ``fn(*args)``: what a malicious pickle's REDUCE does."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.fn, self.args


@pytest.fixture
def persistence(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """An empty stand-in for NVIDIA's ``torch_utils.persistence``, so the tests can write pickles naming it."""
    package, module = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta: dict) -> None:
        raise AssertionError("brgm must never call NVIDIA's reconstructor")

    _reconstruct_persistent_obj.__module__ = module.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj  # type: ignore[attr-defined]
    package.persistence = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch_utils", package)
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", module)
    return module


def persistent(module: types.ModuleType, class_name: str, state: dict, source: str = "# no source") -> Call:
    meta = {"type": "class", "version": 6, "module_src": source, "class_name": class_name, "state": state}
    return Call(module._reconstruct_persistent_obj, meta)


def malicious(marker: Path) -> list[tuple[Call, str]]:
    """Payloads that would create ``marker`` if run, with the global each one names."""
    return [
        (Call(os.system, f"touch {marker}"), f"{os.system.__module__}.system"),
        (Call(builtins.eval, f"open({str(marker)!r}, 'w')"), "builtins.eval"),
        (Call(builtins.exec, f"open({str(marker)!r}, 'w')"), "builtins.exec"),
        (Call(subprocess.call, ["touch", str(marker)]), "subprocess.call"),
    ]


@pytest.mark.parametrize("case", range(4))
@pytest.mark.parametrize("protocol", [2, 4])
def test_code_globals_are_refused_and_never_run(tmp_path: Path, case: int, protocol: int) -> None:
    marker = tmp_path / "pwned"
    payload, name = malicious(marker)[case]
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": payload}, protocol=protocol))
    # protocol 2 writes Python 2 module names (subprocess.call becomes commands.call): match the function
    function = name.rpartition(".")[2]
    with pytest.raises(
        UnsafeCheckpointError, match=rf"refusing to load the global '[\w.]+\.{function}'"
    ) as err:
        read_checkpoint(path)
    assert str(path) in str(err.value)
    assert not marker.exists()


def test_forbidden_global_inside_a_persistent_object_is_refused(
    tmp_path: Path, persistence: types.ModuleType
) -> None:
    marker = tmp_path / "pwned"
    payload, name = malicious(marker)[0]
    g_ema = persistent(
        persistence, "Generator", {"_modules": {"synthesis": persistent(persistence, "X", {"hook": payload})}}
    )
    path = tmp_path / "network-snapshot.pkl"
    path.write_bytes(pickle.dumps({"G_ema": g_ema}, protocol=3))
    with pytest.raises(UnsafeCheckpointError, match=name):
        read_checkpoint(path)
    assert not marker.exists()


def test_embedded_module_source_is_never_executed(tmp_path: Path, persistence: types.ModuleType) -> None:
    marker = tmp_path / "pwned"
    source = f"open({str(marker)!r}, 'w').write('ran')"
    obj = loads(
        pickle.dumps({"G_ema": persistent(persistence, "Generator", {"z_dim": 3}, source)}, protocol=3)
    )
    assert isinstance(obj["G_ema"], PersistentObject)
    assert (obj["G_ema"].class_name, obj["G_ema"].version, obj["G_ema"].state) == (
        "Generator",
        6,
        {"z_dim": 3},
    )
    assert not marker.exists()


def test_network_pickles_without_g_ema_are_refused(tmp_path: Path, persistence: types.ModuleType) -> None:
    path = tmp_path / "g-only.pkl"
    path.write_bytes(pickle.dumps({"G": persistent(persistence, "Generator", {}), "D": None}))
    with pytest.raises(CheckpointError, match=r"without a 'G_ema' generator \(keys: G, D\)"):
        read_checkpoint(path)


def test_stylegan3_generators_are_refused(tmp_path: Path, persistence: types.ModuleType) -> None:
    synthesis = persistent(persistence, "SynthesisNetwork", {"_modules": {"input": None, "L0_36_512": None}})
    path = tmp_path / "sg3.pkl"
    path.write_bytes(
        pickle.dumps({"G_ema": persistent(persistence, "Generator", {"_modules": {"synthesis": synthesis}})})
    )
    with pytest.raises(CheckpointError, match="not StyleGAN3"):
        read_checkpoint(path)


def test_persistent_ids_are_refused() -> None:
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=2)
    pickler.persistent_id = lambda obj: "storage0" if isinstance(obj, bytes) else None  # type: ignore[method-assign]
    pickler.dump({"a": b"x"})
    with pytest.raises(UnsafeCheckpointError, match="persistent id 'storage0'"):
        loads(buffer.getvalue())


def test_torch_files_with_code_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"g_ema": Call(os.system, f"touch {marker}")}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpointError, match="system"):
        read_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 5), st.binary(max_size=64))
def test_arbitrary_bytes_are_checkpoint_errors(protocol: int, body: bytes) -> None:
    with contextlib.suppress(CheckpointError):  # anything else (or a hang) fails
        loads(bytes([0x80, protocol]) + body)


# --------------------------------------------------------------------------- broken and foreign files


@pytest.mark.parametrize("name", PICKLES)
@pytest.mark.parametrize("keep", [0.002, 0.5, 0.9999])
def test_truncated_pickles_are_clear_errors(
    fixture_dir: Path, tmp_path: Path, name: str, keep: float
) -> None:
    data = (fixture_dir / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="truncated or corrupted") as err:
        read_checkpoint(path)
    assert not isinstance(err.value, UnsafeCheckpointError) and str(path) in str(err.value)


def test_truncated_safetensors_and_torch_files_are_clear_errors(tmp_path: Path) -> None:
    G = RandomStyleGAN2(resolution=8).load()
    save_generator(G, tmp_path / "g.safetensors")
    torch.save(to_rosinality(G.state_dict()), tmp_path / "g.pt")
    for name in ("g.safetensors", "g.pt"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match="truncated or corrupted"):
            read_checkpoint(tmp_path / name)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), "not a checkpoint brgm knows"),
        (b"garbage garbage garbage", "not a checkpoint brgm knows"),
        (pickle.dumps({"weights": [1, 2]}), r"holds a dict with keys \['weights'\], not a generator"),
        (pickle.dumps((1, 2, 3)), "holds a tuple, not a generator"),
    ],
)
def test_foreign_files_are_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


def test_safetensors_without_configuration_is_refused(tmp_path: Path) -> None:
    save_file(
        {"encoder.weight": torch.zeros(2, 2)}, tmp_path / "other.safetensors", metadata={"format": "pt"}
    )
    with pytest.raises(CheckpointError, match="without brgm's generator configuration"):
        read_checkpoint(tmp_path / "other.safetensors")


def test_safetensors_of_a_newer_format_version_is_refused(tmp_path: Path) -> None:
    config = {"format": "brgm-generator", "version": 99, "architecture": "stylegan2", "init_kwargs": {}}
    save_file({"x": torch.zeros(1)}, tmp_path / "new.safetensors", metadata={"brgm": json.dumps(config)})
    with pytest.raises(CheckpointError, match="version 99; this brgm reads versions up to 1"):
        read_checkpoint(tmp_path / "new.safetensors")


def test_state_dict_that_does_not_fit_is_a_clear_error(tmp_path: Path) -> None:
    G = RandomStyleGAN2(resolution=8).load()
    save_generator(G, tmp_path / "g.safetensors")
    ckpt = read_checkpoint(tmp_path / "g.safetensors")
    del ckpt.state_dict["synthesis.b8.conv1.bias"]
    save_file(
        ckpt.state_dict,
        tmp_path / "broken.safetensors",
        metadata={
            "brgm": json.dumps(
                {
                    "format": "brgm-generator",
                    "version": 1,
                    "architecture": "stylegan2",
                    "init_kwargs": ckpt.init_kwargs,
                }
            )
        },
    )
    with pytest.raises(
        CheckpointError,
        match=r"broken\.safetensors: the brgm checkpoint does not fit its network.*synthesis\.b8\.conv1\.bias",
    ):
        load_checkpoint(tmp_path / "broken.safetensors")


def test_missing_files_and_directories(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match=r"nothere\.pkl' does not exist"):
        read_checkpoint(tmp_path / "nothere.pkl")
    with pytest.raises(CheckpointError, match="not a file"):
        read_checkpoint(tmp_path)
