"""Splitting text into sentences, the unit every engine synthesizes.

Shared by all engines so that streaming behaves the same everywhere: the first sentence is
synthesized and sent while the rest waits. The rules are deliberately simple and
language-agnostic: a sentence ends at ``.``, ``!``, ``?`` or ``…`` followed by a space (or
at ``。！？`` with none), unless the word before the full stop is a known abbreviation, an
initial or a number; a blank line always ends one. A sentence longer than ``max_chars`` is
cut at the last comma, semicolon or colon before the limit, else at the last space.
"""

from __future__ import annotations

import re

# Words ending in a full stop that rarely end a sentence (English, German, French, Spanish).
_ABBREVIATIONS = frozenset((
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "cf", "fig",
    "no", "nos", "vol", "approx", "dept", "inc", "ltd", "co", "jan", "feb", "mar", "apr",
    "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    "z.b", "u.a", "bzw", "usw", "ca", "nr", "hr", "fr", "str", "evtl", "ggf", "inkl", "bspw",
    "d.h", "s.o", "s.u", "vgl", "mme", "mlle", "sra", "srta",
))

_BOUNDARY = re.compile(r"([.!?…]+[\"'”’)\]]*)(\s+)|([。！？]+)")
_CLAUSE_BREAK = re.compile(r"[,;:，、；：]\s")


def split_sentences(text: str, max_chars: int = 250) -> list[str]:
    """The sentences of ``text``, stripped, none empty, none longer than ``max_chars``."""
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        for sentence in _split_paragraph(" ".join(paragraph.split())):
            sentences.extend(_limit_length(sentence, max_chars))
    return sentences


def _split_paragraph(paragraph: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(paragraph):
        end = match.end(1) if match.group(1) else match.end(3)
        if match.group(1) and _is_abbreviation(paragraph[start:match.start(1)], match.group(1)):
            continue
        piece = paragraph[start:end].strip()
        if piece:
            pieces.append(piece)
        start = match.end()
    rest = paragraph[start:].strip()
    if rest:
        pieces.append(rest)
    return pieces


def _is_abbreviation(before: str, terminator: str) -> bool:
    if not terminator.startswith(".") or len(terminator) > 1:
        return False
    words = before.split()
    if not words:
        return False
    word = words[-1].lower().lstrip("(\"'“‘")
    if word in _ABBREVIATIONS:
        return True
    # An initial ("J. Smith") or a number ("am 3. Mai", "version 2.") reads as one sentence.
    return (len(word) == 1 and word.isalpha()) or word.isdigit()


def _limit_length(sentence: str, max_chars: int) -> list[str]:
    parts: list[str] = []
    while len(sentence) > max_chars:
        window = sentence[: max_chars + 1]
        breaks = [m.end() for m in _CLAUSE_BREAK.finditer(window)]
        cut = breaks[-1] if breaks and breaks[-1] > max_chars // 3 else window.rfind(" ") + 1
        if cut <= 0:
            cut = max_chars  # one unbroken word: cut it
        parts.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    if sentence:
        parts.append(sentence)
    return parts
