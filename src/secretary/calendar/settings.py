"""Settings of the calendar service (the embedded Radicale) and of the CalDAV client the
skills use, which may point at another server instead."""

from __future__ import annotations

from pydantic import Field, SecretStr

from secretary.settings_base import ServiceSettings, group

# The one user of the embedded server: whoever gets past the services' guard.
OWNER = "secretary"


class CalendarSettings(ServiceSettings):
    model_config = group("SECRETARY_CALENDAR_")

    port: int = Field(
        default=5232,
        description="Port of the embedded CalDAV server (Radicale) that phones and desktop "
        "calendars sync with.",
    )
    url: str | None = Field(
        default=None,
        description="CalDAV server the secretary keeps its calendar and to-dos on; unset: "
        "the embedded one on this machine, at SECRETARY_CALENDAR_PORT.",
    )
    username: str | None = Field(
        default=None,
        description="User name on the CalDAV server; unset on the embedded one: its one "
        "owner, 'secretary'.",
    )
    password: SecretStr | None = Field(
        default=None,
        description="Password on the CalDAV server; on the embedded one, unset means an API "
        "key (SECRETARY_API_KEY) where one is set.",
    )
    name: str = Field(
        default="Secretary",
        min_length=1,
        description="Display name of the calendar the secretary writes to (created on first "
        "use); events of the user's other calendars are read too.",
    )
    timeout: float = Field(
        default=10.0, gt=0, description="Seconds to wait for the CalDAV server."
    )
    reminder_poll_s: float = Field(
        default=5.0, gt=0, le=300,
        description="How often the calendar is asked for reminders that fell due, while a "
        "session or a page listens.",
    )
