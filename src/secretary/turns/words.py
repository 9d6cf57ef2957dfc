"""What a transcript's words say about the turn: an acknowledgement ("mhm") is no turn of
its own, and a sentence that ends on a full stop, not on "at" or "um", reads as finished."""

from __future__ import annotations

import re

# Words a piece of a sentence should not end on (articles, prepositions, conjunctions,
# possessives): English, German, French, Spanish.
FUNCTION_WORDS = frozenset({
    "a", "an", "the", "and", "or", "but", "nor", "of", "to", "in", "on", "at", "by", "for",
    "with", "from", "as", "into", "about", "than", "that", "if", "so", "my", "your", "his",
    "her", "its", "our", "their", "this", "these", "those", "is", "are", "was", "were", "be",
    "der", "die", "das", "den", "dem", "des", "ein", "eine", "einen", "einem", "einer", "und",
    "oder", "aber", "zu", "zum", "zur", "im", "am", "auf", "für", "mit", "von",
    "vom", "bei", "aus", "nach", "um", "als", "dass", "wie", "mein", "meine", "dein", "deine",
    "sein", "seine", "ihr", "ihre",
    "le", "la", "les", "un", "une", "du", "de", "et", "ou", "mais", "à", "au", "aux",
    "en", "dans", "sur", "pour", "par", "avec", "que", "qui", "ce", "cette", "ces", "mon",
    "ma", "mes", "ton", "ta", "tes", "son", "sa", "ses",
    "el", "los", "las", "unos", "unas", "y", "o", "pero", "del", "al", "con", "por", "para",
    "su", "sus", "mi", "mis", "tu", "tus", "este", "esta",
})
# Besides those, words a speaker pauses on before going on: fillers, and the ones that
# lead into more ("only", "also", "can"). Whisper often writes a full stop after them.
_LEAD_INS = frozenset({
    "um", "uh", "uhm", "erm", "er", "hm", "hmm", "äh", "ähm", "öhm", "euh", "heu", "eh",
    "ehm", "pues", "only", "just", "also", "very", "really", "not", "can", "will", "would",
    "should", "could", "i", "we", "because", "which", "who", "when", "where", "while",
    "auch", "nur", "sehr", "noch", "ich", "wir", "weil", "denn", "dann", "ja",
    "aussi", "seulement", "très", "je", "nous", "parce", "quand", "alors", "donc",
    "también", "solo", "sólo", "muy", "yo", "porque", "cuando", "entonces",
})
BACKCHANNELS = frozenset({
    "yeah", "yes", "yep", "yup", "ok", "okay", "mhm", "mm", "mmhmm", "hmm", "uh huh",
    "uhhuh", "right", "sure", "aha", "ah", "oh", "i see", "got it", "alright", "cool",
})
_PUNCTUATION = re.compile(r"[^\w\s]")
_FINISHED = re.compile(r"(?<![.…])[.!?。！？]['\"»”)\]]*$")


def is_backchannel(text: str) -> bool:
    """'Yeah.', 'Okay!', 'Mhm, mhm': acknowledgement, not a turn."""
    words = _PUNCTUATION.sub(" ", text.lower()).split()
    if not words or len(words) > 3:
        return False
    joined = " ".join(words)
    return joined in BACKCHANNELS or all(w in BACKCHANNELS for w in words)


def reads_finished(text: str) -> bool:
    """Whether a transcript reads as a finished sentence: it ends with a full stop, a
    question or an exclamation mark (not an ellipsis), and not on a function word, a
    filler or a word that leads into more ("Lunch on Friday at." is not finished)."""
    text = text.strip()
    if not _FINISHED.search(text):
        return False
    words = _PUNCTUATION.sub(" ", text.lower()).split()
    return bool(words) and words[-1] not in FUNCTION_WORDS and words[-1] not in _LEAD_INS
