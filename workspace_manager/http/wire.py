"""Just enough HTTP/1.1 for probes and curl: read one request head, write one response.

Everything a client sends is bounded (line length, header count and bytes, body
size) so that a garbage or hostile client costs a few kilobytes and gets a 4xx,
never an exception that escapes its own connection.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from http import HTTPStatus
from typing import Awaitable, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from workspace_manager.version import __version__

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VERSION = re.compile(r"^HTTP/(\d)\.(\d)$")
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_MAX_EMPTY_LINES = 4  # RFC 9112 2.2: tolerate stray CRLFs before a request line


@dataclass(frozen=True)
class Limits:
    """What one request may cost. Lines longer than `line_bytes` are refused by the stream."""

    line_bytes: int = 8192  # request line (414) and each header line (431)
    header_bytes: int = 32768  # all header lines together (431)
    header_count: int = 100  # (431)
    body_bytes: int = 65536  # a body is read whole (the JSON API's POSTs); larger: 413 and close


class HttpError(Exception):
    """A request we answer with `status` and then close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.path: Optional[str] = None  # the request's path, when it was read that far


class ClientGone(Exception):
    """The peer closed the connection in the middle of a request."""


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # as sent
    version: str  # "HTTP/1.0" or "HTTP/1.1"
    path: str  # still percent-encoded
    query: Dict[str, List[str]]
    headers: Tuple[Tuple[str, str], ...]  # names lower-cased, in order
    subpath: str = ""  # set by the router for prefix routes: the part after the prefix
    body: bytes = b""  # at most Limits.body_bytes
    peer: Optional[str] = None  # the client's address (IP text), set by the server

    def header_values(self, name: str) -> List[str]:
        return [v for k, v in self.headers if k == name]

    @property
    def keep_alive(self) -> bool:
        """HTTP/1.1 keeps the connection unless told `close`; 1.0 only if asked to."""
        tokens = {t.strip().lower() for v in self.header_values("connection") for t in v.split(",")}
        if "close" in tokens:
            return False
        return self.version != "HTTP/1.0" or "keep-alive" in tokens


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = TEXT
    headers: Tuple[Tuple[str, str], ...] = field(default=())


def text(status: int, body: str, *headers: Tuple[str, str]) -> Response:
    return Response(status, body.encode("utf-8"), TEXT, tuple(headers))


async def read_request(
    reader: asyncio.StreamReader,
    limits: Limits,
    send_continue: Optional[Callable[[], Awaitable[None]]] = None,
) -> Optional[Request]:
    """The next request on the connection, or None when the peer closed it between requests.

    Raises HttpError for a request we refuse and ClientGone for one cut short. The stream
    must have been created with `limit=limits.line_bytes`. `send_continue` writes
    `100 Continue` for a client that waits for it before sending its body (RFC 9110
    10.1.1: curl does for bodies over 1 KiB).
    """
    line: Optional[bytes] = b""
    for i in range(_MAX_EMPTY_LINES + 1):
        line = await _read_line(reader, 414, "request line too long", eof_ok=i == 0)
        if line is None:
            return None
        if line.strip(b"\r\n"):
            break
    else:
        raise HttpError(400, "no request line")
    assert line is not None
    method, target, version = _parse_request_line(line)
    try:
        headers = await _read_headers(reader, limits)
        request = _make_request(method, target, version, headers)
        body = await _read_body(reader, request, limits, send_continue)
    except HttpError as exc:  # the route may want to word the refusal (JSON for the API)
        exc.path = target.partition("?")[0] if target.startswith("/") else None
        raise
    return replace(request, body=body) if body else request


async def _read_line(
    reader: asyncio.StreamReader, status: int, message: str, eof_ok: bool = False
) -> Optional[bytes]:
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if eof_ok and not exc.partial:
            return None
        raise ClientGone() from None
    except asyncio.LimitOverrunError:
        raise HttpError(status, message) from None


def _parse_request_line(raw: bytes) -> Tuple[str, str, str]:
    line = raw.decode("latin-1").rstrip("\r\n")
    parts = line.split(" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if not _TOKEN.match(method):
        raise HttpError(400, "malformed method")
    if not target or not target.isascii() or any(c <= " " or c == "\x7f" for c in target):
        raise HttpError(400, "malformed request target")
    match = _VERSION.match(version)
    if not match:
        raise HttpError(400, "malformed HTTP version")
    if match.group(1) != "1":
        raise HttpError(505, "only HTTP/1.0 and HTTP/1.1 are supported")
    return method, target, "HTTP/1.0" if match.group(2) == "0" else "HTTP/1.1"


async def _read_headers(reader: asyncio.StreamReader, limits: Limits) -> List[Tuple[str, str]]:
    headers: List[Tuple[str, str]] = []
    total = 0
    while True:
        raw = await _read_line(reader, 431, "header line too long")
        assert raw is not None
        total += len(raw)
        if total > limits.header_bytes:
            raise HttpError(431, "request headers too large")
        line = raw.decode("latin-1").rstrip("\r\n")
        if not line:
            return headers
        if len(headers) >= limits.header_count:
            raise HttpError(431, "too many request headers")
        if line[0] in " \t":
            raise HttpError(400, "folded header lines are not allowed")
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name):
            raise HttpError(400, "malformed header line")
        value = value.strip(" \t")
        if _CTL.search(value):
            raise HttpError(400, "control character in a header value")
        headers.append((name.lower(), value))


def _make_request(
    method: str, target: str, version: str, headers: List[Tuple[str, str]]
) -> Request:
    if target.startswith("/"):
        path, _, query = target.partition("?")
    elif target.lower().startswith(("http://", "https://")):  # absolute-form, RFC 9112 3.2.2
        parts = urlsplit(target)
        path, query = parts.path or "/", parts.query
    elif target == "*":
        path, query = "*", ""
    else:
        raise HttpError(400, "malformed request target")
    path = path.partition("#")[0]
    return Request(
        method=method,
        target=target,
        version=version,
        path=path,
        query=parse_qs(query, keep_blank_values=True),
        headers=tuple(headers),
    )


async def _read_body(
    reader: asyncio.StreamReader,
    request: Request,
    limits: Limits,
    send_continue: Optional[Callable[[], Awaitable[None]]],
) -> bytes:
    """The body (probes send none; one sent anyway is read, so keep-alive stays in step)."""
    if request.header_values("transfer-encoding"):
        raise HttpError(400, "request bodies with Transfer-Encoding are not accepted")
    lengths = request.header_values("content-length")
    if not lengths:
        return b""
    if len(lengths) > 1 or not lengths[0].isascii() or not lengths[0].isdigit():
        raise HttpError(400, "malformed Content-Length")
    length = int(lengths[0])
    if length > limits.body_bytes:
        raise HttpError(413, "request body too large")
    if length == 0:
        return b""
    expect = {v.strip().lower() for v in request.header_values("expect")}
    if "100-continue" in expect and send_continue is not None and request.version == "HTTP/1.1":
        await send_continue()
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ClientGone() from None


def encode_response(
    response: Response, *, head_only: bool, keep_alive: bool, http10: bool
) -> bytes:
    """Status line, headers and (unless HEAD) body, ready to write."""
    try:
        phrase = HTTPStatus(response.status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [
        f"HTTP/1.1 {response.status} {phrase}",
        f"Date: {formatdate(usegmt=True)}",
        f"Server: wsm/{__version__}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
    ]
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    if not keep_alive:
        lines.append("Connection: close")
    elif http10:
        lines.append("Connection: keep-alive")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body
