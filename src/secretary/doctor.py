"""``secretary doctor``: check this machine against what the configured services need.

Every check learned from a setup that broke: torch built for another CUDA than the driver
has, torchaudio and transformers versions that silently break XTTS, CTranslate2 without
the cuBLAS and cuDNN it loads for GPU Whisper, NeMo missing, models not downloaded, ports
already taken. Each check says what it found and what to do; a check of something the
configuration does not use never fails. Nothing here imports torch or NeMo at module level,
so the command runs on a machine that has neither.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import platform
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packaging.requirements import Requirement

from secretary.config import Settings
from secretary.errors import SecretaryError

Status = Literal["ok", "info", "warn", "fail"]

# Lowest NVIDIA driver for each CUDA major version a torch wheel is built for.
MIN_DRIVER = {11: 450, 12: 525, 13: 580}
# The CUDA libraries CTranslate2 (faster-whisper) loads on a GPU: its wheels use CUDA 12
# and cuDNN 9.
CT2_CUDA_LIBRARIES = ("libcublas.so.12", "libcudnn.so.9")
MIN_FREE_BYTES = 2 * 1024**3
# Packages whose versions XTTS depends on, checked against the xtts extra's pins.
PINNED = ("torch", "torchaudio", "transformers", "coqui-tts")


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    found: str
    fix: str = ""


@dataclass(frozen=True)
class Needs:
    """What the selected services, as configured, need from the machine."""

    services: tuple[str, ...]
    xtts: bool
    canary: bool
    gpu: bool  # a device is set to cuda
    whisper_gpu: bool
    liveportrait: bool = False


def needs(settings: Settings, services: Iterable[str]) -> Needs:
    names = tuple(services)
    engines = {target.engine for target in _tts_targets(settings)} if "tts" in names else set()
    xtts = "xtts" in engines
    canary = "canary" in names
    liveportrait = "avatar" in names and settings.avatar.engine == "liveportrait"
    devices = []
    if liveportrait:
        devices.append(settings.avatar.liveportrait_device)
    if "stt" in names:
        devices.append(settings.stt.device)
    if xtts:
        devices.append(settings.tts.xtts_device)
    if canary:
        devices.append(settings.canary.device)
    return Needs(names, xtts, canary, "cuda" in devices,
                 "stt" in names and settings.stt.device == "cuda", liveportrait)


def _tts_targets(settings: Settings) -> list:
    from secretary.tts.routing import parse_routes

    routes = settings.tts.routes
    table = parse_routes(routes) if isinstance(routes, str) else routes
    return [target for targets in table.values() for target in targets]


# ---------------------------------------------------------------------- the checks
def check_python(need: Needs) -> Check:
    found = platform.python_version()
    if sys.version_info[:2] != (3, 11) and (need.xtts or need.canary):
        return Check("python", "warn", found, "the xtts and canary pins were checked together "
                     "on Python 3.11; use it where their installs fail")
    return Check("python", "ok", found)


def pins(extra: str = "xtts") -> dict[str, Requirement]:
    """The pins of one of Secretary's extras, as its installed metadata declares them."""
    try:
        declared = importlib.metadata.requires("secretary") or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    found = {}
    for line in declared:
        requirement = Requirement(line)
        if requirement.marker and requirement.marker.evaluate({"extra": extra}) and (
                not requirement.marker.evaluate({"extra": ""})):
            found[_canonical(requirement.name)] = requirement
    return found


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None (blocked)
        return False


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_pins(need: Needs, declared: dict[str, Requirement]) -> list[Check]:
    checks = []
    for name in PINNED:
        version = installed_version(name)
        requirement = declared.get(name)
        wanted = str(requirement.specifier) if requirement else "?"
        label = f"{name} version"
        if version is None:
            if need.xtts:
                checks.append(Check(label, "fail", "not installed",
                                    "XTTS is routed: pip install 'secretary[xtts]'"))
            else:
                checks.append(Check(label, "info", "not installed (not needed here)"))
            continue
        local = version.split("+")[0]
        if requirement is None or requirement.specifier.contains(local, prereleases=True):
            checks.append(Check(label, "ok", f"{version} (pinned {wanted})"))
            continue
        fix = (f"pip install '{name}{wanted}' (the set checked with XTTS; others break it "
               "silently), or reinstall 'secretary[xtts]'")
        checks.append(Check(label, "fail" if need.xtts else "warn",
                            f"{version}, pinned {wanted}", fix))
    return checks


def nvidia_driver() -> str | None:
    """The NVIDIA kernel driver's version, or None where there is none."""
    version_file = Path("/proc/driver/nvidia/version")
    if version_file.is_file():
        match = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", version_file.read_text())
        if match:
            return match.group(1)
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        return out.strip().splitlines()[0] if out.strip() else None
    return None


def check_torch_cuda(need: Needs, driver: str | None) -> Check:
    name = "torch CUDA build vs driver"
    if not importable("torch"):
        if need.xtts or need.canary or need.liveportrait:
            return Check(name, "fail", "torch not installed",
                         "pip install 'secretary[xtts]' (or [canary], [liveportrait])")
        return Check(name, "info", "torch not installed (not needed here)")
    try:
        import torch
    except Exception as exc:  # a broken install fails in many ways; say which
        return Check(name, "fail" if need.xtts or need.canary else "warn",
                     f"torch does not import: {exc}",
                     "reinstall torch: pip install --force-reinstall 'secretary[xtts]'")
    built = torch.version.cuda
    if built is None:
        found = f"torch {torch.__version__} is a CPU build"
        if need.gpu:
            return Check(name, "fail", found, "a device is set to cuda: install a CUDA build "
                         "of torch (the PyPI wheel for Linux is one)")
        return Check(name, "ok", found)
    found = f"torch {torch.__version__} built for CUDA {built}; driver {driver or 'none'}"
    minimum = MIN_DRIVER.get(int(built.split(".")[0]))
    if driver is None:
        status: Status = "fail" if need.gpu else "info"
        return Check(name, status, found + " (no NVIDIA GPU visible)",
                     "a device is set to cuda but there is no GPU: set it to auto or cpu, or "
                     "pass the GPU into the container (--gpus all)" if need.gpu else "")
    if minimum and int(driver.split(".")[0]) < minimum:
        return Check(name, "fail" if need.gpu else "warn", found,
                     f"CUDA {built} needs driver {minimum} or newer: update the driver, or "
                     f"install a torch wheel built for an older CUDA")
    if not torch.cuda.is_available():
        return Check(name, "fail" if need.gpu else "warn", found + ", but CUDA is unavailable",
                     "check that the GPU is visible (nvidia-smi) and not held by another "
                     "container")
    return Check(name, "ok", found + f", {torch.cuda.get_device_name(0)}")


def check_ctranslate2(need: Needs, driver: str | None,
                      load: Callable[[str], object] = ctypes.CDLL) -> Check:
    name = "CTranslate2 CUDA libraries"
    if driver is None and not need.whisper_gpu:
        return Check(name, "info", "no GPU: Whisper runs on the CPU")
    missing = []
    for library in CT2_CUDA_LIBRARIES:
        try:
            load(library)
        except OSError:
            missing.append(library)
    if not missing:
        return Check(name, "ok", ", ".join(CT2_CUDA_LIBRARIES) + " load")
    return Check(
        name, "fail" if need.whisper_gpu else "warn", f"{', '.join(missing)} not found",
        "GPU Whisper needs cuBLAS 12 and cuDNN 9: pip install nvidia-cublas-cu12 "
        "'nvidia-cudnn-cu12==9.*' and add their lib folders to LD_LIBRARY_PATH, or use the "
        "CUDA 12 cuDNN image the Dockerfile starts from")


def check_nemo(need: Needs) -> Check:
    name = "NeMo (Canary)"
    version = installed_version("nemo_toolkit")
    if version is None or not importable("nemo"):
        if need.canary:
            return Check(name, "fail", "not installed", "pip install 'secretary[canary]'")
        return Check(name, "info", "not installed (not needed here)")
    return Check(name, "ok", f"nemo_toolkit {version}")


def configured_models(settings: Settings, services: Iterable[str]) -> list[str]:
    """What ``secretary models pull`` calls the models the selected services use (a local
    file or folder needs no pulling and is left out)."""
    need = needs(settings, services)
    return [pull_name for _, pull_name, _ in _wanted(settings, need)
            if not Path(pull_name).expanduser().exists()]


def _wanted(settings: Settings, need: Needs) -> list[tuple[str, str, Callable[[], object]]]:
    from secretary.catalog import ModelStore

    store = ModelStore(settings.models_dir)
    wanted: list[tuple[str, str, Callable[[], object]]] = []
    if "stt" in need.services:
        model = settings.stt.model
        wanted.append((f"Whisper {model}", model,
                       lambda: store.whisper_path(model, download=False)))
    if "tts" in need.services:
        for target in _tts_targets(settings):
            if target.engine == "piper" and target.voice:
                voice = target.voice
                wanted.append((f"Piper voice {voice}", voice,
                               lambda v=voice: store.piper_voice(v, download=False)))
        if need.xtts:
            xtts = settings.tts.xtts_model
            wanted.append((f"XTTS {xtts}", "xtts" if xtts == "coqui/XTTS-v2" else xtts,
                           lambda: store.xtts_checkpoint(xtts, download=False)))
    if "avatar" in need.services:
        wanted.append(("face landmarker", "face-landmarker",
                       lambda: store.face_landmarker_path(settings.avatar.landmarker_path)))
    if need.liveportrait:
        weights = settings.avatar.liveportrait_model
        wanted.append((f"LivePortrait {weights}", "liveportrait" if "/" in weights else weights,
                       lambda: store.liveportrait_weights(weights, download=False)))
    if need.canary:
        name = settings.canary.model
        wanted.append((f"Canary {name}", name,
                       lambda: store.canary_file(name, download=False)))
    return wanted


def check_models(settings: Settings, need: Needs) -> list[Check]:
    checks = []
    for label, pull_name, find in _wanted(settings, need):
        try:
            found = find()
        except SecretaryError:
            checks.append(Check(f"model: {label}", "fail", "not in the model cache",
                                f"secretary models pull {pull_name}"))
            continue
        shown = found[0] if isinstance(found, tuple) else found
        checks.append(Check(f"model: {label}", "ok", str(shown)))
    return checks


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Like uvicorn: a port left in TIME_WAIT by a stopped server counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def service_ports(settings: Settings, services: Iterable[str]) -> list[tuple[str, str, int]]:
    """(service, setting, port) of every port the selected services listen on."""
    found = []
    for name in services:
        group = getattr(settings, name, None)
        if group is None or not getattr(group, "port", 0):
            continue
        found.append((name, f"SECRETARY_{name.upper()}_PORT", group.port))
        if name == "ui" and settings.ui.tls and settings.ui.http_port:
            found.append((name, "SECRETARY_UI_HTTP_PORT", settings.ui.http_port))
    return found


def check_ports(settings: Settings, services: Iterable[str]) -> list[Check]:
    checks = []
    for service, setting, port in service_ports(settings, services):
        host = "127.0.0.1" if setting == "SECRETARY_UI_HTTP_PORT" else settings.host
        if _port_free(host, port):
            checks.append(Check(f"port {port} ({service})", "ok", "free"))
        else:
            checks.append(Check(f"port {port} ({service})", "fail", "in use by another program",
                                f"stop that program, or set {setting} to a free port"))
    return checks


def check_disk(settings: Settings) -> Check:
    folder = settings.cache_dir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    found = f"{free / 1024**3:.1f} GiB free at {settings.cache_dir}"
    if free < MIN_FREE_BYTES:
        return Check("disk for the model cache", "warn", found,
                     "GPU models take 2-5 GB each: free space, or set SECRETARY_CACHE_DIR to "
                     "a larger disk")
    return Check("disk for the model cache", "ok", found)


def check_certificate(settings: Settings) -> Check:
    import datetime as dt

    from cryptography import x509

    name = "UI certificate"
    ui = settings.ui
    if not ui.tls:
        return Check(name, "info", "TLS off (SECRETARY_UI_TLS=false)")
    cert = ui.tls_certfile or settings.cache_dir / "ui-tls" / "cert.pem"
    if ui.tls_certfile is None and not cert.is_file():
        return Check(name, "ok", "a self-signed one is created on first start")
    if not cert.is_file():
        return Check(name, "fail", f"{cert} does not exist",
                     "fix SECRETARY_UI_TLS_CERTFILE, or unset it to use a self-signed one")
    try:
        loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    except ValueError as exc:
        return Check(name, "fail", f"{cert} is not a PEM certificate ({exc})",
                     "point SECRETARY_UI_TLS_CERTFILE at a PEM certificate")
    expires = loaded.not_valid_after_utc
    if expires < dt.datetime.now(dt.UTC):
        fix = ("renew it" if ui.tls_certfile else f"delete {cert.parent} and restart: a new one "
               "is made")
        return Check(name, "fail", f"{cert} expired {expires:%Y-%m-%d}", fix)
    return Check(name, "ok", f"{cert}, valid until {expires:%Y-%m-%d}")


def run(settings: Settings, services: Iterable[str]) -> list[Check]:
    names = tuple(services)
    need = needs(settings, names)
    driver = nvidia_driver()
    checks = [check_python(need), *check_pins(need, pins()), check_torch_cuda(need, driver),
              check_ctranslate2(need, driver), check_nemo(need),
              *check_models(settings, need), *check_ports(settings, names), check_disk(settings)]
    if "ui" in names:
        checks.append(check_certificate(settings))
    return checks


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{width}}  {'':4}  found / -> what to do"]
    for check in checks:
        lines.append(f"{check.name:<{width}}  {check.status.upper():<4}  {check.found}")
        if check.fix:
            lines.append(f"{'':<{width}}  {'':4}  -> {check.fix}")
    failed = sum(c.status == "fail" for c in checks)
    lines.append(f"{failed} problem(s)" if failed else "no problems found")
    return "\n".join(lines)
