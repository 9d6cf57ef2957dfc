"""A session's instructions reach a real chat model (llama.cpp's server with
SmolLM2-135M-Instruct) as its system prompt, and its reply is spoken."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from secretary.conversation.stages import Heard
from secretary.realtime.app import create_app
from secretary.realtime.service import RealtimeService
from tests.conversation.llama import MODEL_NAME, llama_server, needs_llama
from tests.helpers import running_server
from tests.realtime.conftest import realtime_settings
from tests.realtime.support import ask, connect, of_type, reply_audio
from tests.realtime.support import collect as events_until

pytestmark = needs_llama


@pytest.fixture(scope="module")
def chat_service(cache_dir: Path) -> Iterator[RealtimeService]:
    with llama_server() as chat:
        settings = realtime_settings(cache_dir, partials=False, face=False)
        settings.ui = settings.ui.model_copy(update={"chat_url": chat, "chat_model": MODEL_NAME})
        settings.conversation.chat_temperature = 0.0
        settings.conversation.chat_max_tokens = 40
        service = RealtimeService(settings)
        service.load()
        yield service


async def test_instructions_are_the_chat_models_system_prompt(
        chat_service: RealtimeService) -> None:
    with running_server(create_app(service=chat_service)) as url:
        async with connect(url) as connection:
            await events_until(connection, "session.created")
            instructions = "You are Ada, a secretary. Answer in one short sentence."
            await connection.session.update(session={"type": "realtime",
                                                      "instructions": instructions})
            await events_until(connection, "session.updated")
            lease = next(iter(chat_service.leases.values()))
            messages = lease.session.brain().messages(
                lease.session.id, Heard("Hello", "en", 1.0, 1.0))
            assert messages[0]["content"].startswith(instructions)
            # The pipeline's own brain keeps the configured prompt for other sessions.
            assert not chat_service.pipeline.brain.system_prompt.startswith(instructions)

            await ask(connection, "What is your name?")
            events = await events_until(connection, "response.done")
            assert events[-1].response.status == "completed", events[-1].response
            said = of_type(events, "response.output_audio_transcript.done")[0].transcript
            assert said.strip()
            assert len(reply_audio(events)) > 24000 * 0.5
