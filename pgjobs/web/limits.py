"""A ceiling on request bodies, counted in bytes as they arrive.

A pure ASGI middleware: a request announcing a larger ``Content-Length`` gets 413 before a
byte of its body is read; a request without one (chunked transfer) or lying about it is
cut off as soon as the bytes received pass the limit. FastAPI reads the body of the one
route that has one (``POST /jobs``) through the wrapped ``receive``, so the error raised
there (an ``HTTPException``, which FastAPI lets through unchanged) becomes the documented
JSON error.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over the limit of {limit} bytes (--max-body)")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _refuse(send, BodyTooLarge(limit) if declared.isdigit() else None)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as exc:
            # Raised where nothing turned it into a response (a route reading the body as
            # a stream): answer here if the response has not begun.
            if started:
                raise
            await _refuse(send, exc)


async def _refuse(send: Send, error: BodyTooLarge | None) -> None:
    status, code, message = (
        (413, "payload_too_large", error.detail)
        if error is not None
        else (400, "bad_request", "malformed Content-Length header")
    )
    body = json.dumps({"error": code, "message": message}, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
