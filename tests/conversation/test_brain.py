"""The streaming reply brain against a real OpenAI-compatible server: llama.cpp's, with
SmolLM2-135M-Instruct (tests/conversation/llama.py). Decoding at temperature 0."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from secretary.conversation.brain import ChatBrain, History
from secretary.conversation.metrics import TurnMetrics
from secretary.conversation.sentences import SentenceSplitter
from secretary.conversation.service import ConversationService
from secretary.conversation.stages import Cancel, Heard
from secretary.ui.app import create_app
from tests.conftest import make_settings
from tests.conversation.llama import MODEL_NAME, llama_server, needs_llama
from tests.conversation.support import (
    PORTRAIT,
    Hold,
    holding_proxy,
    of_type,
    recording,
    reply_audio,
    turn_events,
)
from tests.helpers import running_server

SYSTEM = "You are Secretary. Reply in plain spoken sentences."

pytestmark = needs_llama


@pytest.fixture(scope="module")
def chat_url() -> Iterator[str]:
    with llama_server() as url:
        yield url


def _brain(url: str, history: History | None = None) -> ChatBrain:
    return ChatBrain(url, MODEL_NAME, SYSTEM, history or History(4, 8), max_tokens=60,
                     temperature=0.0)


def _has_text(line: bytes) -> bool:
    """A server-sent event of the completion with some of the answer's text in it."""
    if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
        return False
    choice = json.loads(line[5:])["choices"][0]
    return bool((choice.get("delta") or {}).get("content"))


async def _reply(brain: ChatBrain, text: str, hold: Hold) -> list[str]:
    deltas = []
    async for delta in brain.reply("s", Heard(text, "en", 1.0, 1.0), Cancel()):
        if not deltas:
            hold.note("first token")
            hold.release()
        deltas.append(delta)
    await brain.aclose()
    return deltas


def test_the_reply_streams_token_by_token_and_sentences_leave_before_the_end(
        chat_url: str) -> None:
    question = "What should I cook for dinner tonight?"
    # Between the brain and the server, a proxy passes the answer's first token on, then
    # holds the rest back until the brain has handed that token to its caller. A brain that
    # waited for the whole answer (or for more than its first piece) would hand it on only
    # after the proxy gave up holding.
    with holding_proxy(chat_url.removesuffix("/v1"), hold_after=_has_text) as proxy, \
            proxy.holding() as hold:
        deltas = asyncio.run(_reply(_brain(f"{proxy.url}/v1"), question, hold))
    assert hold.log == ["held", "first token", "answer ended"], hold.log
    assert len(deltas) >= 10  # streamed, not one block
    text = "".join(deltas)
    assert len(text.split()) >= 10
    # The first sentence is complete (and would go to speech) well before the last token.
    splitter = SentenceSplitter(first_clause_chars=24)
    ready_at = next(i for i, d in enumerate(deltas) if splitter.feed(d))
    assert ready_at < len(deltas) - 3


def test_history_is_kept_per_session_and_bounded() -> None:
    history = History(max_turns=2, max_sessions=2)
    brain = ChatBrain("http://127.0.0.1:9/v1", MODEL_NAME, SYSTEM, history)
    for i in range(3):
        brain.remember("a", f"question {i}", f"answer {i}")
    brain.remember("b", "other", "page")
    messages = brain.messages("a", Heard("next", "de", 1.0, 1.0))
    assert [m["content"] for m in messages[1:]] == [
        "question 1", "answer 1", "question 2", "answer 2", "next"]
    assert "'de'" in messages[0]["content"] and messages[0]["content"].startswith(SYSTEM)
    brain.remember("c", "third", "session")  # past max_sessions: the least recent goes
    assert history.get("b") == [] and history.get("c") == [("third", "session")]
    assert len(history.get("a")) == 2
    asyncio.run(brain.aclose())


def test_a_turn_answered_by_the_chat_model(chat_url: str, cache_dir: Path) -> None:
    settings = make_settings(cache_dir)
    settings.ui = settings.ui.model_copy(update={"chat_url": chat_url,
                                                 "chat_model": MODEL_NAME})
    settings.conversation = settings.conversation.model_copy(
        update={"chat_temperature": 0.0, "chat_max_tokens": 60, "avatar": False})
    service = ConversationService(settings, TurnMetrics(), PORTRAIT.read_bytes())
    with running_server(create_app(settings, conversation=service)) as url:
        wav, _ = recording("en_cmu_arctic_axb_a0004.wav")
        events = turn_events(url, wav, session="page1")
        kinds = [e["type"] for e in events]
        assert "error" not in kinds, events
        replies = of_type(events, "reply")
        assert len(replies) >= 5  # the text grows token by token
        reply = replies[-1]["text"]
        transcript = of_type(events, "transcript")[0]["text"]
        assert reply.strip() and reply != transcript
        assert of_type(events, "audio") and reply_audio(events).duration > 1.0
        # Speech started before the model had finished writing.
        first_audio = kinds.index("audio")
        last_reply = len(kinds) - 1 - kinds[::-1].index("reply")
        assert kinds.index("sentence") < last_reply or first_audio < last_reply
        done = events[-1]
        assert done["outcome"] == "completed" and "brain_first_token" in done["timings"]
        print(f"turn with chat: {done['timings']}")
        # The exchange is remembered for this page session only.
        assert service.pipeline.brain.history.get("page1") == [  # type: ignore[attr-defined]
            (transcript, done["spoken"])]
        assert service.pipeline.brain.history.get("other") == []  # type: ignore[attr-defined]
