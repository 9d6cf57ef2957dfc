"""``secretary doctor`` as a user runs it: on this machine, and in environments broken on
purpose (a package at a version the pins exclude, a port already taken, no torch)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from secretary.doctor import nvidia_driver
from tests.helpers import child_environment, free_port

SERVICES = ("stt", "tts", "avatar", "ui")


def _env(cache_dir: Path, **extra: str) -> dict[str, str]:
    env = child_environment()
    # Free ports, so a server that happens to run on the defaults does not fail the check.
    ports = {"SECRETARY_STT_PORT": free_port(), "SECRETARY_TTS_PORT": free_port(),
             "SECRETARY_AVATAR_PORT": free_port(), "SECRETARY_UI_PORT": free_port(),
             "SECRETARY_UI_HTTP_PORT": free_port(), "SECRETARY_CANARY_PORT": free_port()}
    env.update({k: str(v) for k, v in ports.items()})
    env.update({"SECRETARY_CACHE_DIR": str(cache_dir), "HF_HUB_OFFLINE": "1", **extra})
    return env


def doctor(*args: str, env: dict[str, str], prelude: str = "") -> subprocess.CompletedProcess:
    code = f"{prelude}\nimport sys\nfrom secretary.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "doctor", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def line(output: str, check: str) -> str:
    found = [row for row in output.splitlines() if row.startswith(check)]
    assert found, f"no {check!r} row in:\n{output}"
    return found[0]


def test_this_machine_passes_for_the_cpu_configuration(cache_dir: Path) -> None:
    result = doctor(env=_env(cache_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.rstrip().endswith("no problems found")
    for check in ("python", "torch version", "model: Whisper base",
                  "model: Piper voice en_US-joe-medium", "model: face landmarker",
                  "disk for the model cache", "UI certificate"):
        assert " OK " in line(out, check) or " INFO " in line(out, check), line(out, check)
    assert sum(" (stt) " in row or " (ui) " in row for row in out.splitlines()) == 3
    if nvidia_driver() is None:
        assert "no NVIDIA GPU visible" in line(out, "torch CUDA build")
        assert "no GPU: Whisper runs on the CPU" in line(out, "CTranslate2")
    assert "FAIL" not in out


def test_a_busy_port_fails_and_names_the_setting(cache_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = doctor("--only", "stt", env=_env(cache_dir, SECRETARY_STT_PORT=str(port)))
    assert result.returncode == 1
    row = line(result.stdout, f"port {port} (stt)")
    assert "FAIL" in row and "in use" in row
    assert "set SECRETARY_STT_PORT to a free port" in result.stdout
    assert result.stdout.rstrip().endswith("1 problem(s)")


def _fake_distribution(folder: Path, name: str, version: str) -> Path:
    """Metadata of ``name`` at ``version`` ahead of the real one on the path: what pip
    reports after an install that moved the package."""
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return folder


def test_a_version_outside_the_xtts_pins_fails_where_xtts_is_routed(
        cache_dir: Path, tmp_path: Path) -> None:
    fake = _fake_distribution(tmp_path / "site", "transformers", "5.24.0")
    env = _env(cache_dir, PYTHONPATH=os.pathsep.join(
        [str(fake), *filter(None, [os.environ.get("PYTHONPATH")])]))

    cpu = doctor("--only", "tts", env=env)  # Piper and eSpeak: XTTS is not used
    row = line(cpu.stdout, "transformers version")
    assert "WARN" in row and "5.24.0, pinned <5.19,>=4.57" in row
    assert cpu.returncode == 0, cpu.stdout

    routed = doctor("--only", "tts", env={**env, "SECRETARY_TTS_ROUTES": "*=xtts"})
    assert routed.returncode == 1
    row = line(routed.stdout, "transformers version")
    assert "FAIL" in row
    assert "pip install 'transformers<5.19,>=4.57'" in routed.stdout
    assert "FAIL" in line(routed.stdout, "model: XTTS coqui/XTTS-v2")
    assert "secretary models pull xtts" in routed.stdout


def test_canary_without_nemo_or_weights_says_what_to_install_and_pull(
        cache_dir: Path) -> None:
    result = doctor("--only", "canary", env=_env(cache_dir),
                    prelude="import sys; sys.modules['nemo'] = None")
    assert result.returncode == 1
    assert "pip install 'secretary[canary]'" in line(result.stdout, "NeMo (Canary)") + \
        result.stdout
    assert "secretary models pull canary-1b" in result.stdout


def test_it_does_not_crash_without_torch(cache_dir: Path) -> None:
    hidden = ("torch", "torchaudio", "TTS", "nemo")
    hide = "; ".join(f"sys.modules[{name!r}] = None" for name in hidden)
    result = doctor(env=_env(cache_dir), prelude=f"import sys; {hide}")
    assert "Traceback" not in result.stderr, result.stderr
    assert "torch not installed (not needed here)" in result.stdout
    assert result.returncode == 0, result.stdout
