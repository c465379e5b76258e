"""``torch.load(weights_only=True)`` of untrusted files, bounded.

torch's weights-only unpickler refuses code but not work: a dict key of nested shared tuples (a hash bomb of
about a kilobyte) keeps it busy for minutes, and ``bytearray(n)`` or a storage type called with a size allocates
what the file asks for. :func:`safe_torch_load` therefore first scans the file's pickles opcode by opcode
(``pickletools.genops``; nothing is run or built but a record per container) and loads only a file that passes:

* a zip (``torch.save``'s format) has at most :data:`MAX_ZIP_MEMBERS` members whose declared sizes add up to at
  most the file's size; every ``*/data.pkl`` in it is scanned. A legacy file's five leading pickles are scanned.
* at most :data:`MAX_OPCODES` opcodes, all of them ones torch's weights-only unpickler reads.
* the data, expanded as a tree (shared references counted each time), has at most :data:`MAX_NODES` values and
  is nested at most :data:`MAX_DEPTH` deep; a container is filled before it is put into another (so there are
  no cycles and the counts are exact).
* dict keys, set items and the parts of persistent ids are plain scalars (str, bytes, int, float, bool, None),
  names, or tuples of at most :data:`MAX_KEY_ITEMS` of those, so hashing one costs no more than reading it; the
  integers of a persistent id (storage sizes, offsets) are at most the file's size.
* the globals are those ``torch.save`` writes for tensors and plain containers (:data:`CALLS`, which the file may
  call, and :data:`NAMES`, storage types and dtypes it may only name) and the caller's ``safe_globals`` (created
  empty, then given their state).

After loading, every tensor must fit in its storage (no stride-0 view of a few bytes that becomes gigabytes when
copied). The bounds are shared with brgm's restricted unpickler for network pickles.
"""

from __future__ import annotations

import io
import math
import os
import pickletools
import zipfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from collections.abc import Iterator, Sequence
from typing import IO, Any

import torch

MAX_OPCODES = 2_000_000
MAX_NODES = 1_000_000
MAX_DEPTH = 100
MAX_KEY_ITEMS = 8
MAX_ZIP_MEMBERS = 100_000
#: the pickles at the start of a legacy (non-zip) torch file: magic number, protocol, system info, data, storage
#: keys
LEGACY_PICKLES = 5
ZIP_MAGIC = b"PK\x03\x04"

#: functions a torch file may call (what ``torch.save`` writes for tensors, parameters and plain containers)
CALLS = frozenset(
    {
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "collections.OrderedDict",
        "builtins.set",
        "torch.Size",
        "torch.device",
        "_codecs.encode",
    }
)
#: globals a torch file may only name, never call: storage types (in persistent ids) and dtypes
NAMES = frozenset(
    {"torch.storage.UntypedStorage", "torch.storage.TypedStorage"}
    | {
        f"torch.{name}"
        for name, value in vars(torch).items()
        if name.endswith("Storage") or isinstance(value, torch.dtype)
    }
)
SCALARS = (str, bytes, int, float, bool, type(None))
#: opcodes that push their argument
PUSH_ARG = frozenset({"BININT", "BININT1", "BININT2", "BINFLOAT", "BINUNICODE", "SHORT_BINSTRING", "LONG1"})
CONSTANTS = {"NONE": None, "NEWFALSE": False, "NEWTRUE": True}
EMPTY = {"EMPTY_LIST": "list", "EMPTY_DICT": "dict", "EMPTY_SET": "set", "EMPTY_TUPLE": "tuple"}
#: opcodes that put values into the one below them, and the kinds they may fill
FILLS = {
    "APPEND": ("list",),
    "APPENDS": ("list",),
    "SETITEM": ("dict", "object"),
    "SETITEMS": ("dict", "object"),
    "BUILD": ("object",),
}


class _Refused(Exception):
    """Why the scan refused the file (becomes the caller's ``error``)."""


class _Unsafe(_Refused):
    """A global the file may not use (becomes the caller's ``unsafe``)."""


class _Node:
    """What the scan knows of a non-scalar value: its kind, expanded size and depth, the items of a short tuple,
    the name of a global, whether a list holds only keys, and whether it was put into another value."""

    __slots__ = ("depth", "items", "keys_only", "kind", "name", "placed", "size")

    def __init__(self, kind: str, items: list[Any] | None = None, name: str = "") -> None:
        self.kind, self.name = kind, name
        self.size, self.depth, self.placed, self.keys_only = 1, 0, False, True
        self.items = items if items is not None and len(items) <= MAX_KEY_ITEMS else None
        for item in items or ():
            self.add(item)

    def add(self, item: Any) -> None:
        """Count ``item`` as a child (it may no longer change)."""
        if item is self:
            raise _Refused("a container of the pickle holds itself")
        if isinstance(item, _Node):
            item.placed = True
            self.size += item.size
            self.depth = max(self.depth, item.depth + 1)
        else:
            self.size += 1
            self.depth = max(self.depth, 1)
        self.keys_only = self.keys_only and _is_key(item)
        if self.size > MAX_NODES or self.depth > MAX_DEPTH:
            raise _Refused(
                f"the pickle's data is too large or too deep (more than {MAX_NODES} values or {MAX_DEPTH} levels, "
                "counting shared references each time)"
            )


def _cut(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[:width] + "…"


def _global_name(module: str, name: str) -> str:
    """``module.name`` with Python 2's names mapped to Python 3's, as pickle and torch map them."""
    if (module, name) in NAME_MAPPING:
        module, name = NAME_MAPPING[(module, name)]
    return f"{IMPORT_MAPPING.get(module, module)}.{name}"


def _is_name_or_scalar(item: Any) -> bool:
    return type(item) in SCALARS or (isinstance(item, _Node) and item.kind == "global")


def _is_key(item: Any) -> bool:
    """Whether hashing ``item`` costs no more than reading it: a scalar, a name or a short tuple of those."""
    if _is_name_or_scalar(item):
        return True
    return (
        isinstance(item, _Node)
        and item.kind == "tuple"
        and item.items is not None
        and all(map(_is_name_or_scalar, item.items))
    )


def _check_keys(keys: Sequence[Any]) -> None:
    if not all(map(_is_key, keys)):
        raise _Refused(
            f"a dict key or set item of the pickle is not a str, bytes, number, None or tuple of up to "
            f"{MAX_KEY_ITEMS} of those"
        )


def _check_pid(pid: Any, limit: int) -> None:
    """A persistent id (torch's reference to a storage) is an int or a short tuple of keys, its ints in range."""
    parts = (
        [pid] if type(pid) is int else pid.items if isinstance(pid, _Node) and pid.kind == "tuple" else None
    )
    if parts is None or not all(map(_is_key, parts)):
        raise _Refused("a persistent id of the pickle is not a short tuple of plain values")
    flat = [p for part in parts for p in (part.items or () if isinstance(part, _Node) else (part,))]
    if any(type(p) is int and not 0 <= p <= limit for p in flat):
        raise _Refused(f"a storage of the pickle claims a size or offset over the file's {limit} bytes")


def _call(func: Any, args: Any, calls: frozenset[str]) -> _Node:
    """The result of REDUCE (``calls``) or NEWOBJ (the caller's classes, no arguments)."""
    if not (isinstance(func, _Node) and func.kind == "global" and func.name in calls):
        name = func.name if isinstance(func, _Node) else type(func).__name__
        raise _Refused(f"the pickle calls {_cut(name)}, which a torch weights file does not call")
    if not (isinstance(args, _Node) and args.kind == "tuple"):
        raise _Refused(f"the pickle calls {func.name} without an argument tuple")
    empty = args.items == []
    if func.name == "collections.OrderedDict" and not empty:
        raise _Refused("the pickle builds an OrderedDict from arguments")
    if func.name == "builtins.set" and not (
        empty
        or (
            args.items
            and len(args.items) == 1
            and isinstance(args.items[0], _Node)
            and args.items[0].keys_only
        )
    ):
        raise _Refused("the pickle builds a set from values that are not plain keys")
    if func.name not in CALLS and not empty:
        raise _Refused(f"the pickle creates a {_cut(func.name)} with arguments")
    return _Node("object", [args])


def _target(stack: list[Any], kinds: tuple[str, ...]) -> _Node:
    """The value on top of ``stack``, checked to be of ``kinds`` and not yet put into another value."""
    target = stack[-1]
    if not (isinstance(target, _Node) and target.kind in kinds) or target.placed:
        raise _Refused(f"the pickle fills a {getattr(target, 'kind', type(target).__name__)} it may not fill")
    return target


def scan_pickle(file: IO[bytes], budget: list[int], limit: int, classes: frozenset[str]) -> None:
    """Scan one pickle of ``file`` up to its STOP (see the module docstring); ``budget`` holds the opcodes left,
    ``limit`` the file's size, ``classes`` the names of the caller's safe globals."""
    stack: list[Any] = []
    marks: list[list[Any]] = []
    memo: dict[int, Any] = {}
    for opcode, arg, _ in pickletools.genops(file):
        budget[0] -= 1
        if budget[0] < 0:
            raise _Refused(f"the pickles have more than {MAX_OPCODES} opcodes")
        name = opcode.name
        if name in PUSH_ARG:
            stack.append(arg)
        elif name in CONSTANTS:
            stack.append(CONSTANTS[name])
        elif name in EMPTY:
            stack.append(_Node(EMPTY[name], [] if name == "EMPTY_TUPLE" else None))
        elif name in ("BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET"):
            stack.append(memo[arg])
        elif name == "GLOBAL":
            full = _global_name(*arg.split(" ", 1))
            if full not in CALLS | NAMES | classes:
                raise _Unsafe(
                    f"the pickle names the global {_cut(full)}, which torch weights files do not use"
                )
            stack.append(_Node("global", name=full))
        elif name == "MARK":
            marks.append(stack)
            stack = []
        elif name == "TUPLE":
            items, stack = stack, marks.pop()
            stack.append(_Node("tuple", items))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            if len(stack) < n:
                raise _Refused("the pickle's stack runs empty")
            stack[-n:] = [_Node("tuple", stack[-n:])]
        elif name in FILLS:
            if name in ("APPENDS", "SETITEMS"):
                items, stack = stack, marks.pop()
            else:
                items = stack[-2:] if name == "SETITEM" else stack[-1:]
                del stack[-len(items) :]
            target = _target(stack, FILLS[name])
            if name in ("SETITEM", "SETITEMS"):
                _check_keys(items[::2])
            for item in items:
                target.add(item)
        elif name == "REDUCE":
            args = stack.pop()
            stack[-1] = _call(stack[-1], args, CALLS)
        elif name == "NEWOBJ":
            args, cls = stack.pop(), stack.pop()
            stack.append(_call(cls, args, classes))
        elif name == "BINPERSID":
            _check_pid(stack[-1], limit)
            stack[-1] = _Node("object")
        elif name == "STOP":
            return
        elif name != "PROTO":
            raise _Refused(f"the pickle uses opcode {name}, which torch's weights-only loader does not read")
    raise _Refused("the pickle ends before its STOP")


def _data_pickles(file: IO[bytes], size: int) -> Iterator[tuple[IO[bytes], int]]:
    """Each pickle torch will read from ``file`` and how many to read from it."""
    if file.read(4) != ZIP_MAGIC:
        file.seek(0)
        yield file, LEGACY_PICKLES
        return
    file.seek(0)
    with zipfile.ZipFile(file) as archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_MEMBERS or sum(m.file_size for m in members) > size:
            raise _Refused(
                f"the zip has {len(members)} members of {sum(m.file_size for m in members)} bytes in all, "
                f"more than {MAX_ZIP_MEMBERS} or more than its own {size} bytes"
            )
        pickles = [m for m in members if m.filename == "data.pkl" or m.filename.endswith("/data.pkl")]
        if not pickles:
            raise _Refused("the zip holds no data.pkl; not a torch file")
        for member in pickles:
            with archive.open(member) as stream:
                yield stream, 1


def scan(file: IO[bytes], classes: frozenset[str] = frozenset()) -> None:
    """Refuse ``file`` (a seekable torch file) unless every pickle torch will read from it is within the bounds
    of the module docstring; ``classes`` names the globals the caller allows besides :data:`CALLS` and
    :data:`NAMES`."""
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    budget = [MAX_OPCODES]
    try:
        for stream, count in _data_pickles(file, size):
            for _ in range(count):
                scan_pickle(stream, budget, size, classes)
    except (ValueError, IndexError, KeyError, NotImplementedError, RuntimeError, zipfile.BadZipFile) as err:
        # genops's errors, a short stack or missing memo entry, a zip of a kind Python does not read
        raise _Refused(
            f"the pickle is truncated or corrupted ({_cut(type(err).__name__ + ': ' + str(err))})"
        ) from err


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """The tensors in ``obj``'s dicts, lists, tuples and sets (each container once)."""
    seen: set[int] = set()
    todo = [obj]
    while todo:
        item = todo.pop()
        if isinstance(item, torch.Tensor):
            yield item
        elif isinstance(item, (dict, list, tuple, set)) and id(item) not in seen:
            seen.add(id(item))
            todo.extend(item.values() if isinstance(item, dict) else item)


def safe_torch_load(
    file: str | os.PathLike[str] | bytes,
    *,
    error: type[Exception],
    unsafe: type[Exception] | None = None,
    source: str = "",
    safe_globals: Sequence[type] = (),
) -> Any:
    """``torch.load(file, map_location="cpu", weights_only=True)`` once :func:`scan` passes the file and with
    ``safe_globals`` allowed. A file over a bound of the module docstring is an ``error``, one naming a global it
    may not use an ``unsafe`` (by default ``error``); ``source`` starts their messages. torch's own exceptions
    pass through."""
    prefix = f"{source}: " if source else ""
    classes = frozenset(f"{cls.__module__}.{cls.__qualname__}" for cls in safe_globals)
    with io.BytesIO(file) if isinstance(file, bytes) else open(file, "rb") as f:
        try:
            scan(f, classes)
        except _Refused as err:
            raise (unsafe or error if isinstance(err, _Unsafe) else error)(prefix + str(err)) from None
        f.seek(0)
        with torch.serialization.safe_globals(list(safe_globals)):
            obj = torch.load(f, map_location="cpu", weights_only=True)
    for tensor in _tensors(obj):
        storage = tensor.untyped_storage().nbytes()
        if math.prod(tensor.shape) * tensor.element_size() > storage:
            raise error(
                f"{prefix}a tensor of {list(tensor.shape)} numbers is a view of a storage of {storage} bytes"
            )
    return obj
