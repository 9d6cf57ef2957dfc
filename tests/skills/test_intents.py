"""Requests matched against the sentence templates, with their slots resolved exactly."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from secretary.skills.intents import IntentMatcher, Request, normalize

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SUNDAY = datetime(2026, 12, 6, 18, 0, tzinfo=BERLIN)  # a Sunday evening
WEDNESDAY = datetime(2026, 12, 9, 8, 30, tzinfo=NEW_YORK)  # a Wednesday morning


def b(day: int, hour: int = 0, minute: int = 0) -> datetime:
    """December 2026 in Berlin."""
    return datetime(2026, 12, day, hour, minute, tzinfo=BERLIN)


def ny(day: int, hour: int = 0, minute: int = 0) -> datetime:
    """December 2026 in New York."""
    return datetime(2026, 12, day, hour, minute, tzinfo=NEW_YORK)


def event(title: str, start: datetime, end: datetime, all_day: bool = False) -> dict[str, Any]:
    return {"title": title, "start": start, "end": end, "all_day": all_day}


def days(start: datetime, end: datetime, label: str) -> dict[str, Any]:
    return {"start": start, "end": end, "label": label}


def move(title: str, day: date | None, start: datetime, time_only: bool) -> dict[str, Any]:
    return {"title": title, "day": day, "start": start, "new_time_only": time_only}


def remind(task: str, due: datetime) -> dict[str, Any]:
    return {"task": task, "due": due}


FRIDAY = date(2026, 12, 11)
MONDAY = date(2026, 12, 7)

ENGLISH: list[tuple[str, str, dict[str, Any]]] = [
    # add_event
    ("put lunch with Anna on Friday at one", "add_event",
     event("lunch with Anna", b(11, 13), b(11, 14))),
    ("Add a meeting with Bob tomorrow at 10 am.", "add_event",
     event("meeting with Bob", b(7, 10), b(7, 11))),
    ("schedule dentist on December 12 at 3:30 pm", "add_event",
     event("dentist", b(12, 15, 30), b(12, 16, 30))),
    ("I have a call with Sam on Monday at 9", "add_event",
     event("call with Sam", b(7, 9), b(7, 10))),
    ("put Anna's birthday on Friday", "add_event",
     event("Anna's birthday", b(11), b(12), all_day=True)),
    ("add a meeting with Bob tomorrow from 2 to 4", "add_event",
     event("meeting with Bob", b(7, 14), b(7, 16))),
    ("add yoga on Friday at 6 pm for two hours", "add_event", event("yoga", b(11, 18), b(11, 20))),
    ("put the party on Saturday from 8 pm to midnight", "add_event",
     event("party", b(12, 20), b(13, 0))),
    ("add a meeting tomorrow from 10 to 11 pm", "add_event", event("meeting", b(7, 22), b(7, 23))),
    # list_events
    ("What's on tomorrow?", "list_events", days(b(7), b(8), "tomorrow")),
    ("what do I have on Friday?", "list_events", days(b(11), b(12), "on Friday")),
    ("what's my schedule today", "list_events", days(b(6), b(7), "today")),
    ("what's on this week", "list_events", days(SUNDAY, b(7), "this week")),
    ("what's on next week", "list_events", days(b(7), b(14), "next week")),
    ("what's on my calendar", "list_events", days(b(6), b(7), "today")),
    # move_event
    ("move lunch with Anna to two", "move_event", move("lunch with Anna", None, b(6, 14), True)),
    ("move lunch on Friday to 2 pm", "move_event", move("lunch", FRIDAY, b(11, 14), True)),
    ("move the dentist to Monday at 9", "move_event", move("dentist", None, b(7, 9), False)),
    ("reschedule the meeting to tomorrow at 11", "move_event",
     move("meeting", None, b(7, 11), False)),
    # cancel_event
    ("cancel lunch with Anna", "cancel_event", {"title": "lunch with Anna", "day": None}),
    ("cancel the dentist on Friday", "cancel_event", {"title": "dentist", "day": FRIDAY}),
    ("delete the meeting tomorrow", "cancel_event", {"title": "meeting", "day": MONDAY}),
    # add_reminder
    ("Remind me to call the dentist tomorrow at 3 p.m.", "add_reminder",
     remind("call the dentist", b(7, 15))),
    ("remind me to call the dentist tomorrow at three", "add_reminder",
     remind("call the dentist", b(7, 15))),
    ("remind me in ten minutes to stretch", "add_reminder", remind("stretch", b(6, 18, 10))),
    ("remind me to stretch in 10 minutes", "add_reminder", remind("stretch", b(6, 18, 10))),
    ("remind me at 5 pm to buy milk", "add_reminder", remind("buy milk", b(7, 17))),  # past: rolls
    ("remind me on Friday at 9 to pay rent", "add_reminder", remind("pay rent", b(11, 9))),
    ("remind me in half an hour to check the oven", "add_reminder",
     remind("check the oven", b(6, 18, 30))),
    ("remind me in an hour to call Anna", "add_reminder", remind("call Anna", b(6, 19))),
    ("remind me in 2 hours to leave", "add_reminder", remind("leave", b(6, 20))),
    ("remind me at half past three to call", "add_reminder", remind("call", b(7, 15, 30))),
    ("remind me at quarter to four to call", "add_reminder", remind("call", b(7, 15, 45))),
    ("remind me at a quarter past nine to call", "add_reminder", remind("call", b(7, 9, 15))),
    ("remind me at noon to eat", "add_reminder", remind("eat", b(7, 12))),
    ("remind me tonight to water the plants", "add_reminder",
     remind("water the plants", b(6, 19))),
    ("remind me this evening at 8 to call", "add_reminder", remind("call", b(6, 20))),
    ("remind me tomorrow morning to call", "add_reminder", remind("call", b(7, 9))),
    ("remind me at 15:30 to call", "add_reminder", remind("call", b(7, 15, 30))),
    ("remind me at 3pm to call", "add_reminder", remind("call", b(7, 15))),
    ("remind me on the 12th at 9 to call", "add_reminder", remind("call", b(12, 9))),
    ("remind me on December twelfth at 9 to call", "add_reminder", remind("call", b(12, 9))),
    ("remind me today at 8 to call", "add_reminder", remind("call", b(6, 8))),  # stays past
    ("remind me at 7 to call", "add_reminder", remind("call", b(7, 7))),  # waking hours: am
    ("remind me at 1 to call", "add_reminder", remind("call", b(7, 13))),  # waking hours: pm
    ("remind me at 11 pm to call", "add_reminder", remind("call", b(6, 23))),
    ("remind me tomorrow to call mom", "add_reminder", remind("call mom", b(7, 9))),
    ("Remind me to buy 3 apples at 5 pm", "add_reminder", remind("buy 3 apples", b(7, 17))),
    ("Remind me to take my medicine at 8 pm tonight", "add_reminder",
     remind("take my medicine", b(6, 20))),
    # to-dos
    ("add buy milk to my list", "add_todo", {"task": "buy milk"}),
    ("put call mom on my to-do list", "add_todo", {"task": "call mom"}),
    ("add a to-do: renew passport", "add_todo", {"task": "renew passport"}),
    ("What's on my list?", "list_todos", {}),
    ("what are my to-dos", "list_todos", {}),
    ("what do I have to do", "list_todos", {}),
    ("mark the dentist done", "complete_todo", {"task": "dentist"}),
    ("mark call the dentist as done", "complete_todo", {"task": "call the dentist"}),
    ("tick off buy milk", "complete_todo", {"task": "buy milk"}),
    ("cross buy milk off my list", "complete_todo", {"task": "buy milk"}),
    # notes and memory
    ("note that the wifi password is on the fridge", "add_note",
     {"text": "the wifi password is on the fridge"}),
    ("make a note: the car is in level 3", "add_note", {"text": "the car is in level 3"}),
    ("take a note that the keys are under the mat", "add_note",
     {"text": "the keys are under the mat"}),
    ("Note that the door code is 12:34.", "add_note", {"text": "the door code is 12:34"}),
    ("Remember that my dentist is Dr. Weber.", "remember", {"fact": "my dentist is Dr. Weber"}),
    ("remember my sister's birthday is May 3", "remember",
     {"fact": "my sister's birthday is May 3"}),
    ("What do you know about my dentist?", "recall", {"subject": "my dentist"}),
    ("who is my dentist?", "recall", {"subject": "my dentist"}),
    ("where is the wifi password?", "recall", {"subject": "the wifi password"}),
    ("what is the wifi password", "recall", {"subject": "the wifi password"}),
    ("when is my sister's birthday", "recall", {"subject": "my sister's birthday"}),
    ("do you remember my dentist", "recall", {"subject": "my dentist"}),
    # time, date, help
    ("What time is it?", "time", {}),
    ("what's the time", "time", {}),
    ("what's the date today", "date", {}),
    ("what day is it", "date", {}),
    ("What can you do?", "help", {}),
    ("help", "help", {}),
]

GERMAN: list[tuple[str, str, dict[str, Any]]] = [
    ("Trag Mittagessen mit Anna am Freitag um 13 Uhr ein.", "add_event",
     event("Mittagessen mit Anna", b(11, 13), b(11, 14))),
    ("setz ein Meeting mit Bob morgen um 10 Uhr an", "add_event",
     event("Meeting mit Bob", b(7, 10), b(7, 11))),
    ("neuer Termin Zahnarzt am 12. Dezember um 15:30", "add_event",
     event("Zahnarzt", b(12, 15, 30), b(12, 16, 30))),
    ("trag Yoga am Freitag von 18 bis 20 Uhr ein", "add_event",
     event("Yoga", b(11, 18), b(11, 20))),
    ("trag Annas Geburtstag am Freitag ein", "add_event",
     event("Annas Geburtstag", b(11), b(12), all_day=True)),
    ("was steht morgen an?", "list_events", days(b(7), b(8), "morgen")),
    ("was habe ich am Freitag?", "list_events", days(b(11), b(12), "am Freitag")),
    ("welche Termine habe ich heute", "list_events", days(b(6), b(7), "heute")),
    ("was steht diese Woche an", "list_events", days(SUNDAY, b(7), "diese Woche")),
    ("was steht nächste Woche an", "list_events", days(b(7), b(14), "nächste Woche")),
    ("verschieb das Mittagessen mit Anna auf 14 Uhr", "move_event",
     move("Mittagessen mit Anna", None, b(6, 14), True)),
    ("verlege den Zahnarzt auf Montag um 9 Uhr", "move_event",
     move("Zahnarzt", None, b(7, 9), False)),
    ("verschieb das Mittagessen am Freitag auf 14 Uhr", "move_event",
     move("Mittagessen", FRIDAY, b(11, 14), True)),
    ("sag das Mittagessen mit Anna ab", "cancel_event",
     {"title": "Mittagessen mit Anna", "day": None}),
    ("streich den Zahnarzt am Freitag", "cancel_event", {"title": "Zahnarzt", "day": FRIDAY}),
    ("lösche das Meeting morgen", "cancel_event", {"title": "Meeting", "day": MONDAY}),
    ("Erinnere mich morgen um 17 Uhr an den Zahnarzt.", "add_reminder",
     remind("den Zahnarzt", b(7, 17))),
    ("erinnere mich in zehn Minuten ans Dehnen", "add_reminder", remind("Dehnen", b(6, 18, 10))),
    ("erinnere mich daran, morgen um 15 Uhr den Zahnarzt anzurufen", "add_reminder",
     remind("den Zahnarzt anzurufen", b(7, 15))),
    ("erinnere mich um halb vier an das Telefonat", "add_reminder",
     remind("das Telefonat", b(7, 15, 30))),
    ("erinnere mich um viertel nach drei an die Post", "add_reminder",
     remind("die Post", b(7, 15, 15))),
    ("erinnere mich um Viertel vor vier an die Post", "add_reminder",
     remind("die Post", b(7, 15, 45))),
    ("erinnere mich in einer Stunde an die Post", "add_reminder", remind("die Post", b(6, 19))),
    ("erinnere mich in einer halben Stunde an die Post", "add_reminder",
     remind("die Post", b(6, 18, 30))),
    ("erinnere mich heute Abend an die Post", "add_reminder", remind("die Post", b(6, 19))),
    ("erinnere mich morgen früh an die Post", "add_reminder", remind("die Post", b(7, 9))),
    ("erinnere mich am zwölften Dezember um fünfzehn Uhr an die Post", "add_reminder",
     remind("die Post", b(12, 15))),
    ("erinnere mich um 17.30 Uhr an die Post", "add_reminder", remind("die Post", b(7, 17, 30))),
    ("erinnere mich um 3 an die Post", "add_reminder", remind("die Post", b(7, 15))),
    ("erinnere mich um 9 an die Post", "add_reminder", remind("die Post", b(7, 9))),
    ("erinnere mich um 20 Uhr an die Post", "add_reminder", remind("die Post", b(6, 20))),
    ("erinnere mich um halb acht abends an die Post", "add_reminder",
     remind("die Post", b(6, 19, 30))),
    ("erinnere mich um 10 Uhr zwei Tabletten zu nehmen", "add_reminder",
     remind("zwei Tabletten zu nehmen", b(7, 10))),
    ("Trag am Freitag um 13 Uhr Mittagessen mit Anna ein", "add_event",
     event("Mittagessen mit Anna", b(11, 13), b(11, 14))),
    ("ich habe morgen um 10 Uhr einen Termin beim Zahnarzt", "add_event",
     event("Termin beim Zahnarzt", b(7, 10), b(7, 11))),
    ("setz Milch kaufen auf meine Liste", "add_todo", {"task": "Milch kaufen"}),
    ("füge Pass verlängern zu meiner Liste hinzu", "add_todo", {"task": "Pass verlängern"}),
    ("was steht auf meiner Liste?", "list_todos", {}),
    ("was muss ich erledigen", "list_todos", {}),
    ("hak Milch kaufen ab", "complete_todo", {"task": "Milch kaufen"}),
    ("markiere den Zahnarzt als erledigt", "complete_todo", {"task": "Zahnarzt"}),
    ("Zahnarzt ist erledigt", "complete_todo", {"task": "Zahnarzt"}),
    ("notiere, dass das WLAN-Passwort am Kühlschrank hängt", "add_note",
     {"text": "das WLAN-Passwort am Kühlschrank hängt"}),
    ("Notiz: Das Auto steht auf Ebene 3.", "add_note", {"text": "Das Auto steht auf Ebene 3"}),
    ("schreib auf, dass der Schlüssel unter der Matte liegt", "add_note",
     {"text": "der Schlüssel unter der Matte liegt"}),
    ("merk dir, dass mein Zahnarzt Dr. Weber ist", "remember",
     {"fact": "mein Zahnarzt Dr. Weber ist"}),
    ("merke dir: Annas Geburtstag ist am 3. Mai", "remember",
     {"fact": "Annas Geburtstag ist am 3. Mai"}),
    ("was weißt du über meinen Zahnarzt?", "recall", {"subject": "meinen Zahnarzt"}),
    ("wer ist mein Zahnarzt?", "recall", {"subject": "mein Zahnarzt"}),
    ("wo ist das WLAN-Passwort?", "recall", {"subject": "das WLAN-Passwort"}),
    ("wann hat meine Schwester Geburtstag", "recall",
     {"subject": "den Geburtstag von meiner Schwester"}),
    ("Wie spät ist es?", "time", {}),
    ("wie viel Uhr ist es", "time", {}),
    ("welcher Tag ist heute", "date", {}),
    ("welches Datum haben wir", "date", {}),
    ("was kannst du", "help", {}),
    ("Hilfe!", "help", {}),
]

# A Wednesday morning in New York: today still counts for times ahead of 8:30.
WEDNESDAY_CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("put lunch with Anna on Friday at one", "en", "add_event",
     event("lunch with Anna", ny(11, 13), ny(11, 14))),
    ("remind me at 9 to call", "en", "add_reminder", remind("call", ny(9, 9))),
    ("remind me at 8 to call", "en", "add_reminder", remind("call", ny(10, 8))),
    ("remind me on Wednesday at 9 to call", "en", "add_reminder", remind("call", ny(9, 9))),
    ("remind me on Wednesday at 8 to call", "en", "add_reminder", remind("call", ny(16, 8))),
    ("remind me today at 8 to call", "en", "add_reminder", remind("call", ny(9, 8))),
    ("remind me yesterday at 3 to call", "en", "add_reminder", remind("call", ny(8, 15))),
    ("remind me in ten minutes to stretch", "en", "add_reminder", remind("stretch", ny(9, 8, 40))),
    ("what's on this week", "en", "list_events", days(WEDNESDAY, ny(14), "this week")),
    ("what do I have on Wednesday", "en", "list_events", days(ny(9), ny(10), "today")),
    ("move lunch with Anna to two", "en", "move_event",
     move("lunch with Anna", None, ny(9, 14), True)),
    ("erinnere mich um halb vier an die Post", "de", "add_reminder",
     remind("die Post", ny(9, 15, 30))),
    ("was steht diese Woche an", "de", "list_events", days(WEDNESDAY, ny(14), "diese Woche")),
]

NOT_REQUESTS = [
    "tell me a joke",
    "the weather is nice today",
    "how are you?",
    "what's up",
    "what's the weather like",
    "I have no time today",
    "I have to leave tomorrow at 3",
    "Ich habe morgen Geburtstag",
    "I love you",
    "remind me",
    "erzähl mir einen Witz",
    "das Wetter ist heute schön",
    "wie geht es dir?",
    "",
    "   ",
]


@pytest.fixture(scope="module")
def matcher() -> IntentMatcher:
    return IntentMatcher()


def _check(request: Request | None, intent: str, language: str, slots: dict[str, Any]) -> None:
    assert request is not None
    assert (request.intent, request.language) == (intent, language)
    assert request.slots == slots
    for value in request.slots.values():
        if isinstance(value, datetime):
            assert value.tzinfo is not None


@pytest.mark.parametrize(("text", "intent", "slots"), ENGLISH, ids=[c[0] for c in ENGLISH])
def test_english(matcher: IntentMatcher, text: str, intent: str, slots: dict[str, Any]) -> None:
    _check(matcher.match(text, "en", SUNDAY), intent, "en", slots)


@pytest.mark.parametrize(("text", "intent", "slots"), GERMAN, ids=[c[0] for c in GERMAN])
def test_german(matcher: IntentMatcher, text: str, intent: str, slots: dict[str, Any]) -> None:
    _check(matcher.match(text, "de", SUNDAY), intent, "de", slots)


@pytest.mark.parametrize(("text", "language", "intent", "slots"), WEDNESDAY_CASES,
                         ids=[c[0] for c in WEDNESDAY_CASES])
def test_wednesday_morning_in_new_york(matcher: IntentMatcher, text: str, language: str,
                                       intent: str, slots: dict[str, Any]) -> None:
    _check(matcher.match(text, language, WEDNESDAY), intent, language, slots)


@pytest.mark.parametrize("text", NOT_REQUESTS)
@pytest.mark.parametrize("language", ["en", "de", None])
def test_not_requests(matcher: IntentMatcher, text: str, language: str | None) -> None:
    assert matcher.match(text, language, SUNDAY) is None


@pytest.mark.parametrize("guess", ["en", "fr", None, "de-DE"])
def test_other_language_templates_are_tried_too(matcher: IntentMatcher,
                                                guess: str | None) -> None:
    request = matcher.match("Erinnere mich morgen um 17 Uhr an den Zahnarzt.", guess, SUNDAY)
    _check(request, "add_reminder", "de", remind("den Zahnarzt", b(7, 17)))
    request = matcher.match("What's on tomorrow?", guess, SUNDAY)
    _check(request, "list_events", "en", days(b(7), b(8), "tomorrow"))


def test_request_keeps_the_text(matcher: IntentMatcher) -> None:
    request = matcher.match("  Remind me to call the dentist tomorrow at 3 p.m. ", "en", SUNDAY)
    assert request is not None
    assert request.text == "Remind me to call the dentist tomorrow at 3 p.m."


def test_naive_now_is_refused(matcher: IntentMatcher) -> None:
    with pytest.raises(ValueError):
        matcher.match("what time is it", "en", datetime(2026, 12, 6, 18, 0))


CHOICES: list[tuple[str, str, dict[str, Any]]] = [
    ("Friday's", "en", {"choice": "Friday's", "day": FRIDAY, "ordinal": None}),
    ("the one on Monday", "en", {"choice": "the one on Monday", "day": MONDAY, "ordinal": None}),
    ("The first one.", "en", {"choice": "The first one", "day": None, "ordinal": 1}),
    ("the last one", "en", {"choice": "the last one", "day": None, "ordinal": -1}),
    ("tomorrow", "en", {"choice": "tomorrow", "day": MONDAY, "ordinal": None}),
    ("Freitag", "de", {"choice": "Freitag", "day": FRIDAY, "ordinal": None}),
    ("den am Montag", "de", {"choice": "den am Montag", "day": MONDAY, "ordinal": None}),
    ("das erste", "de", {"choice": "das erste", "day": None, "ordinal": 1}),
    ("den zweiten", "de", {"choice": "den zweiten", "day": None, "ordinal": 2}),
]


@pytest.mark.parametrize(("text", "language", "slots"), CHOICES, ids=[c[0] for c in CHOICES])
def test_answer_choice(matcher: IntentMatcher, text: str, language: str,
                       slots: dict[str, Any]) -> None:
    _check(matcher.match(text, language, SUNDAY, expect_choice=True), "answer_choice",
           language, slots)


@pytest.mark.parametrize("text", ["Friday's", "the first one", "das erste", "Freitag"])
def test_answer_choice_needs_a_question(matcher: IntentMatcher, text: str) -> None:
    assert matcher.match(text, "en", SUNDAY) is None


def test_ordinary_requests_still_match_while_a_choice_is_expected(
        matcher: IntentMatcher) -> None:
    request = matcher.match("what time is it", "en", SUNDAY, expect_choice=True)
    assert request is not None and request.intent == "time"


@pytest.mark.parametrize(("text", "language", "expected"), [
    ("Remind me at 3 p.m.", "en", "Remind me at 3 pm"),
    ("at 3pm", "en", "at 3 pm"),
    ("at 3:30 P.M.!", "en", "at 3 h 30 pm"),
    ("on the 12th", "en", "on the 12"),
    ("put it on my to-do list", "en", "put it on my todo list"),
    ("Please, what's on tomorrow?", "en", "what's on tomorrow"),
    ("um 17.30 Uhr", "de", "um 17 h 30 Uhr"),
    ("am 12. Dezember um 15:30.", "de", "am 12 Dezember um 15 h 30"),
    ("auf meine To-do-Liste", "de", "auf meine todoliste"),
    ("auf die To do Liste", "de", "auf die todoliste"),
])
def test_normalize(text: str, language: str, expected: str) -> None:
    assert normalize(text, language) == expected
