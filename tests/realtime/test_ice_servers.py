"""SECRETARY_REALTIME_ICE_SERVERS: its two spellings, its one-line errors, the service's peer
configuration, and the page's copy behind the API key. (A call through a real TURN server:
test_turn_relay.py.)"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from secretary.config import Settings, describe_invalid
from secretary.realtime.settings import IceServer
from secretary.realtime.webrtc import peer_configuration
from secretary.ui.app import create_app as create_ui_app
from tests.conftest import make_settings
from tests.helpers import running_server

TURN = "turn:turn.example.org:3478?transport=udp"
EXPECTED = (IceServer(TURN, "alice", "s3cret"), IceServer("stun:stun.example.org:3478"))


@pytest.mark.parametrize("value", [
    f"{TURN}|alice|s3cret, stun:stun.example.org:3478",
    f'[{{"urls": "{TURN}", "username": "alice", "credential": "s3cret"}},'
    ' {"urls": ["stun:stun.example.org:3478"]}]',
])
def test_either_spelling_gives_the_servers(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SECRETARY_REALTIME_ICE_SERVERS", value)
    servers = Settings(_env_file=None).realtime.ice_servers
    assert servers == EXPECTED
    assert "s3cret" not in repr(servers) and "s3cret" not in str(servers[0])
    configuration = peer_configuration(servers)
    assert [(s.urls, s.username, s.credential) for s in configuration.iceServers] == [
        (TURN, "alice", "s3cret"), ("stun:stun.example.org:3478", None, None)]


def test_none_by_default() -> None:
    assert Settings(_env_file=None).realtime.ice_servers == ()
    assert peer_configuration(()) is None  # aiortc's own default, as before the setting


@pytest.mark.parametrize(("value", "said"), [
    ("turn:turn.example.org:3478", "needs a username and a credential"),
    ("http://turn.example.org", "is not a stun:, stuns:, turn: or turns: URL"),
    ("stun:stun.example.org:3478?transport=udp", "a STUN URL takes no transport"),
    ("stun:stun.example.org|alice|s3cret", "a STUN server takes no credentials"),
    ("turn:turn.example.org|alice", "has 2 '|'-separated parts"),
    ("turn:turn.example.org:70000|alice|s3cret", "is not 1 to 65535"),
    ("turns:turn.example.org?transport=udp|alice|s3cret", "over TCP only"),
    ('[{"urls": "turn:x"', "not valid JSON"),
    ('["stun:x"]', "entry 1 is not an object"),
])
def test_a_wrong_value_is_one_line_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, value: str, said: str) -> None:
    monkeypatch.setenv("SECRETARY_REALTIME_ICE_SERVERS", value)
    with pytest.raises(ValidationError) as error:
        Settings(_env_file=None)
    line = describe_invalid(error.value)
    assert line.startswith("SECRETARY_REALTIME_ICE_SERVERS (realtime.ice_servers): "), line
    assert said in line and "\n" not in line, line


def test_the_page_gets_them_behind_the_api_key(cache_dir: Path) -> None:
    settings = make_settings(cache_dir, api_key="page-key-0123456789")
    settings.realtime.ice_servers = f"{TURN}|alice|s3cret"
    settings.conversation = settings.conversation.model_copy(update={"preload": False})
    with running_server(create_ui_app(settings)) as url:
        refused = httpx.get(f"{url}/api/config")
        assert refused.status_code == 401 and "s3cret" not in refused.text
        config = httpx.get(f"{url}/api/config",
                           headers={"Authorization": "Bearer page-key-0123456789"}).json()
    assert config["ice_servers"] == [{"urls": [TURN], "username": "alice",
                                      "credential": "s3cret"}]
