"""Hostile SIP: malformed requests, an offer with no codec in common, an INVITE flood, a
registrar that refuses; each with its answer, and the endpoint still serving."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from secretary.phone.endpoint import RateLimit
from tests.phone.conftest import Phone, free_tcp_port, free_udp_port, needs_pjsua2
from tests.phone.process import PhoneProcess
from tests.phone.sip import RawSip

pytestmark = needs_pjsua2


@pytest.fixture
def raw(phone: Phone) -> Iterator[RawSip]:
    sip = RawSip(phone.service.options.port)
    yield sip
    sip.close()


def still_serving(raw: RawSip) -> None:
    call_id = raw.request("OPTIONS")
    assert raw.answers(call_id) == ["SIP/2.0 200 OK"]


def test_malformed_requests_are_dropped(raw: RawSip) -> None:
    """PJSIP drops a request it cannot parse (no answer: it could not address one) and
    goes on serving."""
    for bad in (b"\x00\xff\xfe not SIP at all\r\n\r\n",
                b"INVITE sip:x SIP/2.0\r\nCall-ID: a\r\nContent-Length: 0\r\n\r\n",
                b"OPTIONS sip:x SIP/2.0\r\n" + b"X-Long: " + b"a" * 60000 + b"\r\n\r\n"):
        raw.send(bad)
    raw.request("OPTIONS", extra="Max-Forwards: banana\r\n")
    assert raw.answers(timeout=1.0) == []
    still_serving(raw)


def test_no_codec_in_common_is_488(raw: RawSip) -> None:
    call_id, _ = raw.invite("99", "a=rtpmap:99 FOO/8000\r\n")
    assert raw.answers(call_id)[-1] == "SIP/2.0 488 Not Acceptable Here"
    call_id, _ = raw.invite("18", "a=rtpmap:18 G729/8000\r\n")  # not in this build
    assert raw.answers(call_id)[-1] == "SIP/2.0 488 Not Acceptable Here"
    still_serving(raw)


def test_invite_flood_is_rate_limited(phone: Phone) -> None:
    endpoint = phone.service.endpoint
    assert endpoint is not None
    options = phone.service.options
    saved = endpoint.flood, options.answer_delay_s
    endpoint.flood, options.answer_delay_s = RateLimit(2), 5.0
    flood = RawSip(options.port, source="127.0.0.3")  # its own address: its own limit
    try:
        sent = [flood.invite("0") for _ in range(6)]
        got = flood.by_call(timeout=2.0)
        # each INVITE's first answer past 100 Trying (a final one is sent again, unACKed)
        last = {call_id: next((a for a in got.get(call_id, []) if " 100 " not in a), "none")
                for call_id, _ in sent}
        ringing = [(c, b) for c, b in sent if last[c].startswith("SIP/2.0 180")]
        assert len(ringing) == 1, last  # the first; the second is over max_calls
        for call_id, branch in ringing:
            flood.cancel(call_id, branch)
        codes = sorted(v.split()[1] for c, v in last.items() if c != ringing[0][0])
        assert codes == ["486", "503", "503", "503", "503"], last
        cancelled = flood.by_call(timeout=1.0).get(ringing[0][0], [])
        assert "SIP/2.0 487 Request Terminated" in cancelled, cancelled
        assert endpoint.refused["rate_limited"] >= 4
    finally:
        endpoint.flood, options.answer_delay_s = saved
        flood.close()
    # another address is served meanwhile
    still_serving(RawSip(options.port))
    health = httpx.get(f"{phone.url}/health").json()
    assert health["refused"]["rate_limited"] >= 4
    deadline = time.monotonic() + 10
    while phone.service.calls and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not phone.service.calls  # the cancelled call ended


def test_refused_registration_is_retried_with_backoff() -> None:
    """A registrar answering 403: a clear state, and REGISTER again after the backoff."""
    registrar = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    registrar.bind(("127.0.0.1", 0))
    registrar.settimeout(0.2)
    seen: list[float] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = registrar.recvfrom(65536)
            except TimeoutError:
                continue
            text = data.decode("utf-8", "replace")
            if not text.startswith("REGISTER"):
                continue
            seen.append(time.monotonic())
            head = [line for line in text.split("\r\n") if line.split(":", 1)[0].lower()
                    in ("via", "from", "to", "call-id", "cseq")]
            answer = "SIP/2.0 403 Forbidden\r\n" + "\r\n".join(head) + \
                "\r\nContent-Length: 0\r\n\r\n"
            registrar.sendto(answer.encode(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("register.py")),
             f"127.0.0.1:{registrar.getsockname()[1]}", str(free_udp_port()), "4.5"],
            capture_output=True, text=True, timeout=60, check=False)
    finally:
        stop.set()
        thread.join()
        registrar.close()
    assert done.returncode == 0, done.stderr[-2000:]
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state["state"] == "failed" and state["code"] == 403, state
    assert "refused the registration of 'alice': 403" in done.stderr
    # first at start, then after 1 s, 2 s: the waits double
    assert len(seen) >= 3, seen
    gaps = [b - a for a, b in zip(seen, seen[1:], strict=False)]
    assert gaps[0] >= 0.9 and gaps[1] >= 1.8, gaps


def test_a_sip_port_in_use_stops_the_start_with_what_went_wrong(tmp_path: Path) -> None:
    # Another SIP stack on the port: the telephone says so and exits, without PJSIP
    # aborting the process at its exit.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        phone = PhoneProcess({"cache_dir": str(tmp_path / "cache"),
                              "data_dir": str(tmp_path / "data"), "phone.port": str(port)},
                             tmp_path, free_tcp_port())
        try:
            code = phone.process.wait(timeout=60)
        finally:
            phone.stop()
    log = phone.log()
    assert code not in (0, -6, 134), (code, log[-3000:])  # -6/134: aborted (SIGABRT)
    assert (f"the SIP endpoint could not start on 127.0.0.1:{port} "
            "(SECRETARY_PHONE_HOST, _PORT, _TLS_PORT): Address already in use") in log, \
        log[-3000:]
    assert "Assertion" not in log, log[-3000:]
