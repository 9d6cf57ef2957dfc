"""The browser UI's service layer: the gateway to the other services, and the conversation
(its own service, ``secretary.conversation``) that the page's turns and replies go to.

Plain Python apart from the gateway's pass-through (``Forwarder.forward``), which relays
a request as it came.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx

from secretary.config import Settings
from secretary.conversation.service import ConversationService
from secretary.errors import InvalidRequestError, redact_url
from secretary.phone.calls import CallLog
from secretary.ui.upstream import HEALTH_TIMEOUT, Forwarder
from secretary.web.client import http_failure

log = logging.getLogger(__name__)


class UiService:
    name = "ui"
    title = "Secretary browser UI"
    browser_login = True  # with an API key set, a browser signs in at /login
    queue = None  # the gateway's work is upstream; a turn's has its own bound

    def __init__(self, settings: Settings, conversation: ConversationService) -> None:
        self.settings = settings
        self.forwarder = Forwarder(settings.ui_upstreams(), settings.api_keys)
        # The turns and replies (POST /api/turn, /api/reply); in-process engines load at
        # start-up.
        self.conversation = conversation
        self.preload = settings.conversation.preload
        self.created = int(time.time())

    def load(self) -> None:
        self.conversation.load()

    async def close(self) -> None:
        await self.forwarder.aclose()
        await self.conversation.aclose()

    def model_ids(self) -> tuple[str, ...]:
        return ()

    def health(self) -> dict[str, Any]:
        loading = self.preload and not self.conversation.loaded
        return {"status": "loading" if loading else "ok", "service": "ui",
                "reply": self.conversation.describe_reply(),
                "conversation": self.conversation.describe()}

    async def status(self) -> dict[str, Any]:
        return {"services": await self.forwarder.health(),
                "reply": self.conversation.describe_reply()}

    async def live_offer(self, sdp: bytes, content_type: str, query: str
                         ) -> tuple[int, str, bytes, dict[str, str]]:
        """Forward Live mode's SDP offer to the realtime service: (status, content type,
        body, headers) of its answer."""
        if not content_type.startswith("multipart/") and not sdp.lstrip().startswith(b"v="):
            # Refused here, so a malformed offer never costs the realtime service a call.
            raise InvalidRequestError("the body must be a WebRTC SDP offer (application/sdp, "
                                      "starting with v=0)", param="sdp")
        base = (self.settings.ui.realtime_url or self.settings.local_url("realtime")).rstrip("/")
        try:
            answer = await self.forwarder.client.post(
                f"{base}/v1/realtime/calls", content=sdp, params=query or None,
                headers={"Content-Type": content_type})
        except httpx.HTTPError as exc:
            raise http_failure(
                f"the realtime service at {base}", exc, param="realtime",
                remedy="start it with `secretary serve --only realtime` or set "
                "SECRETARY_UI_REALTIME_URL") from None
        headers = {k: v for k in ("retry-after",) if (v := answer.headers.get(k))}
        return (answer.status_code, answer.headers.get("content-type", "application/sdp"),
                answer.content, headers)

    def phone_url(self) -> str:
        """The telephone service's HTTP side (/api/calls): this machine's, at
        SECRETARY_PHONE_HTTP_PORT."""
        sip = httpx.URL(self.settings.local_url("phone"))
        return str(sip.copy_with(port=self.settings.phone.http_port)).rstrip("/")

    async def calls(self, limit: int) -> dict[str, Any]:
        """The latest calls for the page's Calls panel, from the telephone service; where it
        does not answer, ``phone: "down"`` with why, and the calls it kept in this machine's
        data folder (none where it runs elsewhere). Never an error: the page polls this."""
        base = self.phone_url()
        try:
            answer = await self.forwarder.client.get(
                f"{base}/api/calls", params={"limit": limit}, timeout=HEALTH_TIMEOUT)
            body = answer.json() if answer.status_code == 200 else None
            if isinstance(body, dict) and isinstance(body.get("data"), list):
                return {"object": "list", "data": body["data"], "phone": "up"}
            detail = f"the telephone service at {redact_url(base)} answered HTTP " \
                f"{answer.status_code}"
        except (httpx.HTTPError, ValueError) as exc:
            # Said on the page, not logged: the page asks every half minute.
            log.debug("the telephone service at %s: %s", base, exc)
            detail = f"the telephone service at {redact_url(base)} is not running " \
                "(start it with `secretary serve --only phone`)"
        kept = await asyncio.to_thread(CallLog(self.settings.data_dir / "calls").list, limit)
        return {"object": "list", "data": kept, "phone": "down", "detail": detail}
