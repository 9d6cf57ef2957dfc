"""Helpers for the calendar tests: the project's calendar service as a real server in a
child process (so a test can kill it and start it again), a proxy that loses answers,
and a plain CalDAV client (raw WebDAV requests) that is not the store."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin
from xml.etree import ElementTree

import httpx
import icalendar

# The calendar app under uvicorn, from a data folder, a port and an optional API key.
_SERVE = """
import sys
import uvicorn
from pathlib import Path
from secretary.calendar.app import create_app
from secretary.config import Settings
data, port, key = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] or None
settings = Settings(_env_file=None, cache_dir=data.parent / "cache", data_dir=data, api_key=key)
uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CalendarServer:
    """``secretary.calendar.app`` served by uvicorn in a child process."""

    def __init__(self, data_dir: Path, api_key: str | None = None) -> None:
        self.data_dir = data_dir
        self.api_key = api_key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(self.data_dir), str(self.port),
             self.api_key or ""])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the calendar server exited with {self.process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "health", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("the calendar server did not start")

    def __enter__(self) -> CalendarServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def kill(self) -> None:
        """Gone at once, as a crash or a power cut would take it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


class PlainObject:
    """One item as another client sees it; ``save`` writes ``data`` back unconditionally
    (as a careless client would)."""

    def __init__(self, client: httpx.Client, url: str, data: str) -> None:
        self.client = client
        self.url = url
        self.data = data

    def save(self) -> None:
        answer = self.client.put(self.url, content=self.data,
                                 headers={"Content-Type": "text/calendar; charset=utf-8"})
        assert answer.status_code in (201, 204), answer.text


class PlainCalendar:
    """Another CalDAV client (the user's phone): raw WebDAV requests over httpx, sharing
    no code with the secretary's store."""

    def __init__(self, client: httpx.Client, url: str) -> None:
        self.client = client
        self.url = url

    def search(self, *, event: bool = False, todo: bool = False,
               include_completed: bool = True) -> list[PlainObject]:
        kind = "VTODO" if todo else "VEVENT"
        body = ('<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
                "<d:prop><c:calendar-data/></d:prop><c:filter>"
                f'<c:comp-filter name="VCALENDAR"><c:comp-filter name="{kind}"/>'
                "</c:comp-filter></c:filter></c:calendar-query>")
        answer = self.client.request("REPORT", self.url, content=body,
                                     headers={"Depth": "1"})
        assert answer.status_code == 207, answer.text
        root = ElementTree.fromstring(answer.content)
        found = []
        for response in root.iter("{DAV:}response"):
            data = response.findtext(".//{urn:ietf:params:xml:ns:caldav}calendar-data")
            if data and (include_completed or "STATUS:COMPLETED" not in data):
                found.append(PlainObject(
                    self.client, urljoin(self.url, response.findtext("{DAV:}href")), data))
        return found

    def object_by_uid(self, uid: str) -> PlainObject:
        for item in self.search(event=True) + self.search(todo=True):
            uids = {str(c["UID"]) for c in icalendar.Calendar.from_ical(item.data).walk()
                    if "UID" in c}
            if uid in uids:
                return item
        raise LookupError(f"no item with the UID {uid!r}")

    def save_event(self, *, ical: str | None = None, uid: str | None = None,
                   dtstart: datetime | None = None, dtend: datetime | None = None,
                   summary: str = "", rrule: dict[str, object] | None = None) -> PlainObject:
        if ical is None:
            event = icalendar.Event()
            event.add("uid", uid or str(uuid.uuid4()))
            event.add("dtstamp", datetime.now(UTC))
            event.add("dtstart", dtstart)
            if dtend is not None:
                event.add("dtend", dtend)
            event.add("summary", summary)
            if rrule:
                event.add("rrule", rrule)
            calendar = icalendar.Calendar()
            calendar.add("prodid", "-//a phone//EN")
            calendar.add("version", "2.0")
            calendar.add_component(event)
            ical = calendar.to_ical().decode()
        uid = str(icalendar.Calendar.from_ical(ical).walk("VEVENT")[0]["UID"])
        url = urljoin(self.url, f"{uid}.ics")
        answer = self.client.put(url, content=ical,
                                 headers={"Content-Type": "text/calendar; charset=utf-8"})
        assert answer.status_code in (201, 204), answer.text
        return PlainObject(self.client, url, ical)

    def delete(self) -> None:
        assert self.client.delete(self.url).status_code in (200, 204)


def plain_calendar(url: str, name: str, user: str = "secretary") -> PlainCalendar:
    """The calendar called ``name`` of the embedded server's one user, made by another
    client if it is not there."""
    client = httpx.Client(timeout=10, auth=httpx.BasicAuth(user, ""))
    home = urljoin(url, f"{user}/")
    answer = client.request("PROPFIND", home, headers={"Depth": "1"}, content=(
        '<d:propfind xmlns:d="DAV:"><d:prop><d:displayname/><d:resourcetype/></d:prop>'
        "</d:propfind>"))
    if answer.status_code == 207:
        for response in ElementTree.fromstring(answer.content).iter("{DAV:}response"):
            if response.findtext(".//{DAV:}displayname") == name:
                return PlainCalendar(client, urljoin(home, response.findtext("{DAV:}href")))
    target = urljoin(home, f"{uuid.uuid4().hex}/")
    made = client.request("MKCALENDAR", target, content=(
        '<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set>'
        f"<d:prop><d:displayname>{name}</d:displayname></d:prop></d:set></c:mkcalendar>"))
    assert made.status_code == 201, made.text
    return PlainCalendar(client, target)


class AnswerLosingProxy:
    """A TCP proxy in front of a server: while ``lose`` is set, each request reaches the
    server, but the connection closes as its answer starts (the write happened; the
    client cannot know)."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.lose = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._listener.accept()
                server = socket.create_connection(("127.0.0.1", self.upstream))
                threading.Thread(target=self._pump, args=(client, server, False),
                                 daemon=True).start()
                threading.Thread(target=self._pump, args=(server, client, True),
                                 daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, answers: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if answers and self.lose:
                    break
                target.sendall(data)
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
