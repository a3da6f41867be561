"""Length-prefixed frames: a big-endian uint32 length, then exactly one msgpack object.

The decoder is incremental (feed it whatever recv returned) and refuses an oversized or zero
length as soon as the 4-byte header is seen, so a hostile peer cannot make us buffer 4 GiB.
"""

from __future__ import annotations

import struct

from .codec import DecodeError, packb, unpackb
from .limits import DEFAULT_MAX_FRAME

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional, Union

    RecvSource = Union[Callable[[int], bytes], Any]

HEADER = struct.Struct(">I")

_pack_header = HEADER.pack
_unpack_header = HEADER.unpack_from


class FrameError(Exception):
    """A frame that is oversized, empty, truncated or undecodable: close the connection.

    `objects` holds the objects decoded from earlier frames of the same `feed` call.
    """

    def __init__(self, message: str, objects: Optional[List[Any]] = None) -> None:
        super().__init__(message)
        self.objects: List[Any] = objects or []


def encode_frame(obj: Any) -> bytes:
    payload = packb(obj)
    return _pack_header(len(payload)) + payload


def check_length(length: int, max_frame: int) -> None:
    if length == 0:
        raise FrameError("zero-length frame")
    if length > max_frame:
        raise FrameError(f"frame of {length} bytes exceeds the limit of {max_frame}")


class FrameDecoder:
    """Turns a byte stream into decoded objects, one per frame."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._need = 0  # body length of the frame being buffered, 0 while reading a header

    @property
    def has_partial(self) -> bool:
        """True when bytes of an incomplete frame are buffered (EOF now means truncation)."""
        return bool(self._buf) or self._need > 0

    def feed(self, data: Any) -> List[Any]:
        """Decode every complete frame in the stream so far; `data` is any bytes-like object.

        Raises FrameError (with `.objects` decoded before the fault); the decoder is then reset,
        but the connection should be closed: the stream has lost its framing.
        """
        if self._buf:
            self._buf += data
            data = self._buf
        # else: parse straight from `data`, copying only an incomplete tail
        out: List[Any] = []
        pos = 0
        size = len(data)
        max_frame = self.max_frame
        need = self._need
        try:
            while True:
                if not need:
                    if size - pos < 4:
                        break
                    need = _unpack_header(data, pos)[0]
                    if need == 0 or need > max_frame:
                        check_length(need, max_frame)
                    pos += 4
                if size - pos < need:
                    break
                end = pos + need
                try:
                    out.append(unpackb(data[pos:end]))
                except DecodeError as exc:
                    raise FrameError(f"undecodable frame: {exc}") from None
                pos = end
                need = 0
        except FrameError as exc:
            exc.objects = out
            self._buf = bytearray()
            self._need = 0
            raise
        self._need = need
        if data is self._buf:
            if pos:
                del self._buf[:pos]
        elif pos < size:
            self._buf = bytearray(data[pos:])
        return out


def _reader(source: RecvSource) -> Callable[[int], bytes]:
    read = getattr(source, "read", None)
    return read if read is not None else source


def _read_exact(read: Callable[[int], bytes], n: int, allow_eof: bool) -> Optional[bytes]:
    chunks = []
    got = 0
    while got < n:
        chunk = read(n - got)
        if not chunk:
            if allow_eof and got == 0:
                return None
            raise FrameError(f"truncated frame: EOF after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


EOF = object()  # returned by read_frame on a clean end of stream (nil is a valid object)


def read_frame(source: RecvSource, max_frame: int = DEFAULT_MAX_FRAME) -> Any:
    """Read one frame from a blocking source (a file with `.read(n)` or a `recv(n)` callable).

    Returns the decoded object, or `EOF` on a clean EOF between frames.
    """
    read = _reader(source)
    header = _read_exact(read, 4, allow_eof=True)
    if header is None:
        return EOF
    (length,) = _unpack_header(header)
    check_length(length, max_frame)
    body = _read_exact(read, length, allow_eof=False)
    try:
        return unpackb(body)
    except DecodeError as exc:
        raise FrameError(f"undecodable frame: {exc}") from None
