"""The reply's text cut into the pieces that go to speech: whole sentences, as soon as each
is known to be finished, and the first one cut short so the first sound comes sooner."""

from __future__ import annotations

import re

from secretary.tts.text import split_sentences
from secretary.turns.words import FUNCTION_WORDS

_CLAUSE = re.compile(r"[,;:，、；：—]\s")
_WORD = re.compile(r"\S+")
# A first sentence longer than this is cut after its first words: Piper takes about 1.6 ms
# per character on two cores, so a long one would hold the first sound back by 100 ms and
# more, while a short one costs less than the cut's break in its melody is worth.
LONG_SENTENCE = 60


class Fragment(str):
    """A piece of a sentence cut off at a word so its speech starts sooner: the piece after
    it goes on without a pause."""


class SentenceSplitter:
    """Text deltas in, finished sentences out, as soon as each one is known to be finished
    (the next one has begun). The first sentence may be cut at a clause past
    ``first_clause_chars``, or else after its first ``first_words`` words (a ``Fragment``),
    so speech starts sooner: speech takes time in proportion to the text, and a long
    first sentence would hold the reply's first sound back. Later sentences are whole."""

    def __init__(self, max_chars: int = 250, first_clause_chars: int = 0,
                 first_words: int = 0) -> None:
        self.max_chars = max_chars
        self.first_clause_chars = first_clause_chars
        self.first_words = first_words
        self.buffer = ""
        self.emitted = 0

    def feed(self, delta: str) -> list[str]:
        self.buffer += delta
        out: list[str] = []
        if self.emitted == 0:
            out += self._first_piece()
        pieces = split_sentences(self.buffer, self.max_chars)
        if len(pieces) >= 2:
            out += pieces[:-1]
            # The unfinished tail, with the space it ended on (the next word follows it).
            tail = " " if self.buffer[-1:].isspace() else ""
            self.buffer = pieces[-1] + tail
        self.emitted += len(out)
        return [s for s in out if s]

    def _first_piece(self) -> list[str]:
        """The start of the first sentence, cut at whichever comes first: a clause break past
        ``first_clause_chars``, or, in a sentence longer than ``LONG_SENTENCE``, the end of
        its first ``first_words`` words where at least two more words follow (so its end is
        never said alone), not ending on a function word ("at", "and", "die") or a number."""
        pieces = split_sentences(self.buffer, self.max_chars)
        # The words of the first sentence, where they are in the buffer.
        words = list(_WORD.finditer(self.buffer))
        if len(pieces) >= 2:
            words = words[:len(pieces[0].split())]
        cuts: list[tuple[int, bool]] = []  # (where, cut at a word)
        if self.first_clause_chars:
            match = next((m for m in _CLAUSE.finditer(self.buffer)
                          if m.start() >= self.first_clause_chars), None)
            if match is not None and (len(pieces) < 2 or match.end() <= words[-1].end()):
                cuts.append((match.end(), False))
        long = bool(words) and words[-1].end() - words[0].start() > LONG_SENTENCE
        if self.first_words and long:
            count = self.first_words
            while count <= len(words) and _weak_end(words[count - 1].group()):
                count += 1  # not "... lunch with Anna on" but "... on Friday"
            if len(words) >= count + 2:
                cuts.append((words[count - 1].end(), True))
        if not cuts:
            return []
        where, at_word = min(cuts)
        piece, self.buffer = self.buffer[:where].strip(), self.buffer[where:].lstrip()
        return [Fragment(piece) if at_word else piece]

    def flush(self) -> list[str]:
        pieces = split_sentences(self.buffer, self.max_chars) if self.buffer.strip() else []
        self.buffer = ""
        self.emitted += len(pieces)
        return pieces


def _weak_end(word: str) -> bool:
    """A word a piece should not end on: a function word, or a number (said alone, "one"
    is heard as "won")."""
    return word.lower() in FUNCTION_WORDS or any(c.isdigit() for c in word)
