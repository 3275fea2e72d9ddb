"""Errors as JSON, never a traceback: ``{"error": {"message", "fix", "type", "code"}}``.

The shape is OpenAI's, so OpenAI clients raise their usual error with docchat's message in it.
"""

from __future__ import annotations

import logging

from app.engine.threads import ThreadNotFound
from app.errors import BackendError, ConfigError, DocchatError, StoreError

log = logging.getLogger("app.api")


class BadRequest(DocchatError):
    """The request itself is wrong (a bad document id, an unknown model)."""


class NotFound(DocchatError):
    """The request names something that does not exist."""


# Most specific first: the first match decides the HTTP status.
_STATUS = [
    (ThreadNotFound, 404, "not_found"),
    (NotFound, 404, "not_found"),
    (BadRequest, 400, "invalid_request_error"),
    (StoreError, 503, "index_unavailable"),
    (BackendError, 502, "backend_error"),
    (ConfigError, 500, "server_configuration_error"),
    (DocchatError, 400, "invalid_request_error"),
]


def error_body(message: str, kind: str, status: int, fix: str | None = None) -> dict:
    error = {"message": message, "type": kind, "code": status}
    if fix:
        error["fix"] = fix
    return {"error": error}


def describe(exc: BaseException) -> tuple[int, dict]:
    """The HTTP status and JSON body for an error raised while answering a request."""
    if isinstance(exc, DocchatError):
        status, kind = next((s, k) for cls, s, k in _STATUS if isinstance(exc, cls))
        return status, error_body(exc.message, kind, status, exc.fix)
    log.exception("unexpected error while answering a request", exc_info=exc)
    return 500, error_body(f"Unexpected error: {type(exc).__name__}: {exc}", "server_error", 500,
                           "See the server's log; report it if it persists.")


def describe_validation(errors: list[dict]) -> dict:
    """FastAPI's validation errors as one readable line (which field, what is wrong)."""
    problems = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return error_body("Invalid request: " + "; ".join(problems), "invalid_request_error", 400,
                      "See the schema at /openapi.json (or /docs).")
