"""The model store: the packaged Whisper base assembles once, offline names fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secretary.catalog import ModelStore
from secretary.errors import ModelUnavailableError


def test_base_assembles_once_and_verifies(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    path = store.whisper_path("base")
    assert {p.name for p in path.iterdir()} >= {"model.bin", "config.json", "tokenizer.json",
                                                 "vocabulary.txt"}
    recorded = json.loads((path / ".assembled.json").read_text())
    assert recorded["size"] == (path / "model.bin").stat().st_size > 140_000_000
    mtime = (path / "model.bin").stat().st_mtime_ns
    assert store.whisper_path("base") == path
    assert (path / "model.bin").stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert store.verify("base")


def test_truncated_cache_is_rebuilt(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    path = store.whisper_path("base")
    with open(path / "model.bin", "r+b") as f:
        f.truncate(1000)
    path = store.whisper_path("base")
    assert (path / "model.bin").stat().st_size > 140_000_000
    assert store.verify("base")
    assert not list(tmp_path.glob(".whisper-base-*")), "staging folder left behind"


def test_local_folder_is_used_as_is(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert ModelStore(tmp_path / "cache").whisper_path(str(folder)) == folder


def test_hub_model_offline_fails_with_instructions(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as info:
        ModelStore(tmp_path).whisper_path("large-v3")
    message = info.value.message
    assert "Systran/faster-whisper-large-v3" in message
    assert "secretary models pull large-v3" in message
    assert "SECRETARY_STT_MODEL" in message


def test_unknown_name_lists_known_models(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError) as info:
        ModelStore(tmp_path).whisper_path("gigantic")
    assert "large-v3" in info.value.message and "tiny" in info.value.message


def test_listing_marks_the_embedded_model_available(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = {row["name"]: row for row in ModelStore(tmp_path).list()}
    assert rows["base"]["available"] is True and rows["base"]["source"] == "package"
    assert rows["large-v3"]["available"] is False
    assert rows["large-v3"]["hub_id"] == "Systran/faster-whisper-large-v3"
