"""API keys, the browser login, the Host allow-list and the Origin check."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from secretary import audio
from secretary.launcher import warn_if_open
from secretary.tts.app import create_app as create_tts_app
from secretary.tts.espeak import EspeakEngine
from secretary.ui.app import create_app as create_ui_app
from secretary.web.security import LOOPBACK_HOSTS
from tests.conftest import make_settings
from tests.helpers import running_server

KEYS = "first-key-0123456789,second-key-9876543210"


@pytest.fixture(scope="module")
def espeak() -> EspeakEngine:
    engine = EspeakEngine()
    engine.load()
    return engine


@pytest.fixture(scope="module")
def tts_url(cache_dir: Path, espeak: EspeakEngine) -> Iterator[str]:
    settings = make_settings(cache_dir, api_key=KEYS, tts={"routes": "*=espeak"})
    with running_server(create_tts_app(settings, {"espeak": espeak})) as url:
        yield url


@pytest.fixture(scope="module")
def ui_url(cache_dir: Path, tts_url: str) -> Iterator[str]:
    settings = make_settings(cache_dir, api_key=KEYS)
    settings.ui = settings.ui.model_copy(update={"tts_url": tts_url})
    with running_server(create_ui_app(settings)) as url:
        yield url


def test_openai_client_with_either_key(tts_url: str) -> None:
    for key in KEYS.split(","):
        client = openai.OpenAI(base_url=f"{tts_url}/v1", api_key=key, max_retries=0)
        speech = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello there.",
                                            response_format="wav")
        assert audio.decode(speech.content).duration > 0.3
        assert "tts-1" in [m.id for m in client.models.list()]


@pytest.mark.parametrize("key", ["wrong-key", "first-key-012345678", ""])
def test_openai_client_without_the_key_gets_401(tts_url: str, key: str) -> None:
    client = openai.OpenAI(base_url=f"{tts_url}/v1", api_key=key or "none", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hello.")
    assert caught.value.status_code == 401
    assert "SECRETARY_API_KEY" in caught.value.message
    raw = httpx.post(f"{tts_url}/synthesize", json={"text": "Hello."})
    assert raw.status_code == 401 and raw.json()["error"]["code"] == "unauthorized"
    assert raw.headers["www-authenticate"] == "Bearer"


def test_health_and_metrics_need_no_key(tts_url: str) -> None:
    assert httpx.get(f"{tts_url}/health").status_code == 200
    assert httpx.get(f"{tts_url}/metrics").status_code == 200
    assert httpx.get(f"{tts_url}/openapi.json").status_code == 401


def test_browser_signs_in_and_the_ui_forwards_with_the_key(ui_url: str) -> None:
    with httpx.Client(base_url=ui_url, follow_redirects=False) as browser:
        page = browser.get("/", headers={"accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"] == "/login"
        assert browser.get("/api/tts/voices").status_code == 401
        assert "<form" in browser.get("/login").text
        wrong = browser.post("/login", data={"key": "guess"})
        assert wrong.status_code == 401 and "secretary_session" not in browser.cookies
        signed_in = browser.post("/login", data={"key": KEYS.split(",")[1]})
        assert signed_in.status_code == 303
        cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert KEYS.split(",")[1] not in cookie  # the cookie is not the key
        assert browser.get("/", headers={"accept": "text/html"}).status_code == 200
        voices = browser.get("/api/tts/voices")  # the TTS service needs the key too
        assert voices.status_code == 200, voices.text
        status = browser.get("/api/status").json()
        assert status["services"]["tts"]["state"] == "up"


def test_host_allow_list_refuses_a_rebound_name(tts_url: str, cache_dir: Path) -> None:
    evil = httpx.get(f"{tts_url}/health", headers={"host": "attacker.example:8082"})
    assert evil.status_code == 400 and evil.json()["error"]["code"] == "host_not_allowed"
    assert httpx.get(f"{tts_url}/health", headers={"host": "localhost:8082"}).status_code == 200
    for address in ("192.168.1.20:8082", "[fe80::1]:8082"):  # addresses cannot be rebound
        assert httpx.get(f"{tts_url}/health", headers={"host": address}).status_code == 200
    settings = make_settings(cache_dir, allowed_hosts="tts.internal")
    with running_server(create_ui_app(settings)) as url:
        assert httpx.get(f"{url}/health", headers={"host": "tts.internal"}).status_code == 200
        assert httpx.get(f"{url}/health", headers={"host": "other.internal"}).status_code == 400


def _machine() -> str:
    name = socket.gethostname().lower()
    assert name not in LOOPBACK_HOSTS, "the test needs a machine name that is not loopback"
    return name


@pytest.mark.parametrize(("settings", "allowed", "refused"), [
    # SECRETARY_HOST names the service (in any case); bound to a named address it is on
    # the network, so the machine's name is fine too.
    ({"host": "secretary.lan"}, ["secretary.lan", "Secretary.LAN:8082", "{machine}"],
     ["attacker.example", "secretary.lan.attacker.example", "lan"]),
    # Listening everywhere: the machine's name and its mDNS form reach it.
    ({"host": "0.0.0.0"}, ["{machine}", "{machine}.local:8082", "localhost"],
     ["attacker.example", "0.0.0.0.attacker.example", "{machine}.attacker.example"]),
    # Loopback only: nobody else can use the machine's name to reach it.
    ({"host": "127.0.0.1"}, ["localhost", "127.0.0.1:8082"], ["{machine}", "{machine}.local"]),
    ({"allowed_hosts": "tts.internal,speech.example"}, ["tts.internal", "speech.example"],
     ["other.internal", "{machine}"]),
    # '*' among other names: any name at all.
    ({"allowed_hosts": "tts.internal,*"}, ["attacker.example", "{machine}", "a.b.c"], []),
], ids=["host", "any-address", "loopback", "allowed-hosts", "star"])
def test_each_kind_of_allowed_host(cache_dir: Path, espeak: EspeakEngine,
                                   settings: dict[str, str], allowed: list[str],
                                   refused: list[str]) -> None:
    machine = _machine()
    app = create_tts_app(make_settings(cache_dir, tts={"routes": "*=espeak"}, **settings),
                         {"espeak": espeak})
    with running_server(app) as url:
        for name in allowed:
            answer = httpx.get(f"{url}/v1/models", headers={"host": name.format(machine=machine)})
            assert answer.status_code == 200, (name, answer.text)
        for name in refused:
            answer = httpx.get(f"{url}/v1/models", headers={"host": name.format(machine=machine)})
            assert answer.status_code == 400, name
            assert answer.json()["error"]["code"] == "host_not_allowed"


def test_cross_origin_browser_posts_are_refused(cache_dir: Path) -> None:
    with running_server(create_ui_app(make_settings(cache_dir))) as url:
        body = {"text": "hello"}
        assert httpx.post(f"{url}/api/reply", json=body).status_code == 200  # not a browser
        same = httpx.post(f"{url}/api/reply", json=body, headers={"origin": url})
        assert same.status_code == 200
        sibling = httpx.post(f"{url}/api/reply", json=body,  # the same host, another port
                             headers={"origin": "http://127.0.0.1:1"})
        assert sibling.status_code == 200
        for headers in ({"origin": "http://attacker.example"}, {"origin": "null"},
                        {"origin": "http://127.0.0.1.attacker.example"},
                        {"sec-fetch-site": "cross-site"}):
            refused = httpx.post(f"{url}/api/reply", json=body, headers=headers)
            assert refused.status_code == 403, headers
            assert refused.json()["error"]["code"] == "cross_origin"
        form = httpx.post(f"{url}/api/reply", data={"text": "hello"},
                          headers={"origin": "http://attacker.example"})
        assert form.status_code == 403


def test_open_bind_without_a_key_warns(cache_dir: Path, caplog: pytest.LogCaptureFixture
                                       ) -> None:
    with caplog.at_level(logging.WARNING):
        warn_if_open(make_settings(cache_dir, host="127.0.0.1"))
        warn_if_open(make_settings(cache_dir, host="0.0.0.0", api_key="k"))
        assert not caplog.records
        warn_if_open(make_settings(cache_dir, host="0.0.0.0"))
    assert "NO API KEY" in caplog.text and "SECRETARY_API_KEY" in caplog.text
