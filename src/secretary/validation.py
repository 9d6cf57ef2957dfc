"""Checks on text that comes in a request, shared by every service that reads text.

Engines written in C (Piper's phonemizer, eSpeak NG) and encoders fail on a NUL, on lone
surrogates (which JSON's ``\\ud800`` escapes can carry but UTF-8 cannot encode) and on
other control characters; the client gets a 400 that names the character instead.
"""

from __future__ import annotations

import re

from secretary.errors import InvalidRequestError

# C0 controls but tab, newline and carriage return; DEL and the C1 controls; surrogates.
_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_NAMES = {0x00: "NUL", 0x1B: "ESC", 0x7F: "DEL"}


def check_text(text: str, param: str) -> str:
    """``text`` unchanged, or a 400 naming its first unusable character."""
    problem = text_problem(text, param)
    if problem is not None:
        raise InvalidRequestError(problem, param=param)
    return text


def text_problem(text: str, param: str) -> str | None:
    """What is wrong with ``text`` (its first unusable character, named), or None."""
    found = _BAD.search(text)
    if found is None:
        return None
    code = ord(found.group())
    if 0xD800 <= code <= 0xDFFF:
        what = f"a lone surrogate U+{code:04X} (not a character)"
    else:
        name = _NAMES.get(code)
        what = f"the control character U+{code:04X}" + (f" ({name})" if name else "")
    return f"{param} holds {what} at position {found.start()}; remove it"


def has_speech(text: str) -> bool:
    """Whether ``text`` holds anything to say (a letter or a digit in any script)."""
    return any(ch.isalnum() for ch in text)
