"""What the secretary says, in English and German: one table of answer templates, filled
with ``str.format``. A language without its own table answers in English."""

from __future__ import annotations

import re
from typing import Any

_PHRASES: dict[str, dict[str, str]] = {
    "en": {
        "event_added": "I put {title} in the calendar for {when}.",
        "event_moved": "I moved {title} to {when}.",
        "event_cancelled": "I cancelled {title} {when}.",
        "event_not_found": "I found nothing called {title} in the calendar{where}.",
        "which_event": "Which {title}: {choices}?",
        "agenda_empty": "Nothing is on {label}.",
        "agenda": "{label_cap} you have: {items}.",
        "agenda_due": "Due {label}: {items}.",
        "reminder_set": "I'll remind you {when}: {task}.",
        "reminder_past": "{when_cap} has already passed, so I set no reminder. When should "
                         "I remind you?",
        "event_past": "{when_cap} has already passed, so I put nothing in the calendar.",
        "todo_added": "I added {task} to your list.",
        "todos_empty": "Your list is empty.",
        "todos": "On your list: {items}.",
        "todo_due": "{task}, due {when}",
        "todo_done": "I marked {task} as done.",
        "todo_not_found": "I found no open to-do called {task}.",
        "which_todo": "Which one: {choices}?",
        "noted": "Noted: {text}.",
        "remembered": "I'll remember that {fact}.",
        "recalled": "You told me that {fact}.",
        "recalled_note": "Your note says: {fact}.",
        "recall_unknown": "I don't know anything about {subject} yet.",
        "time": "It's {clock}.",
        "date": "Today is {date}.",
        "help": "I keep your calendar, your to-do list, reminders and notes. Try: put lunch "
                "with Anna on Friday at one. What's on tomorrow? Remind me in ten minutes to "
                "stretch. Remember that my dentist is Doctor Weber.",
        "choice_unclear": "Sorry, which one did you mean: {choices}?",
        "or": "or",
        "and": "and",
        "calendar_down": "I couldn't reach the calendar, so nothing was {done}. Please try "
                         "again in a moment.",
        "calendar_refused": "The calendar refused that ({reason}), so nothing was {done}.",
        "calendar_conflict": "{title} was changed meanwhile by someone else, so I left it "
                             "as it is. Please ask again.",
        "notes_failed": "I couldn't write that down ({reason}).",
        "refused_input": "I couldn't take that ({reason}), so nothing was {done}.",
        "done_saved": "saved",
        "done_read": "read",
        "done_changed": "changed",
        "reminder_due": "Reminder: {task}.",
    },
    "de": {
        "event_added": "Ich habe {title} für {when} eingetragen.",
        "event_moved": "Ich habe {title} auf {when} verschoben.",
        "event_cancelled": "Ich habe {title} {when} abgesagt.",
        "event_not_found": "Ich habe keinen Termin {title} im Kalender gefunden{where}.",
        "which_event": "Welchen Termin {title}: {choices}?",
        "agenda_empty": "{label_cap} steht nichts an.",
        "agenda": "{label_cap} hast du: {items}.",
        "agenda_due": "Fällig {label}: {items}.",
        "reminder_set": "Ich erinnere dich {when}: {task}.",
        "reminder_past": "{when_cap} ist schon vorbei, deshalb habe ich keine Erinnerung "
                         "gespeichert. Wann soll ich dich erinnern?",
        "event_past": "{when_cap} ist schon vorbei, deshalb habe ich nichts eingetragen.",
        "todo_added": "Ich habe {task} auf deine Liste gesetzt.",
        "todos_empty": "Deine Liste ist leer.",
        "todos": "Auf deiner Liste: {items}.",
        "todo_due": "{task}, fällig {when}",
        "todo_done": "Ich habe {task} als erledigt markiert.",
        "todo_not_found": "Ich habe keine offene Aufgabe {task} gefunden.",
        "which_todo": "Welche: {choices}?",
        "noted": "Notiert: {text}.",
        "remembered": "Ich merke mir, dass {fact}.",
        "recalled": "Du hast mir gesagt, dass {fact}.",
        "recalled_note": "In deiner Notiz steht: {fact}.",
        "recall_unknown": "Über {subject} weiß ich noch nichts.",
        "time": "Es ist {clock}.",
        "date": "Heute ist {date}.",
        "help": "Ich führe deinen Kalender, deine Aufgabenliste, Erinnerungen und Notizen. "
                "Sag zum Beispiel: Trag Mittagessen mit Anna am Freitag um 13 Uhr ein. Was "
                "steht morgen an? Erinnere mich in zehn Minuten ans Dehnen. Merk dir, dass "
                "mein Zahnarzt Doktor Weber ist.",
        "choice_unclear": "Entschuldige, welchen meinst du: {choices}?",
        "or": "oder",
        "and": "und",
        "calendar_down": "Ich konnte den Kalender nicht erreichen, deshalb wurde nichts "
                         "{done}. Bitte versuch es gleich noch einmal.",
        "calendar_refused": "Der Kalender hat das abgelehnt ({reason}), deshalb wurde nichts "
                            "{done}.",
        "calendar_conflict": "{title} wurde inzwischen von jemand anderem geändert, deshalb "
                             "habe ich nichts verändert. Bitte sag es noch einmal.",
        "notes_failed": "Das konnte ich nicht aufschreiben ({reason}).",
        "refused_input": "Das konnte ich nicht übernehmen ({reason}), deshalb wurde nichts "
                         "{done}.",
        "done_saved": "gespeichert",
        "done_read": "gelesen",
        "done_changed": "geändert",
        "reminder_due": "Erinnerung: {task}.",
    },
}

LANGUAGES = tuple(_PHRASES)


def say(language: str, key: str, **values: Any) -> str:
    table = _PHRASES.get(language, _PHRASES["en"])
    for name in list(values):
        if isinstance(values[name], str):
            values[f"{name}_cap"] = capitalize(values[name])
    return table[key].format(**values)


def capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def join(items: list[str], language: str, word: str = "and") -> str:
    """'a, b and c' in the language."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {say(language, word)} " + items[-1]


# First person as the user said it, to second person as the secretary says it back.
_SWAPS = {
    "en": {"my": "your", "i": "you", "me": "you", "mine": "yours", "i'm": "you're",
           "myself": "yourself", "am": "are", "i've": "you've", "i'll": "you'll"},
    "de": {"ich": "du", "mich": "dich", "mir": "dir", "mein": "dein", "meine": "deine",
           "meinen": "deinen", "meinem": "deinem", "meiner": "deiner", "meines": "deines",
           "bin": "bist", "habe": "hast"},
}
_WORD = re.compile(r"[\w']+")


def second_person(text: str, language: str) -> str:
    """'my dentist is Dr. Weber' -> 'your dentist is Dr. Weber'."""
    swaps = _SWAPS.get(language, _SWAPS["en"])

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        other = swaps.get(word.lower())
        if other is None:
            return word
        return capitalize(other) if word[:1].isupper() and word.lower() != "i" else other

    return _WORD.sub(swap, text)
