"""Who may call a service: API keys, the Host allow-list and the Origin check, once for
every service (the app factory installs ``Guard``).

- ``SECRETARY_API_KEY`` (one or more keys, comma-separated) makes every route but
  ``/health`` and ``/metrics`` require ``Authorization: Bearer <key>``, the header the
  OpenAI clients send. A service that serves a page (the UI) also lets a browser in with
  a cookie set by its ``/login`` form.
- The ``Host`` header must name this machine (an IP address, loopback names, the configured
  host and, when listening on the network, the machine's name, plus
  ``SECRETARY_ALLOWED_HOSTS``): a page on another site that rebinds its DNS name to
  127.0.0.1 is refused.
- A state-changing request that a browser marks as coming from another origin (``Origin``
  or ``Sec-Fetch-Site``) is refused, so a cross-site form cannot make a service work.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import json
import socket
from collections.abc import Sequence
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from secretary.config import Settings
from secretary.errors import error_body

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
OPEN_PATHS = ("/health", "/metrics")
# A service with a login page lets these through without a key: the form, and the page's
# own scripts and styles (public files; the data they fetch needs the key).
LOGIN_OPEN_PATHS = ("/login", "/static/")
SESSION_COOKIE = "secretary_session"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """The host names a request may address; None: any."""
    extra = {h.lower().strip("[]") for h in settings.allowed_hosts}
    if "*" in extra:
        return None
    names = set(LOOPBACK_HOSTS) | extra
    if settings.host not in ("", "0.0.0.0", "::"):
        names.add(settings.host.lower().strip("[]"))
    if settings.host not in LOOPBACK_HOSTS:  # reachable from the network: this machine's name
        machine = socket.gethostname().lower()
        names |= {machine, f"{machine}.local"}
    return frozenset(names)


def session_token(key: str) -> str:
    """The browser cookie's value for ``key``: derived from it, so changing the key logs
    every browser out, and the key itself never sits in a cookie."""
    return hmac.new(key.encode(), b"secretary browser session", hashlib.sha256).hexdigest()


def _is_ip(name: str) -> bool:
    """An address typed as such: DNS rebinding needs a name the attacker controls, so a
    Host that is an IP address (a phone on the LAN opening the UI) is always fine."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8080
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _refuse_handshake(scope: Scope, send: Send, status: int, code: str,
                            message: str) -> None:
    """A refused WebSocket gets the same HTTP answer as any request (401 with the JSON
    error, 400, 403) where the server can send one at the handshake; elsewhere a close with
    1008 (policy violation) before it is accepted."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        return
    headers = [(b"content-type", b"application/json")]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "websocket.http.response.start", "status": status,
                "headers": headers})
    await send({"type": "websocket.http.response.body",
                "body": json.dumps(error_body(code, message)).encode()})


class Guard:
    """ASGI middleware: Host allow-list, Origin check, API key (or login cookie)."""

    def __init__(self, app: ASGIApp, settings: Settings, *, browser_login: bool = False) -> None:
        self.app = app
        self.keys = settings.api_keys
        self.sessions = tuple(session_token(k) for k in self.keys)
        self.hosts = allowed_hosts(settings)
        self.browser_login = browser_login

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._check(scope, headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, code, message = refusal
        if scope["type"] == "websocket":
            await _refuse_handshake(scope, send, status, code, message)
            return
        if status == 401 and self._wants_login_page(scope, headers):
            response: Response = RedirectResponse("/login", status_code=303)
        else:
            response = Response(
                json.dumps(error_body(code, message)), status_code=status,
                media_type="application/json",
                headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)
        await response(scope, receive, send)

    def _check(self, scope: Scope, headers: Headers) -> tuple[int, str, str] | None:
        host = headers.get("host")
        if (self.hosts is not None and host is not None and not _is_ip(_host_name(host))
                and _host_name(host) not in self.hosts):
            return (400, "host_not_allowed",
                    f"this service does not answer to the host name {_host_name(host)!r}; "
                    "add it to SECRETARY_ALLOWED_HOSTS")
        method = scope.get("method", "GET")
        if scope["type"] == "websocket" or method not in _SAFE_METHODS:
            origin = headers.get("origin")
            # Same host name, any port: the UI's page may call a sibling service directly.
            if origin is not None and (origin == "null" or host is None
                                       or _host_name(urlsplit(origin).netloc)
                                       != _host_name(host)):
                return (403, "cross_origin",
                        f"requests from the page at {origin} are not accepted here")
            if headers.get("sec-fetch-site") == "cross-site":
                return (403, "cross_origin", "cross-site requests are not accepted here")
        if not self.keys:
            return None
        path = scope.get("path", "")
        if path in OPEN_PATHS or (self.browser_login and path.startswith(LOGIN_OPEN_PATHS)):
            return None
        if self._authorized(headers):
            return None
        return (401, "unauthorized",
                "this service needs an API key: send Authorization: Bearer <key> (one of "
                "SECRETARY_API_KEY)")

    def _authorized(self, headers: Headers) -> bool:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and _matches(given.strip(), self.keys):
            return True
        if self.browser_login:
            cookie = _cookie(headers.get("cookie", ""), SESSION_COOKIE)
            return cookie is not None and _matches(cookie, self.sessions)
        return False

    def _wants_login_page(self, scope: Scope, headers: Headers) -> bool:
        return (self.browser_login and scope.get("method") == "GET"
                and "text/html" in headers.get("accept", ""))


def _matches(given: str, expected: Sequence[str]) -> bool:
    found = False
    for candidate in expected:  # compare with every key: the time says nothing about which
        found |= hmac.compare_digest(given.encode(), candidate.encode())
    return found


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Secretary: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 24rem; margin: 4rem auto">
<h1>Secretary</h1><p>This server needs its API key (SECRETARY_API_KEY).</p>{message}
<form method="post" action="/login">
<label>API key <input type="password" name="key" autocomplete="current-password"
 autofocus required></label> <button type="submit">Sign in</button></form></body></html>
"""


def login_router(settings: Settings) -> APIRouter:
    """``/login``: a form that trades the API key for an HttpOnly session cookie."""
    router = APIRouter(include_in_schema=False)
    keys = settings.api_keys

    def page(message: str = "", status: int = 200) -> HTMLResponse:
        shown = f'<p role="alert">{html.escape(message)}</p>' if message else ""
        return HTMLResponse(_LOGIN_PAGE.format(message=shown), status_code=status,
                            headers={"Cache-Control": "no-store"})

    @router.get("/login")
    async def login_form() -> HTMLResponse:
        return page("" if keys else "No key is configured: there is nothing to sign in to.")

    @router.post("/login")
    async def login(request: Request, key: Annotated[str, Form(max_length=4096)] = ""
                    ) -> Response:
        if not keys:
            return RedirectResponse("/", status_code=303)
        for candidate in keys:
            if hmac.compare_digest(key.strip().encode(), candidate.encode()):
                response = RedirectResponse("/", status_code=303)
                response.set_cookie(SESSION_COOKIE, session_token(candidate), httponly=True,
                                    samesite="strict", secure=request.url.scheme == "https",
                                    max_age=30 * 24 * 3600)
                return response
        return page("That is not the key.", status=401)

    @router.post("/logout")
    async def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    return router
