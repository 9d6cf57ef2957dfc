"""The skills over HTTP, served by the browser UI's server: the page's Agenda panel
(``GET /api/agenda``) and reminders as they fall due (``GET /api/reminders/stream``,
server-sent events) for the page in Talk mode and for other clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from secretary.errors import NotFoundError
from secretary.skills.reminders import Reminders
from secretary.skills.service import Secretary

_KEEPALIVE_S = 15.0  # a comment line so proxies keep the stream open
_SKILLS_OFF = {404: {"description": "The skills are off here (the transcript is read back)",
                     "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/Error"}}}}}


def build_router(secretary: Callable[[], Secretary | None], poll_s: float) -> APIRouter:
    """``secretary`` gives the process's skills (None where the brain has none); the
    calendar is asked for due reminders every ``poll_s`` seconds while someone listens."""
    router = APIRouter()
    watchers: list[Reminders] = []

    def skills() -> Secretary:
        found = secretary()
        if found is None:
            raise NotFoundError("the secretary's skills are off here "
                                "(SECRETARY_CONVERSATION_BRAIN=echo)")
        return found

    @router.get("/api/agenda", responses=_SKILLS_OFF)
    async def agenda() -> dict[str, Any]:
        """Today's and tomorrow's events, the open to-dos and the reminders still to come,
        from the calendar; ``error`` says why a part could not be read."""
        return await skills().agenda()

    @router.get("/api/reminders/stream", response_class=StreamingResponse, responses={200: {
        "description": "Server-sent events: one `reminder` event (JSON) per reminder due",
        "content": {"text/event-stream": {"schema": {"type": "string"}}}}, **_SKILLS_OFF})
    async def reminders(request: Request) -> StreamingResponse:
        """Each reminder that falls due while this stream is open (and one missed while
        nothing listened, at once). Each reminder is said once: by one listener's process."""
        found = skills()
        if not watchers:
            watchers.append(Reminders(found, poll_s))
            watchers[0].start()
        return StreamingResponse(_events(watchers[0], request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    return router


async def _events(watcher: Reminders, request: Request) -> AsyncIterator[str]:
    yield ": reminders\n\n"
    stream = watcher.listen()
    next_reminder = asyncio.ensure_future(anext(stream))
    try:
        while not await request.is_disconnected():
            done, _ = await asyncio.wait({next_reminder}, timeout=_KEEPALIVE_S)
            if not done:
                yield ": keep-alive\n\n"
                continue
            reminder = next_reminder.result()
            yield f"event: reminder\ndata: {json.dumps(reminder.as_json())}\n\n"
            next_reminder = asyncio.ensure_future(anext(stream))
    finally:
        next_reminder.cancel()
        with contextlib.suppress(BaseException):
            await next_reminder
        await stream.aclose()
