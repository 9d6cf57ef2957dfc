"""Forwarding the page's ``/api/<service>/...`` calls to the services behind the UI.

The page only ever talks to its own origin (no CORS, one certificate); the UI server passes
each call on to the service whose address is configured, never one taken from the request.
Upstream answers pass through unchanged (status, JSON error body, streamed audio or video);
a service that cannot be reached becomes a clear JSON 503, a broken answer a 502.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import Request
from fastapi.responses import StreamingResponse

from secretary.config import UiSettings
from secretary.errors import InvalidRequestError, NotFoundError, SecretaryError, redact_url
from secretary.web.client import UpstreamTimeoutError, http_failure, new_client

# Request headers the services read; nothing else (cookies, auth) leaves the UI server.
_FORWARDED_REQUEST_HEADERS = ("content-type", "accept")
_FORWARDED_RESPONSE_HEADERS = (
    "content-type",
    "content-disposition",
    "content-encoding",
    "retry-after",
    "cache-control",
)
HEALTH_TIMEOUT = 3.0
# What a path segment may hold unencoded (RFC 3986's pchar, less '%').
_SEGMENT_SAFE = "-._~!$&'()*+,;=:@"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upstream:
    name: str
    label: str
    base_url: str
    command: str  # how to start it, for the error message

    def url(self, path: str) -> httpx.URL:
        base = httpx.URL(self.base_url)
        # The path is appended to the configured URL's path; its host never comes from the
        # request, whatever the path holds, and it cannot climb out of the base path.
        segments = check_path(path)
        # Each segment percent-encoded as a whole ('%' too): the service decodes exactly the
        # segment checked here (a '%2e%2e' stays that text, never '..'), and '#' or '?'
        # stay part of the path.
        encoded = "/".join(quote(s, safe=_SEGMENT_SAFE) for s in segments)
        return base.copy_with(path=base.path.rstrip("/") + "/" + encoded)


def check_path(path: str) -> list[str]:
    """The segments of a forwarded path (already percent-decoded); 400 for control
    characters (no HTTP request may carry them) and for dot segments, which would leave
    the service's base path."""
    for char in path:
        if ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F:
            raise InvalidRequestError(
                f"the path holds the control character U+{ord(char):04X}", param="path")
    segments = [s for s in path.replace("\\", "/").split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise InvalidRequestError("the path may not hold '.' or '..' segments", param="path")
    return segments


def upstreams(settings: UiSettings) -> dict[str, Upstream]:
    """The services behind the gateway; ``settings`` with every address set, as
    ``Settings.ui_upstreams`` gives them."""
    return {
        u.name: u
        for u in (
            Upstream("stt", "speech-to-text", settings.stt_url, "secretary serve --only stt"),
            Upstream("tts", "text-to-speech", settings.tts_url, "secretary serve --only tts"),
            Upstream("avatar", "avatar", settings.avatar_url, "secretary serve --only avatar"),
        )
    }


class Forwarder:
    """Forwards to the services over one pooled client: connections are kept alive between
    the page's calls instead of opened (and TLS set up) for each one."""

    def __init__(self, settings: UiSettings, api_keys: tuple[str, ...] = ()) -> None:
        self.services = upstreams(settings)
        # The services share the stack's keys; the browser's own credentials (its cookie)
        # never leave this server.
        auth = {"Authorization": f"Bearer {api_keys[0]}"} if api_keys else {}
        self.client = new_client(settings.upstream_timeout, headers=auth)
        self.deadline = settings.upstream_deadline

    async def aclose(self) -> None:
        await self.client.aclose()

    def get(self, name: str) -> Upstream:
        try:
            return self.services[name]
        except KeyError:
            raise NotFoundError(
                f"no service named {name!r} behind this UI; known: {', '.join(self.services)}",
                param="service",
            ) from None

    async def forward(self, name: str, path: str, request: Request) -> StreamingResponse:
        upstream = self.get(name)
        # The route's pattern ends before a final line break ('$' matches there), dropping
        # it from ``path``: the whole path is checked as the request gave it.
        check_path(request.scope["path"])
        headers = {k: v for k in _FORWARDED_REQUEST_HEADERS if (v := request.headers.get(k))}
        body = await request.body()
        outgoing = self.client.build_request(
            request.method,
            upstream.url(path),
            params=request.url.query,
            headers=headers,
            content=body,
        )
        deadline = asyncio.get_running_loop().time() + self.deadline
        try:
            async with asyncio.timeout_at(deadline):
                answer = await self.client.send(outgoing, stream=True)
        except httpx.HTTPError as exc:
            raise _describe(upstream, exc) from None
        except TimeoutError:
            raise _describe(upstream, httpx.ReadTimeout("deadline")) from None
        return StreamingResponse(
            _relay(upstream, answer, deadline),
            status_code=answer.status_code,
            headers=_response_headers(answer.headers),
        )

    async def health(self) -> dict[str, Any]:
        names = list(self.services)
        results = await asyncio.gather(*(self._health_of(n) for n in names))
        return dict(zip(names, results, strict=True))

    async def _health_of(self, name: str) -> dict[str, Any]:
        upstream = self.services[name]
        started = time.perf_counter()
        report: dict[str, Any] = {"label": upstream.label, "url": redact_url(upstream.base_url)}
        try:
            answer = await self.client.get(upstream.url("/health"), timeout=HEALTH_TIMEOUT)
            body = answer.json() if answer.headers.get("content-type", "").startswith(
                "application/json") else {}
        except (httpx.HTTPError, ValueError) as exc:
            return report | {"state": "down", "detail": _describe(upstream, exc).message}
        status = body.get("status") if isinstance(body, dict) else None
        up = answer.status_code == 200 and status in (None, "ok")
        detail = "ready" if up else f"{status or 'answers HTTP ' + str(answer.status_code)}"
        return report | {
            "state": "up" if up else "down",
            "detail": detail,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        }


async def _relay(upstream: Upstream, answer: httpx.Response, deadline: float):
    """Pass the body on as it arrives (audio and video stream through), then release the
    upstream connection, also when the browser goes away first. The whole exchange ends
    at ``deadline`` (loop time), however slowly the bytes keep coming."""
    try:
        async with asyncio.timeout_at(deadline):
            async for chunk in answer.aiter_raw():
                yield chunk
    except TimeoutError:
        log.warning("%s: the answer ran past the total deadline; cut off", upstream.label)
        raise UpstreamTimeoutError(f"the {upstream.label} service's answer ran past the "
                                   "deadline (SECRETARY_UI_UPSTREAM_DEADLINE)") from None
    except httpx.HTTPError as exc:
        # Headers are gone already; all that can be done is end the body early, which the
        # browser reports as a network error on that request.
        raise _describe(upstream, exc) from None
    finally:
        await answer.aclose()


def _response_headers(headers: httpx.Headers) -> dict[str, str]:
    kept = {k: v for k in _FORWARDED_RESPONSE_HEADERS if (v := headers.get(k))}
    # The services describe their answers in X- headers (engine, voice, sample rate).
    return kept | {k: v for k, v in headers.items() if k.lower().startswith("x-")}


def _describe(upstream: Upstream, exc: Exception) -> SecretaryError:
    return http_failure(
        f"the {upstream.label} service at {redact_url(upstream.base_url)}", exc,
        remedy=f"start it with `{upstream.command}` or set "
        f"SECRETARY_UI_{upstream.name.upper()}_URL",
        param=upstream.name,
    )
