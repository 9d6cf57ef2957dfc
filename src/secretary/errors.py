"""One error shape for every service.

Every error answer is ``{"error": {"code", "message", "type", "param"}}``. ``code`` and
``message`` are ours; ``type`` and ``param`` are there because the OpenAI clients read them,
so an OpenAI client shows our message unchanged. Status codes are chosen where the error is
raised (by exception class), never by matching message text.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class SecretaryError(Exception):
    """Base of every error the project raises on purpose. Carries its HTTP status."""

    status_code = 500
    code = "internal_error"
    error_type = "server_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequestError(SecretaryError):
    status_code = 400
    code = "invalid_request"
    error_type = "invalid_request_error"


class NotFoundError(SecretaryError):
    status_code = 404
    code = "not_found"
    error_type = "invalid_request_error"


class PayloadTooLargeError(SecretaryError):
    status_code = 413
    code = "payload_too_large"
    error_type = "invalid_request_error"


class UnsupportedMediaError(SecretaryError):
    """The upload is a real file, but not one we can use (an image sent as audio)."""

    status_code = 415
    code = "unsupported_media"
    error_type = "invalid_request_error"


class UnprocessableError(SecretaryError):
    """Well-formed input whose content cannot be used (a photo with no face)."""

    status_code = 422
    code = "unprocessable"
    error_type = "invalid_request_error"


class NotImplementedByEngineError(SecretaryError):
    status_code = 501
    code = "not_implemented"
    error_type = "invalid_request_error"


class ModelUnavailableError(SecretaryError):
    """A model cannot be loaded: not installed, not downloadable from here, or broken."""

    status_code = 503
    code = "model_unavailable"
    error_type = "server_error"


class ServiceBusyError(SecretaryError):
    status_code = 503
    code = "busy"
    error_type = "server_error"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def redact_url(url: str) -> str:
    """``url`` without its user and password (``http://user:pass@host`` is printed as
    ``http://***@host``); safe to show in errors and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an invalid URL)"
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_AUTH_HEADER = re.compile(r"(?i)(authorization|x-api-key|api-key|cookie)(\W{1,3})[^\s,;\"'}]+")


def scrub(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """``text`` (an upstream's error message) without credentials: the given secrets,
    bearer and basic tokens, and values of authorization-like headers it echoes."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _BEARER.sub(lambda m: f"{m.group(1)} ***", text)
    return _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


def error_body(
    code: str, message: str, *, error_type: str = "invalid_request_error", param: str | None = None
) -> dict[str, Any]:
    # Messages quote what the client sent; a lone surrogate in it could not be encoded as
    # UTF-8 (the answer would become a 500), so such characters are written as escapes.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    if param is not None:
        param = param.encode("utf-8", "backslashreplace").decode("utf-8")
    return {"error": {"code": code, "message": message, "type": error_type, "param": param}}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, error_type=error_type, param=param),
        status_code=status,
        headers=headers,
    )


_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media",
    422: "unprocessable",
    429: "rate_limited",
    503: "unavailable",
}


def _describe_validation(exc: RequestValidationError) -> tuple[str, str | None]:
    parts = []
    first_param = None
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form")]
        name = ".".join(loc) or "request"
        first_param = first_param or name
        parts.append(f"{name}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request", first_param


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure to the common JSON shape."""

    @app.exception_handler(SecretaryError)
    async def _secretary_error(_: Request, exc: SecretaryError) -> JSONResponse:
        if exc.status_code >= 500 and not isinstance(exc, ServiceBusyError | ModelUnavailableError):
            log.error("internal error: %s", exc.message)
        return error_response(
            exc.status_code,
            exc.code,
            exc.message,
            error_type=exc.error_type,
            param=exc.param,
            headers=exc.headers(),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _describe_validation(exc)
        return error_response(400, "invalid_request", message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return error_response(
            exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Last resort: the service keeps serving and the client still gets JSON. Reaching this
        # is a bug; the log keeps the traceback.
        log.exception("unhandled error")
        message = f"internal error: {type(exc).__name__}"
        return error_response(500, "internal_error", message, error_type="server_error")
