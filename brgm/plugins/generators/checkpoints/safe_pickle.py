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
``torch.storage._load_from_bytes``                          :func:`~brgm.core.safe_torch.safe_torch_load`
numpy ``dtype``                                              :class:`NumpyDtype`: a name of
                                                            :data:`NUMPY_DTYPES` and a byte order; numpy
                                                            never rebuilds a dtype from pickled state
numpy ``ndarray``, ``_reconstruct``, ``scalar``,             numeric arrays and scalars only
``_frombuffer`` (``numpy.core`` and ``numpy._core``)
``collections.OrderedDict``, ``builtins.set``               empty ones (filled by the pickle's opcodes)
``builtins.bytes``, ``_codecs.encode``                      bytes, as protocol 2 writes them
==========================================================  ==========================================

The unpickler is Python's own (``pickle._Unpickler``) with each opcode counted and checked, so the work a pickle
asks for is bounded (:mod:`.limits`): the number of opcodes, the size and depth of the result expanded as a tree,
and dict keys and set items of plain scalar types (no hash bombs). BUILD sets state only on the TF networks,
numpy arrays and dtypes above. Error messages name values by :func:`~.limits.brief` texts, never whole objects.
"""

from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, BinaryIO

import attrs
import numpy as np
import torch

from brgm.core.errors import BrgmError, CheckpointError, UnsafeCheckpointError
from brgm.core.safe_torch import safe_torch_load
from brgm.plugins.generators.checkpoints import limits
from brgm.plugins.generators.checkpoints.limits import brief, brief_error

#: numpy dtypes a pickle may name (numpy's codes, as ``dtype.__reduce__`` writes them): bool, integers, floats,
#: complex
NUMPY_DTYPES = frozenset(
    {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"}
)
BYTE_ORDERS = frozenset("<>|=")
#: dict keys and set items a pickle may use: hashing them costs no more than reading them
SCALAR_KEYS = (str, bytes, int, float, bool, type(None))


@attrs.define(eq=False)
class PersistentObject:
    """An object NVIDIA's ``torch_utils.persistence`` pickled: an ``nn.Module``'s ``__dict__`` (``state``)
    and the name of its class. Children modules sit in ``state["_modules"]`` as further records."""

    class_name: str
    version: int | None
    state: dict[str, Any] = attrs.field(repr=False)


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
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict (the attribute access is not needed), filled only by
    the pickle's opcodes (calling it with items would hash them unchecked)."""

    def __init__(self) -> None:
        super().__init__()


class NumpyDtype:
    """A numpy dtype as a pickle writes it: ``numpy.dtype(name)``, then BUILD with a state tuple whose second
    item is the byte order. Only the name (one of :data:`NUMPY_DTYPES`) and the byte order are read."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.order = "="

    def __setstate__(self, state: Any) -> None:
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else None
        if not (isinstance(order, str) and order in BYTE_ORDERS):
            raise CheckpointError(f"the pickle gives numpy dtype {self.name} the byte order {brief(order)}")
        self.order = order

    def resolve(self) -> np.dtype:
        return np.dtype(self.name).newbyteorder(self.order)


class NdarrayClass:
    """``numpy.ndarray`` as a pickle names it: only ``_reconstruct``'s first argument (never called)."""


def _numeric(dtype: Any) -> np.dtype:
    if not isinstance(dtype, NumpyDtype):
        raise UnsafeCheckpointError(
            f"the pickle gives a numpy array the dtype {brief(dtype)}; only numbers are read"
        )
    return dtype.resolve()


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
        storage = safe_torch_load(
            bytes(data),
            error=CheckpointError,
            unsafe=UnsafeCheckpointError,
            source="a tensor storage of the pickle",
        )
    except CheckpointError:
        raise
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"a tensor storage of the pickle was refused by torch: {brief_error(err)}"
        ) from err
    except Exception as err:
        raise CheckpointError(f"a tensor storage of the pickle cannot be read: {brief_error(err)}") from err
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
    tensor = torch.empty(0, dtype=dtype).set_(untyped, int(storage_offset), tuple(size), tuple(stride))
    if tensor.numel() * dtype.itemsize > untyped.nbytes():  # a view repeating its storage (stride 0)
        raise CheckpointError(
            f"a tensor of the pickle has {tensor.numel()} numbers in a storage of {untyped.nbytes()} bytes"
        )
    return tensor


def _parameter(
    data: Any, requires_grad: bool = False, backward_hooks: Any = None, state: Any = None
) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise CheckpointError(f"a parameter of the pickle wraps a {type(data).__name__}, not a tensor")
    return data


def _dtype(spec: Any, align: bool = False, copy: bool = False) -> NumpyDtype:
    if not (isinstance(spec, str) and spec in NUMPY_DTYPES):
        raise UnsafeCheckpointError(
            f"the pickle holds numpy dtype {brief(spec)}; only numeric arrays are read "
            f"({', '.join(sorted(NUMPY_DTYPES))})"
        )
    return NumpyDtype(spec)


def _latin1(text: Any, encoding: str) -> bytes:
    # protocol 2 writes bytes as _codecs.encode(text, "latin1")
    if not isinstance(text, str) or encoding != "latin1":
        raise CheckpointError(f"the pickle encodes bytes from {type(text).__name__} with {brief(encoding)}")
    return text.encode("latin1")


def _empty_bytes() -> bytes:
    # protocol 2 writes b"" as bytes()
    return b""


def _raw(data: Any) -> bytes:
    # encoding="latin1" turns Python 2 byte strings into str; this undoes it
    if isinstance(data, str):
        return data.encode("latin1")
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError(f"the pickle gives numpy data as a {type(data).__name__}, not bytes")
    return bytes(data)


def _scalar(dtype: Any, data: Any) -> np.generic:
    return np.frombuffer(_raw(data), dtype=_numeric(dtype), count=1)[0]


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    if subtype is not NdarrayClass:
        raise UnsafeCheckpointError(
            f"the pickle rebuilds an array of class {brief(subtype)}; only numpy.ndarray is read"
        )
    return np.ndarray.__new__(np.ndarray, (0,), np.uint8)


def _array_state(state: Any) -> tuple[Any, ...]:
    """The state of a pickled ``ndarray`` with its dtype resolved and its data as bytes."""
    if not (isinstance(state, tuple) and len(state) == 5):
        raise CheckpointError("a numpy array of the pickle has a malformed state")
    version, shape, dtype, fortran, data = state
    return version, shape, _numeric(dtype), bool(fortran), _raw(data)


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    return np.frombuffer(_raw(buffer), dtype=_numeric(dtype)).reshape(shape, order=order).copy()


def _check_keys(keys: Any) -> None:
    """A CheckpointError unless every key is a plain scalar or a short tuple of them."""
    for key in keys:
        if type(key) in SCALAR_KEYS or (
            type(key) is tuple
            and len(key) <= limits.MAX_KEY_ITEMS
            and all(type(k) in SCALAR_KEYS for k in key)
        ):
            continue
        raise CheckpointError(
            f"a dict key or set item of the pickle is a {type(key).__name__}; brgm reads str, bytes, numbers, "
            f"None and tuples of up to {limits.MAX_KEY_ITEMS} of those"
        )


def _set(items: Any = ()) -> set[Any]:
    items = list(items) if isinstance(items, (list, tuple)) else [items]
    _check_keys(items)
    return set(items)


def _ordered_dict() -> OrderedDict[Any, Any]:
    return OrderedDict()


ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_object,
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("torch._utils", "_rebuild_tensor_v2"): _tensor,
    ("torch._utils", "_rebuild_parameter"): _parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("collections", "OrderedDict"): _ordered_dict,
    ("builtins", "set"): _set,
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
    ("numpy", "ndarray"): NdarrayClass,
}

#: the integer a legacy (non-zip) ``torch.save`` file starts with
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class SafeUnpickler(pickle._Unpickler):
    """Reconstructs only what :data:`ALLOWED_GLOBALS` lists (anything else is an UnsafeCheckpointError), within
    the bounds of :mod:`.limits`: every opcode is counted, keys are checked before they are hashed."""

    dispatch: dict[int, Callable[[SafeUnpickler], None]]

    def __init__(self, file: BinaryIO, source: str) -> None:
        super().__init__(file, encoding="latin1")
        self.source = source
        self.opcodes = 0

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # Python 2's name, as pickle's own find_class maps it
            module = "builtins"
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"{self.source}: refusing to load the global '{brief(module, 80)}.{brief(name, 80)}'; brgm reads "
                "only tensors, numeric arrays and plain containers from pickles and never runs code from a checkpoint"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(
            f"{self.source}: refusing the persistent id {brief(pid)!r}; network pickles do not use persistent ids"
        )

    def load_setitem(self) -> None:
        _check_keys(self.stack[-2:-1])
        super().load_setitem()

    def load_setitems(self) -> None:  # the items since the last MARK: key, value, key, value, ...
        _check_keys(self.stack[::2])
        super().load_setitems()

    def load_dict(self) -> None:
        _check_keys(self.stack[::2])
        super().load_dict()

    def load_additems(self) -> None:
        _check_keys(self.stack)
        super().load_additems()

    def load_frozenset(self) -> None:
        _check_keys(self.stack)
        super().load_frozenset()

    def load_build(self) -> None:
        inst = self.stack[-2]
        if isinstance(inst, np.ndarray):
            self.stack[-1] = _array_state(self.stack[-1])
        elif not isinstance(inst, (TFNetwork, NumpyDtype)):
            raise UnsafeCheckpointError(f"the pickle sets the state of a {type(inst).__name__}")
        super().load_build()


def _counted(load: Callable[[SafeUnpickler], None]) -> Callable[[SafeUnpickler], None]:
    def run(self: SafeUnpickler) -> None:
        self.opcodes += 1
        if self.opcodes > limits.MAX_OPCODES:
            raise CheckpointError(f"the pickle has more than {limits.MAX_OPCODES} opcodes")
        load(self)

    return run


SafeUnpickler.dispatch = {
    code: _counted(getattr(SafeUnpickler, load.__name__)) for code, load in pickle._Unpickler.dispatch.items()
}


def _children(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj)
    if isinstance(obj, PersistentObject):
        return [obj.state]
    if isinstance(obj, TFNetwork):
        return [obj.state]
    return []


def check_tree(root: Any) -> None:
    """A CheckpointError when ``root``, expanded as a tree (shared references counted each time), has more than
    :data:`~.limits.MAX_NODES` nodes, is nested more than :data:`~.limits.MAX_DEPTH` deep, or has a cycle.

    Linear in the number of distinct objects and references: an iterative depth-first walk, each object once."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_: set[int] = set()
    todo: list[tuple[Any, bool]] = [(root, False)]
    while todo:
        obj, finished = todo.pop()
        key = id(obj)
        if finished:
            open_.discard(key)
            children = _children(obj)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max(depth[id(c)] for c in children)
            if size[key] > limits.MAX_NODES or depth[key] > limits.MAX_DEPTH:
                raise CheckpointError(
                    f"the pickle's data is too large or too deep (more than {limits.MAX_NODES} values or "
                    f"{limits.MAX_DEPTH} levels, counting shared references each time)"
                )
        elif key in open_:
            raise CheckpointError("the pickle's data refers to itself (a cycle)")
        elif key not in size:
            children = _children(obj)
            if children:
                open_.add(key)
                todo.append((obj, True))
                todo.extend((c, False) for c in children)
            else:
                size[key], depth[key] = 1, 0


def safe_load(file: BinaryIO, source: str) -> Any:
    """Unpickle the first object of ``file`` with :class:`SafeUnpickler`; ``source`` names the file in errors.

    Raises :class:`UnsafeCheckpointError` for any global outside :data:`ALLOWED_GLOBALS` and
    :class:`CheckpointError` for a truncated, corrupted or oversized stream (:mod:`.limits`)."""
    try:
        obj = SafeUnpickler(file, source).load()
        check_tree(obj)
        return obj
    except BrgmError as err:
        if source in str(err):
            raise
        raise type(err)(f"{source}: {err}") from err
    except (
        pickle.UnpicklingError,
        EOFError,
        struct.error,
        AttributeError,
        IndexError,
        KeyError,
        TypeError,
        ValueError,
        ArithmeticError,
        RuntimeError,
        MemoryError,
        SystemError,
    ) as err:
        raise CheckpointError(
            f"{source}: the pickle is truncated or corrupted ({type(err).__name__}: {brief_error(err)})"
        ) from err
