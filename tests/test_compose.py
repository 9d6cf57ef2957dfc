"""compose.yaml, read by a real Compose implementation, against the settings and services
that exist; .env.example against the settings."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from secretary.config import Settings, environment_variables
from tests.helpers import needs

ROOT = Path(__file__).resolve().parents[1]


def _compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(
            ["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


COMPOSE = _compose_command()
needs_compose = needs(COMPOSE is not None, "Docker Compose (Debian's docker-compose package)")


def compose_config(tmp_path: Path, *profiles: str) -> dict[str, Any]:
    assert COMPOSE is not None
    empty_env = tmp_path / "empty.env"  # a developer's own .env must not change the result
    empty_env.write_text("")
    args = [*COMPOSE, "--project-directory", str(ROOT), "-f", str(ROOT / "compose.yaml"),
            "--env-file", str(empty_env)]
    for profile in profiles:
        args += ["--profile", profile]
    result = subprocess.run([*args, "config"], capture_output=True, text=True, cwd=tmp_path,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    # Compose v1 prints every service with its profiles; v2 only the selected ones.
    config["services"] = {
        name: service for name, service in config["services"].items()
        if not service.get("profiles") or set(service["profiles"]) & set(profiles)
    }
    return config


def services_named(command: list[str], verb: str) -> list[str]:
    """The service names in ``serve --only a,b`` or ``health a,b``."""
    assert command[0] == verb, command
    names = command[2] if verb == "serve" else command[1]
    if verb == "serve":
        assert command[1] == "--only"
    return names.split(",")


def settings_from(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in environment.items():
        monkeypatch.setenv(name, str(value))
    return Settings(_env_file=None)


@needs_compose
@pytest.mark.parametrize(("profiles", "expected"), [
    (("cpu",), {"secretary"}),
    (("gpu",), {"stt", "tts", "avatar", "ui", "realtime", "calendar"}),
    (("canary",), {"canary"}),
    (("gpu", "canary"), {"stt", "tts", "avatar", "ui", "realtime", "calendar", "canary"}),
])
def test_each_profile_starts_its_services_with_health_checks_ports_and_the_model_volume(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, profiles: tuple[str, ...],
        expected: set[str]) -> None:
    from secretary.launcher import SERVICES

    config = compose_config(tmp_path, *profiles)
    assert set(config["services"]) == expected
    assert "models" in config["volumes"]
    known = environment_variables()
    for name, service in config["services"].items():
        served = services_named(service["command"], "serve")
        assert set(served) <= set(SERVICES), f"{name}: unknown service in {served}"
        test = service["healthcheck"]["test"]
        assert test[:2] == ["CMD", "secretary"]
        assert services_named(test[2:], "health") == served, f"{name}: checks other services"

        environment = service.get("environment") or {}
        unknown = [k for k in environment if k.startswith("SECRETARY_") and k not in known]
        assert not unknown, f"{name}: settings that do not exist: {unknown}"
        with monkeypatch.context() as patch:
            settings = settings_from(environment, patch)  # invalid values fail here
        published = {int(p["target"]) if isinstance(p, dict) else int(str(p).split(":")[-1])
                     for p in service["ports"]}
        assert published == {getattr(settings, s).port for s in served}, name
        assert any(re.search(r"^models:/cache(:|$)", str(v)) or (
            isinstance(v, dict) and (v.get("source"), v.get("target")) == ("models", "/cache"))
            for v in service["volumes"]), f"{name}: no model volume"

        gpu = "cuda" in {str(v) for v in environment.values()}
        reservations = (service.get("deploy") or {}).get("resources", {}).get("reservations", {})
        assert bool(reservations.get("devices")) == gpu, f"{name}: GPU reservation mismatch"


@needs_compose
@pytest.mark.parametrize("name", ["ui", "realtime"])
def test_the_gpu_conversation_runs_its_stages_on_the_other_containers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    config = compose_config(tmp_path, "gpu")
    settings = settings_from(config["services"][name]["environment"], monkeypatch)
    assert settings.ui.stt_url == "http://stt:8083"
    assert settings.ui.tts_url == "http://tts:8082"
    assert settings.ui.avatar_url == "http://avatar:8081"
    # Not the embedded CPU engines inside a container without a GPU.
    assert {settings.conversation.stage(s) for s in ("stt", "tts", "avatar")} == {"remote"}
    if name == "ui":
        assert settings.ui.realtime_url == "http://realtime:8086"  # Live mode's calls


def test_env_example_lists_every_setting_as_generated() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import env_example
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    text = (ROOT / ".env.example").read_text()
    assert text == env_example.render(), "run: python scripts/env_example.py > .env.example"
    listed = {line[2:].split("=", 1)[0] for line in text.splitlines()
              if line.startswith("# SECRETARY_")}
    assert listed == set(environment_variables())
