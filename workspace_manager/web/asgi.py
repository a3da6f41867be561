"""Small readers of an ASGI HTTP scope and one writer of a whole response, shared by the
endpoints that are plain ASGI apps (the probes, the API, the event stream): they skip
Starlette's Request and Response objects, which /livez under a flood does not need."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import parse_qs

Scope = Dict[str, Any]
Receive = Callable[[], Awaitable[Dict[str, Any]]]
Send = Callable[[Dict[str, Any]], Awaitable[None]]


def raw_path(scope: Scope) -> str:
    """The request path as sent, still percent-encoded (a name may hold `/` as %2F)."""
    raw = scope.get("raw_path")
    return raw.decode("latin-1") if raw else str(scope.get("path", "/"))


def query(scope: Scope) -> Dict[str, List[str]]:
    """The query string's parameters, each with every value given; blank values kept."""
    text = scope.get("query_string", b"").decode("latin-1")
    return parse_qs(text, keep_blank_values=True)


def headers(scope: Scope) -> Tuple[Tuple[str, str], ...]:
    """Header (name, value) pairs in order, names lower-case (ASGI gives them so)."""
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ()))


def header(scope: Scope, name: str) -> Optional[str]:
    """The first value of header `name` (lower-case), or None."""
    key = name.encode("latin-1")
    for k, v in scope.get("headers", ()):
        if k == key:
            return str(v.decode("latin-1"))
    return None


def peer(scope: Scope) -> Optional[str]:
    """The client's IP address as text, or None when the server does not know it."""
    client = scope.get("client")
    return str(client[0]) if client else None


def cookies(scope: Scope) -> Mapping[str, str]:
    """The request's cookies (RFC 6265 `Cookie` header), as Starlette parses them."""
    from starlette.requests import cookie_parser

    value = header(scope, "cookie")
    return cookie_parser(value) if value else {}


async def send_whole(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    extra: Sequence[Tuple[str, str]] = (),
) -> None:
    """Send one complete response; uvicorn leaves out the body of a HEAD request. Nothing
    these endpoints answer may be cached: each is the state of the moment."""
    head = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
    ]
    head.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra)
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    """The request body is larger than the endpoint takes."""


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, at most `limit` bytes; raises BodyTooLarge beyond it."""
    chunks: List[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)
