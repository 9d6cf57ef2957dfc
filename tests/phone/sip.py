"""Raw SIP over UDP for the hostile tests: requests written by hand, answers read back."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator


class RawSip:
    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.source, self.local_port = self.sock.getsockname()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, ("127.0.0.1", self.port))

    def answers(self, call_id: str | None = None, timeout: float = 3.0,
                until_final: bool = True) -> list[str]:
        """Status lines of the answers (for ``call_id``), up to the first final one."""
        got: list[str] = []
        for data in self._responses(timeout):
            if call_id and call_id not in data:
                continue
            status = data.split("\r\n", 1)[0]
            got.append(status)
            if until_final and int(status.split()[1]) >= 200:
                break
        return got

    def by_call(self, timeout: float = 3.0) -> dict[str, list[str]]:
        """Every answer within ``timeout``: status lines by Call-ID."""
        got: dict[str, list[str]] = {}
        for data in self._responses(timeout):
            call_id = next((line.split(":", 1)[1].strip() for line in data.split("\r\n")
                            if line.lower().startswith(("call-id:", "i:"))), "")
            got.setdefault(call_id, []).append(data.split("\r\n", 1)[0])
        return got

    def _responses(self, timeout: float) -> Iterator[str]:
        """Each SIP response that arrives within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536).decode("utf-8", "replace")
            except TimeoutError:
                return
            if data.startswith("SIP/2.0"):
                yield data

    def request(self, method: str, *, body: str = "", call_id: str | None = None,
                branch: str | None = None, cseq: int = 1, extra: str = "") -> str:
        """Send a request; its Call-ID."""
        call_id = call_id or uuid.uuid4().hex
        branch = branch or "z9hG4bK" + uuid.uuid4().hex[:12]
        target = f"sip:secretary@127.0.0.1:{self.port}"
        headers = (
            f"{method} {target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.source}:{self.local_port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:tester@{self.source}>;tag={call_id[:8]}\r\n"
            f"To: <{target}>\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:tester@{self.source}:{self.local_port}>\r\n"
            f"{extra}"
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body.encode())}\r\n\r\n")
        self.send((headers + body).encode())
        return call_id

    def invite(self, codecs: str = "0", rtpmap: str = "") -> tuple[str, str]:
        """An INVITE offering the RTP payload types ``codecs``; (Call-ID, branch)."""
        branch = "z9hG4bK" + uuid.uuid4().hex[:12]
        sdp = (f"v=0\r\no=- 1 1 IN IP4 {self.source}\r\ns=-\r\nc=IN IP4 {self.source}\r\n"
               f"t=0 0\r\nm=audio 40000 RTP/AVP {codecs}\r\n{rtpmap}")
        return self.request("INVITE", body=sdp, branch=branch), branch

    def cancel(self, call_id: str, branch: str) -> None:
        self.request("CANCEL", call_id=call_id, branch=branch)
