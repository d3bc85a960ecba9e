"""The little of HTTP the web view needs, spoken as ASGI directly (no framework)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

__all__ = [
    "MAX_BODY",
    "BadRequest",
    "Receive",
    "Request",
    "Scope",
    "Send",
    "json_bytes",
    "respond",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: The largest request body read (a hook payload, a form).
MAX_BODY = 1024 * 1024

#: Sent with every page: no framing by other sites, no sniffing, scripts only from here.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
]


class BadRequest(Exception):
    """The request cannot be answered as asked: answered with *status* and the message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Request:
    """One HTTP request: its path below the application's root, query, headers, cookies."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope.get("method", "GET")
        self.root: str = scope.get("root_path", "") or ""
        path: str = scope.get("path", "/") or "/"
        if self.root and path.startswith(self.root):
            path = path[len(self.root) :] or "/"
        self.path = path
        query = scope.get("query_string", b"").decode("latin-1")
        self.query = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        self.headers: dict[str, str] = {}
        for key, value in scope.get("headers", ()):
            self.headers[bytes(key).decode("latin-1").lower()] = bytes(value).decode("latin-1")
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header from elsewhere: no cookies
            cookie = SimpleCookie()
        self.cookies = {key: morsel.value for key, morsel in cookie.items()}

    async def body(self) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise BadRequest("the client went away", 400)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise BadRequest(f"the request body is over {MAX_BODY} bytes", 413)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def form(self) -> dict[str, str]:
        """The body as a form (urlencoded) or a JSON object of strings."""
        body = await self.body()
        kind = self.headers.get("content-type", "").split(";")[0].strip()
        if kind == "application/json":
            try:
                data = json.loads(body or b"{}")
            except ValueError as exc:
                raise BadRequest(f"the body is not JSON: {exc}") from None
            if not isinstance(data, dict):
                raise BadRequest("the body must be a JSON object")
            return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
        text = body.decode("utf-8", "replace")
        return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


def json_bytes(value: Any) -> bytes:
    """JSON that is safe inside an HTML ``<script>`` element as well as on its own."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)  # ASCII only
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode("ascii")


async def respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    all_headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
        *SECURITY_HEADERS,
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})
