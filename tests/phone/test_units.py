"""The telephone's pieces without a call: what ends or transfers a call, the rate limit,
the playout the media thread reads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from secretary.config import Settings
from secretary.phone.endpoint import RateLimit
from secretary.phone.service import GOODBYE, PERSON, PhoneOutput, PhoneService, Playout


@pytest.mark.parametrize("text", ["Thanks, goodbye!", "OK bye bye.", "Good bye then",
                                  "Danke, tschüss!", "Auf Wiederhören.", "Ciao"])
def test_goodbye(text: str) -> None:
    assert GOODBYE.search(text)


@pytest.mark.parametrize("text", ["Can I talk to a human?", "I want a real person",
                                  "Put me through to someone, please",
                                  "Ich möchte mit einem Mitarbeiter sprechen",
                                  "Kann ich mit einem Menschen reden?"])
def test_asks_for_a_person(text: str) -> None:
    assert PERSON.search(text)


@pytest.mark.parametrize("text", ["I'd like to book an appointment",
                                  "Please tell him I called about the invoice",
                                  "Maybe later"])
def test_neither(text: str) -> None:
    assert not GOODBYE.search(text) and not PERSON.search(text)


def test_rate_limit_per_address_and_window() -> None:
    limit = RateLimit(2, window=60)
    assert limit.allow("a", 0) and limit.allow("a", 1)
    assert not limit.allow("a", 2)
    assert limit.allow("b", 2)
    assert limit.allow("a", 61.5)


async def test_output_resamples_paces_and_clears() -> None:
    playout = Playout()
    output = PhoneOutput(playout, lead=0.2)
    await output.begin("resp", "item")
    second = np.full(24000, 0.5, np.float32)

    async def media_clock() -> None:  # PJSIP's clock: 20 ms frames
        for _ in range(60):
            playout.pull(640)
            await asyncio.sleep(0.005)

    clock = asyncio.ensure_future(media_clock())
    await output.play(second)  # returns once at most `lead` is queued
    assert playout.queued <= 0.2 * 16000 * 2 + 640
    await clock
    assert 0.9 < output.played() + playout.queued / 32000 <= 1.01  # 24 kHz in, 16 kHz out
    await output.play(second[:4800])
    data, filled = playout.pull(640)
    assert filled == 640 and np.frombuffer(data, "<i2").max() > 16000
    output.clear()
    data, filled = playout.pull(640)
    assert filled == 0 and data == bytes(640)


def test_calls_run_no_partial_transcripts_unless_asked(tmp_path: Path) -> None:
    # Nothing in a call shows them; with several calls they took a third of each call's
    # CPU (bench/phone.py). The settings the phone was given stay as they were: the
    # services beside it (Live mode, the Realtime API) keep theirs.
    settings = Settings(_env_file=None, cache_dir=tmp_path, data_dir=tmp_path / "data")
    settings.phone.max_calls = settings.realtime.max_sessions + 3
    phone = PhoneService(settings)
    assert phone.realtime.limits().partials is False
    assert phone.realtime.options.max_sessions == settings.phone.max_calls
    assert settings.realtime.partials is True
    assert settings.realtime.max_sessions == settings.phone.max_calls - 3
    settings.phone.partials = True
    assert PhoneService(settings).realtime.limits().partials is True
