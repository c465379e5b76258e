"""Hostile and absurd generator checkpoints (issue 12): each ends in a CheckpointError within seconds and bounded
memory, and nothing in it runs.

The files are written here and loaded with ``brgm.load_generator`` in one subprocess per batch, under an
address-space cap (:data:`MEMORY_CAP`) and a time limit, so a hang or an allocation of gigabytes fails the test
instead of the machine."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from brgm.core import safe_torch
from brgm.core.errors import CheckpointError
from brgm.core.safe_torch import safe_torch_load
from brgm.plugins.generators.checkpoints import limits, save_generator
from brgm.plugins.generators.checkpoints.safe_pickle import TORCH_LEGACY_MAGIC, safe_load
from brgm.plugins.generators.sources import RandomStyleGAN2
from tests.test_checkpoints import Call, malicious, persistence, persistent

__all__ = ["persistence"]  # a fixture, used by name

#: torch and brgm take about 3.5 GB of address space once imported; the rest is room for a small generator
MEMORY_CAP = 5 << 30
#: for a whole batch (one interpreter start, then every file)
BATCH_SECONDS = 60
#: for one file
FILE_SECONDS = 10
LOADER = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
import brgm
from brgm.core import safe_torch
from brgm.core.errors import CheckpointError
from brgm.core.safe_torch import safe_torch_load
for path in sys.argv[1:]:
    start = time.perf_counter()
    try:
        brgm.load_generator(path)
        outcome = "loaded"
    except CheckpointError as err:
        outcome = "CheckpointError " + type(err).__name__
    except BaseException as err:
        outcome = "other " + type(err).__name__ + " " + repr(str(err)[:200])
    print(path, outcome, f"{{time.perf_counter() - start:.2f}}", sep="\\t", flush=True)
"""
SMALL: dict[str, Any] = {
    "z_dim": 8,
    "w_dim": 8,
    "img_resolution": 4,
    "img_channels": 1,
    "mapping_kwargs": {"num_layers": 2},
    "synthesis_kwargs": {"channel_base": 64, "channel_max": 16},
}


def load_all(paths: list[Path]) -> dict[str, tuple[str, float]]:
    """``{path: (outcome, seconds)}`` of loading each file with ``brgm.load_generator`` in a capped subprocess."""
    proc = subprocess.run(
        [sys.executable, "-c", LOADER.format(cap=MEMORY_CAP), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=BATCH_SECONDS,
        env={**os.environ, "OMP_NUM_THREADS": "1", "BRGM_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    results = {}
    for line in proc.stdout.splitlines():
        path, outcome, seconds = line.split("\t")
        results[path] = (outcome, float(seconds))
    assert sorted(results) == sorted(map(str, paths)), proc.stderr[-2000:]
    return results


def assert_refused(paths: list[Path], marker: Path | None = None) -> None:
    """Each file ends in a CheckpointError (or a subclass) within :data:`FILE_SECONDS`; ``marker`` is not made."""
    for path, (outcome, seconds) in load_all(paths).items():
        assert outcome.startswith("CheckpointError"), f"{Path(path).name}: {outcome}"
        assert seconds < FILE_SECONDS, f"{Path(path).name}: {seconds} s"
    if marker is not None:
        assert not marker.exists()


def native(init_kwargs: Any, tensors: dict[str, torch.Tensor] | None = None) -> bytes:
    """A brgm ``.safetensors`` whose configuration says ``init_kwargs``."""
    config = {
        "format": "brgm-generator",
        "version": 1,
        "architecture": "stylegan2",
        "init_kwargs": init_kwargs,
    }
    return save(tensors or {"x": torch.zeros(1)}, metadata={"brgm": json.dumps(config)})


def with_setting(section: str, key: str, value: Any) -> dict[str, Any]:
    kwargs = json.loads(json.dumps(SMALL))
    (kwargs[section] if section else kwargs)[key] = value
    return kwargs


def raw_native(init_kwargs_json: str) -> bytes:
    """A brgm ``.safetensors`` with ``init_kwargs`` written as raw JSON text."""
    text = (
        '{"format": "brgm-generator", "version": 1, "architecture": "stylegan2", '
        f'"init_kwargs": {init_kwargs_json}}}'
    )
    return save({"x": torch.zeros(1)}, metadata={"brgm": text})


def dag(depth: int, leaf: Any = 0, kind: type = list) -> Any:
    """``depth`` levels of containers holding the level below twice: tiny pickled, ``2**depth`` expanded."""
    value = leaf
    for _ in range(depth):
        value = kind((value, value))
    return value


def hash_bomb(depth: int = 100) -> bytes:
    """A dict whose key is :func:`dag` of tuples (hashing it visits every one of the ``2**depth`` leaves).

    Written opcode by opcode: building the dict here would hash the key."""
    key = pickle.dumps(dag(depth, kind=tuple), protocol=2)[2:-1]  # without PROTO and STOP
    return b"\x80\x02}" + key + b"K\x01s."  # EMPTY_DICT, the key, BININT1 1, SETITEM, STOP


def torch_zip(data_pkl: bytes) -> bytes:
    """A ``torch.save`` zip whose ``data.pkl`` is ``data_pkl``."""
    saved = io.BytesIO()
    torch.save({}, saved)
    out = io.BytesIO()
    with zipfile.ZipFile(saved) as original, zipfile.ZipFile(out, "w") as archive:
        for member in original.infolist():
            archive.writestr(
                member, data_pkl if member.filename.endswith("/data.pkl") else original.read(member)
            )
    return out.getvalue()


def nested_lists(depth: int) -> bytes:
    """``[[[...]]]`` ``depth`` deep with the opcodes torch reads: ``depth`` EMPTY_LISTs, then APPENDs."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


#: ``{"g_ema": bytearray(2**40)}``: torch's weights-only loader allows ``bytearray``
BYTEARRAY = b"\x80\x02}X\x05\x00\x00\x00g_emac__builtin__\nbytearray\n\x8a\x06\x00\x00\x00\x00\x00\x01\x85Rs."


def deep_list(depth: int) -> bytes:
    """``[[[...]]]`` ``depth`` deep, 7 bytes a level (each level is the memoised one below, appended)."""
    return b"\x80\x02]q\x00" + b"0]h\x00aq\x00" * depth + b"."


class Reduce:
    """Pickles as ``fn(*args)`` followed by BUILD with ``state``."""

    def __init__(self, fn: Any, args: tuple[Any, ...], state: Any) -> None:
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self) -> tuple[Any, ...]:
        return self.fn, self.args, self.state


def flagged_dtype_array() -> bytes:
    """A float32 array whose dtype's pickled state claims numpy's object flags (SystemError in numpy)."""
    dtype = Reduce(np.dtype, ("f4", False, True), (3, "<", None, None, None, -1, -1, 0x1F))
    array = Reduce(
        np.ndarray.__reduce__(np.zeros(1))[0], (np.ndarray, (0,), b"b"), (1, (2,), dtype, False, bytes(8))
    )
    return pickle.dumps({"G_ema": array}, protocol=2)


@pytest.fixture
def dnnlib(monkeypatch: pytest.MonkeyPatch) -> type:
    """A stand-in ``dnnlib.tflib.network.Network`` (pickled as TF StyleGAN2 pickles are), for writing pickles."""

    class Network:
        def __init__(self, state: dict[str, Any]) -> None:
            self.state = state

        def __getstate__(self) -> dict[str, Any]:
            return self.state

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    modules = {name: types.ModuleType(name) for name in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")}
    modules["dnnlib.tflib.network"].Network = Network  # type: ignore[attr-defined]
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return Network


def tf_pickle(network: type, static_kwargs: dict[str, Any], build_funcs: tuple[str, str] = ("", "")) -> bytes:
    """A TF pickle ``(G, D, Gs)`` whose ``Gs`` has ``static_kwargs``, mapping and synthesis components and no
    variables."""

    def net(name: str, build: str = "", components: dict[str, Any] | None = None) -> Any:
        state = {"version": 4, "name": name, "static_kwargs": static_kwargs, "build_func_name": build}
        return network({**state, "components": components or {}, "variables": []})

    mapping, synthesis = (net(n, f) for n, f in zip(("mapping", "synthesis"), build_funcs, strict=True))
    gs = net("Gs", "G_main", {"mapping": mapping, "synthesis": synthesis})
    return pickle.dumps((gs, gs, gs), protocol=2)


def nvidia_pickle(module: types.ModuleType, init_kwargs: Any) -> bytes:
    """An NVIDIA network pickle whose ``G_ema`` has ``init_kwargs`` and no tensors."""
    b4 = persistent(
        module, "SynthesisBlock", {"_modules": {"conv1": persistent(module, "SynthesisLayer", {})}}
    )
    synthesis = persistent(module, "SynthesisNetwork", {"_modules": {"b4": b4}})
    g_ema = persistent(
        module, "Generator", {"_init_kwargs": init_kwargs, "_modules": {"synthesis": synthesis}}
    )
    return pickle.dumps({"G_ema": g_ema}, protocol=4)


def cycle() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


def hostile_files(tmp_path: Path, module: types.ModuleType, network: type) -> Iterator[tuple[str, bytes]]:
    """``(file name, content)`` of every hostile or absurd checkpoint (the issue's sweep and the code payloads)."""
    marker = tmp_path / "pwned"
    # brgm .safetensors: absurd or unknown settings
    yield "layers.safetensors", native(with_setting("mapping_kwargs", "num_layers", 10**7))
    yield "z-dim.safetensors", native({**SMALL, "z_dim": 1 << 17, "w_dim": 1 << 17})
    yield (
        "channels.safetensors",
        native({**SMALL, "synthesis_kwargs": {"channel_base": 1 << 40, "channel_max": 1 << 17}}),
    )
    yield "resolution.safetensors", native({**SMALL, "img_resolution": 1 << 40})
    yield "base-shape.safetensors", native({**SMALL, "base_shape": [1 << 16, 1 << 16]})
    yield "filter.safetensors", native(with_setting("synthesis_kwargs", "resample_filter", [1] * 30_000))
    yield "unknown.safetensors", native({**SMALL, "bogus_setting": 1})
    yield "unknown-mapping.safetensors", native(with_setting("mapping_kwargs", "bogus_setting", 1))
    yield "not-a-dict.safetensors", native({**SMALL, "synthesis_kwargs": [1, 2]})
    yield "deep-json.safetensors", raw_native("[" * 100_000 + "]" * 100_000)
    yield "long-int-json.safetensors", raw_native('{"z_dim": ' + "9" * 5000 + "}")
    # TensorFlow pickles (2D and 3D-StyleGAN): settings from the file
    yield "tf-layers.pkl", tf_pickle(network, {"mapping_layers": 10**9, "resolution": 8})
    yield "tf-type.pkl", tf_pickle(network, {"mapping_layers": "many"})
    functions = ("G_mapping_3d", "G_synthesis_stylegan2_3d_curated_real")
    yield "tf3d-layers.pkl", tf_pickle(network, {"architecture": "orig", "mapping_layers": 10**9}, functions)
    yield "tf3d-type.pkl", tf_pickle(network, {"architecture": "orig", "latent_size": "abc"}, functions)
    # NVIDIA pickles: settings from G_ema's _init_kwargs, and bombs in them
    absurd = {**SMALL, "c_dim": 0, "z_dim": 1 << 17, "w_dim": 1 << 17}
    yield "nvidia-z-dim.pkl", nvidia_pickle(module, absurd)
    yield "nvidia-type.pkl", nvidia_pickle(module, {**SMALL, "c_dim": 0, "mapping_kwargs": [1, 2]})
    yield "nvidia-dag.pkl", nvidia_pickle(module, {**SMALL, "c_dim": 0, "extra": dag(60)})
    yield "nvidia-cycle.pkl", nvidia_pickle(module, {**SMALL, "c_dim": 0, "extra": cycle()})
    # the restricted unpickler
    yield "hash-bomb.pkl", hash_bomb()
    yield "message-bomb.pkl", pickle.dumps({persistent(module, "X", {"x": dag(60)}): 1}, protocol=2)
    yield "dtype-state.pkl", flagged_dtype_array()
    yield "deep.pkl", deep_list(20_000)
    # torch files (rosinality's format), read by torch's weights-only loader after a bounded scan
    yield "hash-bomb.pt", torch_zip(hash_bomb())
    legacy_header = pickle.dumps(TORCH_LEGACY_MAGIC, protocol=2) + pickle.dumps(1001, protocol=2)
    yield "hash-bomb-legacy.pt", legacy_header + hash_bomb()
    yield "deep.pt", torch_zip(nested_lists(20_000))
    yield "bytearray.pt", torch_zip(BYTEARRAY)
    yield "overlapping-view.pkl", pickle.dumps({"G_ema": torch.zeros(1).expand(1 << 20, 1 << 20)}, protocol=2)
    # code: payloads that would create the marker
    for i, (payload, _) in enumerate(malicious(marker)):
        yield f"code-{i}.pkl", pickle.dumps({"G_ema": payload}, protocol=2)
    yield (
        "code-in-module.pkl",
        pickle.dumps(
            {"G_ema": persistent(module, "Generator", {"hook": malicious(marker)[0][0]})}, protocol=3
        ),
    )


def test_hostile_checkpoints_are_checkpoint_errors(
    tmp_path: Path, persistence: types.ModuleType, dnnlib: type
) -> None:
    paths = []
    for name, content in hostile_files(tmp_path, persistence, dnnlib):
        assert len(content) < 300_000, name  # small files all
        (tmp_path / name).write_bytes(content)
        paths.append(tmp_path / name)
    torch.save({"g_ema": Call(os.system, f"touch {tmp_path / 'pwned'}")}, tmp_path / "code.pt")
    assert_refused([*paths, tmp_path / "code.pt"], marker=tmp_path / "pwned")


#: (section, key) of the integer settings that size the network
SIZES = [
    ("", "z_dim"),
    ("", "w_dim"),
    ("", "img_channels"),
    ("mapping_kwargs", "num_layers"),
    ("mapping_kwargs", "layer_features"),
    ("synthesis_kwargs", "channel_max"),
]


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(SIZES), st.integers(1 << 20, 1 << 62)), min_size=6, max_size=6))
def test_absurd_sizes_are_checkpoint_errors(
    tmp_path: Path, settings_: list[tuple[tuple[str, str], int]]
) -> None:
    batch = tmp_path / str(len(list(tmp_path.iterdir())))
    batch.mkdir()
    paths = []
    for i, ((section, key), value) in enumerate(settings_):
        paths.append(batch / f"{i}-{key}.safetensors")
        paths[-1].write_bytes(native(with_setting(section, key, value)))
    assert_refused(paths)


def test_the_memory_cap_leaves_room_for_a_real_generator(tmp_path: Path) -> None:
    """The harness itself: a valid checkpoint loads under the same cap (so the cap is not what fails above)."""
    path = save_generator(RandomStyleGAN2(resolution=16).load(), tmp_path / "g.safetensors")
    assert load_all([path])[str(path)][0] == "loaded"


def test_the_unpickler_counts_its_opcodes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every opcode counts against MAX_OPCODES (here lowered: the real bound takes megabytes to reach)."""
    data = pickle.dumps(list(range(100)), protocol=2)
    assert safe_load(io.BytesIO(data), "ok.pkl") == list(range(100))
    monkeypatch.setattr(limits, "MAX_OPCODES", 50)
    with pytest.raises(CheckpointError, match="more than 50 opcodes"):
        safe_load(io.BytesIO(data), "long.pkl")


def test_shared_data_within_the_bounds_is_read() -> None:
    """Shared references are fine while the expanded tree stays small: a DAG 10 deep is 2**11 nodes."""
    value = {"a": dag(10), "b": dag(3, kind=tuple)}
    assert safe_load(io.BytesIO(pickle.dumps(value, protocol=4)), "dag.pkl") == value


#: pickles each of the scan's bounds refuses (a hash bomb too small for the size bound, a set of such keys, a list
#: holding itself, a storage larger than the file), written opcode by opcode
SCAN_REFUSALS = {
    "key": (hash_bomb(3), "dict key or set item"),
    "set": (
        b"\x80\x02c__builtin__\nset\n" + pickle.dumps([dag(3, kind=tuple)], protocol=2)[2:-1] + b"\x85R.",
        "set",
    ),
    "cycle": (b"\x80\x02]q\x00h\x00a.", "holds itself"),
    "storage": (b"\x80\x02(X\x07\x00\x00\x00storageX\x01\x00\x00\x000J\x00\x00\x00\x40tQ.", "claims a size"),
}


@pytest.mark.parametrize("name", SCAN_REFUSALS)
def test_the_torch_scan_refuses_each_amplification(name: str) -> None:
    data, message = SCAN_REFUSALS[name]
    with pytest.raises(CheckpointError, match=message):
        safe_torch_load(torch_zip(data), error=CheckpointError)


def test_the_torch_scan_counts_opcodes(monkeypatch: pytest.MonkeyPatch) -> None:
    data = torch_zip(pickle.dumps(list(range(100)), protocol=2))
    assert safe_torch_load(data, error=CheckpointError) == list(range(100))
    monkeypatch.setattr(safe_torch, "MAX_OPCODES", 50)
    with pytest.raises(CheckpointError, match="more than 50 opcodes"):
        safe_torch_load(data, error=CheckpointError)
