"""Which engine and voice speak a request: the routing table (``secretary.voice_routes``
parses it from the settings) resolved against the voices the engines offer.
"""

from __future__ import annotations

from dataclasses import dataclass

from secretary.errors import InvalidRequestError, NotImplementedByEngineError
from secretary.tts.engine import Voice
from secretary.voice_routes import (
    ANY_LANGUAGE,
    OPENAI_VOICES,
    RouteConfigError,
    Target,
    language_tag,
    parse_openai_voices,
    parse_routes,
)

# The table's types and parsers are importable from here too, with the resolving.
__all__ = ["ANY_LANGUAGE", "OPENAI_VOICES", "Route", "RouteConfigError", "Router", "Target",
           "language_tag", "parse_openai_voices", "parse_routes", "speaks"]


@dataclass(frozen=True)
class Route:
    """What serves one request."""

    engine: str
    voice: str | None
    language: str


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

