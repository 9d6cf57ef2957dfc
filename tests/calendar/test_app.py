"""The calendar service: Radicale inside the project's service app, behind its guard."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from secretary.calendar.app import create_app
from secretary.calendar.store import CalendarRefused, CalendarStore
from secretary.config import Settings
from tests.calendar.support import CalendarServer

BERLIN = ZoneInfo("Europe/Berlin")
LOCAL = "http://127.0.0.1"  # a host name the guard answers to
_PROPFIND = """<?xml version="1.0" encoding="utf-8"?>
<propfind xmlns="DAV:"><prop><current-user-principal/></prop></propfind>"""
_EVENT = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//test//EN\r
BEGIN:VEVENT\r
UID:report-me\r
DTSTAMP:20310101T000000Z\r
DTSTART:20310301T100000Z\r
DTEND:20310301T110000Z\r
SUMMARY:Found by a report\r
END:VEVENT\r
END:VCALENDAR\r
"""
_REPORT = """<?xml version="1.0" encoding="utf-8"?>
<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
<D:prop><D:getetag/><C:calendar-data/></D:prop>
<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">
<C:time-range start="20310301T000000Z" end="20310302T000000Z"/>
</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>"""


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(_env_file=None, cache_dir=tmp_path / "cache", data_dir=tmp_path / "data",
                    **overrides)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_health_metrics_and_caldav_through_the_app(tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(tmp_path)), base_url=LOCAL) as client:
        health = client.get("/health").json()
        assert health == {"status": "ok", "service": "calendar", "storage": {"writable": True}}
        assert "secretary_http_requests_total" in client.get("/metrics").text

        found = client.request("PROPFIND", "/", content=_PROPFIND, headers={"Depth": "0"})
        assert found.status_code == 207
        assert "<href>/secretary/</href>" in found.text.replace("D:", "")

        made = client.request("MKCALENDAR", "/secretary/home/")
        assert made.status_code == 201
        put = client.put("/secretary/home/report-me.ics", content=_EVENT,
                         headers={"Content-Type": "text/calendar", "If-None-Match": "*"})
        assert put.status_code == 201 and put.headers["ETag"]
        report = client.request("REPORT", "/secretary/home/", content=_REPORT,
                                headers={"Depth": "1", "Content-Type": "application/xml"})
        assert report.status_code == 207
        assert "SUMMARY:Found by a report" in report.text
        assert put.headers["ETag"] in report.text.replace("&quot;", '"')
    stored = tmp_path / "data" / "calendar" / "collection-root" / "secretary" / "home"
    assert "SUMMARY:Found by a report" in (stored / "report-me.ics").read_text()


def test_health_says_when_the_storage_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file where the data folder should be")
    with TestClient(create_app(settings_for(tmp_path)), base_url=LOCAL) as client:
        health = client.get("/health").json()
        answer = client.request("PROPFIND", "/", content=_PROPFIND, headers={"Depth": "0"})
    assert health["status"] == "degraded" and health["storage"] == {"writable": False}
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "calendar_storage"


def test_the_api_key_guards_caldav_and_basic_login_carries_it(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path, api_key="k3y-for-tests"))
    with TestClient(app, base_url=LOCAL) as client:
        assert client.get("/health").status_code == 200
        refused = client.request("PROPFIND", "/", content=_PROPFIND, headers={"Depth": "0"})
        assert refused.status_code == 401
        challenges = refused.headers.get_list("WWW-Authenticate")
        assert any(c.startswith("Basic") for c in challenges), challenges
        wrong = client.request("PROPFIND", "/", content=_PROPFIND,
                               headers={"Depth": "0", **basic("me", "wrong")})
        assert wrong.status_code == 401
        for auth in (basic("phone", "k3y-for-tests"),
                     {"Authorization": "Bearer k3y-for-tests"}):
            allowed = client.request("PROPFIND", "/", content=_PROPFIND,
                                     headers={"Depth": "0", **auth})
            assert allowed.status_code == 207, auth
            assert "/secretary/" in allowed.text


def test_the_store_logs_in_with_the_key_and_data_survives_a_restart(tmp_path: Path) -> None:
    server = CalendarServer(tmp_path / "data", api_key="k3y-for-tests")
    server.start()
    start = datetime(2031, 6, 1, 10, tzinfo=BERLIN)
    try:
        settings = settings_for(tmp_path, api_key="k3y-for-tests",
                                calendar={"port": server.port})
        store = CalendarStore.from_settings(settings)
        store.add_event("Kept across restarts", start, start + timedelta(hours=1))
        with pytest.raises(CalendarRefused, match="refused the login"):
            CalendarStore(server.url, "secretary", "not-the-key", "Secretary", 5,
                          BERLIN).todos()
        server.kill()
        assert list((tmp_path / "data" / "calendar" / "collection-root" / "secretary"
                     ).rglob("*.ics"))
        server.start()
        listed = CalendarStore.from_settings(settings).events(start, start + timedelta(days=1))
        assert [e.title for e in listed] == ["Kept across restarts"]
    finally:
        server.kill()
