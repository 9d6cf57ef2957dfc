"""The brain's own transfer: with a chat model, the call's session offers it
``transfer_call``; its call is answered (``function_call_output``), said, recorded with the
model's reason, and the call goes out by blind REFER. Without a chat model there is no tool.

The model is llama.cpp's server with SmolLM2-135M, forced to call the tool (the tiny model
calls reliably only then), behind the shared telephone service of the phone tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from secretary.conversation.brain import ChatBrain, EchoBrain, History
from secretary.phone.service import TRANSFER_TOOL, PhoneCall
from secretary.phone.settings import PhoneSettings
from secretary.skills.brain import SkillBrain
from tests.conversation.llama import MODEL_NAME, llama_server, needs_llama
from tests.phone.conftest import Phone, clip, needs_pjsua2
from tests.phone.test_call import calls, wait_for_record

FORCED = {"type": "function", "name": TRANSFER_TOOL["name"]}
DECIDED = "the secretary decided to transfer the call: "


# ---------------------------------------------------------------------- the session.update
class FakeSession:
    def __init__(self, brain: Any) -> None:
        self.stages = SimpleNamespace(brain=brain)
        self.sent: list[dict[str, Any]] = []

    async def handle(self, raw: str) -> None:
        self.sent.append(json.loads(raw))


class FakeRealtime:
    def __init__(self, brain: Any) -> None:
        self.session = FakeSession(brain)

    async def open(self, send: Any, **kwargs: Any) -> Any:
        return SimpleNamespace(session=self.session)


def chat_brain() -> ChatBrain:
    return ChatBrain("http://127.0.0.1:9/v1", "m", "You are a secretary.", History(2, 2))


async def session_update(brain: Any, transfer_to: str | None) -> dict[str, Any]:
    """The session.update a call sends its session, for ``brain`` (a call that ends before
    it is connected)."""
    realtime = FakeRealtime(brain)
    phone = SimpleNamespace(options=PhoneSettings(transfer_to=transfer_to), realtime=realtime,
                            log=SimpleNamespace(keep=lambda record: None))
    handle = SimpleNamespace(remote="sip:200@pbx.example", hangup=lambda: None)
    call = PhoneCall(phone, handle, asyncio.get_running_loop())  # type: ignore[arg-type]
    call.finished.set()
    await call._converse()
    (update,) = realtime.session.sent
    assert update["type"] == "session.update"
    return update["session"]


@pytest.mark.parametrize("brain", ["echo", "skills without a chat model"])
async def test_without_a_chat_model_the_session_has_no_tools(brain: str) -> None:
    made = EchoBrain(History(2, 2)) if brain == "echo" else SkillBrain(
        None, None, History(2, 2))  # type: ignore[arg-type]
    update = await session_update(made, "sip:human@127.0.0.1:5999")
    assert "tools" not in update and "tool_choice" not in update
    assert "telephone call from" in update["instructions"]


async def test_with_a_chat_model_the_session_offers_the_transfer() -> None:
    for brain in (chat_brain(), SkillBrain(None, chat_brain(), History(2, 2))):  # type: ignore[arg-type]
        update = await session_update(brain, "sip:human@127.0.0.1:5999")
        assert update["tools"] == [TRANSFER_TOOL] and update["tool_choice"] == "auto"
        # no number to transfer to: no tool
        assert "tools" not in await session_update(brain, None)


# ---------------------------------------------------------------------- a real call
@pytest.fixture(scope="module")
def chat() -> Iterator[str]:
    with llama_server() as url:
        yield url


@needs_pjsua2
@needs_llama
def test_the_model_transfers_the_call(phone: Phone, chat: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = phone.service.realtime.pipeline
    brain = ChatBrain(chat, MODEL_NAME, "You are a secretary on the telephone.",
                      History(4, 4), max_tokens=40, temperature=0.0)
    seen: list[dict[str, Any]] = []
    send = PhoneCall.send

    async def watched(self: PhoneCall, event: dict[str, Any]) -> None:
        seen.append(event)
        await send(self, event)

    monkeypatch.setattr(PhoneCall, "send", watched)
    monkeypatch.setattr(PhoneCall, "tool_choice", FORCED)
    monkeypatch.setattr(pipeline, "brain", brain)
    # the fixture's 6 s of silence would end the call while the model thinks on a busy CPU
    monkeypatch.setattr(phone.service.options, "silence_hangup_s", 30.0)
    target = phone.service.options.transfer_to
    assert target
    try:
        before = len(calls(phone))
        speech = clip(tmp_path, "en_cmu_arctic_aew_a0001.wav")  # any words: the call is forced
        events = phone.call("--play", str(speech), "--play-after", "4", "--hangup-after", "60",
                            timeout=90)
        record = wait_for_record(phone, before)
    finally:
        asyncio.run(brain.aclose())
    assert {"event": "transfer", "to": target} in events, events
    assert record["transferred_to"] == target and record["end_reason"] == "transferred"

    updated = [e for e in seen if e["type"] == "session.updated"]
    assert updated and updated[0]["session"]["tools"][0]["name"] == "transfer_call"
    (made,) = [e for e in seen if e["type"] == "response.function_call_arguments.done"]
    assert made["name"] == "transfer_call"
    # the call answered the function call: the history is complete
    answers = [e["item"] for e in seen if e["type"] == "conversation.item.done"
               and e["item"]["type"] == "function_call_output"]
    assert [(a["call_id"], json.loads(a["output"])) for a in answers] == [
        (made["call_id"], {"transferred_to": target})]
    # the model's reason, as it gave it, is in the record; then the sentence, the transfer
    reason = json.loads(made["arguments"] or "{}").get("reason")
    reason = " ".join(reason.split()) if isinstance(reason, str) else ""
    lines = [(line["who"], line["text"]) for line in record["lines"]]
    decided = lines.index(("event", DECIDED + (reason[:200] or "no reason given")))
    said = lines.index(("secretary", "One moment, I am putting you through."))
    assert decided < said < lines.index(("event", f"transferred to {target}")), lines
