"""The skills as tools of a chat model, on the real llama.cpp server the brain's tests use:
a forced ``tool_choice`` makes the tiny model's call deterministic enough to test the
plumbing (streamed tool call -> the skill runs -> its result goes back as a tool message ->
the model's words); and the checks a call passes before it runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from secretary.config import Settings
from secretary.conversation.build import build_brain
from secretary.conversation.settings import ConversationSettings
from secretary.conversation.stages import Cancel, Heard
from secretary.skills.brain import SkillBrain
from secretary.skills.tools import SkillTools
from tests.calendar.support import CalendarServer, plain_calendar
from tests.conftest import make_settings
from tests.conversation.llama import MODEL_NAME, llama_server, needs_llama


@pytest.fixture(scope="module")
def chat() -> Iterator[str]:
    with llama_server() as url:
        yield url


def _settings(cache_dir: Path, tmp_path: Path, calendar: CalendarServer, chat: str | None,
              choice: str = "auto") -> Settings:
    settings = make_settings(cache_dir, data_dir=tmp_path, timezone="Europe/Berlin")
    settings.conversation = ConversationSettings(brain="skills", chat_tool_choice=choice,
                                                 chat_temperature=0.0, chat_max_tokens=40)
    settings.calendar = settings.calendar.model_copy(update={"url": calendar.url})
    if chat is not None:
        settings.ui = settings.ui.model_copy(update={"chat_url": chat,
                                                     "chat_model": MODEL_NAME})
    return settings


def _skills(settings: Settings) -> SkillBrain:
    brain = build_brain(settings)
    assert isinstance(brain, SkillBrain)
    return brain


@needs_llama
async def test_a_forced_tool_call_runs_the_skill_and_the_model_phrases_the_result(
        cache_dir: Path, tmp_path: Path, calendar: CalendarServer, chat: str) -> None:
    brain = _skills(_settings(cache_dir, tmp_path, calendar, chat, choice="remember"))
    # Not a template sentence: the chat model gets it, and must call ``remember``.
    heard = Heard("Keep in mind that my sister Lena likes green tea.", "en", 1.0, 2.0)
    reply = "".join([d async for d in brain.reply("s1", heard, Cancel())])
    assert reply.strip()
    memories = brain.secretary.notes.recent("memory")
    assert len(memories) == 1, memories  # the tool ran once, then the model spoke
    assert memories[0].text.strip()


@needs_llama
async def test_a_forced_tool_call_writes_to_the_calendar_through_the_typed_box(
        cache_dir: Path, tmp_path: Path, calendar: CalendarServer, chat: str) -> None:
    brain = _skills(_settings(cache_dir, tmp_path, calendar, chat, choice="add_todo"))
    answer = await brain.answer("I really must not forget to renew my passport.", "en", [])
    assert answer.strip()
    todos = plain_calendar(calendar.url, "Secretary").search(todo=True)
    assert len(todos) == 1  # what the model put in ``task`` is its own business


async def test_templates_answer_first_and_the_rest_gets_the_help_without_a_chat_model(
        cache_dir: Path, tmp_path: Path, calendar: CalendarServer) -> None:
    brain = _skills(_settings(cache_dir, tmp_path, calendar, None))
    answer = await brain.answer("Tell me a joke.", "en", [])
    assert answer.startswith("I keep your calendar")
    answer = await brain.answer("Erzähl mir einen Witz.", "de", [])
    assert answer.startswith("Ich führe deinen Kalender")
    assert (await brain.answer("What can you do?", "en", [])).startswith("I keep")


async def test_remembered_facts_go_into_the_chat_models_prompt(
        cache_dir: Path, tmp_path: Path, calendar: CalendarServer) -> None:
    settings = _settings(cache_dir, tmp_path, calendar, "http://127.0.0.1:9/v1")
    brain = _skills(settings)
    await brain.answer("Remember that my sister likes green tea.", "en", [])
    informed = await brain._informed("What should I bring my sister?")
    assert "my sister likes green tea" in informed.system_prompt
    unrelated = await brain._informed("How far is the moon?")
    assert "green tea" not in unrelated.system_prompt


@pytest.mark.parametrize(("name", "arguments", "problem"), [
    ("delete_everything", "{}", "there is no tool 'delete_everything'"),
    ("add_todo", "not json", "the arguments are not JSON"),
    ("add_todo", "[1, 2]", "must be a JSON object"),
    ("add_todo", "{}", "add_todo needs task"),
    ("add_reminder", json.dumps({"task": "x", "due": "tomorrow at three"}),
     "due must be an ISO 8601 date and time"),
])
async def test_a_bad_tool_call_is_answered_in_words_not_raised(
        cache_dir: Path, tmp_path: Path, calendar: CalendarServer, name: str,
        arguments: str, problem: str) -> None:
    brain = _skills(_settings(cache_dir, tmp_path, calendar, None))
    result = await SkillTools(brain.secretary).call(name, arguments, "en", "s1")
    assert result.startswith("Error:") and problem in result, result


async def test_a_tool_call_does_what_the_template_would(
        cache_dir: Path, tmp_path: Path, calendar: CalendarServer) -> None:
    brain = _skills(_settings(cache_dir, tmp_path, calendar, None))
    tools = SkillTools(brain.secretary)
    assert {spec["function"]["name"] for spec in tools.specs()} >= {
        "add_event", "add_reminder", "remember", "recall"}
    result = await tools.call("add_event", json.dumps(
        {"title": "Dinner with Sam", "start": "2030-05-03T19:30"}), "en", "s1")
    assert result.startswith("I put Dinner with Sam in the calendar"), result
    [event] = plain_calendar(calendar.url, "Secretary").search(event=True)
    assert "DTSTART;TZID=Europe/Berlin:20300503T193000" in event.data


async def test_a_title_with_control_characters_is_refused_in_words_and_not_written(
        cache_dir: Path, tmp_path: Path, calendar: CalendarServer) -> None:
    brain = _skills(_settings(cache_dir, tmp_path, calendar, None))
    before = len(plain_calendar(calendar.url, "Secretary").search(todo=True))
    result = await SkillTools(brain.secretary).call(
        "add_todo", json.dumps({"task": "buy milk\u0007"}), "en", "s1")
    assert "control characters" in result and "nothing was saved" in result, result
    assert len(plain_calendar(calendar.url, "Secretary").search(todo=True)) == before
