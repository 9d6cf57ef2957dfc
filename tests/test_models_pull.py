"""``secretary models pull`` and ``models list`` against local cache folders, offline: every
engine's models by name, a cache filled for another machine with --to, and what the
configured services use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import child_environment
from tests.stt.canary_model import place_in_hub_cache


def _env(cache_dir: Path, **extra: str) -> dict[str, str]:
    env = child_environment()
    env.update({"SECRETARY_CACHE_DIR": str(cache_dir), "HF_HUB_OFFLINE": "1", **extra})
    return env


def secretary(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "secretary", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def rows(listing: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in listing.splitlines()[1:-1]}


def test_pull_fills_a_cache_folder_to_carry_elsewhere(tmp_path: Path) -> None:
    carried = tmp_path / "carry"
    result = secretary("models", "pull", "base", "en_US-joe-medium", "face-landmarker",
                       "--to", str(carried), env=_env(tmp_path / "home-cache"))
    assert result.returncode == 0, result.stderr
    assert (carried / "models" / "whisper-base" / "model.bin").stat().st_size > 140_000_000
    assert "base: " in result.stdout and "(147.9 MB)" in result.stdout
    assert "SECRETARY_CACHE_DIR" in result.stdout
    assert not (tmp_path / "home-cache").exists()  # the configured cache was left alone

    listing = secretary("models", "list", env=_env(carried)).stdout
    table = rows(listing)
    assert table["base"][3] == "yes" and table["base"][4:6] == ["147.9", "MB"]
    assert table["large-v3"][3] == "no"
    assert {"canary-1b", "canary-1b-flash", "xtts", "en_US-joe-medium",
            "face-landmarker"} <= set(table)


def test_a_canary_archive_in_the_hub_cache_is_found_listed_and_sized(tmp_path: Path) -> None:
    # Bytes in the hub cache's layout, as a download leaves them: pull finds them offline.
    archive = tmp_path / "canary-1b.nemo"
    archive.write_bytes(b"\0" * 123_456)
    place_in_hub_cache(archive, tmp_path / "cache" / "models", "nvidia/canary-1b")
    env = _env(tmp_path / "cache")
    pulled = secretary("models", "pull", "canary-1b", "nvidia/canary-1b", env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.count("canary-1b.nemo (123.5 KB)") == 2
    table = rows(secretary("models", "list", env=env).stdout)
    assert table["canary-1b"][3:6] == ["yes", "123.5", "KB"]
    assert table["canary-1b-flash"][3] == "no"


def test_models_missing_offline_and_unknown_names_fail_with_the_fix(tmp_path: Path) -> None:
    result = secretary("models", "pull", "canary-1b-flash", "xtts", "de_DE-thorsten-medium",
                       "coffee", env=_env(tmp_path))
    assert result.returncode == 2
    err = result.stderr
    assert "secretary models pull canary-1b-flash" in err
    assert "coqui/XTTS-v2" in err
    assert "Piper voice 'de_DE-thorsten-medium'" in err
    assert "unknown model 'coffee'" in err and "large-v3" in err


def test_pull_configured_fetches_what_the_services_use(tmp_path: Path) -> None:
    result = secretary("models", "pull", "--configured", env=_env(tmp_path))
    assert result.returncode == 0, result.stderr
    pulled = [line.split(":")[0] for line in result.stdout.splitlines()]
    assert pulled == ["base", "en_US-joe-medium", "face-landmarker"]
    gpu = secretary("models", "pull", "--configured", "--only", "stt,canary",
                    env=_env(tmp_path, SECRETARY_STT_MODEL="large-v3"))
    assert gpu.returncode == 2
    assert "secretary models pull large-v3" in gpu.stderr
    assert "secretary models pull canary-1b" in gpu.stderr
