"""The secretary as a Wyoming conversation agent, as Home Assistant's Wyoming integration
uses it: the ``wyoming`` package's client sends ``transcript`` (with a context holding the
conversation id) and reads ``handled``. Real parts: the Wyoming service in-process, the
skills brain built from the settings, and the project's CalDAV server in a child process;
what a request leaves on the calendar is read back with a separate ``caldav`` client."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import icalendar
import pytest
from pydantic import ValidationError
from wyoming.asr import Transcript
from wyoming.event import Event
from wyoming.info import Describe, Info

from secretary.calendar.settings import CalendarSettings
from secretary.config import Settings, UiSettings
from secretary.conversation.settings import ConversationSettings
from secretary.skills.phrases import say
from secretary.wyoming.app import create_app
from secretary.wyoming.handle import MAX_TRANSCRIPT_CHARS
from secretary.wyoming.settings import WyomingSettings
from tests.calendar.support import CalendarServer, plain_calendar
from tests.conftest import make_settings
from tests.helpers import free_port, running_server
from tests.wyoming_api.client import client, run
from tests.wyoming_api.test_errors import Raw

BERLIN = ZoneInfo("Europe/Berlin")
CALENDAR = "Secretary"


@dataclass(frozen=True)
class Agent:
    port: int  # the handle server
    url: str  # /health, /metrics
    settings: Settings


@contextlib.contextmanager
def agent_server(cache_dir: Path, data_dir: Path, calendar_url: str,
                 **ui: object) -> Iterator[Agent]:
    """The Wyoming service with only its conversation agent on (no speech models needed),
    the skills brain over the CalDAV server at ``calendar_url``; ``ui``: the chat model."""
    settings = make_settings(
        cache_dir, data_dir=data_dir, timezone="Europe/Berlin",
        conversation=ConversationSettings(brain="skills"),  # the tests' default is echo
        calendar=CalendarSettings(url=calendar_url, name=CALENDAR, timeout=5.0),
        ui=UiSettings(**ui))
    settings.wyoming.stt_port = 0
    settings.wyoming.tts_port = 0
    settings.wyoming.handle_port = free_port()
    with running_server(create_app(settings)) as url:
        yield Agent(settings.wyoming.handle_port, url, settings)



@pytest.fixture(scope="module")
def agent(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory,
          calendar: CalendarServer) -> Iterator[Agent]:
    with agent_server(cache_dir, tmp_path_factory.mktemp("handle-data"), calendar.url) as a:
        yield a


async def _ask(port: int, text: str, language: str | None = "en",
               conversation: str | None = None) -> Event:
    """One request as Home Assistant makes it: a connection per transcript."""
    async with client(port) as c:
        context = {"conversation_id": conversation} if conversation else None
        await c.write_event(Transcript(text=text, language=language, context=context).event())
        event = await c.read_event()
        assert event is not None, "the server closed the connection"
        return event


def ask(port: int, text: str, language: str | None = "en",
        conversation: str | None = None) -> Event:
    return run(_ask(port, text, language, conversation))


def _todos(url: str) -> list[str]:
    return [str(component["SUMMARY"])
            for item in plain_calendar(url, CALENDAR).search(todo=True)
            for component in icalendar.Calendar.from_ical(item.data).walk("VTODO")]


def _events(url: str, title: str) -> list[datetime]:
    starts = []
    for item in plain_calendar(url, CALENDAR).search(event=True):
        for component in icalendar.Calendar.from_ical(item.data).walk("VEVENT"):
            if str(component["SUMMARY"]) == title:
                starts.append(component["DTSTART"].dt)
    return starts


def _phone_writes(url: str, title: str, days: tuple[int, ...]) -> None:
    """Events another client (the user's phone) put into the secretary's calendar."""
    calendar = plain_calendar(url, CALENDAR)
    today = datetime.now(BERLIN).replace(hour=13, minute=0, second=0, microsecond=0)
    for day in days:
        start = today + timedelta(days=day)
        calendar.save_event(dtstart=start, dtend=start + timedelta(hours=1), summary=title,
                            uid=f"phone-{title}-{day}".replace(" ", "-"))


# ---------------------------------------------------------------------- describe
def test_describe_offers_one_handle_program_in_english_and_german(agent: Agent) -> None:
    async def describe() -> Info:
        async with client(agent.port) as c:
            await c.write_event(Describe().event())
            event = await c.read_event()
            assert event is not None and event.type == "info", event
            return Info.from_event(event)

    info = run(describe())
    assert info.asr == [] and info.tts == []
    [program] = info.handle
    assert program.name == "secretary" and program.installed and program.version
    assert program.attribution.name == "Secretary"
    assert program.supports_home_control is False
    [model] = program.models
    assert model.installed and model.languages == ["de", "en"]
    assert "Calendar" in (model.description or "")


def test_health_and_metrics_list_the_handle_server(agent: Agent) -> None:
    ask(agent.port, "What time is it?")
    health = httpx.get(f"{agent.url}/health", timeout=10).json()
    assert health["status"] == "ok" and health["service"] == "wyoming"
    assert health["handle"]["port"] == agent.port
    assert health["handle"]["source"] == "skills"
    assert "stt" not in health and "tts" not in health
    metrics = httpx.get(f"{agent.url}/metrics", timeout=10).text
    assert 'secretary_wyoming_requests_total{kind="handle",outcome="ok"}' in metrics


# ---------------------------------------------------------------------- the skills
@pytest.mark.parametrize(("language", "text", "task", "confirmation"), [
    ("en", "Add buy milk to my list", "buy milk", "I added buy milk to your list."),
    # Home Assistant sends its pipeline's language, often with a region.
    ("de-DE", "Setz Milch kaufen auf meine Liste", "Milch kaufen",
     "Ich habe Milch kaufen auf deine Liste gesetzt."),
])
def test_a_todo_is_confirmed_and_on_the_calendar_server(
        agent: Agent, calendar: CalendarServer, language: str, text: str, task: str,
        confirmation: str) -> None:
    event = ask(agent.port, text, language, "todo-" + language)
    assert event.type == "handled", event
    assert event.data["text"] == confirmation
    assert event.data["context"] == {"conversation_id": "todo-" + language}
    assert task in _todos(calendar.url)


@pytest.mark.parametrize("language", ["en", "de"])
def test_what_nothing_understands_gets_what_i_can_do(agent: Agent, language: str) -> None:
    # No chat model: the secretary says what it does, as an answer (see handle.py for why
    # this is handled, not not-handled).
    event = ask(agent.port, "Tell me a joke about penguins", language)
    assert event.type == "handled", event
    assert event.data["text"] == say(language, "help")


def test_a_question_asked_back_is_answered_in_the_same_conversation(
        agent: Agent, calendar: CalendarServer) -> None:
    _phone_writes(calendar.url, "Lunch with Anna", (10, 20))
    question = ask(agent.port, "Cancel lunch with Anna.", "en", "conversation-1")
    assert question.type == "handled" and question.data["text"].startswith("Which"), question
    # Another conversation has no question open: "the first one" means nothing there.
    other = ask(agent.port, "The first one.", "en", "conversation-2")
    assert other.data["text"] == say("en", "help")
    assert len(_events(calendar.url, "Lunch with Anna")) == 2
    # The same conversation, on a new connection as Home Assistant makes it.
    done = ask(agent.port, "The first one.", "en", "conversation-1")
    assert done.type == "handled" and done.data["text"].startswith("I cancelled"), done
    [kept] = _events(calendar.url, "Lunch with Anna")
    assert kept.date() == (datetime.now(BERLIN) + timedelta(days=20)).date()


def test_without_a_context_the_connection_is_the_conversation(
        agent: Agent, calendar: CalendarServer) -> None:
    _phone_writes(calendar.url, "Coffee with Ben", (12, 22))

    async def talk() -> tuple[Event, Event]:
        async with client(agent.port) as c:
            await c.write_event(Transcript(text="Cancel coffee with Ben.", language="en")
                                .event())
            question = await c.read_event()
            await c.write_event(Transcript(text="The second one.", language="en").event())
            answer = await c.read_event()
            assert question is not None and answer is not None
            return question, answer

    question, answer = run(talk())
    assert question.data["text"].startswith("Which"), question
    # The answer names the conversation, so a client may continue it on a new connection.
    assert question.data["context"]["conversation_id"] == \
        answer.data["context"]["conversation_id"]
    assert answer.data["text"].startswith("I cancelled"), answer
    [kept] = _events(calendar.url, "Coffee with Ben")
    assert kept.date() == (datetime.now(BERLIN) + timedelta(days=12)).date()


# ---------------------------------------------------------------------- bad transcripts
async def _refused(port: int, events: list[Event]) -> list[str]:
    """Each event on one raw connection: its error's text; the connection stays usable."""
    conn = await Raw.open(port)
    texts = []
    try:
        for event in events:
            await conn.event(event)
            texts.append((await conn.error())["text"])
        await conn.usable()
    finally:
        conn.close()
    return texts


def test_a_malformed_transcript_is_an_error_and_the_server_keeps_serving(
        agent: Agent) -> None:
    texts = run(_refused(agent.port, [
        Event("transcript", {"language": "en"}),  # no text
        Event("transcript", {"text": 42}),
        Event("transcript", {"text": "   "}),
        Event("transcript", {"text": "x" * 100_000}),  # 100 kB: within the data limit
        Event("transcript", {"text": "add milk\x00 to my list"}),
        Event("transcript", {"text": "add milk to my list", "context": "nope"}),
        Event("transcript", {"text": "add milk to my list",
                             "context": {"conversation_id": 7}}),
    ]))
    assert "text must be a string" in texts[0] and "text must be a string" in texts[1]
    assert "empty" in texts[2]
    assert str(MAX_TRANSCRIPT_CHARS) in texts[3]
    assert "NUL" in texts[4]
    assert "context must be an object" in texts[5]
    assert "conversation_id" in texts[6]
    # Past the data limit: refused by the reader, still in step.
    [over] = run(_refused(agent.port, [Event("transcript", {"text": "x" * 300_000})]))
    assert "over the limit" in over
    # The next connection is served as if nothing happened.
    assert ask(agent.port, "What time is it?").type == "handled"


# ---------------------------------------------------------------------- failures
def test_a_calendar_that_is_down_and_a_chat_model_that_is_down(
        cache_dir: Path, tmp_path: Path) -> None:
    server = CalendarServer(tmp_path / "calendar")
    server.start()
    dead_chat = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    try:
        with agent_server(cache_dir, tmp_path / "data", server.url, chat_url=dead_chat,
                          chat_model="test-model") as agent:
            assert ask(agent.port, "Add buy milk to my list").type == "handled"
            server.kill()
            # The skills' answer says what happened: handled, in the user's language.
            event = ask(agent.port, "Add call mum to my list")
            assert event.type == "handled", event
            assert "couldn't reach the calendar" in event.data["text"]
            event = ask(agent.port, "Setz Brot kaufen auf meine Liste", "de")
            assert "Ich konnte den Kalender nicht erreichen" in event.data["text"]
            # What the skills don't know goes to the chat model, which is down: not handled,
            # with the reason as text.
            event = ask(agent.port, "Tell me a joke about penguins")
            assert event.type == "not-handled", event
            assert "test-model" in event.data["text"]
            metrics = httpx.get(f"{agent.url}/metrics", timeout=10).text
            assert 'kind="handle",outcome="not_handled"' in metrics
    finally:
        server.kill()


# ---------------------------------------------------------------------- settings
def test_the_ports_must_differ_and_zero_turns_the_agent_off(cache_dir: Path) -> None:
    with pytest.raises(ValidationError, match="_STT_PORT and _HANDLE_PORT must differ"):
        WyomingSettings(stt_port=10500)
    with pytest.raises(ValidationError, match="_TTS_PORT and _HANDLE_PORT must differ"):
        WyomingSettings(tts_port=4000, handle_port=4000)
    assert WyomingSettings(stt_port=0, tts_port=0, handle_port=0).handle_port == 0
    settings = make_settings(cache_dir)
    settings.wyoming.stt_port = settings.wyoming.tts_port = settings.wyoming.handle_port = 0
    with running_server(create_app(settings)) as url:
        health = httpx.get(f"{url}/health", timeout=10).json()
    assert "handle" not in health and health["status"] == "ok"
