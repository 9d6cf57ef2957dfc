"""The chat brain's own tools (the skills, MCP servers' tools): a call's arguments are
checked against the tool's JSON schema before it runs; a call that does not match is not
made, and the model reads what was wrong as the tool's result and answers in words."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from secretary.conversation.brain import ChatBrain, History
from secretary.conversation.stages import Cancel, Heard
from secretary.schemas import arguments_problem
from tests.conversation.scripted import ChatStub, called, said, scripted_chat

TABLE = {"type": "function", "function": {
    "name": "book_table", "description": "Book a table.",
    "parameters": {
        "type": "object", "additionalProperties": False, "required": ["guests", "time"],
        "properties": {
            "guests": {"type": "integer", "minimum": 1}, "time": {"type": "string"},
            "seating": {"type": "string", "enum": ["inside", "outside"]},
            "contact": {"type": "object", "required": ["phone"],
                        "properties": {"phone": {"type": "string"}}}}}}}


class Tables:
    """A ``Toolbox`` with one tool that records its calls."""

    def __init__(self, spec: dict[str, Any] = TABLE) -> None:
        self.spec = spec
        self.calls: list[dict[str, Any]] = []

    def specs(self) -> list[dict[str, Any]]:
        return [self.spec]

    async def call(self, name: str, arguments: str, language: str | None,
                   session: str) -> str:
        self.calls.append(json.loads(arguments, strict=False))
        return "Booked."


@pytest.fixture(scope="module")
def chat() -> Iterator[ChatStub]:
    with scripted_chat() as chat:
        yield chat


@pytest.fixture(autouse=True)
def fresh(chat: ChatStub) -> None:
    chat.requests.clear()
    chat.scripts.clear()


async def reply(chat: ChatStub, tools: Tables) -> str:
    brain = ChatBrain(chat.url, "scripted", "You book tables.", History(4, 8), tools=tools)
    try:
        heard = Heard("A table for four at seven, please.", "en", 1.0, 2.0)
        return "".join([d async for d in brain.reply("s1", heard, Cancel())]).strip()
    finally:
        await brain.aclose()


@pytest.mark.parametrize(("arguments", "problem"), [
    ('{"guests": "four", "time": "19:00"}',  # a wrong type
     "arguments for book_table: guests: 'four' is not of type 'integer'"),
    ('{"guests": 4, "time": "19:00", "seating": "roof"}',  # an enum value out of range
     "arguments for book_table: seating: 'roof' is not one of ['inside', 'outside']"),
    ('{"guests": 4, "time": "19:00", "dog": true}',  # additionalProperties: false
     "arguments for book_table: Additional properties are not allowed ('dog' was "
     "unexpected)"),
    ('{"guests": 4, "time": "19:00", "contact": {}}',  # nested
     "arguments for book_table: contact: 'phone' is a required property"),
    ('{"time": "19:00"}', "arguments for book_table: 'guests' is a required property"),
    ('[4, "19:00"]', "arguments for book_table are not a JSON object"),
    ('{"guests": 4', "arguments for book_table are not valid JSON"),
])
async def test_a_call_that_does_not_match_the_schema_is_not_made_and_the_model_is_told(
        chat: ChatStub, arguments: str, problem: str) -> None:
    tools = Tables()
    chat.scripts += [called("book_table", arguments), said("Sorry, I could not book it.")]
    assert await reply(chat, tools) == "Sorry, I could not book it."
    assert tools.calls == []
    assert chat.tool_messages() == [f"Error: {problem}."]
    # The model may try again: the tools are still offered.
    assert chat.requests[-1]["tools"] == [TABLE]


async def test_a_call_that_matches_is_made_and_a_corrected_one_after_an_error(
        chat: ChatStub) -> None:
    tools = Tables()
    chat.scripts += [called("book_table", '{"guests": 4, "time": "19:00", "dog": true}'),
                     called("book_table", '{"guests": 4, "time": "19:00",\n'
                                          ' "contact": {"phone": "555\n0101"}}'),
                     said("Booked for four.")]
    assert await reply(chat, tools) == "Booked for four."
    # A raw line break inside a string, as small models write, is taken.
    assert tools.calls == [{"guests": 4, "time": "19:00", "contact": {"phone": "555\n0101"}}]
    assert chat.tool_messages() == [
        "Error: arguments for book_table: Additional properties are not allowed ('dog' was "
        "unexpected).", "Booked."]


async def test_a_schema_that_cannot_be_applied_checks_only_the_object(
        chat: ChatStub) -> None:
    # As an MCP server may declare: an invalid schema, or a $ref that does not resolve.
    for parameters in ({"type": "object", "properties": {"n": {"type": "numbr"}}},
                       {"type": "object", "$ref": "https://example.invalid/schema.json"}):
        tools = Tables({"type": "function", "function": {
            "name": "book_table", "description": "Book.", "parameters": parameters}})
        chat.scripts += [called("book_table", '{"n": "x"}'), said("Done.")]
        assert await reply(chat, tools) == "Done."
        assert tools.calls == [{"n": "x"}]
        assert arguments_problem("book_table", "[]", parameters) == (
            "arguments for book_table are not a JSON object")


def test_long_problems_are_cut() -> None:
    parameters = {"type": "object", "properties": {"text": {"type": "integer"}}}
    problem = arguments_problem("f", json.dumps({"text": "x" * 5000}), parameters)
    assert problem is not None and len(problem) < 250 and problem.endswith("...")
