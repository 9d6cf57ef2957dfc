"""Requests understood without a language model: sentence templates per language (hassil).

The templates live in ``sentences/<language>.yaml`` (package data). Times are template slots
(lists and number ranges), never free wildcards, and ``when`` resolves them, so "remind me to
call the dentist tomorrow at 3 pm" splits into a task and a time. Free text (a title, a task,
a note) is cut from what the user said, so it keeps their words and capitals.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from importlib import resources
from typing import Any

from hassil import Intents, recognize_all
from hassil.models import MatchEntity
from hassil.recognize import RecognizeResult

from secretary.skills import when

CHOICE = "answer_choice"
#: Results of one template set looked at per request: wildcards can split a text many ways.
_MAX_RESULTS = 48

_ARTICLES = {
    "en": {"a", "an", "the"},
    "de": {"ein", "eine", "einen", "einem", "einer", "der", "die", "das", "den", "dem"},
}
_POSSESSIVES = {"en": {"my"}, "de": {"mein", "meine", "meinen", "meinem", "meiner"}}
_DATIVE = {"mein": "meinem", "meine": "meiner", "dein": "deinem", "deine": "deiner",
           "sein": "seinem", "seine": "seiner", "ihr": "ihrem", "ihre": "ihrer",
           "unser": "unserem", "unsere": "unserer"}
_WEEKS = {"this": ("this week", "diese Woche"), "next": ("next week", "nächste Woche")}
_ENDS = " \t,.;:!?\"“”„«»"
_NOT_SUBJECTS = {"up", "new", "that", "this", "it", "going on", "happening", "the matter",
                 "wrong", "next", "the weather", "los", "das", "es", "dir", "denn los",
                 "passiert", "das wetter"}
#: Phrases that use every number range with words, matched once at start-up.
_WARM_UP = {
    "en": ("remind me in ten minutes to stretch", "number two",
           "remind me on december twelve at three thirty to stretch"),
    "de": ("erinnere mich in zehn Minuten ans Dehnen", "nummer zwei",
           "erinnere mich am zwölf Dezember um drei Uhr dreißig ans Dehnen"),
}


@dataclass(frozen=True)
class Request:
    """What a request asks for, with its slots resolved (datetimes aware, in the user's zone)."""

    intent: str
    language: str
    slots: dict[str, Any]
    text: str


# --------------------------------------------------------------------------- normalising
class _Tracked:
    """Text being normalised, with where each character came from in the original, so a
    wildcard slot is cut from what the user said rather than from the normalised form."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = list(range(len(text)))
        self.ends = [i + 1 for i in range(len(text))]

    def sub(self, pattern: re.Pattern[str], repl: str) -> None:
        parts: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        pos = 0
        for found in pattern.finditer(self.text):
            begin, end = found.span()
            parts.append(self.text[pos:begin])
            starts += self.starts[pos:begin]
            ends += self.ends[pos:begin]
            new = found.expand(repl)
            if new:
                source = self.starts[begin] if begin < len(self.starts) else self.ends[-1]
                source_end = self.ends[end - 1] if end > begin else source
                parts.append(new)
                starts += [source] * len(new)
                ends += [source_end] * len(new)
            pos = end
        if pos == 0 and not parts:
            return
        parts.append(self.text[pos:])
        self.text = "".join(parts)
        self.starts = starts + self.starts[pos:]
        self.ends = ends + self.ends[pos:]

    def source(self, span: tuple[int, int]) -> tuple[int, int] | None:
        begin, end = span
        if not 0 <= begin < end <= len(self.starts):
            return None
        return self.starts[begin], self.ends[end - 1]


def _rules(*pairs: tuple[str, str]) -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile(pattern, re.IGNORECASE), repl) for pattern, repl in pairs]


_TRIM = _rules((r"^[\s\"'“„«»¿¡]+", ""), (r"[\s\"“”»«.!?,;:…]+$", ""))
_COMMON = _rules(
    (r"[’`´]", "'"),
    (r"\s+", " "),
    *[(p.pattern, r) for p, r in _TRIM],
    (r"^(?:please|hey|okay|ok|bitte|hallo|hi)\b[\s,]*(?=\S)", ""),
    (r"[\s,]+(?:please|bitte|thanks|thank you|danke)$", ""),
    *[(p.pattern, r) for p, r in _TRIM],
    (r"\b(\d{1,2}):(\d{2})\b", r"\1 h \2"),
)
_BY_LANGUAGE = {
    "en": _rules(
        (r"\ba\.\s?m\b\.?", "am"),
        (r"\bp\.\s?m\b\.?", "pm"),
        (r"\b(\d{1,2})\.(\d{2})(?=\s?[ap]m\b)", r"\1 h \2"),
        (r"(\d)([ap]m)\b", r"\1 \2"),
        (r"\b(\d{1,2})(?:st|nd|rd|th)\b", r"\1"),
        (r"\bto-do(s?)\b", r"todo\1"),
        (r"\bto do (list|item)", r"todo \1"),
    ),
    "de": _rules(
        (r"\b(\d{1,2})\.(\d{2})(?=\s*uhr\b)", r"\1 h \2"),
        (r"\b(um|bis|von|auf|gegen|ab) (\d{1,2})\.(\d{2})\b", r"\1 \2 h \3"),
        (r"\b(\d{1,2})\.(?=\s|$)", r"\1"),
        (r"\bto[- ]?do[- ]?liste\b", "todoliste"),
        (r"\bto-do(s?)\b", r"todo\1"),
    ),
}


def _normalized(text: str, language: str) -> _Tracked:
    tracked = _Tracked(text)
    for pattern, repl in _COMMON + _BY_LANGUAGE.get(language, []):
        tracked.sub(pattern, repl)
    return tracked


def normalize(text: str, language: str) -> str:
    """Text as the templates expect it: "3 p.m." -> "3 pm", "15:30" -> "15 h 30", "12th" ->
    "12", "am 12. Dezember" -> "am 12 Dezember", no final punctuation; case is kept (hassil
    ignores it) so that titles keep the user's capitals."""
    return _normalized(text, language).text


# --------------------------------------------------------------------------- matching
class IntentMatcher:
    """Matches requests against the templates of some languages. Built once (the YAML read,
    number words indexed), then only read, so one can serve all threads."""

    def __init__(self, languages: Sequence[str] = ("en", "de")) -> None:
        self.languages = tuple(languages)
        self._ordinary: dict[str, Intents] = {}
        self._choice: dict[str, Intents] = {}
        for language in self.languages:
            folder = resources.files("secretary.skills").joinpath("sentences")
            source = folder.joinpath(f"{language}.yaml")
            intents = Intents.from_yaml(io.StringIO(source.read_text(encoding="utf-8")))
            self._ordinary[language] = dataclasses.replace(
                intents, intents={k: v for k, v in intents.intents.items() if k != CHOICE})
            self._choice[language] = dataclasses.replace(
                intents, intents={k: v for k, v in intents.intents.items() if k == CHOICE})
        # Number words are indexed on first use; do it now rather than in a user's request.
        warm = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        for language in self.languages:
            for phrase in _WARM_UP.get(language, ()):
                self.match(phrase, language, warm, expect_choice=True)

    def match(self, text: str, language: str | None, now: datetime, *,
              expect_choice: bool = False) -> Request | None:
        """The request ``text`` makes, or None when no template matches.

        ``now`` is aware (its tzinfo is the user's zone). ``language`` is Whisper's guess: its
        templates are tried first, then the others. ``expect_choice``: the secretary asked
        which of several things was meant, so answers like "the first one" are tried first."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        guess = (language or "").lower()[:2]
        order = sorted(self.languages, key=lambda lang: lang != guess)
        sets = [self._choice, self._ordinary] if expect_choice else [self._ordinary]
        for grammar in sets:
            for lang in order:
                request = self._best(grammar[lang], lang, text, now)
                if request is not None:
                    return request
        return None

    def _best(self, intents: Intents, language: str, text: str,
              now: datetime) -> Request | None:
        """The match that leaves the least to wildcards: "remind me to {task} <time>" takes
        "call the dentist" + "tomorrow at 3 pm" over "call the dentist tomorrow" + "at 3 pm"."""
        tracked = _normalized(text, language)
        if not tracked.text:
            return None
        best: Request | None = None
        best_score = 0
        for result in _first(recognize_all(tracked.text, intents, language=language)):
            score = sum(len(e.text.strip()) for e in result.entities_list if e.is_wildcard)
            if best is not None and score >= best_score:
                continue
            request = self._request(result, language, tracked, text, now)
            if request is not None:
                best, best_score = request, score
                if score == 0:
                    break
        return best

    def _request(self, result: RecognizeResult, language: str, tracked: _Tracked, text: str,
                 now: datetime) -> Request | None:
        slots: dict[str, Any] = {}
        words: dict[str, str] = {}
        for entity in result.entities_list:
            if entity.is_wildcard:
                if not _whole_words(entity.text_span, tracked.text):
                    return None  # "Mittag" + "essen mit Anna" out of "Mittagessen mit Anna"
                words[entity.name] = _cut(entity, tracked, text)
                continue
            slots[entity.name] = entity.value
            said = entity.text.strip()
            if entity.name.endswith("hour") and len(said) == 2 and said.startswith("0"):
                slots[entity.name + "24"] = True
        if any(not value for value in words.values()):
            return None
        build = _BUILDERS[result.intent.name]
        try:
            built = build(slots, words, language, now, text)
        except ValueError:  # a day that does not exist, "February 30"
            return None
        if built is None:
            return None
        return Request(result.intent.name, language, built, text.strip())


def _first(results: Iterable[RecognizeResult]) -> Iterator[RecognizeResult]:
    for count, result in enumerate(results):
        if count >= _MAX_RESULTS:
            return
        yield result


def _whole_words(span: tuple[int, int] | None, text: str) -> bool:
    """Whether a wildcard's text starts and ends at word boundaries of the matched text."""
    if span is None:
        return True
    begin, end = span
    while begin < end and text[begin].isspace():
        begin += 1
    while end > begin and text[end - 1].isspace():
        end -= 1
    return (begin == 0 or not text[begin - 1].isalnum()) and (
        end >= len(text) or not text[end].isalnum())


def _cut(entity: MatchEntity, tracked: _Tracked, text: str) -> str:
    """A wildcard's words as the user said them (the normalised text when out of reach)."""
    span = tracked.source(entity.text_span) if entity.text_span else None
    said = text[span[0]:span[1]] if span else entity.text
    return said.strip(_ENDS)


def _drop_first(words: str, drop: set[str]) -> str:
    """``words`` without a leading article ("the dentist" -> "dentist"), if more is left."""
    first, _, rest = words.partition(" ")
    return rest.strip() if first.lower() in drop and rest.strip() else words


def _title(words: str, language: str, possessive: bool = True) -> str:
    drop = _ARTICLES.get(language, set()) | (_POSSESSIVES.get(language, set())
                                             if possessive else set())
    return _drop_first(words, drop)


# --------------------------------------------------------------------------- slots
Builder = Callable[[dict[str, Any], dict[str, str], str, datetime, str], dict[str, Any] | None]


def _add_event(slots: dict[str, Any], words: dict[str, str], language: str, now: datetime,
               text: str) -> dict[str, Any] | None:
    title = _title(words["title"], language, possessive=False)
    if title.lower().split()[0] in ("to", "zu"):  # "I have to leave at 3": not an event
        return None
    when.with_end_meridiem(slots)
    start = when.resolve_moment(slots, now)
    if start is None:
        day = when.said_day(slots, now)
        if day is None:
            return None
        start, end = when.day_span(day, now.tzinfo)
        return {"title": title, "start": start, "end": end, "all_day": True}
    end = when.resolve_end(slots, start) or when.later(start, 60)
    return {"title": title, "start": start, "end": end, "all_day": False}


def _list_events(slots: dict[str, Any], words: dict[str, str], language: str, now: datetime,
                 text: str) -> dict[str, Any]:
    period = slots.get("period")
    if period in _WEEKS:
        start, end = when.week_span(now, period)
        return {"start": start, "end": end, "label": _WEEKS[period][language == "de"]}
    day = when.said_day(slots, now) or now.date()
    start, end = when.day_span(day, now.tzinfo)
    return {"start": start, "end": end, "label": when.say_day(day, now.date(), language)}


def _move_event(slots: dict[str, Any], words: dict[str, str], language: str, now: datetime,
                text: str) -> dict[str, Any] | None:
    day = when.said_day(slots, now, prefix="old_")
    part = when.said_part(slots)
    clock = when.said_clock(slots, meridiem=part)
    if clock is None:
        if part is None:
            return None
        clock = time(when.PART_HOURS[part])
    new_day = when.said_day(slots, now, clock)
    base = new_day or day or now.date()
    return {"title": _title(words["title"], language), "day": day,
            "start": when.at(base, clock, now.tzinfo), "new_time_only": new_day is None}


def _cancel_event(slots: dict[str, Any], words: dict[str, str], language: str, now: datetime,
                  text: str) -> dict[str, Any]:
    return {"title": _title(words["title"], language), "day": when.said_day(slots, now)}


def _add_reminder(slots: dict[str, Any], words: dict[str, str], language: str, now: datetime,
                  text: str) -> dict[str, Any] | None:
    due = when.resolve_moment(slots, now, default=time(when.DEFAULT_HOUR))
    return None if due is None else {"task": words["task"], "due": due}


def _recall(slots: dict[str, Any], words: dict[str, str], language: str, now: datetime,
            text: str) -> dict[str, Any] | None:
    subject = words["subject"]
    said = subject.lower()
    if said in _NOT_SUBJECTS or said.endswith(" like"):  # "what's up", "what's it like"
        return None
    if slots.get("about") == "birthday":  # "wann hat meine Schwester Geburtstag"
        first, _, rest = subject.partition(" ")
        owner = f"{_DATIVE[first.lower()]} {rest}" if first.lower() in _DATIVE else subject
        subject = f"den Geburtstag von {owner}"
    return {"subject": subject}


def _answer_choice(slots: dict[str, Any], words: dict[str, str], language: str,
                   now: datetime, text: str) -> dict[str, Any]:
    choice = text.strip().strip(_ENDS)
    ordinal = slots.get("ordinal")
    return {"choice": choice, "day": when.said_day(slots, now),
            "ordinal": None if ordinal is None else int(ordinal)}


def _words(name: str, title: bool = False) -> Builder:
    """A builder for intents whose one slot is free text ("task", "text", "fact")."""
    def build(slots: dict[str, Any], words: dict[str, str], language: str, now: datetime,
              text: str) -> dict[str, Any]:
        said = words[name]
        return {name: _title(said, language) if title else said}

    return build


def _nothing(slots: dict[str, Any], words: dict[str, str], language: str, now: datetime,
             text: str) -> dict[str, Any]:
    return {}


_BUILDERS: dict[str, Builder] = {
    "add_event": _add_event,
    "list_events": _list_events,
    "move_event": _move_event,
    "cancel_event": _cancel_event,
    "add_reminder": _add_reminder,
    "add_todo": _words("task"),
    "list_todos": _nothing,
    "complete_todo": _words("task", title=True),
    "add_note": _words("text"),
    "remember": _words("fact"),
    "recall": _recall,
    "time": _nothing,
    "date": _nothing,
    "help": _nothing,
    CHOICE: _answer_choice,
}
