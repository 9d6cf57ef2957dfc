"""The calendar service: Radicale's CalDAV server inside the project's usual service app.

Phones and desktop calendars sync with it, and the secretary's skills read and write it
through ``secretary.calendar.store``; everything lives in files under
``data_dir/calendar``. The shared app factory puts ``/health``, ``/metrics``, the size
limit and the guard (Host, Origin, API key) in front of it, so the CalDAV routes are
protected exactly like every other service's routes.

Radicale sees one owner, ``secretary`` (or SECRETARY_CALENDAR_USERNAME): whoever gets past
the guard is that owner. With SECRETARY_API_KEY set, CalDAV clients, which only know user
names and passwords, log in with any user name and an API key as the password; that Basic
login is turned into the bearer key the guard checks.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from a2wsgi import WSGIMiddleware
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from radicale import Application
from radicale import config as radicale_config
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from secretary.calendar.settings import OWNER
from secretary.config import Settings
from secretary.errors import error_body
from secretary.web.app import create_service_app

log = logging.getLogger(__name__)

_BASIC_CHALLENGE = (b"www-authenticate", b'Basic realm="Secretary", charset="UTF-8"')


def storage_folder(settings: Settings) -> Path:
    """Where the calendar's files live: the data folder, never the cache."""
    return settings.data_dir / "calendar"


def owner(settings: Settings) -> str:
    """The one Radicale user every guarded request acts as."""
    return settings.calendar.username or OWNER


def radicale_configuration(folder: Path) -> radicale_config.Configuration:
    """Radicale's settings in code, so no config file of the machine is read: file
    storage in ``folder``, the user handed over by the WSGI wrapper (the guard already
    decided who may come in), owner-only rights and no web pages."""
    configuration = radicale_config.load()
    configuration.update({
        "storage": {"type": "multifilesystem", "filesystem_folder": str(folder)},
        "auth": {"type": "remote_user"},
        "rights": {"type": "owner_only"},
        "web": {"type": "none"},
    }, "secretary")
    return configuration


def _as_owner(app: Any, user: str) -> Any:
    """The WSGI app with every request made by ``user`` (Radicale's remote_user auth)."""

    def wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ["REMOTE_USER"] = user
        return app(environ, start_response)

    return wsgi


class BasicKeyLogin:
    """Outermost ASGI middleware: a Basic login whose password is an API key becomes the
    bearer key the guard checks, and a 401 also offers Basic, which CalDAV clients answer
    with the configured user name and password."""

    def __init__(self, app: ASGIApp, keys: tuple[str, ...]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys:
            await self.app(scope, receive, send)
            return
        headers = []
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                key = self._key_of(value)
                if key is not None:
                    value = b"Bearer " + key.encode()
            headers.append((name, value))
        scope = {**scope, "headers": headers}

        async def challenging_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                message = {**message,
                           "headers": [*message.get("headers", []), _BASIC_CHALLENGE]}
            await send(message)

        await self.app(scope, receive, challenging_send)

    def _key_of(self, value: bytes) -> str | None:
        scheme, _, encoded = value.partition(b" ")
        if scheme.lower() != b"basic":
            return None
        try:
            _, _, password = base64.b64decode(encoded.strip(), validate=True
                                              ).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        found = None
        for key in self.keys:  # compare with every key: the time says nothing about which
            if hmac.compare_digest(password.encode(), key.encode()):
                found = key
        return found


class CalendarService:
    """What the app factory needs: the health of the storage folder, nothing to load."""

    name = "calendar"
    title = "Secretary calendar (CalDAV)"
    preload = False
    queue = None

    def __init__(self, settings: Settings, folder: Path) -> None:
        self.settings = settings
        self.folder = folder
        self.created = int(time.time())
        self.wsgi: WSGIMiddleware | None = None

    def writable(self) -> bool:
        return self.folder.is_dir() and os.access(self.folder, os.W_OK | os.X_OK)

    def health(self) -> dict[str, Any]:
        writable = self.writable()
        return {"status": "ok" if writable else "degraded", "service": self.name,
                "storage": {"writable": writable}}

    def load(self) -> None:
        return None

    def close(self) -> None:
        if self.wsgi is not None:
            self.wsgi.executor.shutdown(wait=False)

    def model_ids(self) -> tuple[str, ...]:
        return ()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    folder = storage_folder(settings)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:  # /health says so; writes answer errors until it is fixed
        log.error("the calendar's storage folder %s cannot be created: %s", folder, exc)
    if settings.log_level.lower() != "debug":
        logging.getLogger("radicale").setLevel(logging.WARNING)  # a line per request
    service = CalendarService(settings, folder)
    caldav: ASGIApp
    try:
        radicale = Application(radicale_configuration(folder))
    except OSError as exc:  # the service still starts: /health says what is wrong
        log.error("the calendar cannot use its storage folder %s: %s", folder, exc)
        caldav = JSONResponse(error_body(
            "calendar_storage", "the calendar's storage folder cannot be used; see the "
            "service's log"), status_code=503)
    else:
        service.wsgi = WSGIMiddleware(_as_owner(radicale, owner(settings)))
        caldav = service.wsgi
    app = create_service_app(service, lambda _: APIRouter())
    # After the factory's routes, so /health and /metrics stay ours.
    app.mount("/", caldav, name="caldav")
    app.add_middleware(BasicKeyLogin, keys=settings.api_keys)
    return app
