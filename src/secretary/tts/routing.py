"""Which engine and voice speak a request: the routing table.

The table maps a language to engine targets tried in order, ``*`` to every other language.
The same client request goes to XTTS on a GPU box and to eSpeak NG on a laptop; only the
table (``SECRETARY_TTS_ROUTES``) differs. Two notations are accepted::

    en=piper:en_US-joe-medium,*=xtts|espeak
    {"en": "piper:en_US-joe-medium", "*": ["xtts", "espeak"]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from secretary.errors import InvalidRequestError, NotImplementedByEngineError
from secretary.tts.engine import Voice
from secretary.tts.models import piper_voice_id

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


@dataclass(frozen=True)
class Route:
    """What serves one request."""

    engine: str
    voice: str | None
    language: str


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


def speaks(voice: Voice, language: str) -> bool:
    """Whether ``voice`` speaks ``language``: the exact tag, or the same primary language."""
    primary = language.split("-")[0]
    return any(code == language or code.split("-")[0] == primary for code in voice.languages)


class Router:
    """Resolves (language, voice) against the table and the voices the engines offer.

    ``catalog`` maps each configured engine to its voices; it is passed per call because
    engines load lazily and may fail to load.
    """

    def __init__(self, routes: dict[str, tuple[Target, ...]],
                 openai_voices: dict[str, Target]) -> None:
        self.routes = routes
        self.openai_voices = openai_voices

    @property
    def engines(self) -> list[str]:
        """Every engine the table or the OpenAI mapping names, in first-use order."""
        names = [t.engine for targets in self.routes.values() for t in targets]
        names += [t.engine for t in self.openai_voices.values()]
        return list(dict.fromkeys(names))

    def candidates(self, language: str) -> tuple[Target, ...]:
        primary = language.split("-")[0]
        found = self.routes.get(language) or self.routes.get(primary) or ()
        return found + self.routes.get(ANY_LANGUAGE, ())

    def resolve(self, language: str, voice: str | None,
                catalog: dict[str, list[Voice]]) -> Route:
        language = language_tag(language)
        if not language:
            raise InvalidRequestError("language must not be empty", param="language")
        if voice and voice in OPENAI_VOICES:
            target = self.openai_voices.get(voice)
            if target is None:
                return self._by_language(language, catalog)
            return self._check(target, language, catalog, asked=voice)
        if voice:
            return self._check(self._find_voice(voice, language, catalog), language, catalog,
                               asked=voice)
        return self._by_language(language, catalog)

    def resolve_cloning(self, language: str, catalog: dict[str, list[Voice]]) -> Route:
        """The routed engine if it clones, else any configured engine that clones and
        speaks the language; 501 naming one that can when there is none."""
        routed = self.resolve(language, None, catalog)
        for name in dict.fromkeys([routed.engine, *catalog]):
            if any(v.clones and speaks(v, routed.language) for v in catalog.get(name, [])):
                return Route(name, None, routed.language)
        cloners = sorted(n for n, voices in catalog.items() if any(v.clones for v in voices))
        hint = (f"the {', '.join(cloners)} engine here clones, but not in this language"
                if cloners else
                "XTTS v2 can: install it with pip install 'secretary[xtts]' and route the "
                "language to 'xtts' in SECRETARY_TTS_ROUTES (a GPU is recommended)")
        raise NotImplementedByEngineError(
            f"the {routed.engine} engine that speaks {routed.language!r} here cannot clone "
            f"voices; {hint}"
        )

    def _by_language(self, language: str, catalog: dict[str, list[Voice]]) -> Route:
        for target in self.candidates(language):
            voices = catalog.get(target.engine, [])
            if target.voice is not None:
                chosen = next((v for v in voices if v.id == target.voice), None)
                if chosen is not None and speaks(chosen, language):
                    return Route(target.engine, target.voice, language)
            elif any(speaks(v, language) for v in voices):
                return Route(target.engine, None, language)
        known = sorted({code for voices in catalog.values() for v in voices
                        for code in v.languages})
        shown = ", ".join(known[:24]) + (f" and {len(known) - 24} more (GET /voices)"
                                         if len(known) > 24 else "")
        raise InvalidRequestError(
            f"no configured voice speaks language {language!r}; languages here: {shown}",
            param="language",
        )

    def _find_voice(self, voice: str, language: str,
                    catalog: dict[str, list[Voice]]) -> Target:
        engine, sep, name = voice.partition(":")
        if sep and engine in catalog:
            return Target(engine, name)
        # The engines routed for this language first, so a name two engines share goes to
        # the one the table prefers.
        order = [t.engine for t in self.candidates(language)] + list(catalog)
        for engine_name in dict.fromkeys(order):
            if any(v.id == voice for v in catalog.get(engine_name, [])):
                return Target(engine_name, voice)
        raise InvalidRequestError(
            f"unknown voice {voice!r}; GET /voices lists the voices here, and the OpenAI "
            f"names ({', '.join(OPENAI_VOICES)}) work too",
            param="voice",
        )

    def _check(self, target: Target, language: str, catalog: dict[str, list[Voice]],
               asked: str) -> Route:
        voices = catalog.get(target.engine)
        if voices is None:
            raise InvalidRequestError(
                f"voice {asked!r} needs the {target.engine!r} engine, which is not "
                "configured here", param="voice")
        if target.voice is None:
            if not any(speaks(v, language) for v in voices):
                raise InvalidRequestError(
                    f"voice {asked!r} ({target.engine}) does not speak {language!r}",
                    param="voice")
            return Route(target.engine, None, language)
        chosen = next((v for v in voices if v.id == target.voice), None)
        if chosen is None:
            raise InvalidRequestError(
                f"voice {asked!r}: {target.engine} has no voice {target.voice!r}",
                param="voice")
        if not speaks(chosen, language):
            raise InvalidRequestError(
                f"voice {asked!r} speaks {', '.join(chosen.languages)}, not {language!r}",
                param="voice")
        return Route(target.engine, target.voice, language)

