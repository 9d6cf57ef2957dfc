"""SIP over TLS and SRTP: a caller over TLS with SRTP mandatory talks with the secretary
(greeting, a spoken clip, its read-back); an endpoint with SRTP off refuses such a caller
488 and goes on taking calls; a wrong TLS setting is one line naming the variable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from secretary.config import Settings, describe_invalid
from secretary.phone.settings import PhoneSettings
from secretary.stt.whisper import WhisperEngine
from tests.helpers import wer
from tests.phone.conftest import (
    Phone,
    call,
    clip,
    free_tcp_port,
    free_udp_port,
    needs_pjsua2,
)
from tests.phone.test_call import CLIP, READ_BACK_CEILING, SAID, calls, heard, wait_for_record

LISTEN = Path(__file__).with_name("listen.py")


def event(events: list[dict], name: str) -> dict:
    found = [e for e in events if e["event"] == name]
    assert found, (name, events)
    return found[0]


def answer_sdp(events: list[dict]) -> str:
    """The SDP of the 2xx the secretary answered the INVITE with."""
    message = event(events, "answer")["message"]
    return message.split("\r\n\r\n", 1)[1]


@needs_pjsua2
def test_a_call_over_tls_with_srtp_mandatory(phone: Phone, judge: WhisperEngine,
                                            tmp_path: Path) -> None:
    before = len(calls(phone))
    speech = clip(tmp_path, CLIP, 16000)
    recording = tmp_path / "heard.wav"
    assert phone.cert is not None
    # The caller verifies the secretary's certificate and insists on SRTP.
    events = phone.call("--transport", "tls", "--ca", str(phone.cert), "--srtp", "mandatory",
                        "--codec", "G722", "--play", str(speech), "--play-after", "4.5",
                        "--record", str(recording), "--hangup-after", "16",
                        "--from-uri", "sip:5550100@127.0.0.1", "--name", "Bob",
                        to=phone.tls_uri)
    assert events[-1]["by"] == "us", events
    # Signalling over TLS: the INVITE went over TLS (its Via, echoed) and the secretary's
    # Contact asks for TLS.
    message = event(events, "answer")["message"]
    assert "Via: SIP/2.0/TLS " in message, message
    assert "transport=tls" in event(events, "connected")["remote_contact"].lower()
    # The media is SRTP: the answer's audio is RTP/SAVP with an SDES key, and the stream
    # the caller runs is on the SRTP profile.
    sdp = answer_sdp(events)
    audio = next(line for line in sdp.splitlines() if line.startswith("m=audio"))
    assert "RTP/SAVP" in audio and "a=crypto:" in sdp, sdp
    assert event(events, "stream")["srtp"] is True
    assert {"event": "media", "codec": "G722"} in events

    text = heard(judge, recording).lower()
    assert "secretary" in text and "help you" in text, text
    assert wer(SAID, text.split("help you", 1)[1], "en") <= READ_BACK_CEILING, text
    record = wait_for_record(phone, before)
    assert record["caller_number"] == "5550100" and record["codec"] == "G722"


@needs_pjsua2
def test_plain_rtp_still_answered_where_srtp_is_optional(phone: Phone) -> None:
    # SRTP optional (the default): a caller without it gets plain RTP, over TLS too.
    assert phone.service.options.srtp == "optional"
    events = phone.call("--transport", "tls", "--hangup-after", "2", to=phone.tls_uri)
    assert events[-1]["by"] == "us", events
    sdp = answer_sdp(events)
    assert "RTP/AVP" in sdp and "a=crypto:" not in sdp, sdp
    assert event(events, "stream")["srtp"] is False


@needs_pjsua2
def test_srtp_off_refuses_a_caller_that_insists_on_it(tmp_path: Path) -> None:
    port, tls_port = free_udp_port(), free_tcp_port()
    env = {**os.environ, "SECRETARY_PHONE_PORT": str(port),
           "SECRETARY_PHONE_TLS_PORT": str(tls_port),
           "SECRETARY_PHONE_RTP_PORT": str(30000 + port % 20000),
           "SECRETARY_PHONE_SRTP": "off", "SECRETARY_PHONE_ANSWER_DELAY_S": "0.1"}
    endpoint = subprocess.Popen([sys.executable, str(LISTEN), str(tmp_path)], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        assert endpoint.stdout is not None
        for line in endpoint.stdout:  # until it listens
            if line.startswith("{"):
                assert json.loads(line) == {"event": "ready"}
                break
        # No certificate was given: a self-signed one was made in the cache dir, and it is
        # the one served (the caller verifies against it).
        cert = tmp_path / "phone-tls" / "cert.pem"
        assert cert.is_file()
        tls_uri = f"sip:secretary@127.0.0.1:{tls_port};transport=tls"
        refused = call(tls_uri, "--transport", "tls", "--ca", str(cert), "--srtp",
                       "mandatory", "--hangup-after", "3")
        assert refused[-1]["code"] == 488 and refused[-1]["by"] == "them", refused
        assert not [e for e in refused if e["event"] == "media"]
        # ... and it goes on: over TLS and over UDP, plain RTP is answered.
        for args in (["--transport", "tls", "--ca", str(cert)], []):
            uri = tls_uri if args else f"sip:secretary@127.0.0.1:{port}"
            events = call(uri, *args, "--hangup-after", "1.5")
            assert events[-1] == {"event": "end", "code": 200, "reason": "OK", "by": "us"}
    finally:
        out, err = endpoint.communicate(timeout=20)
    ended = [json.loads(line) for line in out.splitlines() if line.startswith('{"event": "call"')]
    assert len(ended) == 2, (out, err[-2000:])  # the refused call never reached the owner


@pytest.mark.parametrize(("variables", "said"), [
    ({"SECRETARY_PHONE_TLS_CERT": "/nowhere/cert.pem",
      "SECRETARY_PHONE_TLS_KEY": "/nowhere/key.pem"},
     "SECRETARY_PHONE_TLS_CERT (phone.tls_cert): no such file: /nowhere/cert.pem"),
    ({"SECRETARY_PHONE_TLS_CA": "/nowhere/ca.pem"}, "SECRETARY_PHONE_TLS_CA"),
    ({"SECRETARY_PHONE_SRTP": "always"}, "SECRETARY_PHONE_SRTP"),
    ({"SECRETARY_PHONE_TLS_CERT": str(LISTEN), "SECRETARY_PHONE_TLS_KEY": str(LISTEN)},
     "is not a PEM file"),
    ({"SECRETARY_PHONE_REGISTRAR": "sips:pbx.example.org"}, "SECRETARY_PHONE_TLS_PORT"),
])
def test_a_wrong_tls_setting_is_one_line_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], said: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as error:
        Settings(_env_file=None)
    line = describe_invalid(error.value)
    assert said in line and "\n" not in line, line


def test_a_certificate_needs_its_key(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(ValidationError, match="SECRETARY_PHONE_TLS_KEY go together"):
        PhoneSettings(_env_file=None, tls_port=5061, tls_cert=cert)


@pytest.mark.parametrize(("registrar", "uri", "over_tls"), [
    ("pbx.example.org", "sip:pbx.example.org", False),
    ("pbx.example.org:5080", "sip:pbx.example.org:5080", False),
    ("pbx.example.org:5061;transport=tls", "sip:pbx.example.org:5061;transport=tls", True),
    ("sips:pbx.example.org", "sips:pbx.example.org", True),
    ("sip:pbx.example.org;transport=TLS", "sip:pbx.example.org;transport=TLS", True),
])
def test_the_registrar_uri(registrar: str, uri: str, over_tls: bool) -> None:
    options = PhoneSettings(_env_file=None, registrar=registrar, tls_port=5061)
    assert options.registrar_uri == uri and options.registrar_tls is over_tls
