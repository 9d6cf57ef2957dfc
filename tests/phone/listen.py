"""Runs the secretary's SIP endpoint alone (a process of its own: one PJSIP endpoint per
process), configured by the SECRETARY_PHONE_* variables, with the cache dir given as the
first argument. Each call is answered and hears silence. Prints {"event": "ready"} once it
listens, and {"event": "call", ...} as each call ends; stops when stdin closes."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from secretary.phone.endpoint import CallHandle, SipEndpoint
from secretary.phone.settings import PhoneSettings


def say(**event: object) -> None:
    print(json.dumps(event), flush=True)


class Silent:
    """A call that is answered and says nothing."""

    def __init__(self, handle: CallHandle) -> None:
        self.handle = handle
        self.codec = ""

    def answered(self, codec: str) -> None:
        self.codec = codec

    def heard(self, pcm: bytes) -> None:
        pass

    def speak(self, size: int) -> bytes:
        return bytes(size)

    def dtmf(self, digit: str) -> None:
        pass

    def ended(self, reason: str) -> None:
        say(event="call", source=self.handle.source, codec=self.codec, reason=reason)


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    options = PhoneSettings(_env_file=None)
    endpoint = SipEndpoint(options, Silent, cache_dir=Path(sys.argv[1]))
    endpoint.start()
    say(event="ready")
    sys.stdin.read()  # until the test closes it
    say(event="refused", **endpoint.refused)
    endpoint.stop()


if __name__ == "__main__":
    main()
