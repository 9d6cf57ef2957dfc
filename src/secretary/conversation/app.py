"""The conversation over HTTP: a thin router over ``ConversationService``, which the
browser UI's server includes under its ``/api``. A transcript answered at once
(``/api/reply``), portraits uploaded once per page session, a spoken turn streamed as
newline-delimited JSON events, its interruption, and Talk mode's end-of-speech check.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, File, Form, Request, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from secretary.conversation.service import (
    DEFAULT_PORTRAIT,
    MAX_REPLY_INPUT_CHARS,
    ConversationService,
)
from secretary.web.uploads import read_upload


class TurnIn(BaseModel):
    role: str = Field(pattern="^(user|assistant)$")
    content: str = Field(max_length=MAX_REPLY_INPUT_CHARS)


class ReplyRequest(BaseModel):
    text: str = Field(description="What the user said (the transcript).")
    language: str | None = Field(default=None, max_length=16)
    history: list[TurnIn] = Field(default_factory=list, description="Earlier turns, oldest first.")


class InterruptRequest(BaseModel):
    played: float | None = Field(
        default=None, ge=0, description="Seconds of the reply audio the listener heard.")


def build_router(conversation: ConversationService) -> APIRouter:
    router = APIRouter()

    @router.post("/api/reply")
    async def reply(request: Annotated[ReplyRequest, Body()]) -> dict[str, Any]:
        history = [(t.role, t.content) for t in request.history]
        return await conversation.reply(request.text, request.language, history)

    @router.post("/api/portrait")
    async def portrait(image: Annotated[UploadFile | None, File()] = None) -> dict[str, Any]:
        """Upload the avatar's portrait once per page session; turns name its key."""
        return await conversation.add_portrait(await read_upload(image, "image"))

    @router.post("/api/turn", response_class=StreamingResponse, responses={200: {
        "description": "The turn's events, one JSON object a line, as they happen",
        "content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
        404: {"description": "The portrait key is not known here: upload it again",
              "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/Error"}}}}})
    async def turn(
        audio: Annotated[UploadFile | None, File()] = None,
        session: Annotated[str, Form()] = "default",
        portrait: Annotated[str | None, Form()] = DEFAULT_PORTRAIT,
        expression: Annotated[str, Form()] = "neutral",
        intensity: Annotated[float, Form()] = 1.0,
        language: Annotated[str | None, Form()] = None,
        voice: Annotated[str | None, Form()] = None,
    ) -> StreamingResponse:
        """One spoken turn, streamed: newline-delimited JSON events as they happen."""
        recording = await read_upload(audio, "audio")
        started = await conversation.start_turn(
            recording, session=session, portrait=portrait or None, expression=expression,
            intensity=intensity, language=language, voice=voice)
        return StreamingResponse(
            conversation.ndjson(started), media_type="application/x-ndjson",
            headers={"Cache-Control": "no-cache", "X-Turn-Id": started.id})

    @router.post("/api/vad")
    async def vad(request: Request) -> dict[str, Any]:
        """Silero VAD over the last second of the microphone (16 kHz 16-bit PCM): how much
        is speech, and how long the silence at its end; Talk mode stops on it."""
        return await conversation.endpoint(await request.body())

    @router.post("/api/turn/{turn_id}/interrupt")
    async def interrupt(turn_id: str,
                        request: Annotated[InterruptRequest | None, Body()] = None
                        ) -> dict[str, Any]:
        played = request.played if request is not None else None
        return conversation.interrupt(turn_id, played)

    return router
