"""A location served elsewhere by `wsm serve` (Dagster's `grpc_server` key), seen through the
same state machine as a local one: "start" is connect + handshake + snapshot, "exit" is the
connection going away, and "restart" is a reconnect with backoff. The server's own restarts
are its orchestrator's job, never the manager's.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional

from workspace_manager.protocol.errors import HandshakeError, MessageTooLarge, RemoteError
from workspace_manager.protocol.framing import DEFAULT_MAX_FRAME
from workspace_manager.supervisor.instance import (
    ExitedDuringStartup,
    LoadFailed,
    snapshot_refused,
)
from workspace_manager.supervisor.rpc import AsyncConnection
from workspace_manager.workspace.model import RemoteTarget


@dataclass(frozen=True)
class RemotePlan:
    address: str  # "tcp://HOST:PORT" or "unix:PATH"
    secret: str  # the shared token
    ssl_context: Optional[ssl.SSLContext] = None
    server_hostname: Optional[str] = None
    max_frame: int = DEFAULT_MAX_FRAME  # of answers we accept; the server has its own


#: A snapshot too large for either end: both limits can be raised.
RAISE_REMOTE_LIMIT_HINT = (
    "raise supervision: {max_message_mb: N} in workspace.yaml and the server's "
    "wsm serve --max-message-mb"
)


def remote_plan(target: RemoteTarget, max_frame: int = DEFAULT_MAX_FRAME) -> RemotePlan:
    """Resolve the token and TLS settings; LoadFailed (the location's `error`) when they are
    unusable, since reconnecting would not help."""
    if target.socket:
        address = f"unix:{target.socket}"
    else:
        host = f"[{target.host}]" if ":" in target.host else target.host
        address = f"tcp://{host}:{target.port}"
    return RemotePlan(
        address=address,
        secret=read_token(target),
        ssl_context=client_ssl_context(target) if target.ssl else None,
        server_hostname=target.host if target.ssl else None,
        max_frame=max_frame,
    )


def read_token(target: RemoteTarget) -> str:
    if target.token_env:
        token = os.environ.get(target.token_env, "")
        if not token:
            raise LoadFailed(f"token_env: environment variable {target.token_env} is not set")
        return token
    if target.token_file:
        try:
            token = target.token_file.read_text().strip()
        except OSError as exc:
            raise LoadFailed(
                f"token_file: cannot read {target.token_file}: {exc.strerror}"
            ) from None
        if not token:
            raise LoadFailed(f"token_file: {target.token_file} is empty")
        return token
    raise LoadFailed("a grpc_server location needs token_env or token_file")


def client_ssl_context(target: RemoteTarget) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(target.ca_file) if target.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise LoadFailed(f"ca_file: cannot load {target.ca_file}: {exc}") from None


class RemoteInstance:
    """One connection to a remote server; the counterpart of `Instance` for a process."""

    def __init__(self, plan: RemotePlan) -> None:
        self.plan = plan
        self.connection: Optional[AsyncConnection] = None
        self.server_info: Dict[str, Any] = {}
        self.snapshot: Optional[dict] = None
        self._started_at = time.monotonic()
        self._lost = asyncio.Event()

    pid = None  # the server's process is on another machine: not ours to show or signal
    returncode = None

    @property
    def started_at(self) -> float:
        return self._started_at

    async def start(self, startup_timeout: float) -> None:
        self._started_at = time.monotonic()
        try:
            self.connection = await AsyncConnection.open(
                self.plan.address,
                self.plan.secret,
                timeout=startup_timeout,
                ssl_context=self.plan.ssl_context,
                server_hostname=self.plan.server_hostname,
                max_frame=self.plan.max_frame,
            )
            self.server_info = self.connection.server_info
            self.snapshot = await self.connection.call("get_snapshot", {}, timeout=startup_timeout)
        except MessageTooLarge as exc:
            await self.stop()
            raise snapshot_refused(exc, RAISE_REMOTE_LIMIT_HINT) from None
        except (HandshakeError, ssl.SSLCertVerificationError) as exc:
            await self.stop()
            raise LoadFailed(f"{self.plan.address} refused us: {_reason(exc)}") from None
        except RemoteError as exc:
            await self.stop()
            if exc.type == "HandshakeError":
                raise LoadFailed(f"{self.plan.address} refused us: {exc.message}") from None
            raise
        except (OSError, ConnectionError, asyncio.TimeoutError, Exception) as exc:  # noqa: B014
            await self.stop()
            raise Unreachable(f"cannot reach {self.plan.address}: {_reason(exc)}") from None

    async def wait_exit(self) -> Optional[int]:
        """Returns when the connection is gone (the server died, restarted or was moved)."""
        assert self.connection is not None
        await self.connection.wait_closed()
        return None

    def describe_exit(self, returncode: Optional[int]) -> str:
        reason = self.connection.close_reason if self.connection else None
        return f"connection to {self.plan.address} lost" + (f": {reason}" if reason else "")

    def rss_bytes(self) -> Optional[int]:
        return None

    async def stop(self, grace: float = 0.0) -> None:
        """Close our connection only: the server belongs to its orchestrator."""
        if self.connection is not None:
            self.connection.close()


class Unreachable(ExitedDuringStartup):
    """The server could not be reached: back off and reconnect, by the restart policy."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)
        self.returncode = None


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return text
