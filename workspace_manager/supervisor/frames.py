"""Reading protocol frames on the manager's event loop without ever blocking it.

A frame is read whole (header, then exactly its body; StreamReader appends to one buffer,
so a large frame costs linear time and one copy), and a body of `OFFLOAD_BYTES` or more is
decoded in a worker thread, in slices (`codec.unpackb_in_slices`), so the loop keeps
answering `/livez` and heartbeats while a location's 60 MiB answer is decoded.
`encode_frame_off_loop` does the same for an answer the manager sends (a job's result forwarded to
the CLI). One worker: large frames wait for each other rather than multiply memory.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from workspace_manager.protocol import codec, framing

#: Frames at least this large (bytes) are decoded off the event loop (C msgpack: ~5 ms).
OFFLOAD_BYTES = 1 << 20
#: Before the hello has succeeded, a peer may send frames of at most this many bytes
#: (docs/protocol.md, "Handshake"); the loader enforces the same on its side.
PRE_HELLO_MAX_FRAME = 64 * 1024

_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsm-frames")


class FrameReader:
    """Frames from an asyncio stream, one decoded object per `read()`.

    `max_frame` (bytes) may be changed between reads, e.g. raised once the hello succeeded.
    """

    def __init__(self, reader: asyncio.StreamReader, max_frame: int) -> None:
        self._reader = reader
        self.max_frame = max_frame

    async def read(self) -> Any:
        """The next object, or `framing.EOF` on a clean end of stream between frames.

        Raises framing.FrameError for an oversized, empty, truncated or undecodable frame
        (the oversized one as soon as its header arrives), OSError when the stream fails.
        """
        try:
            header = await self._reader.readexactly(4)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return framing.EOF
            raise framing.FrameError("connection closed in the middle of a frame") from None
        (length,) = framing.HEADER.unpack(header)
        framing.check_length(length, self.max_frame)
        try:
            body = await self._reader.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            raise framing.FrameError(
                f"truncated frame: EOF after {len(exc.partial)} of {length} bytes"
            ) from None
        try:
            if length < OFFLOAD_BYTES:
                return codec.unpackb(body)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(_worker, codec.unpackb_in_slices, body)
        except codec.DecodeError as exc:
            raise framing.FrameError(f"undecodable frame: {exc}") from None


async def encode_frame_off_loop(obj: Any) -> bytes:
    """`framing.encode_frame(obj)`, encoded in the worker thread in slices.

    Raises what `packb` raises for an object it cannot encode (TypeError, OverflowError).
    """
    loop = asyncio.get_running_loop()
    payload = await loop.run_in_executor(_worker, codec.packb_in_slices, obj)
    return framing.HEADER.pack(len(payload)) + payload
