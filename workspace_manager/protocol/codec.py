"""One msgpack API for both sides: the C `msgpack` when the interpreter has it, else `purepack`.

The loader runs in interpreters we do not control; most have no msgpack. Both backends encode
to identical bytes (tests check it), so a manager on C msgpack and a loader on the pure codec
understand each other. `WSM_PURE_MSGPACK=1` forces the pure backend (for tests).
Decoding is strict on both: any malformed input raises `DecodeError`.
"""

from __future__ import annotations

import itertools
import os

from . import purepack

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DecodeError", "packb", "packb_in_slices", "unpackb", "unpackb_in_slices"]

#: Bytes of input the C decoder takes per step in `unpackb_in_slices`.
SLICE_BYTES = 64 * 1024


class DecodeError(ValueError):
    """The bytes are not exactly one valid msgpack object of the kinds the protocol uses."""


def _load_c_msgpack() -> Any:
    if os.environ.get("WSM_PURE_MSGPACK", "") not in ("", "0"):
        return None
    try:
        import msgpack
    except ImportError:
        return None
    if getattr(msgpack, "version", (0,)) < (1, 0):
        return None
    return msgpack


#: C msgpack is imported at the first payload of at least LAZY_BYTES, or at the call after
#: LAZY_CALLS: a command line call (`wsm status`: a hello and one call, a few hundred bytes)
#: never pays its import (msgpack with datetime, ~5 ms of a 50 ms command), while a
#: long-lived process or a large payload gets the C speed (10-20x purepack's on large
#: payloads; on a tiny one purepack encodes as fast). Both encode identical bytes.
LAZY_BYTES = 16 * 1024
LAZY_CALLS = 64

_msgpack: Any = None
_c_state = 0  # 0: not tried yet, 1: C msgpack loaded, -1: not available (or forced pure)
_calls = 0


def _use_c() -> bool:
    """Import C msgpack now (once); whether it is there."""
    global _msgpack, _c_state
    if _c_state == 0:
        _msgpack = _load_c_msgpack()
        _c_state = 1 if _msgpack is not None else -1
    return _c_state > 0


def preload() -> bool:
    """Import C msgpack now, in a process that forks others (loader/forkserver.py): its pages
    are then shared by every child, where a child importing it itself would own its copy.
    Returns whether C msgpack is there."""
    return _use_c()


def _still_lazy(size: int) -> bool:
    """Counts a call; True while this call of `size` bytes (0: unknown) may skip C msgpack."""
    global _calls
    _calls += 1
    return size < LAZY_BYTES and _calls <= LAZY_CALLS


def __getattr__(name: str) -> Any:
    # PEP 562: BACKEND ("msgpack" or "pure") is worked out when asked, which imports msgpack
    if name == "BACKEND":
        return "msgpack" if _use_c() else "pure"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Byte sequences that can start a msgpack timestamp (extension type -1): C msgpack decodes
# those to Timestamp without calling ext_hook, so payloads containing them go to purepack,
# which rejects every extension type. A false positive (the bytes inside a str) only costs speed.
_TIMESTAMP_HEADS = (
    b"\xd6\xff",
    b"\xd7\xff",
    b"\xc7\x0c\xff",
    b"\xc8\x00\x0c\xff",
    b"\xc9\x00\x00\x00\x0c\xff",
)


def _reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"extension type {code} is not supported")


def _pure_unpackb(data: Any) -> Any:
    try:
        return purepack.unpackb(data)
    except purepack.PurepackError as exc:
        raise DecodeError(str(exc)) from None


def packb(obj: Any) -> bytes:
    """Encode `obj` (TypeError for unsupported types, OverflowError for huge ints)."""
    if _c_state > 0:
        return _msgpack.packb(obj, use_bin_type=True)
    if _c_state == 0:
        if not _still_lazy(0) and _use_c():
            return _msgpack.packb(obj, use_bin_type=True)
        data = purepack.packb(obj)
        if len(data) >= LAZY_BYTES:
            _use_c()  # the next large payload is encoded in C
        return data
    return purepack.packb(obj)


def unpackb(data: Any) -> Any:
    """Decode exactly one object; DecodeError on anything malformed."""
    if _c_state == 0 and _still_lazy(len(data)):
        return _pure_unpackb(data)
    if _c_state > 0 or _use_c():
        return _c_unpackb(data)
    return _pure_unpackb(data)


def unpackb_in_slices(data: Any) -> Any:
    """`unpackb`, but C msgpack takes `SLICE_BYTES` at a time (see `_c_unpackb_in_slices`);
    pure Python lets other threads run as it goes."""
    if _c_state > 0 or _use_c():
        return _c_unpackb_in_slices(data)
    return _pure_unpackb(data)


def packb_in_slices(obj: Any) -> bytes:
    """`packb`, but large lists and dicts are encoded `SLICE_ITEMS` items per C call, so a
    worker thread encoding a large answer lets the interpreter switch threads between them
    (C msgpack holds the GIL for a whole `packb`). The same bytes as `packb`."""
    if _c_state > 0 or _use_c():
        out = bytearray()
        _pack_sliced(obj, out)
        return bytes(out)
    return purepack.packb(obj)


# ---- the C backend (used only once `_use_c()` is true)


def _c_unpackb(data: Any) -> Any:
    if type(data) is not bytes and type(data) is not bytearray:
        data = bytes(data)
    if b"\xff" in data:
        for head in _TIMESTAMP_HEADS:
            if head in data:
                return _pure_unpackb(data)
    try:
        return _msgpack.unpackb(
            data, raw=False, strict_map_key=False, use_list=True, ext_hook=_reject_ext
        )
    except DecodeError:
        raise
    except Exception as exc:  # FormatError, ExtraData, StackError, TypeError, UnicodeError...
        raise DecodeError(str(exc) or type(exc).__name__) from None


def _c_unpackb_in_slices(data: Any) -> Any:
    """`unpackb`, but fed to C msgpack's resumable Unpacker `SLICE_BYTES` at a time.

    C msgpack holds the GIL for a whole `unpackb` call (34 s for 60 MiB of small maps),
    so a worker thread decoding a large frame would stall every other thread. Between
    slices this function runs Python code again, so the interpreter can switch threads.
    """
    if type(data) is not bytes and type(data) is not bytearray:
        data = bytes(data)
    maybe_timestamp = b"\xff" in data and any(head in data for head in _TIMESTAMP_HEADS)
    unpacker = _msgpack.Unpacker(
        raw=False,
        strict_map_key=False,
        use_list=True,
        ext_hook=_reject_ext,
        max_buffer_size=max(len(data), 1),
    )
    view = memoryview(data)
    found: list = []
    try:
        for start in range(0, len(data), SLICE_BYTES):
            unpacker.feed(view[start : start + SLICE_BYTES])
            found.extend(unpacker)
            if len(found) > 1:
                raise DecodeError("extra data after the object")
    except DecodeError:
        raise
    except Exception as exc:  # FormatError, StackError, TypeError, UnicodeError...
        raise DecodeError(str(exc) or type(exc).__name__) from None
    if len(found) != 1 or unpacker.tell() != len(data):
        raise DecodeError("truncated data" if not found else "extra data after the object")
    if maybe_timestamp:  # C msgpack decodes those without ext_hook: refuse them here
        _refuse_timestamps(found[0])
    return found[0]


#: Container items the C encoder takes per step in `packb_in_slices`.
SLICE_ITEMS = 4096


def _pack_sliced(obj: Any, out: bytearray) -> None:
    kind = type(obj)
    if (kind is not list and kind is not dict) or len(obj) <= SLICE_ITEMS:
        out += _msgpack.packb(obj, use_bin_type=True)
        return
    n = len(obj)
    # the container's own header, as packb writes it (array16/32 or map16/32)
    if kind is list:
        out += b"\xdc" + n.to_bytes(2, "big") if n < 0x10000 else b"\xdd" + n.to_bytes(4, "big")
        items: Any = obj
    else:
        out += b"\xde" + n.to_bytes(2, "big") if n < 0x10000 else b"\xdf" + n.to_bytes(4, "big")
        items = list(obj.items())
    for start in range(0, n, SLICE_ITEMS):
        chunk = items[start : start + SLICE_ITEMS]
        if any(
            (type(x) is list or type(x) is dict) and len(x) > SLICE_ITEMS
            for pair in (chunk if kind is dict else ((x,) for x in chunk))
            for x in pair
        ):
            for item in chunk:
                for x in item if kind is dict else (item,):
                    _pack_sliced(x, out)
            continue
        # a slice encoded as a container of its own, without that container's header
        if kind is list:
            body = _msgpack.packb(chunk, use_bin_type=True)
        else:
            body = _msgpack.packb(dict(chunk), use_bin_type=True)
        m = len(chunk)
        out += memoryview(body)[1 if m < 16 else 3 if m < 0x10000 else 5 :]


def _refuse_timestamps(obj: Any) -> None:
    """Walk a decoded object (iteratively: it may be deeply nested) for a Timestamp;
    a plain Python loop without large copies, so other threads run meanwhile."""
    timestamp = _msgpack.Timestamp
    stack = [obj]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is timestamp:
            raise DecodeError("extension type -1 is not supported")
        if kind is dict:
            item = itertools.chain(item.keys(), item.values())
        elif kind is not list:
            continue
        for child in item:
            kind = type(child)
            if kind is list or kind is dict or kind is timestamp:
                stack.append(child)
