"""The skills spoken, end to end: a clip per language through the browser's turn
(``/api/turn``) and through the Realtime API (the ``openai`` client over WebSocket), each
landing a to-do with the right due time on a real CalDAV server; and reminders that fall
due spoken into an open realtime session, each once.

The clips are eSpeak NG's voices (not the Piper voice the secretary answers with); Whisper
base hears eSpeak's German imperfectly ("Erinnre", "Zahast"), so the German checks hold the
due time exactly and the task as it was heard.
"""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import numpy as np
import pytest

from secretary import audio
from secretary.calendar.store import CalendarStore
from secretary.config import Settings
from secretary.conversation.metrics import TurnMetrics
from secretary.conversation.service import ConversationService
from secretary.conversation.settings import ConversationSettings
from secretary.conversation.stages import Cancel
from secretary.realtime.app import create_app as create_realtime_app
from secretary.realtime.service import RealtimeService
from secretary.ui.app import create_app as create_ui_app
from tests.calendar.support import CalendarServer, plain_calendar
from tests.conftest import make_settings, same_speech_every_run
from tests.conversation.support import turn_events
from tests.helpers import running_server
from tests.realtime.support import RATE, collect, connect, feed, of_type, reply_audio

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
NAME = "Secretary"
PORTRAIT = Path(__file__).parents[2] / "src" / "secretary" / "ui" / "static" / "portrait.png"
CLIPS = {  # language -> (what eSpeak says, the hour it asks for)
    "en": ("Remind me to call the dentist tomorrow at three.", 15),
    "de": ("Erinnere mich morgen um 17 Uhr an den Zahnarzt.", 17),
}


def _settings(cache_dir: Path, url: str, zone: str, data: Path) -> Settings:
    settings = make_settings(cache_dir, timezone=zone, data_dir=data)
    settings.conversation = ConversationSettings(brain="skills", avatar=False)
    settings.calendar = settings.calendar.model_copy(update={"url": url,
                                                             "reminder_poll_s": 0.5})
    same_speech_every_run(settings)
    settings.realtime.partials = False
    settings.realtime.face = False
    return settings



@pytest.fixture(scope="module")
def realtime(cache_dir: Path, calendar: CalendarServer,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = _settings(cache_dir, calendar.url, "Europe/Berlin",
                         tmp_path_factory.mktemp("realtime-data"))
    service = RealtimeService(settings)
    service.load()
    with running_server(create_realtime_app(service=service)) as url:
        yield url


@pytest.fixture(scope="module")
def conversation(cache_dir: Path, calendar: CalendarServer,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    settings = _settings(cache_dir, calendar.url, "America/New_York",
                         tmp_path_factory.mktemp("ui-data"))
    service = ConversationService(settings, TurnMetrics(), PORTRAIT.read_bytes())
    service.load()
    with running_server(create_ui_app(settings, conversation=service)) as url:
        yield url, settings


async def _espeak(settings: Settings, text: str, language: str, rate: int) -> np.ndarray:
    """``text`` in eSpeak NG's voice for ``language``, with a second of silence after."""
    from secretary.conversation.local import LocalSpeaker
    from secretary.tts.service import TtsService

    speaker = LocalSpeaker(TtsService(settings))
    voice = {"en": "espeak:en-us", "de": "espeak:de"}[language]
    spoken = [piece async for piece in speaker.speak(text, language, voice, Cancel())]
    said = audio.resample(np.concatenate([samples for samples, _ in spoken]), spoken[0][1],
                          rate)
    quiet = np.zeros(rate // 2, np.float32)
    return np.concatenate([quiet, said, quiet, quiet])


def _wav(samples: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def _todos(url: str) -> dict[str, icalendar.cal.Component]:
    """The to-dos another client sees in the secretary's calendar, by UID."""
    found = {}
    for item in plain_calendar(url, NAME).search(todo=True, include_completed=True):
        for todo in icalendar.Calendar.from_ical(item.data).walk("VTODO"):
            found[str(todo["UID"])] = todo
    return found


def _assert_due(todo: icalendar.cal.Component, zone: ZoneInfo, hour: int) -> None:
    due = todo["DUE"].dt.astimezone(zone)
    tomorrow = datetime.now(zone).date() + timedelta(days=1)
    assert (due.date(), due.hour, due.minute) == (tomorrow, hour, 0), due


def _new_todo(url: str, before: dict[str, icalendar.cal.Component]
              ) -> icalendar.cal.Component:
    """The one to-do written since ``before``."""
    after = _todos(url)
    [uid] = set(after) - set(before)
    return after[uid]


@pytest.mark.parametrize("language", ["en", "de"])
def test_a_spoken_reminder_through_the_turn_lands_in_the_users_zone(
        conversation: tuple[str, Settings], calendar: CalendarServer, language: str) -> None:
    url, settings = conversation
    text, hour = CLIPS[language]
    clip = asyncio.run(_espeak(settings, text, language, 16000))
    before = _todos(calendar.url)
    events = turn_events(url, _wav(clip, 16000), session=f"spoken-{language}")
    reply = " ".join(e["text"] for e in events if e["type"] == "sentence")
    todo = _new_todo(calendar.url, before)
    _assert_due(todo, NEW_YORK, hour)
    title = str(todo["SUMMARY"])
    if language == "en":
        assert title == "call the dentist"
    assert title in reply, reply  # the answer confirms what was understood
    assert any(e["type"] == "audio" for e in events)


@pytest.mark.parametrize("language", ["en", "de"])
async def test_a_spoken_reminder_through_the_realtime_api_lands_in_the_users_zone(
        realtime: str, calendar: CalendarServer, cache_dir: Path, language: str) -> None:
    text, hour = CLIPS[language]
    settings = make_settings(cache_dir)
    clip = await _espeak(settings, text, language, RATE)
    before = _todos(calendar.url)
    async with connect(realtime) as connection:
        await collect(connection, "session.created")
        await connection.session.update(session={"type": "realtime", "turn_detection": None})
        await collect(connection, "session.updated")
        await feed(connection, clip, speed=4.0)
        await connection.input_audio_buffer.commit()
        await connection.response.create()
        events = await collect(connection, "response.done")
    said = of_type(events, "response.output_audio_transcript.done")[0].transcript
    todo = _new_todo(calendar.url, before)
    _assert_due(todo, BERLIN, hour)
    title = str(todo["SUMMARY"])
    if language == "en":
        assert title == "call the dentist"
    assert title in said, said
    assert len(reply_audio(events)) > RATE * 0.5


async def _responses_within(connection: object, seconds: float) -> list[str]:
    """The transcripts of the responses the server starts on its own within ``seconds``."""
    said: list[str] = []
    events: list[object] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                events = await collect(connection, "response.done", events=[])
                said += [e.transcript for e in
                         of_type(events, "response.output_audio_transcript.done")]
    except TimeoutError:
        pass
    return said


async def test_a_reminder_due_is_said_in_the_open_session_once_and_a_missed_one_next_time(
        realtime: str, calendar: CalendarServer) -> None:
    store = CalendarStore(calendar.url, None, None, NAME, 5.0, BERLIN)
    soon = datetime.now(BERLIN) + timedelta(seconds=3)
    await asyncio.to_thread(store.add_todo, "drink some water", soon)
    async with connect(realtime) as connection:
        await collect(connection, "session.created")
        said = await _responses_within(connection, 20)
    assert [s for s in said if "drink some water" in s] == [said[0]], said
    assert said[0] == "Reminder: drink some water."
    assert len(said) == 1, said  # said once, though the calendar was asked many times since

    # Due while no session is open: said when the next one starts; the first not again.
    earlier = datetime.now(BERLIN) - timedelta(minutes=1)
    await asyncio.to_thread(store.add_todo, "feed the cat", earlier)
    async with connect(realtime) as connection:
        await collect(connection, "session.created")
        said = await _responses_within(connection, 10)
    assert said == ["Reminder: feed the cat."], said
