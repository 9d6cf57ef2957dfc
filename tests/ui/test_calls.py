"""The page's Calls panel: the telephone's latest calls through the UI server's
``/api/calls``, which asks the telephone service (its real ``/api/calls`` route over a real
call log, on a free port) and, where that service is not running, says so and shows the
calls kept in this machine's data folder.

The browser tests run in a real headless Chromium (Debian's ``chromium`` driven by
Playwright, as in ``test_agenda.py``); without it they are skipped on a developer's
machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from secretary.config import Settings
from secretary.phone.app import build_router
from secretary.phone.calls import CallLog, CallRecord
from secretary.ui.app import create_app as create_ui_app
from tests.helpers import free_port, running_server
from tests.ui.support import ui_settings
from tests.ui.test_agenda import CHROMIUM, QUIET_CHROMIUM, needs_chromium


def record(folder: Path, uri: str, lines: list[tuple[str, str]], age_s: float,
           reason: str = "the caller hung up") -> dict[str, Any]:
    """A finished call saved as the telephone saves it, ``age_s`` seconds old."""
    call = CallRecord.of(uri)
    for who, text in lines:
        call.add(who, text)
    call.finish(reason)
    call.duration_s = 75.0
    CallLog(folder).save(call)
    path = folder / f"{call.id}.json"
    when = time.time() - age_s
    os.utime(path, (when, when))
    return call.as_json()


@pytest.fixture
def calls_folder(tmp_path: Path) -> Path:
    return tmp_path / "phone-data" / "calls"


@pytest.fixture
def phone_url(calls_folder: Path) -> Iterator[str]:
    """The telephone service's HTTP routes (``secretary.phone.app``) over a real call log;
    no SIP endpoint (one per process, and the telephone's own tests hold it)."""
    app = FastAPI()
    app.include_router(build_router(SimpleNamespace(log=CallLog(calls_folder))))  # type: ignore[arg-type]
    with running_server(app) as url:
        yield url


def settings_for(cache_dir: Path, data_dir: Path, phone_port: int) -> Settings:
    settings = ui_settings(cache_dir)
    settings.data_dir = data_dir
    settings.phone = settings.phone.model_copy(update={"http_port": phone_port})
    return settings


def two_calls(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    older = record(folder, "sip:200@pbx.example", [], age_s=600, reason="no sound for 30 s")
    newer = record(folder, '"Alice" <sip:5551234@pbx.example>', [
        ("secretary", "Hello, this is the secretary. How can I help you?"),
        ("caller", "This is Alice. Please call me back about the invoice. Thanks."),
        ("event", "pressed 1"),
        ("secretary", "I will pass it on."),
    ], age_s=60)
    return newer, older


def test_the_calls_come_from_the_telephone_service(
        cache_dir: Path, tmp_path: Path, calls_folder: Path, phone_url: str) -> None:
    newer, older = two_calls(calls_folder)
    port = httpx.URL(phone_url).port
    assert port is not None
    # The UI's own data folder is another: what it shows is the service's answer.
    settings = settings_for(cache_dir, tmp_path / "ui-data", port)
    with running_server(create_ui_app(settings)) as ui_url:
        body = httpx.get(f"{ui_url}/api/calls").json()
        assert body["phone"] == "up" and "detail" not in body
        assert [c["id"] for c in body["data"]] == [newer["id"], older["id"]]
        assert body["data"][0] == newer
        assert body["data"][0]["summary"] == (
            "This is Alice. Please call me back about the invoice.")
        one = httpx.get(f"{ui_url}/api/calls", params={"limit": 1}).json()
        assert [c["id"] for c in one["data"]] == [newer["id"]]
        assert httpx.get(f"{ui_url}/api/calls", params={"limit": 0}).status_code == 400


def test_without_the_telephone_service_the_answer_says_so(
        cache_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    settings = settings_for(cache_dir, data, free_port())  # nothing listens there
    with running_server(create_ui_app(settings)) as ui_url:
        for _ in range(3):  # the page asks again and again: no error, nothing logged
            answer = httpx.get(f"{ui_url}/api/calls")
            assert answer.status_code == 200
            body = answer.json()
            assert body["phone"] == "down" and body["data"] == []
            assert "not running" in body["detail"]
            assert "secretary serve --only phone" in body["detail"]
        # Calls the telephone kept in this machine's data folder are still listed.
        kept = record(data / "calls", "sip:300@pbx.example",
                      [("caller", "Hello? Call me back.")], age_s=5)
        body = httpx.get(f"{ui_url}/api/calls").json()
        assert body["phone"] == "down" and [c["id"] for c in body["data"]] == [kept["id"]]
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")
                and "telephone" in r.getMessage()]


# ------------------------------------------------------------------ in the browser

@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=QUIET_CHROMIUM)
        try:
            yield browser
        finally:
            browser.close()


class Watched:
    """A page and what went wrong on it: JavaScript errors, policy violations, and the
    console's errors about the calls (a failed request to /api/calls is one; the rest of
    the page has its own tests, and its Agenda's 404 without the skills is one too)."""

    def __init__(self, browser, url: str) -> None:
        self.errors: list[str] = []
        context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
        self.page = context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", self._console)
        self.page.goto(url)

    def _console(self, message) -> None:
        where = (message.location or {}).get("url", "")
        if "Content Security Policy" in message.text or message.type == "error" and (
                "calls" in where or "calls" in message.text.lower()):
            self.errors.append(f"{message.text} ({where})")

    def close(self) -> None:
        self.page.context.close()
        assert not self.errors, self.errors


@needs_chromium
def test_the_panel_lists_the_calls_with_their_transcripts(
        browser, cache_dir: Path, tmp_path: Path, calls_folder: Path, phone_url: str) -> None:
    from playwright.sync_api import expect

    newer, older = two_calls(calls_folder)
    port = httpx.URL(phone_url).port
    assert port is not None
    settings = settings_for(cache_dir, tmp_path / "ui-data", port)
    with running_server(create_ui_app(settings)) as ui_url:
        watched = Watched(browser, ui_url)
        page = watched.page
        panel = page.get_by_test_id("calls")
        expect(panel).to_have_attribute("data-state", "ready", timeout=30_000)
        expect(panel).to_have_attribute("data-phone", "up")
        expect(page.get_by_test_id("calls-status")).to_be_hidden()
        items = page.get_by_test_id("call")
        expect(items).to_have_count(2)
        expect(page.get_by_test_id("call-caller")).to_have_text(["Alice (5551234)", "200"])
        expect(page.get_by_test_id("call-summary")).to_have_text([
            "This is Alice. Please call me back about the invoice.", "No message was left."])
        first = items.first
        expect(first).to_have_attribute("data-id", newer["id"])
        expect(first.locator("summary .duration")).to_have_text("1:15")
        clock = page.evaluate("(iso) => new Date(iso).toLocaleTimeString([], "
                              "{hour: 'numeric', minute: '2-digit'})", newer["started"])
        expect(first.locator("summary time")).to_have_text(clock)

        # The transcript opens under its call, each line with who said it.
        transcript = first.get_by_test_id("call-transcript")
        expect(transcript).to_be_hidden()
        first.locator("summary").click()
        expect(transcript).to_be_visible()
        expect(transcript.locator(".who")).to_have_text(["Secretary", "Caller", "", "Secretary"])
        expect(transcript.locator(".text")).to_have_text([
            "Hello, this is the secretary. How can I help you?",
            "This is Alice. Please call me back about the invoice. Thanks.",
            "pressed 1", "I will pass it on."])

        # A new call shows up on Refresh; the opened transcript stays open.
        third = record(calls_folder, "sip:400@pbx.example",
                       [("caller", "It is Bob. Ring me.")], age_s=1)
        page.get_by_test_id("calls-refresh").click()
        expect(items).to_have_count(3)
        expect(items.first).to_have_attribute("data-id", third["id"])
        expect(page.locator(f'[data-id="{newer["id"]}"] details')).to_have_attribute("open", "")
        expect(items.last).to_have_attribute("data-id", older["id"])
        watched.close()


@needs_chromium
def test_without_the_telephone_the_panel_says_so_quietly(
        browser, cache_dir: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    settings = settings_for(cache_dir, tmp_path / "data", free_port())  # nothing there
    with running_server(create_ui_app(settings)) as ui_url:
        watched = Watched(browser, ui_url)
        page = watched.page
        panel = page.get_by_test_id("calls")
        expect(panel).to_have_attribute("data-phone", "down", timeout=30_000)
        expect(panel).to_have_attribute("data-state", "ready")
        expect(panel).to_be_visible()
        status = page.get_by_test_id("calls-status")
        expect(status).to_be_visible()
        expect(status).to_contain_text("The telephone is not running")
        expect(status).to_contain_text("secretary serve --only phone")
        expect(page.get_by_test_id("calls-list")).to_have_text("No calls yet")
        for _ in range(2):  # asked again: still calm
            page.get_by_test_id("calls-refresh").click()
            page.wait_for_timeout(300)
        expect(panel).to_have_attribute("data-state", "ready")
        expect(page.locator('[data-testid="notice-text"]:visible')).to_have_count(0)
        watched.close()  # no error in the console: no failed request, no exception
