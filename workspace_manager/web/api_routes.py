"""The JSON API (http/api.py) under `/api/` as one Starlette route: its handlers take an
`ApiRequest` and know nothing of the server; this is the adapter.

Before a write reaches the API, a browser's write must carry its session's token
(`web/session.py`). A body is read whole, at most BODY_BYTES within BODY_SECONDS."""

from __future__ import annotations

import asyncio
from typing import Any, List

from workspace_manager.http.api import (
    ApiError,
    ApiRequest,
    ApiResponse,
    internal_error,
)
from workspace_manager.http.exchange import JSON
from workspace_manager.web import asgi
from workspace_manager.web.context import WebContext
from workspace_manager.web.session import check_browser_write

PREFIX = "/api/"
BODY_BYTES = 65536  # a run config and tags; a larger body is refused (413)
BODY_SECONDS = 10.0  # a body trickling in slower than this is refused (408)
_READS = ("GET", "HEAD")
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def routes(ctx: WebContext) -> List[Any]:
    """`/api/{path}` for every method: the API answers the ones it does not take (405)."""
    from starlette.routing import Route

    return [Route(PREFIX + "{path:path}", ApiEndpoint(ctx), methods=ALL_METHODS)]


class ApiEndpoint:
    """An ASGI app: one request to `ctx.api` (503 where the manager keeps no runs)."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        answer = await self._answer(scope, receive)
        try:
            if answer.heavy:  # a page of 1,000 runs takes milliseconds of pure Python
                body = await asyncio.get_running_loop().run_in_executor(None, answer.encode)
            else:
                body = answer.encode()
        except Exception as exc:  # a bug in an answer's shape: still the API's shape
            answer = internal_error(scope["method"], asgi.raw_path(scope), exc)
            body = answer.encode()
        await asgi.send_whole(send, answer.status, body, JSON, answer.headers)

    async def _answer(self, scope: asgi.Scope, receive: asgi.Receive) -> ApiResponse:
        method = scope["method"]
        headers = asgi.headers(scope)
        try:
            body = b""
            if method not in _READS:
                refusal = check_browser_write(dict(headers), asgi.cookies(scope), self.ctx.secret)
                if refusal is not None:
                    raise ApiError(403, "Forbidden", refusal)
                body = await _body(scope, receive)
            api = self.ctx.api
            if api is None:
                raise ApiError(503, "Unavailable", "this manager keeps no runs (wsm serve)")
            return await api.handle(
                ApiRequest(
                    method=method,
                    path=asgi.raw_path(scope)[len(PREFIX) :],
                    query=asgi.query(scope),
                    headers=headers,
                    body=body,
                    peer=asgi.peer(scope),
                )
            )
        except ApiError as exc:
            return exc.response()


async def _body(scope: asgi.Scope, receive: asgi.Receive) -> bytes:
    declared = asgi.header(scope, "content-length")
    close = (("Connection", "close"),)  # the unread rest of the body ends the connection
    if declared is not None and declared.isdigit() and int(declared) > BODY_BYTES:
        raise ApiError(413, "PayloadTooLarge", f"the body is larger than {BODY_BYTES} bytes", close)
    try:
        return await asyncio.wait_for(asgi.read_body(receive, BODY_BYTES), BODY_SECONDS)
    except asgi.BodyTooLarge:
        raise ApiError(
            413, "PayloadTooLarge", f"the body is larger than {BODY_BYTES} bytes", close
        ) from None
    except asyncio.TimeoutError:
        raise ApiError(
            408, "RequestTimeout", f"the body did not arrive within {BODY_SECONDS:g} s", close
        ) from None
