"""The telephone registered with a real registrar: Kamailio (Debian's package), which
challenges the REGISTER with digest auth, keeps the contact, and routes a call for the
account to it, as a PBX or SIP trunk does. Over TLS, the registrar is Kamailio behind a TLS
front of the test's (Python's ssl server, passing the stream on to Kamailio's TCP port):
Debian 12's Kamailio 5.6 fails every TLS handshake with its OpenSSL 3 ("no suitable
signature algorithm"), from PJSIP and from ``openssl s_client`` alike.

The endpoint runs as users start it (``secretary serve --only phone``, settings from the
environment). The caller dials the account at the registrar, never the endpoint itself: a
call answered proves the registration is real.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from secretary import tls
from secretary.stt.whisper import WhisperEngine
from tests.helpers import needs, stop_process
from tests.phone.conftest import call, free_tcp_port, free_udp_port, needs_pjsua2
from tests.phone.process import PhoneProcess, read_back_settings
from tests.phone.test_call import heard

KAMAILIO = shutil.which("kamailio") or (
    "/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None)
USER, PASSWORD = "alice", "s3cret-Pa55"

pytestmark = [needs_pjsua2,
              needs(KAMAILIO is not None, "Kamailio (Debian's kamailio package)")]

# Digest auth against a fixed password (no database), the contacts in memory, and calls
# for a registered user relayed to its contact.
CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
auto_aliases=no
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{tcp_port}
alias="127.0.0.1"

mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"

modparam("usrloc", "db_mode", 0)

request_route {{
    xlog("L_INFO", "$rm $ru from $si:$sp\\n");
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (is_method("REGISTER")) {{
        if (!pv_www_authenticate("$td", "{password}", "0")) {{
            www_challenge("$td", "0");
            exit;
        }}
        if (!save("location")) {{ sl_reply_error(); }}
        exit;
    }}
    if (has_totag()) {{
        if (loose_route() || is_method("ACK|BYE|CANCEL")) {{ t_relay(); exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("INVITE")) {{ record_route(); }}
    if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    t_relay();
}}
"""


def _modules() -> str:
    found = sorted(Path("/usr/lib").glob("*/kamailio/modules/registrar.so"))
    return str(found[0].parent) if found else "/usr/lib/x86_64-linux-gnu/kamailio/modules"


def _answers(port: int) -> bool:
    """Whether something answers a SIP OPTIONS on 127.0.0.1:``port`` (Kamailio: 404)."""
    branch = uuid.uuid4().hex
    request = (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n"
               f"From: <sip:probe@127.0.0.1>;tag={branch[:8]}\r\nTo: <sip:127.0.0.1>\r\n"
               f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.5)
        sock.sendto(request.replace("127.0.0.1:9", f"127.0.0.1:{sock.getsockname()[1]}")
                    .encode(), ("127.0.0.1", port))
        try:
            return sock.recv(4096).startswith(b"SIP/2.0")
        except OSError:
            return False


@dataclass
class Registrar:
    port: int  # UDP
    tcp_port: int


class TlsFront:
    """A TLS server on 127.0.0.1 that passes each connection's stream on to a TCP port."""

    def __init__(self, target: int, cert: Path, key: Path) -> None:
        self.target, self.port = target, free_tcp_port()
        self.passed = 0  # bytes passed on from clients that completed the handshake
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(
            self._client, "127.0.0.1", self.port, ssl=self.context))
        self.ready.set()
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                       counted: bool) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await source.read(65536):
                    if counted:
                        self.passed += len(data)
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer, True),
                             pipe(upstream_reader, writer, False))

    def close(self) -> None:
        async def shut() -> None:
            self.server.close()

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def registrar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registrar]:
    """Kamailio on UDP and TCP ports of 127.0.0.1."""
    if KAMAILIO is None:
        pytest.fail("kamailio is not installed (scripts/test.sh installs Debian's kamailio)")
    folder = tmp_path_factory.mktemp("kamailio")
    port, tcp_port = free_udp_port(), free_tcp_port()
    config = folder / "kamailio.cfg"
    config.write_text(CONFIG.format(port=port, tcp_port=tcp_port, modules=_modules(),
                                    password=PASSWORD))
    log = (folder / "kamailio.log").open("w")
    process = subprocess.Popen(
        [KAMAILIO, "-DD", "-E", "-f", str(config), "-Y", str(folder), "-P",
         str(folder / "kamailio.pid")], stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, cwd=folder)
    try:
        deadline = time.monotonic() + 20
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("kamailio did not start:\n"
                                   + (folder / "kamailio.log").read_text()[-3000:])
            time.sleep(0.2)
        yield Registrar(port, tcp_port)
    finally:
        stop_process(process)
        log.close()


@pytest.fixture(scope="module")
def tls_front(registrar: Registrar, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[TlsFront, Path]]:
    """TLS in front of Kamailio's TCP port, and the CA file its certificate verifies by."""
    cert, key = tls.ensure_self_signed(tmp_path_factory.mktemp("registrar-tls"),
                                       ["127.0.0.1"])
    front = TlsFront(registrar.tcp_port, cert, key)
    try:
        yield front, cert
    finally:
        front.close()


def _phone(cache_dir: Path, folder: Path, registrar: str, password: str = PASSWORD,
           **more: str) -> PhoneProcess:
    port = free_udp_port()
    return PhoneProcess(read_back_settings(port, {
        "cache_dir": str(cache_dir), "data_dir": str(folder / "data"),
        "phone.registrar": registrar, "phone.user": USER, "phone.password": password,
        "phone.register_retry_s": "1",
        **{f"phone.{name}": value for name, value in more.items()},
    }), folder, free_tcp_port())


def _registration(phone: PhoneProcess, state: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        registration = phone.health()["registration"]
        if registration and registration["state"] == state or time.monotonic() > deadline:
            return registration
        time.sleep(0.3)


def test_registered_with_digest_auth_and_called_through_the_registrar(
        registrar: Registrar, cache_dir: Path, judge: WhisperEngine, tmp_path: Path) -> None:
    phone = _phone(cache_dir, tmp_path, f"127.0.0.1:{registrar.port}")
    try:
        phone.wait_ready()
        registration = _registration(phone, "registered")
        assert registration == {"state": "registered", "code": 200}, phone.log()[-3000:]
        # Dialled at the registrar: Kamailio finds the account's contact and relays there.
        recording = tmp_path / "heard.wav"
        events = call(f"sip:{USER}@127.0.0.1:{registrar.port}", "--codec", "PCMU",
                      "--record", str(recording), "--hangup-after", "6")
        assert {"event": "media", "codec": "PCMU"} in events, events
        text = heard(judge, recording).lower()
        assert "secretary" in text and "help you" in text, text
        assert phone.health()["registration"]["state"] == "registered"
    finally:
        phone.stop()


def test_a_wrong_password_is_reported_and_retried(
        registrar: Registrar, cache_dir: Path, tmp_path: Path) -> None:
    phone = _phone(cache_dir, tmp_path, f"127.0.0.1:{registrar.port}", "not-the-password")
    try:
        phone.wait_ready()
        registration = _registration(phone, "failed")
        # Kamailio challenges again: the credentials were refused (401), said in /health.
        assert registration["state"] == "failed" and registration["code"] == 401, registration
        assert registration["retry_in_s"] >= 1
        time.sleep(2.5)  # retried after 1 s, then 2 s: still refused, still serving
        assert phone.health()["registration"]["state"] == "failed"
        assert phone.log().count("refused the registration of 'alice': 401") >= 2, \
            phone.log()[-3000:]
        # Nobody is registered: a call for the account is refused by the registrar.
        events = call(f"sip:{USER}@127.0.0.1:{registrar.port}", "--codec", "PCMU",
                      "--hangup-after", "2")
        assert events[-1]["event"] == "end" and events[-1]["code"] == 404, events
    finally:
        phone.stop()


@pytest.mark.parametrize("form", ["sips:127.0.0.1:{port}", "127.0.0.1:{port};transport=tls"])
def test_registered_over_tls_with_the_registrars_certificate_verified(
        tls_front: tuple[TlsFront, Path], cache_dir: Path, tmp_path: Path, form: str) -> None:
    front, ca = tls_front
    before = front.passed
    phone = _phone(cache_dir, tmp_path, form.format(port=front.port),
                   tls_port=str(free_tcp_port()), tls_ca=str(ca))
    try:
        phone.wait_ready()
        registration = _registration(phone, "registered")
        assert registration == {"state": "registered", "code": 200}, phone.log()[-3000:]
        assert front.passed > before  # the REGISTERs went through the TLS front
    finally:
        phone.stop()


def test_a_registrar_certificate_the_ca_did_not_sign_is_refused(
        tls_front: tuple[TlsFront, Path], cache_dir: Path, tmp_path: Path) -> None:
    front, _ = tls_front
    other_ca, _ = tls.ensure_self_signed(tmp_path / "other-ca", ["127.0.0.1"])
    before = front.passed
    phone = _phone(cache_dir, tmp_path, f"sips:127.0.0.1:{front.port}",
                   tls_port=str(free_tcp_port()), tls_ca=str(other_ca))
    try:
        phone.wait_ready()
        registration = _registration(phone, "failed")
        assert registration["state"] == "failed", (registration, phone.log()[-3000:])
        time.sleep(1.5)  # and its retry: never registered, the credentials never sent
        assert phone.health()["registration"]["state"] != "registered"
        assert front.passed == before
    finally:
        phone.stop()
