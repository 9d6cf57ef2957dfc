"""Pure logic: sentence splitting and the routing table."""

from __future__ import annotations

import pytest

from secretary.errors import InvalidRequestError, NotImplementedByEngineError
from secretary.tts.engine import Voice
from secretary.tts.routing import (
    Route,
    RouteConfigError,
    Router,
    Target,
    parse_openai_voices,
    parse_routes,
)
from secretary.tts.text import split_sentences
from secretary.validation import has_speech


def test_sentences_split_at_terminators_but_not_abbreviations() -> None:
    text = ("Hello Mr. Smith. How are you? I am fine! J. R. R. Tolkien wrote it. "
            "Am 3. Mai ist z.B. Markt.\n\nA paragraph without a full stop\n\nLast")
    assert split_sentences(text) == [
        "Hello Mr. Smith.", "How are you?", "I am fine!", "J. R. R. Tolkien wrote it.",
        "Am 3. Mai ist z.B. Markt.", "A paragraph without a full stop", "Last",
    ]


def test_sentences_in_scripts_without_spaces() -> None:
    assert split_sentences("你好。今天天气很好！是吗？") == ["你好。", "今天天气很好！", "是吗？"]


def test_long_sentences_are_cut_at_clauses_then_spaces() -> None:
    clauses = ", ".join(["one two three four"] * 20) + "."
    parts = split_sentences(clauses, max_chars=60)
    assert all(len(p) <= 60 for p in parts)
    assert all(p.endswith(",") for p in parts[:-1])  # cut after a comma, not mid-clause
    assert " ".join(parts) == clauses
    unbroken = "x" * 130
    assert split_sentences(unbroken, max_chars=50) == ["x" * 50, "x" * 50, "x" * 30]


def test_has_speech() -> None:
    assert has_speech("ok") and has_speech("42") and has_speech("是")
    assert not has_speech(" ... !? ")


def test_routes_in_both_notations() -> None:
    compact = parse_routes("en=piper:en_US-joe-medium, de=xtts|espeak ,*=espeak")
    as_json = parse_routes('{"en": "piper:en_US-joe-medium", "de": ["xtts", "espeak"], '
                           '"*": "espeak"}')
    assert compact == as_json == {
        "en": (Target("piper", "en_US-joe-medium"),),
        "de": (Target("xtts"), Target("espeak")),
        "*": (Target("espeak"),),
    }


@pytest.mark.parametrize("text", ["en=festival", "en", "{not json", "en=piper,=espeak"])
def test_bad_route_settings_name_the_setting(text: str) -> None:
    with pytest.raises(RouteConfigError, match="SECRETARY_TTS_ROUTES"):
        parse_routes(text)


def test_openai_voice_mapping_only_takes_openai_names() -> None:
    assert parse_openai_voices("nova=xtts:Ana Florence") == {"nova": Target("xtts",
                                                                            "Ana Florence")}
    with pytest.raises(RouteConfigError, match="not an OpenAI voice"):
        parse_openai_voices("bob=piper")


CATALOG = {
    "piper": [Voice("en_US-joe-medium", "piper", ("en", "en-us"))],
    "espeak": [Voice("en-gb", "espeak", ("en-gb", "en")), Voice("de", "espeak", ("de",)),
               Voice("fr-fr", "espeak", ("fr-fr", "fr"))],
}


def test_router_follows_the_table_and_falls_back() -> None:
    router = Router(parse_routes("en=piper:en_US-joe-medium,*=xtts|espeak"),
                    parse_openai_voices("echo=espeak:en-gb"))
    # German: XTTS first, but it is not in the catalog here, so eSpeak speaks.
    assert router.resolve("de", None, CATALOG).engine == "espeak"
    assert router.resolve("en-US", None, CATALOG).voice == "en_US-joe-medium"
    assert router.resolve("fr_FR", None, CATALOG).language == "fr-fr"
    assert router.resolve("en", "alloy", CATALOG).engine == "piper"  # unmapped: the default
    assert router.resolve("en", "echo", CATALOG).voice == "en-gb"
    assert router.resolve("en", "en-gb", CATALOG).engine == "espeak"  # a native name
    assert router.resolve("en", "espeak:en-gb", CATALOG).voice == "en-gb"


@pytest.mark.parametrize(("language", "voice", "param"), [
    ("xx", None, "language"),
    ("", None, "language"),
    ("en", "nobody", "voice"),
    ("en", "de", "voice"),  # a German voice asked to speak English
])
def test_router_refuses_what_it_cannot_serve(language: str, voice: str | None,
                                             param: str) -> None:
    router = Router(parse_routes("en=piper,*=espeak"), {})
    with pytest.raises(InvalidRequestError) as caught:
        router.resolve(language, voice, CATALOG)
    assert caught.value.param == param


def test_cloning_goes_to_an_engine_that_clones() -> None:
    xtts = [Voice("Claribel Dervla", "xtts", ("en", "de", "zh-cn"), clones=True)]
    router = Router(parse_routes("en=piper,de=xtts,*=espeak"), {})
    # English is routed to Piper, which cannot clone: XTTS, configured for German, can.
    assert router.resolve_cloning("en", CATALOG | {"xtts": xtts}) == Route("xtts", None, "en")
    assert router.resolve_cloning("de", CATALOG | {"xtts": xtts}).engine == "xtts"
    with pytest.raises(NotImplementedByEngineError, match="but not in this language"):
        router.resolve_cloning("fr", CATALOG | {"xtts": xtts})
    with pytest.raises(NotImplementedByEngineError, match=r"the piper engine .*secretary\[xtts\]"):
        router.resolve_cloning("en", CATALOG)
