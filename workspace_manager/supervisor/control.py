"""The manager's control socket: how `wsm status`, `down`, `reload` and `logs` reach it.

Same framing, messages and handshake as a location, served on asyncio. A malformed frame
closes that one connection; the manager carries on. Until its hello has succeeded a connection
may send frames of at most 64 KiB and must complete the hello within `hello_timeout` seconds
of connecting (docs/protocol.md, "Handshake"); large frames are decoded off the event loop.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Optional

from workspace_manager.protocol import framing, messages
from workspace_manager.protocol.errors import (
    MESSAGE_TOO_LARGE,
    ProtocolError,
    RemoteError,
    too_large,
)
from workspace_manager.supervisor.frames import (
    PRE_HELLO_MAX_FRAME,
    FrameReader,
    encode_frame_off_loop,
)
from workspace_manager.version import PROTOCOL_VERSION, __version__

Handler = Callable[[dict], Awaitable[Any]]


class ControlServer:
    def __init__(
        self,
        path: Path,
        secret: str,
        handlers: Dict[str, Handler],
        max_frame: int = 16 * 1024 * 1024,
        hello_timeout: float = 10.0,
    ) -> None:
        self.path = path
        self.secret = secret
        self.handlers = handlers
        self.max_frame = max_frame  # bytes, once the hello has succeeded
        self.hello_timeout = hello_timeout  # seconds from connecting, not reset by each byte
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set = set()

    async def start(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        try:
            self.path.unlink()
        except OSError:
            pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = FrameReader(reader, PRE_HELLO_MAX_FRAME)
        try:
            try:
                reply_limit = await asyncio.wait_for(
                    self._handshake(frames, writer), self.hello_timeout
                )
            except asyncio.TimeoutError:
                _log(f"control connection closed: no hello within {self.hello_timeout:g}s")
                return
            if reply_limit is None:
                return
            frames.max_frame = self.max_frame
            while True:
                obj = await frames.read()
                if obj is framing.EOF:
                    return
                msg = messages.parse(obj)
                if not isinstance(msg, messages.Request):
                    raise ProtocolError("expected a request")
                task = asyncio.ensure_future(self._dispatch(msg, writer, reply_limit))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (framing.FrameError, ProtocolError) as exc:
            _log(f"control connection closed: {exc}")
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handshake(self, frames: FrameReader, writer: asyncio.StreamWriter) -> Optional[int]:
        """Read and answer the first request, which must be a valid hello. Returns the
        largest answer the client takes (its hello's `max_frame_bytes`, else the default),
        or None when the hello was refused."""
        obj = await frames.read()
        if obj is framing.EOF:
            return None
        msg = messages.parse(obj)
        if not isinstance(msg, messages.Request):
            raise ProtocolError("expected a request")
        ok, reply = self._hello(msg)
        writer.write(framing.encode_frame(reply))
        await writer.drain()
        if not ok:
            return None
        params = msg.params if isinstance(msg.params, dict) else {}
        limit = params.get("max_frame_bytes")
        return limit if type(limit) is int and limit >= 1024 else framing.DEFAULT_MAX_FRAME

    def _hello(self, msg: messages.Request) -> tuple:
        params = msg.params if isinstance(msg.params, dict) else {}
        secret = params.get("secret")
        if msg.method != "hello":
            err = "first request must be hello"
        elif not isinstance(secret, str) or not hmac.compare_digest(
            secret.encode(), self.secret.encode()
        ):
            err = "wrong secret"
        elif params.get("protocol") != PROTOCOL_VERSION:
            err = f"unsupported protocol version {params.get('protocol')!r}"
        else:
            info = {
                "protocol": PROTOCOL_VERSION,
                "server": f"wsm-manager {__version__}",
                "pid": os.getpid(),
            }
            return True, messages.response(msg.id, None, info)
        return False, messages.response(msg.id, messages.error_map("HandshakeError", err), None)

    async def _dispatch(
        self, msg: messages.Request, writer: asyncio.StreamWriter, reply_limit: int
    ) -> None:
        handler = self.handlers.get(msg.method)
        if handler is None:
            reply = messages.response(
                msg.id,
                messages.error_map("MethodNotFound", f"unknown method {msg.method!r}"),
                None,
            )
        else:
            try:
                result = await handler(msg.params if isinstance(msg.params, dict) else {})
                reply = messages.response(msg.id, None, result)
            except RemoteError as exc:
                reply = messages.response(
                    msg.id, messages.error_map(exc.type, exc.message, exc.traceback), None
                )
            except (KeyError, ValueError, TypeError) as exc:
                reply = messages.response(
                    msg.id, messages.error_map("InvalidParams", str(exc)), None
                )
            except Exception as exc:  # a bug in a handler must not take the manager down
                reply = messages.response(
                    msg.id,
                    messages.error_map("InternalError", repr(exc), traceback.format_exc()),
                    None,
                )
        frame = framing.encode_frame(reply)
        if len(frame) - 4 > reply_limit:  # that call fails; the client keeps its connection
            error = messages.error_map(
                MESSAGE_TOO_LARGE, too_large("the answer", len(frame) - 4, reply_limit)
            )
            frame = framing.encode_frame(messages.response(msg.id, error, None))
        try:
            frame = await encode_frame_off_loop(reply)  # a forwarded result may be large
        except (TypeError, ValueError, OverflowError) as exc:
            error = messages.error_map("InternalError", f"result cannot be encoded: {exc}")
            frame = framing.encode_frame(messages.response(msg.id, error, None))
        if len(frame) - 4 > reply_limit:  # that call fails; the client keeps its connection
            error = messages.error_map(
                MESSAGE_TOO_LARGE, too_large("the answer", len(frame) - 4, reply_limit)
            )
            frame = framing.encode_frame(messages.response(msg.id, error, None))
        try:
            writer.write(frame)
        except (ConnectionError, OSError):
            pass


def _log(text: str) -> None:
    print(f"wsm: {text}", file=sys.stderr, flush=True)
