"""The CalDAV protocol on httpx: the few requests the store needs (RFC 4918 and 4791).

Decisions:
- Not the ``caldav`` package: its 2.1 and later releases depend on ``niquests``, whose
  ``urllib3-future`` replaces ``urllib3`` for every package of the environment at each
  interpreter start (a ``.pth`` hook). That broke ``requests``-based code here (the test
  suite's schemathesis; in production, anything downloading models through ``requests``).
  The 2.0 release before it cannot create events with ``icalendar`` 7. What the store needs
  is small: find the user's calendars, make one, query events and to-dos, and plain GET,
  PUT and DELETE with ETags; ``httpx`` is already here, and the iCalendar side stays with
  ``icalendar`` and ``recurring-ical-events``.
- Server answers are parsed with ``defusedxml`` (the server may be anyone's).
- Transport failures come out as ``TimeoutError`` or ``ConnectionError`` (the store says
  "cannot be reached"); error answers as ``DavError`` with the status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin
from xml.etree.ElementTree import Element

import httpx
from defusedxml import ElementTree

_DAV, _CALDAV = "DAV:", "urn:ietf:params:xml:ns:caldav"
_XML = {"Content-Type": "application/xml; charset=utf-8"}
_MAX_BODY = 64 * 1024 * 1024  # a multistatus answer larger than this is refused


class DavError(Exception):
    """The server answered an error."""

    def __init__(self, status: int, reason: str, doing: str) -> None:
        super().__init__(f"{status} {reason} ({doing})")
        self.status = status
        self.reason = reason


class DavAuthError(DavError):
    """The server refused the login (401 or 403)."""


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: httpx.Headers
    raw: bytes


@dataclass(frozen=True)
class Collection:
    """A calendar collection of the user."""

    url: str
    name: str | None


@dataclass(frozen=True)
class Item:
    """A calendar object resource: where it is, its ETag, its iCalendar text."""

    url: str
    etag: str | None
    data: str


class DavClient:
    """Blocking, one HTTP connection pool; not for use by several threads at once."""

    def __init__(self, url: str, username: str | None, password: str | None,
                 timeout: float) -> None:
        self.url = url if url.endswith("/") else url + "/"
        auth = httpx.BasicAuth(username or "", password or "") if (username or password) \
            else None
        self._credentials = (username or "", password or "")
        self._client = httpx.Client(timeout=timeout, auth=auth, follow_redirects=True)
        self._home: str | None = None

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ requests
    def request(self, method: str, url: str, body: str | bytes = "",
                headers: dict[str, str] | None = None) -> Response:
        """One request as it is answered (an error status is returned, not raised)."""
        try:
            answer = self._client.request(method, urljoin(self.url, url),
                                          content=body or None, headers=headers)
            if answer.status_code == 401 and "digest" in \
                    answer.headers.get("WWW-Authenticate", "").lower() and \
                    not isinstance(self._client.auth, httpx.DigestAuth):
                self._client.auth = httpx.DigestAuth(*self._credentials)
                answer = self._client.request(method, urljoin(self.url, url),
                                              content=body or None, headers=headers)
        except httpx.TimeoutException as exc:
            raise TimeoutError(str(exc) or "timed out") from exc
        except httpx.TransportError as exc:
            raise ConnectionError(str(exc) or type(exc).__name__) from exc
        if len(answer.content) > _MAX_BODY:
            raise DavError(502, "answer too large", method)
        return Response(answer.status_code, answer.reason_phrase, answer.headers,
                        answer.content)

    def _xml(self, method: str, url: str, body: str, depth: str, doing: str) -> Element:
        answer = self.request(method, url, body, {**_XML, "Depth": depth})
        if answer.status in (401, 403):
            raise DavAuthError(answer.status, answer.reason, doing)
        if answer.status != 207:
            raise DavError(answer.status, answer.reason, doing)
        try:
            return ElementTree.fromstring(answer.raw)
        except Exception as exc:  # defusedxml's refusals and XML syntax errors
            raise DavError(502, f"unreadable answer: {exc}", doing) from None

    def _propfind(self, url: str, props: str, depth: str, doing: str) -> Element:
        body = (f'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" '
                f'xmlns:c="{_CALDAV}"><d:prop>{props}</d:prop></d:propfind>')
        return self._xml("PROPFIND", url, body, depth, doing)

    # ------------------------------------------------------------------ discovery
    def home(self) -> str:
        """The user's calendar home (RFC 4791 section 6.2.1), found once."""
        if self._home is None:
            root = self._propfind(self.url, "<d:current-user-principal/>", "0",
                                  "finding the user")
            principal = _href(root, f"{{{_DAV}}}current-user-principal") or self.url
            root = self._propfind(principal, "<c:calendar-home-set/>", "0",
                                  "finding the calendars")
            self._home = urljoin(self.url, _href(root, f"{{{_CALDAV}}}calendar-home-set")
                                 or principal)
        return self._home

    def calendars(self) -> list[Collection]:
        home = self.home()
        root = self._propfind(home, "<d:resourcetype/><d:displayname/>", "1",
                              "listing the calendars")
        found = []
        for response in root.iter(f"{{{_DAV}}}response"):
            prop = _ok_prop(response)
            kinds = prop.find(f"{{{_DAV}}}resourcetype") if prop is not None else None
            if kinds is None or kinds.find(f"{{{_CALDAV}}}calendar") is None:
                continue
            name = prop.findtext(f"{{{_DAV}}}displayname") if prop is not None else None
            found.append(Collection(urljoin(home, response.findtext(f"{{{_DAV}}}href", "")),
                                    name or None))
        return found

    def make_calendar(self, cal_id: str, name: str) -> Collection:
        url = urljoin(self.home(), cal_id + "/")
        body = (f'<?xml version="1.0" encoding="utf-8"?><c:mkcalendar xmlns:d="DAV:" '
                f'xmlns:c="{_CALDAV}"><d:set><d:prop><d:displayname>{_escape(name)}'
                '</d:displayname><c:supported-calendar-component-set>'
                '<c:comp name="VEVENT"/><c:comp name="VTODO"/>'
                '</c:supported-calendar-component-set></d:prop></d:set></c:mkcalendar>')
        answer = self.request("MKCALENDAR", url, body, _XML)
        if answer.status in (401, 403):
            raise DavAuthError(answer.status, answer.reason, "making a calendar")
        if answer.status >= 300:
            raise DavError(answer.status, answer.reason, "making a calendar")
        return Collection(url, name)

    # ------------------------------------------------------------------ queries
    def query(self, calendar: str, component: str, start: datetime | None = None,
              end: datetime | None = None) -> list[Item]:
        """The calendar's objects holding a ``component`` (VEVENT, VTODO), for events
        those with an instance overlapping [start, end) (RFC 4791 section 7.8)."""
        window = ""
        if start is not None and end is not None:
            window = f'<c:time-range start="{_utc(start)}" end="{_utc(end)}"/>'
        body = (f'<?xml version="1.0" encoding="utf-8"?><c:calendar-query xmlns:d="DAV:" '
                f'xmlns:c="{_CALDAV}"><d:prop><d:getetag/><c:calendar-data/></d:prop>'
                f'<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter '
                f'name="{component}">{window}</c:comp-filter></c:comp-filter></c:filter>'
                '</c:calendar-query>')
        root = self._xml("REPORT", calendar, body, "1", f"reading {component} items")
        found = []
        for response in root.iter(f"{{{_DAV}}}response"):
            prop = _ok_prop(response)
            data = prop.findtext(f"{{{_CALDAV}}}calendar-data") if prop is not None else None
            if not data:
                continue
            etag = prop.findtext(f"{{{_DAV}}}getetag") if prop is not None else None
            found.append(Item(urljoin(calendar, response.findtext(f"{{{_DAV}}}href", "")),
                              etag or None, data))
        return found


def _ok_prop(response: Any) -> Any:
    """The ``prop`` of a response's 200 propstat (None when there is none)."""
    for propstat in response.iter(f"{{{_DAV}}}propstat"):
        if " 200 " in (propstat.findtext(f"{{{_DAV}}}status") or "") + " ":
            return propstat.find(f"{{{_DAV}}}prop")
    return None


def _href(root: Any, prop: str) -> str | None:
    for element in root.iter(prop):
        href = element.findtext(f"{{{_DAV}}}href")
        if href:
            return href.strip()
    return None


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
