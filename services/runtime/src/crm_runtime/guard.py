"""What every request meets before a route: the token, the body's size, the load.

A pure ASGI middleware, so a request is refused before its body is read or parsed:
- a request to anything but the open paths (health, readiness, metrics, the API documents)
  without a valid bearer token: 401, body unread (the route's dependency still checks the role);
- a body over `max_body_bytes`: 413, from its Content-Length before reading, or as soon as a
  chunked body passes the limit (at most that much is buffered);
- more than `max_concurrent` requests at once: 503 with Retry-After at once, never queued (health,
  readiness and metrics are never refused, so a busy service is not restarted for it).
"""

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from crm_runtime.auth import Authenticator

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
OPEN_PATHS = PROBES | {
    "/asyncapi",
    "/asyncapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/openapi.json",
    "/redoc",
}


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        auth: Authenticator,
        max_body_bytes: int,
        max_concurrent: int,
    ) -> None:
        self.app = app
        self.auth = auth
        self.max_body_bytes = max_body_bytes
        self.max_concurrent = max_concurrent
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path in PROBES:
            await self.app(scope, receive, send)
            return
        if self.active >= self.max_concurrent:
            await _answer(
                send,
                503,
                "unavailable",
                "too many requests at once, retry shortly",
                [(b"retry-after", b"1")],
            )
            return
        self.active += 1
        try:
            await self._guarded(path, scope, receive, send)
        finally:
            self.active -= 1

    async def _guarded(self, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {name.lower(): value for name, value in scope.get("headers", ())}
        if path not in OPEN_PATHS and not self._authenticated(headers.get(b"authorization")):
            message = (
                "the bearer token is not valid"
                if headers.get(b"authorization")
                else "a bearer token is required (Authorization: Bearer <token>)"
            )
            await _answer(send, 401, "unauthorized", message, [(b"www-authenticate", b"Bearer")])
            return
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _answer(send, 400, "bad_request", "Content-Length is not a number")
                return
            if declared > self.max_body_bytes:
                await self._too_large(send)
                return
            await self.app(scope, receive, send)
            return
        if headers.get(b"transfer-encoding") is None:
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:  # chunked: buffer at most the limit, then hand the body on
            chunk = await receive()
            if chunk["type"] != "http.request":
                break
            body += chunk.get("body", b"")
            if len(body) > self.max_body_bytes:
                await self._too_large(send)
                return
            if not chunk.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)

    def _authenticated(self, authorization: bytes | None) -> bool:
        if not authorization:
            return False
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and self.auth.authenticate(token.strip()) is not None

    async def _too_large(self, send: Send) -> None:
        await _answer(
            send,
            413,
            "payload_too_large",
            f"the request body is larger than {self.max_body_bytes} bytes",
            [(b"connection", b"close")],
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(
    send: Send,
    status: int,
    error: str,
    message: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps({"error": error, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


__all__ = ["OPEN_PATHS", "RequestGuard"]
