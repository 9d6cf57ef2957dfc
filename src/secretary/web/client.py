"""Calls from one service to another over HTTP: the one way a client is made (sharing one
TLS context) and the one reading of a failed call, the same for every caller: the UI's
gateway, the conversation's remote stages and its chat model.

A service that cannot be reached is a 503 that says how to start it, one too slow a 504,
and a broken answer or an error status a 502, each naming what was called.
"""

from __future__ import annotations

import functools
import json
import ssl

import httpx

from secretary.errors import SecretaryError, scrub

CONNECT_TIMEOUT = 5.0  # seconds to open a connection, whatever the answer may take


@functools.cache
def client_ssl_context() -> ssl.SSLContext:
    """One verifying TLS context for every outgoing client: httpx builds a new one (loading
    the CA bundle, about 0.1 s) for each client it creates without one."""
    return ssl.create_default_context()


def new_client(timeout: float, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """A pooled client whose calls may wait ``timeout`` seconds for each read."""
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
                             verify=client_ssl_context(), headers=headers)


class UpstreamUnavailableError(SecretaryError):
    """The service is not running (or not reachable) at its configured address."""

    status_code = 503
    code = "upstream_unavailable"
    error_type = "server_error"


class UpstreamFailedError(SecretaryError):
    """The service was reached but its answer broke off, was not HTTP, or was an error."""

    status_code = 502
    code = "bad_gateway"
    error_type = "server_error"


class UpstreamTimeoutError(SecretaryError):
    status_code = 504
    code = "upstream_timeout"
    error_type = "server_error"


def http_failure(where: str, exc: Exception, *, remedy: str | None = None,
                 param: str | None = None) -> SecretaryError:
    """What went wrong calling ``where``: not reachable 503 (with ``remedy``, how to make
    it so), too slow 504, anything else 502."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        advice = f"; {remedy}" if remedy else ""
        return UpstreamUnavailableError(
            f"{where} is not reachable ({_reason(exc)}){advice}", param=param)
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeoutError(f"{where} did not answer in time", param=param)
    return UpstreamFailedError(f"{where} gave a broken answer ({_reason(exc)})", param=param)


def status_failure(where: str, status: int, body: str, *, param: str | None = None,
                   ) -> UpstreamFailedError:
    """``where`` answered with an error status: a 502 quoting its message."""
    return UpstreamFailedError(f"{where} answered HTTP {status}: {error_text(body)}",
                               param=param)


def error_text(body: str, default: str = "no body") -> str:
    """The message of an error answer: its JSON error's (OpenAI's shape and this project's),
    else the start of the body."""
    try:
        error = json.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            return str(message)
    except (ValueError, AttributeError):
        pass
    return body[:200] or default


def _reason(exc: Exception) -> str:
    text = scrub(str(exc).strip())
    return text or type(exc).__name__
