"""Message shapes (msgpack-RPC style arrays): builders, and a strict `parse` for what arrives.

request       [0, id, method, params]
response      [1, id, error, result]
notification  [2, event, params]
"""

from __future__ import annotations

from collections import namedtuple

from .errors import ProtocolError

# typing is for type checkers only (a NamedTuple is a collections.namedtuple at run time) and
# traceback is imported on the first error: a loader pays neither at start-up
# (docs/architecture.md, "What a location imports").
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, NamedTuple, Optional, Tuple, Union

REQUEST = 0
RESPONSE = 1
NOTIFICATION = 2

MAX_ID = 2**64 - 1

# Exit statuses of a loader (docs/protocol.md).
EXIT_OK = 0
EXIT_BAD_BOOTSTRAP = 3
EXIT_LOAD_ERROR = 4


if TYPE_CHECKING:

    class Request(NamedTuple):
        id: int
        method: str
        params: Dict[str, Any]

    class Response(NamedTuple):
        id: int
        error: Optional[Dict[str, Any]]
        result: Any

    class Notification(NamedTuple):
        event: str
        params: Dict[str, Any]

    Message = Union[Request, Response, Notification]
else:
    Request = namedtuple("Request", "id method params")
    Response = namedtuple("Response", "id error result")
    Notification = namedtuple("Notification", "event params")


def request(id: int, method: str, params: Optional[Dict[str, Any]] = None) -> list:
    return [REQUEST, id, method, {} if params is None else params]


def response(id: int, error: Optional[Dict[str, Any]], result: Any = None) -> list:
    return [RESPONSE, id, error, None if error is not None else result]


def notification(event: str, params: Optional[Dict[str, Any]] = None) -> list:
    return [NOTIFICATION, event, {} if params is None else params]


def error_map(type: str, message: str, traceback: Optional[str] = None) -> Dict[str, Any]:
    return {"type": type, "message": message, "traceback": traceback}


def error_from_exception(
    exc: BaseException, type_: str = "UserCodeError", hide: Tuple[str, ...] = ()
) -> Dict[str, Any]:
    """An error map for `exc`: message "ExcType: text", and its formatted traceback.

    Leading frames whose file name starts with one of ``hide`` are dropped, so a user sees
    their own code first, not the loader's plumbing."""
    text = str(exc)
    name = type(exc).__name__
    message = f"{name}: {text}" if text else name
    tb = exc.__traceback__
    while (
        hide
        and tb is not None
        and tb.tb_next is not None
        and tb.tb_frame.f_code.co_filename.startswith(hide)
    ):
        tb = tb.tb_next
    import traceback as _traceback  # here: it brings linecache and tokenize (~5 ms)

    text_tb = "".join(_traceback.format_exception(type(exc), exc, tb))
    return error_map(type_, message, text_tb)


def short_repr(value: Any, limit: int = 60) -> str:
    """repr() cut to `limit` characters: peer-controlled values end up in log lines."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_id(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_ID


def _check_error(error: Any) -> None:
    if not isinstance(error, dict):
        raise ProtocolError(f"response error must be nil or a map, not {type(error).__name__}")
    if not isinstance(error.get("type"), str) or not isinstance(error.get("message"), str):
        raise ProtocolError("error map needs str 'type' and 'message'")
    tb = error.get("traceback")
    if tb is not None and not isinstance(tb, str):
        raise ProtocolError("error map 'traceback' must be str or nil")


def parse(obj: Any) -> Message:
    """Validate a decoded frame and return its typed form; ProtocolError on any bad shape."""
    if type(obj) is not list or not obj:
        raise ProtocolError(f"message must be a non-empty array, not {type(obj).__name__}")
    kind = obj[0]
    n = len(obj)
    if kind == REQUEST and type(kind) is int:
        if n != 4:
            raise ProtocolError(f"request must have 4 elements, not {n}")
        _, id_, method, params = obj
        if not _is_id(id_):
            raise ProtocolError("request id must be an unsigned integer")
        if type(method) is not str:
            raise ProtocolError("request method must be a str")
        if type(params) is not dict:
            raise ProtocolError("request params must be a map")
        return Request(id_, method, params)
    if kind == RESPONSE and type(kind) is int:
        if n != 4:
            raise ProtocolError(f"response must have 4 elements, not {n}")
        _, id_, error, result = obj
        if not _is_id(id_):
            raise ProtocolError("response id must be an unsigned integer")
        if error is not None:
            _check_error(error)
        return Response(id_, error, result)
    if kind == NOTIFICATION and type(kind) is int:
        if n != 3:
            raise ProtocolError(f"notification must have 3 elements, not {n}")
        _, event, params = obj
        if type(event) is not str:
            raise ProtocolError("notification event must be a str")
        if type(params) is not dict:
            raise ProtocolError("notification params must be a map")
        return Notification(event, params)
    raise ProtocolError(f"unknown message kind {short_repr(kind)}")
