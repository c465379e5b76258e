"""A restricted unpickler for network pickles: tensors, numpy arrays and plain containers, nothing else.

Unpickled the usual way, NVIDIA's network pickles import and execute Python source embedded in the file
(``torch_utils.persistence``) and TensorFlow pickles import ``dnnlib``. Here every global a pickle may name
maps to a function or class of ours that only rebuilds data, and any other global is refused with
:class:`~brgm.core.errors.UnsafeCheckpointError` before it is called:

==========================================================  ==========================================
global in the file                                          becomes
==========================================================  ==========================================
``torch_utils.persistence._reconstruct_persistent_obj``     :class:`PersistentObject` (class name, state;
                                                            the embedded module source is never run)
``dnnlib.tflib.network.Network``                            :class:`TFNetwork` (its ``__getstate__`` dict)
``dnnlib.util.EasyDict``                                    :class:`EasyDict`, a plain ``dict``
``torch._utils._rebuild_tensor_v2``, ``_rebuild_parameter``  a plain tensor (no autograd state, no hooks)
``torch.storage._load_from_bytes``                          ``torch.load(..., weights_only=True)``
numpy ``dtype``, ``ndarray``, ``_reconstruct``, ``scalar``,  numeric arrays and scalars only
``_frombuffer`` (``numpy.core`` and ``numpy._core``)
``collections.OrderedDict``, ``builtins.set``               themselves
``builtins.bytes``, ``_codecs.encode``                      bytes, as protocol 2 writes them
==========================================================  ==========================================
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, BinaryIO

import attrs
import numpy as np
import torch

from brgm.core.errors import BrgmError, CheckpointError, UnsafeCheckpointError

#: numpy dtype kinds a pickle may use: bool, signed and unsigned integers, floats, complex
NUMERIC_KINDS = "biufc"


@attrs.define(eq=False)
class PersistentObject:
    """An object NVIDIA's ``torch_utils.persistence`` pickled: an ``nn.Module``'s ``__dict__`` (``state``)
    and the name of its class. Children modules sit in ``state["_modules"]`` as further records."""

    class_name: str
    version: int | None
    state: dict[str, Any]


class TFNetwork:
    """A ``dnnlib.tflib.network.Network`` of a TensorFlow pickle: the dict its ``__getstate__`` wrote
    (``version``, ``name``, ``static_kwargs``, ``components``, ``build_func_name``, ``variables``)."""

    state: dict[str, Any]

    def __new__(cls, *args: Any) -> TFNetwork:  # pickle's NEWOBJ calls this, not __init__
        network = super().__new__(cls)
        network.state = {}
        return network

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(f"a TensorFlow network's state must be a dict, got {type(state).__name__}")
        self.state = state

    @property
    def name(self) -> str:
        return str(self.state.get("name", ""))

    @property
    def version(self) -> int:
        return int(self.state.get("version", 0))

    @property
    def static_kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("static_kwargs") or {})

    @property
    def components(self) -> dict[str, Any]:
        return dict(self.state.get("components") or {})

    @property
    def variables(self) -> list[tuple[str, Any]]:
        return list(self.state.get("variables") or [])


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict (the attribute access is not needed)."""


def _persistent_object(meta: Any) -> PersistentObject:
    if not (isinstance(meta, dict) and meta.get("type") == "class" and isinstance(meta.get("state"), dict)):
        raise CheckpointError(
            "a persistent object of the pickle is malformed (expected meta dict with a state)"
        )
    class_name = meta.get("class_name")
    if not isinstance(class_name, str):
        raise CheckpointError("a persistent object of the pickle has no class name")
    version = meta.get("version")
    return PersistentObject(class_name, version if isinstance(version, int) else None, meta["state"])


def _storage_from_bytes(data: Any) -> torch.TypedStorage | torch.UntypedStorage:
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError(f"a tensor storage of the pickle is not bytes but {type(data).__name__}")
    try:
        storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(f"a tensor storage of the pickle was refused by torch: {err}") from err
    except Exception as err:
        raise CheckpointError(f"a tensor storage of the pickle cannot be read: {err}") from err
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise CheckpointError(
            f"a tensor storage of the pickle holds a {type(storage).__name__}, not a storage"
        )
    return storage


def _tensor(
    storage: Any,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise CheckpointError(
            f"a tensor of the pickle is built from a {type(storage).__name__}, not a storage"
        )
    typed = isinstance(storage, torch.TypedStorage)
    dtype = storage.dtype if typed else torch.uint8
    # torch's own rebuild reads _untyped_storage too; .untyped() would warn that TypedStorage is deprecated
    untyped = storage._untyped_storage if typed else storage
    return torch.empty(0, dtype=dtype).set_(untyped, int(storage_offset), tuple(size), tuple(stride))


def _parameter(
    data: Any, requires_grad: bool = False, backward_hooks: Any = None, state: Any = None
) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise CheckpointError(f"a parameter of the pickle wraps a {type(data).__name__}, not a tensor")
    return data


def _dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    if not isinstance(spec, str):
        raise UnsafeCheckpointError(f"the pickle asks for a numpy dtype from {type(spec).__name__} {spec!r}")
    # always a copy: the pickle's BUILD then sets the byte order on it, never on numpy's shared instances
    dtype = np.dtype(spec, align=bool(align), copy=True)
    if dtype.kind not in NUMERIC_KINDS:
        raise UnsafeCheckpointError(f"the pickle holds numpy dtype {spec!r}; only numeric arrays are read")
    return dtype


def _latin1(text: Any, encoding: str) -> bytes:
    # protocol 2 writes bytes as _codecs.encode(text, "latin1")
    if not isinstance(text, str) or encoding != "latin1":
        raise CheckpointError(f"the pickle encodes bytes from {type(text).__name__} with {encoding!r}")
    return text.encode("latin1")


def _empty_bytes() -> bytes:
    # protocol 2 writes b"" as bytes()
    return b""


def _raw(data: Any) -> bytes:
    # encoding="latin1" turns Python 2 byte strings into str; this undoes it
    return data.encode("latin1") if isinstance(data, str) else bytes(data)


def _scalar(dtype: Any, data: Any) -> np.generic:
    if not isinstance(dtype, np.dtype) or dtype.kind not in NUMERIC_KINDS:
        raise UnsafeCheckpointError(
            f"the pickle holds a numpy scalar of dtype {dtype!r}; only numbers are read"
        )
    return np.frombuffer(_raw(data), dtype=dtype, count=1)[0]


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise UnsafeCheckpointError(
            f"the pickle rebuilds an array of class {subtype!r}; only numpy.ndarray is read"
        )
    return np.ndarray.__new__(np.ndarray, (0,), np.uint8)


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    if not isinstance(dtype, np.dtype) or dtype.kind not in NUMERIC_KINDS:
        raise UnsafeCheckpointError(
            f"the pickle holds a numpy array of dtype {dtype!r}; only numbers are read"
        )
    return np.frombuffer(_raw(buffer), dtype=dtype).reshape(shape, order=order).copy()


ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_object,
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("torch._utils", "_rebuild_tensor_v2"): _tensor,
    ("torch._utils", "_rebuild_parameter"): _parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "bytes"): _empty_bytes,
    ("_codecs", "encode"): _latin1,
    **{
        (f"{numpy}.{module}", name): function
        for numpy in ("numpy.core", "numpy._core")
        for module, name, function in (
            ("multiarray", "scalar", _scalar),
            ("multiarray", "_reconstruct", _reconstruct),
            ("numeric", "_frombuffer", _frombuffer),
        )
    },
    ("numpy", "dtype"): _dtype,
    ("numpy", "ndarray"): np.ndarray,
}

#: the integer a legacy (non-zip) ``torch.save`` file starts with
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class SafeUnpickler(pickle.Unpickler):
    """Reconstructs only what :data:`ALLOWED_GLOBALS` lists; anything else is an UnsafeCheckpointError."""

    def __init__(self, file: BinaryIO, source: str) -> None:
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # Python 2's name, as pickle's own find_class maps it
            module = "builtins"
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"{self.source}: refusing to load the global '{module}.{name}'; brgm reads only tensors, numeric "
                "arrays and plain containers from pickles and never runs code from a checkpoint"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(
            f"{self.source}: refusing the persistent id {pid!r}; network pickles do not use persistent ids"
        )


def safe_load(file: BinaryIO, source: str) -> Any:
    """Unpickle the first object of ``file`` with :class:`SafeUnpickler`; ``source`` names the file in errors.

    Raises :class:`UnsafeCheckpointError` for any global outside :data:`ALLOWED_GLOBALS` and
    :class:`CheckpointError` for a truncated or corrupted stream."""
    try:
        return SafeUnpickler(file, source).load()
    except BrgmError as err:
        if source in str(err):
            raise
        raise type(err)(f"{source}: {err}") from err
    except (pickle.UnpicklingError, EOFError, struct.error) as err:
        raise CheckpointError(
            f"{source}: the pickle is truncated or corrupted ({err or type(err).__name__})"
        ) from err
    except (
        AttributeError,
        IndexError,
        KeyError,
        TypeError,
        ValueError,
        ArithmeticError,
        RuntimeError,
        MemoryError,
    ) as err:
        raise CheckpointError(f"{source}: the pickle is corrupted ({type(err).__name__}: {err})") from err
