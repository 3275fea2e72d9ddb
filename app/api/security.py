"""Who may call the servers, and how much they may send.

* Loopback by default. Binding beyond it exposes every indexed document to the network, so
  ``check_bind`` refuses to start there without ``DOCCHAT_API_KEY``.
* ``RequestGuard`` (plain ASGI, in front of everything): with a key set, each request needs
  ``Authorization: Bearer KEY`` (compared in constant time; the key is never logged or echoed);
  bodies over the limit are refused with 413 before the app reads them.

Standard library only, so the CLI can check the bind address before loading anything.
"""

from __future__ import annotations

import hmac
import ipaddress
import json

from app.errors import ConfigError

UPLOAD_FRAMING_BYTES = 64 * 1024  # multipart boundaries and headers around the uploaded files


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(settings, host: str, command: str) -> None:
    """Refuse to listen beyond loopback without an API key."""
    if is_loopback(host) or settings.api_key is not None:
        return
    raise ConfigError(
        f"`docchat {command} --host {host}` would let anyone on the network read your documents, "
        "and DOCCHAT_API_KEY is not set.",
        fix="Set DOCCHAT_API_KEY to a long random secret (e.g. `python -c \"import secrets; "
        "print(secrets.token_urlsafe(32))\"`), or leave out --host to listen on 127.0.0.1 only.",
    )


def body_limit(settings, method: str, path: str) -> int:
    """The most bytes a request may send: uploads get DOCCHAT_UPLOAD_MAX_MB, the rest a JSON-sized limit."""
    if method == "POST" and path.rstrip("/") == "/v1/documents":
        return int(settings.upload_max_mb * 1024 * 1024) + UPLOAD_FRAMING_BYTES
    return settings.api_max_body_kb * 1024


class BodyTooLarge(Exception):
    pass


class RequestGuard:
    """ASGI middleware: the API key and the request size limit, before any route runs."""

    def __init__(self, app, settings):
        self.app = app
        self.settings = settings
        key = settings.api_key.get_secret_value() if settings.api_key is not None else None
        self._expected = f"Bearer {key}".encode() if key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self._expected is not None and scope.get("method") != "OPTIONS":  # CORS preflights carry no key
            refusal = self._refusal(headers.get(b"authorization"))
            if refusal:
                return await send_error(send, 401, refusal, "authentication_error",
                                        extra_headers=[(b"www-authenticate", b"Bearer")])
        limit = body_limit(self.settings, scope.get("method", ""), scope.get("path", ""))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await send_error(send, 413, too_large(limit), "request_too_large")
        await self._guarded(scope, receive, send, limit)

    def _refusal(self, authorization: bytes | None) -> str | None:
        if not authorization:
            return "This server needs an API key: send `Authorization: Bearer <DOCCHAT_API_KEY>`."
        if not hmac.compare_digest(authorization, self._expected):
            return "The API key is not valid (compare it with DOCCHAT_API_KEY on the server)."
        return None

    async def _guarded(self, scope, receive, send, limit: int):
        """Run the app, counting body bytes as it reads them (chunked bodies declare no length).

        Over the limit, the 413 is sent at once and whatever the app answers afterwards is
        dropped: frameworks turn an error raised while reading the body into their own 400.
        """
        received = 0
        started = refused = False

        async def counting_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not refused:
                    refused = True
                    if not started:
                        await send_error(send, 413, too_large(limit), "request_too_large")
                    raise BodyTooLarge
            return message

        async def watching_send(message):
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            pass


def too_large(limit: int) -> str:
    return (f"The request body is over {limit // 1024} KB. JSON requests are limited by "
            "DOCCHAT_API_MAX_BODY_KB and uploads by DOCCHAT_UPLOAD_MAX_MB on the server.")


async def send_error(send, status: int, message: str, kind: str, extra_headers=()) -> None:
    """An OpenAI-shaped JSON error, sent from ASGI middleware (no framework here)."""
    body = json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    *extra_headers],
    })
    await send({"type": "http.response.body", "body": body})
