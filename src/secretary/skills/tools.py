"""The skills as OpenAI tools for a chat model: the same actions as the templates, with
JSON-schema arguments, and the skill's own answer as the result the model phrases.

A tool call is checked before it runs: an unknown name, arguments that are not a JSON
object of the schema's fields, or a time that is not ISO 8601 give the model an error in
words, so it can say so or ask; nothing raises into the conversation."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timedelta
from typing import Any

from secretary.skills.intents import Request
from secretary.skills.service import Secretary

log = logging.getLogger(__name__)

_TEXT = {"type": "string"}
_MOMENT = {"type": "string", "description": "ISO 8601 date and time, e.g. 2026-12-11T13:00"}
_DAY = {"type": "string", "description": "ISO 8601 date, e.g. 2026-12-11"}

# name -> (description, properties, required)
_TOOLS: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "add_event": ("Put an appointment in the user's calendar.",
                  {"title": _TEXT, "start": _MOMENT, "end": _MOMENT}, ["title", "start"]),
    "list_events": ("The user's appointments and due to-dos on a day.",
                    {"day": _DAY}, ["day"]),
    "move_event": ("Move an appointment, found by its title (and its current day), to a "
                   "new start.", {"title": _TEXT, "day": _DAY, "start": _MOMENT},
                   ["title", "start"]),
    "cancel_event": ("Cancel an appointment, found by its title (and day).",
                     {"title": _TEXT, "day": _DAY}, ["title"]),
    "add_reminder": ("Remind the user of something at a time (said aloud when due).",
                     {"task": _TEXT, "due": _MOMENT}, ["task", "due"]),
    "add_todo": ("Add a to-do to the user's list.", {"task": _TEXT}, ["task"]),
    "list_todos": ("The user's open to-dos.", {}, []),
    "complete_todo": ("Mark one of the user's to-dos done.", {"task": _TEXT}, ["task"]),
    "add_note": ("Write down a note for the user.", {"text": _TEXT}, ["text"]),
    "remember": ("Remember a fact about the user for later conversations.",
                 {"fact": _TEXT}, ["fact"]),
    "recall": ("What the user's notes and remembered facts say about a subject.",
               {"subject": _TEXT}, ["subject"]),
}


class SkillTools:
    """A ``Toolbox`` of the secretary's skills."""

    def __init__(self, secretary: Secretary) -> None:
        self.secretary = secretary

    def specs(self) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {
            "name": name, "description": description,
            "parameters": {"type": "object", "properties": properties,
                           "required": required}}}
            for name, (description, properties, required) in _TOOLS.items()]

    async def call(self, name: str, arguments: str, language: str | None,
                   session: str) -> str:
        try:
            request = self.request(name, arguments, language or "en")
        except ValueError as exc:
            log.info("tool call %s refused: %s", name, exc)
            return f"Error: {exc}"
        answer = await self.secretary.perform(session, request)
        return answer.text

    def request(self, name: str, arguments: str, language: str) -> Request:
        """The skill request a tool call makes (``ValueError`` saying what is wrong)."""
        if name not in _TOOLS:
            raise ValueError(f"there is no tool {name!r}; the tools are {', '.join(_TOOLS)}")
        try:
            args = json.loads(arguments or "{}")
        except ValueError:
            raise ValueError("the arguments are not JSON") from None
        if not isinstance(args, dict):
            raise ValueError("the arguments must be a JSON object")
        _, properties, required = _TOOLS[name]
        missing = [key for key in required if not isinstance(args.get(key), str)
                   or not args[key].strip()]
        if missing:
            raise ValueError(f"{name} needs {', '.join(missing)} (text)")
        slots = {key: str(args[key]).strip() for key in properties if args.get(key)}
        zone = self.secretary.zone
        for key in ("start", "end", "due"):
            if key in slots:
                slots[key] = _moment(slots[key], key, zone)
        if "day" in slots:
            slots["day"] = _day(slots["day"])
        if name == "add_event":
            slots.setdefault("end", slots["start"] + timedelta(hours=1))
            slots["all_day"] = False
        elif name == "list_events":
            day = slots.pop("day")
            start = datetime.combine(day, datetime.min.time(), zone)
            slots |= {"start": start, "end": start + timedelta(days=1),
                      "label": day.isoformat()}
        elif name in ("move_event", "cancel_event"):
            slots.setdefault("day", None)
            slots["new_time_only"] = False
        return Request(name, language, slots, arguments)


def _moment(text: str, key: str, zone: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{key} must be an ISO 8601 date and time, not {text!r}") from None
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment.astimezone(zone)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"day must be an ISO 8601 date, not {text!r}") from None
