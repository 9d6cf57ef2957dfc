from __future__ import annotations

from pathlib import Path

import pytest

from secretary.config import Settings


def test_defaults_are_the_seed_ports_on_loopback() -> None:
    settings = Settings(_env_file=None)
    assert settings.host == "127.0.0.1"
    assert (settings.stt.port, settings.tts.port, settings.avatar.port, settings.ui.port,
            settings.realtime.port) == (8083, 8082, 8081, 8085, 8086)
    assert settings.stt.model == "base"


def test_environment_and_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SECRETARY_STT_MODEL=tiny.en\nSECRETARY_HOST=0.0.0.0\n")
    monkeypatch.setenv("SECRETARY_STT_PORT", "9083")
    monkeypatch.setenv("SECRETARY_MAX_UPLOAD_MB", "5")
    settings = Settings()
    assert settings.host == "0.0.0.0"
    assert settings.stt.port == 9083
    assert settings.stt.model == "tiny.en"
    assert settings.max_upload_bytes == 5 * 1024 * 1024


def test_invalid_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETARY_STT_DEVICE", "tpu")
    with pytest.raises(ValueError, match="device"):
        Settings(_env_file=None)


def test_the_ui_follows_the_configured_ports_unless_given_addresses(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETARY_STT_PORT", "9083")
    monkeypatch.setenv("SECRETARY_AVATAR_PORT", "9081")
    ui = Settings(_env_file=None).ui_upstreams()
    assert (ui.stt_url, ui.tts_url, ui.avatar_url) == (
        "http://127.0.0.1:9083", "http://127.0.0.1:8082", "http://127.0.0.1:9081")
    monkeypatch.setenv("SECRETARY_UI_STT_URL", "http://speech.internal:8083")
    monkeypatch.setenv("SECRETARY_HOST", "10.1.2.3")  # services listen there only
    ui = Settings(_env_file=None).ui_upstreams()
    assert ui.stt_url == "http://speech.internal:8083"
    assert ui.avatar_url == "http://10.1.2.3:9081"
    monkeypatch.setenv("SECRETARY_HOST", "0.0.0.0")
    assert Settings(_env_file=None).ui_upstreams().tts_url == "http://127.0.0.1:8082"
