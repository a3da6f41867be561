"""Exceptions shared by both ends of a connection, and the error type names of the wire format."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
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
MESSAGE_TOO_LARGE = "MessageTooLarge"


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
        kind = _SPECIFIC.get(str(error.get("type")), cls)
        return kind(str(error.get("type")), str(error.get("message")), error.get("traceback"))


class HandshakeError(RemoteError):
    """The server refused the hello: wrong secret, unsupported version, or no hello first."""

    def __init__(
        self, type: str = HANDSHAKE_ERROR, message: str = "", traceback: Optional[str] = None
    ) -> None:
        super().__init__(type, message, traceback)


class MessageTooLarge(RemoteError):
    """A request or its answer would not fit the receiver's frame limit. Only that call
    fails: the message is refused before it is sent, so the connection stays usable."""

    def __init__(
        self, type: str = MESSAGE_TOO_LARGE, message: str = "", traceback: Optional[str] = None
    ) -> None:
        super().__init__(type, message, traceback)


_SPECIFIC = {HANDSHAKE_ERROR: HandshakeError, MESSAGE_TOO_LARGE: MessageTooLarge}


def too_large(what: str, size: int, limit: int) -> str:
    """The message of a `MessageTooLarge` error: sizes in bytes and MiB."""
    return (
        f"{what} of {size} bytes ({size / 1048576:.1f} MiB) exceeds the frame limit of "
        f"{limit} bytes ({limit / 1048576:g} MiB)"
    )
