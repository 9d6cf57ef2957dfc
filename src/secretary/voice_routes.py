"""The text-to-speech routing table as the settings write it, parsed when the settings load
(so reading them imports no speech engine); ``secretary.tts.routing`` resolves requests
against it.

The table maps a language to engine targets tried in order, ``*`` to every other language.
The same client request goes to XTTS on a GPU box and to eSpeak NG on a laptop; only the
table (``SECRETARY_TTS_ROUTES``) differs. Two notations are accepted::

    en=piper:en_US-joe-medium,*=xtts|espeak
    {"en": "piper:en_US-joe-medium", "*": ["xtts", "espeak"]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ENGINES = ("piper", "espeak", "xtts")
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage",
                 "shimmer", "verse")
ANY_LANGUAGE = "*"


class RouteConfigError(ValueError):
    """The routing settings cannot be read; raised at start-up, naming the setting."""


@dataclass(frozen=True)
class Target:
    engine: str
    voice: str | None = None  # None: the engine's default voice for the language
    # Where the voice loads from when that is not its id: a Piper voice given as the path
    # of its .onnx file is known by the file's name.
    source: str | None = None

    def __str__(self) -> str:
        return f"{self.engine}:{self.voice}" if self.voice else self.engine


def piper_voice_id(name: str) -> str:
    """The id a configured Piper voice is known by: its name, or a file's name without
    ``.onnx``."""
    path = Path(name)
    return path.name.removesuffix(".onnx") if path.suffix == ".onnx" else path.name
def parse_target(text: str, setting: str) -> Target:
    engine, _, voice = text.strip().partition(":")
    engine = engine.strip().lower()
    if engine not in ENGINES:
        raise RouteConfigError(
            f"{setting}: unknown engine {engine!r} in {text!r}; engines: {', '.join(ENGINES)}"
        )
    voice = voice.strip()
    if engine == "piper" and voice and piper_voice_id(voice) != voice:
        return Target(engine, piper_voice_id(voice), source=voice)
    return Target(engine, voice or None)


def _entries(text: str, setting: str) -> dict[str, list[str]]:
    """``key=a|b,key2=c`` or a JSON object of strings or lists, as key -> [targets]."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RouteConfigError(f"{setting}: not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise RouteConfigError(f"{setting}: the JSON must be an object")
        return {
            str(key): [value] if isinstance(value, str) else [str(v) for v in value]
            for key, value in raw.items()
        }
    entries: dict[str, list[str]] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise RouteConfigError(f"{setting}: expected 'key=engine[:voice]', got {item!r}")
        entries[key.strip()] = value.split("|")
    return entries


def parse_routes(text: str) -> dict[str, tuple[Target, ...]]:
    routes = {
        language_tag(key) if key != ANY_LANGUAGE else key: tuple(
            parse_target(t, "SECRETARY_TTS_ROUTES") for t in targets
        )
        for key, targets in _entries(text, "SECRETARY_TTS_ROUTES").items()
    }
    if ANY_LANGUAGE not in routes and not routes:
        raise RouteConfigError("SECRETARY_TTS_ROUTES: the table is empty")
    return routes


def parse_openai_voices(text: str) -> dict[str, Target]:
    mapping: dict[str, Target] = {}
    for name, targets in _entries(text, "SECRETARY_TTS_OPENAI_VOICES").items():
        if name not in OPENAI_VOICES:
            raise RouteConfigError(
                f"SECRETARY_TTS_OPENAI_VOICES: {name!r} is not an OpenAI voice name; "
                f"those are {', '.join(OPENAI_VOICES)}"
            )
        if len(targets) != 1:
            raise RouteConfigError(f"SECRETARY_TTS_OPENAI_VOICES: {name!r} needs one target")
        mapping[name] = parse_target(targets[0], "SECRETARY_TTS_OPENAI_VOICES")
    return mapping


def language_tag(language: str) -> str:
    """A language as the routing table keys it: ``en_US`` -> ``en-us``."""
    return language.strip().lower().replace("_", "-")


