"""Exceptions shared by both ends of a connection, and the error type names of the wire format."""

from __future__ import annotations

from typing import Any, Mapping, Optional

# Error map "type" values (docs/protocol.md, "Error types").
HANDSHAKE_ERROR = "HandshakeError"
METHOD_NOT_FOUND = "MethodNotFound"
INVALID_PARAMS = "InvalidParams"
NOT_FOUND = "NotFound"
DEFINITION_ERROR = "DefinitionError"
USER_CODE_ERROR = "UserCodeError"
SHUTTING_DOWN = "ShuttingDown"
INTERNAL_ERROR = "InternalError"


class ProtocolError(Exception):
    """The peer sent something that is not a well-formed protocol message."""


class CallTimeout(Exception):
    """No response arrived within the call's timeout (the connection stays usable)."""


class RemoteError(Exception):
    """The server answered a call with an error map."""

    def __init__(self, type: str, message: str, traceback: Optional[str] = None) -> None:
        super().__init__(type, message, traceback)
        self.type = type
        self.message = message
        self.traceback = traceback

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"

    @classmethod
    def from_map(cls, error: Mapping[str, Any]) -> RemoteError:
        """Build the most specific exception for a (validated) error map."""
        kind = HandshakeError if error.get("type") == HANDSHAKE_ERROR else cls
        return kind(str(error.get("type")), str(error.get("message")), error.get("traceback"))


class HandshakeError(RemoteError):
    """The server refused the hello: wrong secret, unsupported version, or no hello first."""

    def __init__(
        self, type: str = HANDSHAKE_ERROR, message: str = "", traceback: Optional[str] = None
    ) -> None:
        super().__init__(type, message, traceback)
