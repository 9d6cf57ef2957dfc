"""The secretary's skills on the page, in a real headless Chromium: requests typed to it,
the Agenda panel they fill, and a reminder shown and spoken as it falls due.

The UI server runs in process with the skills on, its calendar a real CalDAV server (the
calendar service, Radicale, in a child process) and its voice a real text-to-speech
service, each on a free port. Chromium is Debian's ``chromium`` package driven by Playwright, as in
``test_browser.py``; without it the tests are skipped on a developer's machine.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from secretary.calendar.store import CalendarStore
from secretary.config import Settings
from secretary.tts.app import create_app as create_tts_app
from secretary.ui.app import create_app as create_ui_app
from tests.calendar.support import CalendarServer
from tests.helpers import free_port, needs, running_server
from tests.ui.support import ui_settings

# Read at import: the session fixture in conftest.py clears SECRETARY_* variables later.
CHROMIUM = Path(os.environ.get("SECRETARY_TEST_CHROMIUM", "/usr/bin/chromium"))
QUIET_CHROMIUM = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
# The server's and the browser's zone, the same, so "tomorrow" is the same day for both.
ZONE = "Europe/Berlin"

needs_chromium = needs(
    CHROMIUM.exists(),
    f"Chromium at {CHROMIUM}: Debian's chromium package (apt-get install -y chromium), "
    "or SECRETARY_TEST_CHROMIUM",
)

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="module")
def browser(playwright):
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=QUIET_CHROMIUM)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's calendar and notes, apart from every other test's."""
    return tmp_path_factory.mktemp("agenda-data")


@pytest.fixture(scope="module")
def calendar_url(calendar: CalendarServer) -> str:
    """The calendar service (Radicale) as its own server, as ``secretary serve`` runs it."""
    return calendar.url


@pytest.fixture(scope="module")
def tts_url(cache_dir: Path) -> Iterator[str]:
    with running_server(create_tts_app(ui_settings(cache_dir))) as url:
        yield url


def skills_settings(cache_dir: Path, data_dir: Path, calendar_url: str,
                    tts_url: str) -> Settings:
    """The UI with the skills on (conftest.py turns them off for every other test), no
    avatar, the calendar at ``calendar_url`` asked for due reminders every second."""
    settings = ui_settings(cache_dir, tts_url=tts_url)
    settings.data_dir = data_dir
    settings.timezone = ZONE
    settings.conversation = settings.conversation.model_copy(
        update={"brain": "skills", "avatar": False})
    calendar: dict[str, Any] = {"url": calendar_url}
    if "reminder_poll_s" in type(settings.calendar).model_fields:
        calendar["reminder_poll_s"] = 1
    settings.calendar = settings.calendar.model_copy(update=calendar)
    return settings


@dataclass
class Page:
    """A page of the UI with what it did on the side: JavaScript errors, policy
    violations, and what it asked of the server."""

    page: Any
    errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    speech: list[dict[str, Any]] = field(default_factory=list)  # bodies sent to the TTS
    replies: list[dict[str, Any]] = field(default_factory=list)  # bodies sent to /api/reply

    def close(self) -> None:
        self.page.context.close()
        assert not self.errors, self.errors
        assert not self.violations, self.violations

    def spoken(self, text: str, timeout: float = 30.0) -> dict[str, Any]:
        """The text-to-speech request for ``text``, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for body in self.speech:
                if body.get("text") == text:
                    return body
            self.page.wait_for_timeout(200)
        raise AssertionError(f"{text!r} was not sent to the text-to-speech route: "
                             f"{self.speech}")


def open_page(browser, url: str) -> Page:
    context = browser.new_context(locale="en-US", timezone_id=ZONE,
                                  viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watched = Page(page)
    page.on("pageerror", lambda error: watched.errors.append(str(error)))
    page.on("console", lambda message: watched.violations.append(message.text)
            if "Content Security Policy" in message.text else None)

    def on_request(request) -> None:
        if request.method != "POST":
            return
        if request.url.endswith("/api/tts/synthesize"):
            watched.speech.append(json.loads(request.post_data or "{}"))
        elif request.url.endswith("/api/reply"):
            watched.replies.append(json.loads(request.post_data or "{}"))

    page.on("request", on_request)
    page.goto(url)
    return watched


def ask(page, text: str) -> None:
    from playwright.sync_api import expect

    page.get_by_test_id("ask-text").fill(text)
    page.get_by_test_id("ask-send").click()
    expect(page.get_by_test_id("transcript")).to_have_text(text)


def local_clock(page, hour: int, minute: int) -> str:
    """How the browser writes a time of day, as the panel does."""
    return page.evaluate(
        "([h, m]) => new Date(2000, 0, 1, h, m).toLocaleTimeString([], "
        "{hour: 'numeric', minute: '2-digit'})", [hour, minute])


def test_typed_requests_fill_the_agenda_and_a_due_reminder_is_spoken(
        browser, cache_dir: Path, data_dir: Path, calendar_url: str, tts_url: str) -> None:
    from playwright.sync_api import expect

    settings = skills_settings(cache_dir, data_dir, calendar_url, tts_url)
    with running_server(create_ui_app(settings)) as ui_url:
        watched = open_page(browser, ui_url)
        page = watched.page
        agenda = page.get_by_test_id("agenda")
        expect(agenda).to_be_visible(timeout=30_000)
        expect(agenda).to_have_attribute("data-state", "ready")
        days = agenda.locator(".agenda-day h3")
        expect(days).to_have_text(["Today", "Tomorrow"])
        expect(agenda.locator(".agenda-day li.empty")).to_have_text(
            ["Nothing planned", "Nothing planned"])
        expect(page.get_by_test_id("agenda-todos")).to_have_text("No open to-dos")
        expect(page.get_by_test_id("agenda-reminders")).to_have_text("No reminders coming up")
        expect(page.get_by_test_id("agenda-error")).to_be_hidden()
        expect(agenda).to_have_attribute("data-reminders", "listening", timeout=15_000)

        # An event for tomorrow: confirmed in the reply bubble, spoken, shown under Tomorrow.
        ask(page, "put lunch with Anna tomorrow at one")
        reply = page.get_by_test_id("reply-text")
        expect(reply).to_contain_text("lunch with Anna", timeout=30_000)
        first_answer = reply.inner_text()
        assert first_answer.startswith("I put"), first_answer
        tomorrow = agenda.locator('.agenda-day:has(h3:text-is("Tomorrow"))')
        event = tomorrow.get_by_test_id("agenda-event")
        expect(event).to_have_count(1, timeout=15_000)
        expect(event.locator(".title")).to_have_text("lunch with Anna")
        expect(event.locator("time")).to_have_text(local_clock(page, 13, 0))
        expect(agenda.locator('.agenda-day:has(h3:text-is("Today")) li.empty')).to_have_text(
            "Nothing planned")
        speech = watched.spoken(first_answer)
        assert speech["language"] == "en"
        expect(page.locator('#steps li[data-step="speak"]')).to_have_attribute(
            "data-status", "done", timeout=30_000)
        page.wait_for_function(
            "() => { const a = document.querySelector('[data-testid=reply-audio]');"
            " return a.src.startsWith('blob:') && a.duration > 0.5; }", timeout=30_000)

        # A to-do; the request carries the typed conversation so far.
        ask(page, "add buy milk to my list")
        expect(reply).to_have_text("I added buy milk to your list.", timeout=30_000)
        expect(page.get_by_test_id("agenda-todo")).to_have_text(["buy milk"], timeout=15_000)
        assert watched.replies[0]["history"] == []
        assert watched.replies[1]["history"] == [
            {"role": "user", "content": "put lunch with Anna tomorrow at one"},
            {"role": "assistant", "content": first_answer}]

        # A reminder for a minute from now: among the reminders to come.
        ask(page, "remind me in 1 minute to stretch")
        expect(reply).to_contain_text("stretch", timeout=30_000)
        expect(page.get_by_test_id("agenda-reminder")).to_have_count(1, timeout=15_000)
        expect(page.get_by_test_id("agenda-reminder").locator(".title")).to_have_text("stretch")

        # A reminder due in a few seconds, written straight into the calendar: the page
        # shows it once, speaks it and reads the agenda again.
        store = CalendarStore.from_settings(settings)
        store.add_todo("drink water", datetime.now(ZoneInfo(ZONE)) + timedelta(seconds=3))
        alert = page.get_by_test_id("reminder-alert").filter(has_text="drink water")
        expect(alert).to_be_visible(timeout=30_000)
        expect(alert.locator(".words")).to_have_text("Reminder: drink water.")
        watched.spoken("Reminder: drink water.")
        expect(alert).to_have_attribute("data-state", "spoken", timeout=30_000)
        assert page.evaluate(
            "() => document.querySelector('[data-testid=reminder-audio]').src"
        ).startswith("blob:")
        expect(page.get_by_test_id("agenda-todo").filter(has_text="drink water")).to_have_count(
            1, timeout=15_000)  # the agenda was read again: it is on the list, now due
        page.wait_for_timeout(3000)  # three more polls of the calendar
        expect(alert).to_have_count(1)
        assert sum(b.get("text") == "Reminder: drink water." for b in watched.speech) == 1

        # Live mode says reminders itself: the page stops listening while it runs.
        live_state = "(s) => { document.getElementById('live-state').dataset.state = s; }"
        page.evaluate(live_state, "listening")  # as live.js marks a session
        expect(agenda).to_have_attribute("data-reminders", "off")
        page.evaluate(live_state, "off")
        expect(agenda).to_have_attribute("data-reminders", "listening", timeout=15_000)

        page.get_by_test_id("reminder-alert").first.get_by_role("button", name="Dismiss").click()
        expect(alert).to_have_count(0)
        watched.close()


def test_without_the_skills_the_panel_is_hidden_and_typing_reads_back(
        browser, cache_dir: Path) -> None:
    """The echo brain (conftest.py's default) has no skills: /api/agenda answers 404, the
    panel stays hidden and no reminders are listened for; the typed box still answers,
    and a text-to-speech service that is away is named in the page's notice."""
    from playwright.sync_api import expect

    tts_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = ui_settings(cache_dir, tts_url=tts_url)
    with running_server(create_ui_app(settings)) as ui_url:
        watched = open_page(browser, ui_url)
        page = watched.page
        agenda = page.get_by_test_id("agenda")
        expect(agenda).to_have_attribute("data-state", "off", timeout=30_000)
        expect(agenda).to_be_hidden()
        expect(agenda).to_have_attribute("data-reminders", "off")

        page.get_by_test_id("ask-text").fill("hello there")
        page.get_by_test_id("ask-text").press("Enter")
        expect(page.get_by_test_id("reply-text")).to_have_text("hello there", timeout=30_000)
        notice = page.get_by_test_id("notice-text")
        expect(notice).to_contain_text("text-to-speech service", timeout=30_000)
        expect(notice).to_contain_text(tts_url)
        expect(page.locator('#steps li[data-step="speak"]')).to_have_attribute(
            "data-status", "failed")
        expect(page.get_by_test_id("ask-send")).to_be_enabled()
        assert watched.speech == [{"text": "hello there", "language": "en", "format": "wav"}]
        watched.close()
