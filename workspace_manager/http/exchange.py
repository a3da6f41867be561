"""The request and response values the endpoint functions take (http/routes.py,
http/metrics.py), whatever server carries them: `web/probes.py` adapts them to Starlette."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


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


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = TEXT
    headers: Tuple[Tuple[str, str], ...] = field(default=())


def text(status: int, body: str, *headers: Tuple[str, str]) -> Response:
    return Response(status, body.encode("utf-8"), TEXT, tuple(headers))
