"""A pure-Python msgpack codec for interpreters that have no C msgpack (e.g. Debian's python3).

It covers exactly what the protocol uses: nil, bool, int (up to 64 bits), float, str, bin,
array, map. Extension types are rejected. The encoder produces the same bytes as
`msgpack.packb(obj, use_bin_type=True)`; the decoder is strict, because it reads bytes from
whoever connects: every malformed input raises `PurepackError` (a `ValueError`).
The hot paths (small ints, short strings, small maps) are inlined to keep a ping cheap.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable, List, Tuple

    _Leaf = Callable[[bytes, int], Tuple[Any, int]]

MAX_DEPTH = 512  # containers nested deeper than this are refused both ways


class PurepackError(ValueError):
    """Malformed or unsupported msgpack data."""


_S_B = struct.Struct(">B")
_S_BB = struct.Struct(">BB")
_S_BH = struct.Struct(">BH")
_S_BI = struct.Struct(">BI")
_S_BQ = struct.Struct(">BQ")
_S_Bb = struct.Struct(">Bb")
_S_Bh = struct.Struct(">Bh")
_S_Bi = struct.Struct(">Bi")
_S_Bq = struct.Struct(">Bq")
_S_Bd = struct.Struct(">Bd")
_S_H = struct.Struct(">H")
_S_I = struct.Struct(">I")
_S_Q = struct.Struct(">Q")
_S_b = struct.Struct(">b")
_S_h = struct.Struct(">h")
_S_i = struct.Struct(">i")
_S_q = struct.Struct(">q")
_S_f = struct.Struct(">f")
_S_d = struct.Struct(">d")

# Single-byte encodings, precomputed: positive and negative fixints, fixstr/fixarray/fixmap heads.
_BYTE = [bytes((i,)) for i in range(256)]


# --------------------------------------------------------------------------- encoder


def packb(obj: Any) -> bytes:
    """Encode `obj`; raises TypeError for unsupported types, OverflowError for ints past 64 bits."""
    out = bytearray()
    _pack(obj, out, 0)
    return bytes(out)


def _pack_int(v: int, out: bytearray) -> None:
    if v >= 0:
        if v < 0x80:
            out += _BYTE[v]
        elif v <= 0xFF:
            out += _S_BB.pack(0xCC, v)
        elif v <= 0xFFFF:
            out += _S_BH.pack(0xCD, v)
        elif v <= 0xFFFFFFFF:
            out += _S_BI.pack(0xCE, v)
        elif v <= 0xFFFFFFFFFFFFFFFF:
            out += _S_BQ.pack(0xCF, v)
        else:
            raise OverflowError("Integer value out of range")
    elif v >= -32:
        out += _BYTE[v & 0xFF]
    elif v >= -0x80:
        out += _S_Bb.pack(0xD0, v)
    elif v >= -0x8000:
        out += _S_Bh.pack(0xD1, v)
    elif v >= -0x80000000:
        out += _S_Bi.pack(0xD2, v)
    elif v >= -0x8000000000000000:
        out += _S_Bq.pack(0xD3, v)
    else:
        raise OverflowError("Integer value out of range")


def _pack_str(s: str, out: bytearray) -> None:
    b = s.encode("utf-8")
    n = len(b)
    if n < 32:
        out += _BYTE[0xA0 | n]
    elif n <= 0xFF:
        out += _S_BB.pack(0xD9, n)
    elif n <= 0xFFFF:
        out += _S_BH.pack(0xDA, n)
    elif n <= 0xFFFFFFFF:
        out += _S_BI.pack(0xDB, n)
    else:
        raise ValueError("str is too large")
    out += b


def _pack_bin(b: Any, out: bytearray) -> None:
    n = len(b) if not isinstance(b, memoryview) else b.nbytes
    if n <= 0xFF:
        out += _S_BB.pack(0xC4, n)
    elif n <= 0xFFFF:
        out += _S_BH.pack(0xC5, n)
    elif n <= 0xFFFFFFFF:
        out += _S_BI.pack(0xC6, n)
    else:
        raise ValueError("bin is too large")
    out += b


def _container_header(n: int, depth: int, fix: int, code16: int, kind: str, out: bytearray) -> None:
    """A map's or array's header: fix form below 16 items, else 16- or 32-bit count."""
    if depth >= MAX_DEPTH:
        raise ValueError("recursion limit exceeded")
    if n < 16:
        out += _BYTE[fix | n]
    elif n <= 0xFFFF:
        out += _S_BH.pack(code16, n)
    elif n <= 0xFFFFFFFF:
        out += _S_BI.pack(code16 + 1, n)
    else:
        raise ValueError(f"{kind} is too large")


def _pack(obj: Any, out: bytearray, depth: int) -> None:
    t = type(obj)
    if t is str:
        _pack_str(obj, out)
    elif t is int:
        if 0 <= obj < 0x80:
            out += _BYTE[obj]
        else:
            _pack_int(obj, out)
    elif t is dict:
        _container_header(len(obj), depth, 0x80, 0xDE, "dict", out)
        depth += 1
        for k, v in obj.items():
            if type(k) is str and len(k) < 32 and k.isascii():
                out += _BYTE[0xA0 | len(k)]
                out += k.encode("ascii")
            else:
                _pack(k, out, depth)
            _pack(v, out, depth)
    elif t is list or t is tuple:
        _container_header(len(obj), depth, 0x90, 0xDC, "list", out)
        depth += 1
        for v in obj:
            _pack(v, out, depth)
    elif obj is None:
        out += b"\xc0"
    elif obj is True:
        out += b"\xc3"
    elif obj is False:
        out += b"\xc2"
    elif t is float:
        out += _S_Bd.pack(0xCB, obj)
    elif t is bytes or t is bytearray or t is memoryview:
        _pack_bin(obj, out)
    else:
        _pack_subclass(obj, out, depth)


def _pack_subclass(obj: Any, out: bytearray, depth: int) -> None:
    """Subclasses of the supported types, encoded as their base type (as C msgpack does)."""
    if isinstance(obj, bool):
        out += b"\xc3" if obj else b"\xc2"
    elif isinstance(obj, int):
        _pack_int(int(obj), out)
    elif isinstance(obj, float):
        out += _S_Bd.pack(0xCB, float(obj))
    elif isinstance(obj, str):
        _pack_str(str(obj), out)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        _pack_bin(bytes(obj), out)
    elif isinstance(obj, (list, tuple)):
        _pack(list(obj), out, depth)
    elif isinstance(obj, dict):
        _pack(dict(obj), out, depth)
    else:
        raise TypeError(f"can not serialize {type(obj).__name__!r} object")


# --------------------------------------------------------------------------- decoder


def unpackb(data: Any) -> Any:
    """Decode exactly one object from `data`; raise PurepackError on anything malformed."""
    if type(data) is not bytes:
        data = bytes(data)
    try:
        obj, pos = _decode(data, 0, 0)
    except PurepackError:
        raise
    except (IndexError, struct.error):
        raise PurepackError("truncated data") from None
    except UnicodeDecodeError as exc:
        raise PurepackError(f"invalid UTF-8 in str: {exc}") from None
    except TypeError as exc:  # unhashable map key
        raise PurepackError(f"invalid map key: {exc}") from None
    except RecursionError:  # only when the caller's own stack is already deep
        raise PurepackError("nesting too deep for the stack") from None
    if pos != len(data):
        raise PurepackError(f"{len(data) - pos} trailing bytes after the object")
    return obj


def _decode(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    # One Python frame per nesting level (containers are handled inline), so 512 levels fit
    # comfortably in the default recursion limit.
    b = data[pos]
    pos += 1
    if b < 0x80:
        return b, pos
    if b >= 0xE0:
        return b - 0x100, pos
    if b >= 0xA0 and b <= 0xBF:
        end = pos + (b & 0x1F)
        if end > len(data):
            raise PurepackError("truncated data")
        return data[pos:end].decode("utf-8"), end
    if b <= 0x9F:
        n = b & 0x0F
        is_map = b <= 0x8F
    elif b >= 0xDC and b <= 0xDF:
        if b & 1:
            n = _S_I.unpack_from(data, pos)[0]
            pos += 4
        else:
            n = _S_H.unpack_from(data, pos)[0]
            pos += 2
        is_map = b >= 0xDE
    else:
        return _DECODERS[b - 0xC0](data, pos)
    depth += 1
    if depth > MAX_DEPTH:
        raise PurepackError(f"nesting deeper than {MAX_DEPTH}")
    size = len(data)
    if is_map:
        if pos + 2 * n > size:  # every key and value takes at least one byte
            raise PurepackError("truncated data")
        out: dict = {}
        for _ in range(n):
            b = data[pos]
            if b >= 0xA0 and b <= 0xBF:  # fixstr key: the common case
                start = pos + 1
                pos = start + (b & 0x1F)
                if pos > size:
                    raise PurepackError("truncated data")
                key: Any = data[start:pos].decode("utf-8")
            else:
                key, pos = _decode(data, pos, depth)
            b = data[pos]
            if b < 0x80:
                out[key] = b
                pos += 1
            else:
                out[key], pos = _decode(data, pos, depth)
        return out, pos
    if pos + n > size:  # every element takes at least one byte
        raise PurepackError("truncated data")
    items: List[Any] = []
    append = items.append
    for _ in range(n):
        b = data[pos]
        if b < 0x80:
            append(b)
            pos += 1
        else:
            obj, pos = _decode(data, pos, depth)
            append(obj)
    return items, pos


def _bad(code: int) -> _Leaf:
    if 0xC7 <= code <= 0xC9 or 0xD4 <= code <= 0xD8:
        message = f"extension type 0x{code:02x} is not supported"
    else:
        message = f"invalid type byte 0x{code:02x}"

    def decode(data: bytes, pos: int) -> Tuple[Any, int]:
        raise PurepackError(message)

    return decode


def _const(value: Any) -> _Leaf:
    def decode(data: bytes, pos: int) -> Tuple[Any, int]:
        return value, pos

    return decode


def _fixed(st: struct.Struct) -> _Leaf:
    size = st.size
    unpack_from = st.unpack_from

    def decode(data: bytes, pos: int) -> Tuple[Any, int]:
        return unpack_from(data, pos)[0], pos + size

    return decode


def _sized(length: struct.Struct, is_str: bool) -> _Leaf:
    size = length.size
    unpack_from = length.unpack_from

    def decode(data: bytes, pos: int) -> Tuple[Any, int]:
        n = unpack_from(data, pos)[0]
        pos += size
        end = pos + n
        if end > len(data):
            raise PurepackError("truncated data")
        if is_str:
            return data[pos:end].decode("utf-8"), end
        return data[pos:end], end

    return decode


_DECODERS: List[_Leaf] = [_bad(c) for c in range(0xC0, 0xE0)]
_DECODERS[0xC0 - 0xC0] = _const(None)
_DECODERS[0xC2 - 0xC0] = _const(False)
_DECODERS[0xC3 - 0xC0] = _const(True)
_DECODERS[0xC4 - 0xC0] = _sized(_S_B, False)
_DECODERS[0xC5 - 0xC0] = _sized(_S_H, False)
_DECODERS[0xC6 - 0xC0] = _sized(_S_I, False)
_DECODERS[0xCA - 0xC0] = _fixed(_S_f)
_DECODERS[0xCB - 0xC0] = _fixed(_S_d)
_DECODERS[0xCC - 0xC0] = _fixed(_S_B)
_DECODERS[0xCD - 0xC0] = _fixed(_S_H)
_DECODERS[0xCE - 0xC0] = _fixed(_S_I)
_DECODERS[0xCF - 0xC0] = _fixed(_S_Q)
_DECODERS[0xD0 - 0xC0] = _fixed(_S_b)
_DECODERS[0xD1 - 0xC0] = _fixed(_S_h)
_DECODERS[0xD2 - 0xC0] = _fixed(_S_i)
_DECODERS[0xD3 - 0xC0] = _fixed(_S_q)
_DECODERS[0xD9 - 0xC0] = _sized(_S_B, True)
_DECODERS[0xDA - 0xC0] = _sized(_S_H, True)
_DECODERS[0xDB - 0xC0] = _sized(_S_I, True)
